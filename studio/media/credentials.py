"""Content Credentials (C2PA) on exported videos: signing keys, signing, reading back.

Every MP4 the studio writes is signed with a C2PA manifest (the official ``c2pa-python`` library,
c2pa-rs inside; nothing here writes JUMBF or COSE by hand) that says:

* action ``c2pa.created`` with ``digitalSourceType`` = IPTC ``trainedAlgorithmicMedia`` (the C2PA
  way of saying "made by a generative model"), by this software (name and version);
* the ingredients it was made from: the identity photo or video, the speech, pose/expression sources,
  each by title, format and SHA-256 (``instance_id`` ``sha256:<hex>``); no copy or thumbnail of them;
* our assertion ``org.talkingheadstudio.render``: engine, and the id of the invisible watermark in the
  frames (:mod:`studio.media.watermark`), so a re-encoded copy that lost the manifest can be tied back.

Signing key. :func:`create_local_key` makes a local certificate authority and an ES256 (P-256) signing
certificate issued by it (c2pa-rs refuses self-signed end-entity CA certificates and wants key usage
digitalSignature, an extended key usage such as emailProtection and an authority key id). The key is
written with mode 0600 in ``config_dir()/keys``; ``TALKSTUDIO_SIGNING_KEY`` and
``TALKSTUDIO_SIGNING_CHAIN`` point elsewhere (e.g. at a key from a CA on the C2PA trust list).
A local key proves nothing about who made a video to anybody else: readers see "signed, issuer not
trusted". It does prove that the file was not changed since it was signed.
"""

from __future__ import annotations

import datetime as dt
import contextlib
import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from studio import __version__
from studio.core.errors import ConfigError, InputError, OutputError
from studio.core.paths import config_dir

GENERATOR = "Talking Head Studio"
#: IPTC digital source type of media made by a trained generative model
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
#: our own assertion's label
RENDER_ASSERTION = "org.talkingheadstudio.render"
KEY_FILE = "c2pa-signing-key.pem"
CHAIN_FILE = "c2pa-signing-chain.pem"
#: key and certificate files are small; anything larger is not one
MAX_PEM_BYTES = 64 << 10
#: what a local signing certificate's subject says
LOCAL_ORG = "Talking Head Studio (self-signed, local)"


def key_dir() -> Path:
    """Folder of the signing key and certificate chain: ``config_dir()/keys``."""
    return config_dir() / "keys"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, hex. Raises InputError if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", "check that the file exists and is readable") from exc
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# keys


@dataclass(frozen=True)
class SigningKey:
    """A private key and its certificate chain (PEM files), as used to sign.

    Attributes:
        key_path: PKCS#8 PEM private key (ES256 / P-256). chain_path: PEM certificates, the signing
        certificate first, then its issuers.
    """

    key_path: Path
    chain_path: Path

    def load(self) -> tuple[bytes, bytes]:
        """(chain PEM, key PEM) bytes.

        Raises:
            ConfigError: a file is missing, unreadable, larger than 64 KiB or not PEM.
        """
        out = []
        for path, what in ((self.chain_path, "certificate chain"), (self.key_path, "signing key")):
            try:
                with open(path, "rb") as fh:
                    data = fh.read(MAX_PEM_BYTES + 1)
            except OSError as exc:
                raise ConfigError(f"cannot read the C2PA {what} {path}: {exc.strerror or exc}",
                                  "run `talkstudio keys create` to make a local key, or fix the path") from exc
            if len(data) > MAX_PEM_BYTES or b"-----BEGIN" not in data:
                raise ConfigError(f"the C2PA {what} {path} is not a PEM file",
                                  "give a PEM file, or run `talkstudio keys create` to make a local key")
            out.append(data)
        return out[0], out[1]

    def check(self) -> None:
        """Raise :class:`ConfigError` unless the key can sign: readable PEM files, an EC P-256 private key, and a
        signing certificate (the chain's first) that belongs to that key and is currently valid."""
        import datetime as _dt

        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        chain, key_pem = self.load()
        fix = "run `talkstudio keys create --overwrite` for a new local key, or fix TALKSTUDIO_SIGNING_KEY/_CHAIN"
        try:
            cert = x509.load_pem_x509_certificates(chain)[0]
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"the C2PA signing key or certificate cannot be read ({exc})", fix) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ConfigError(f"the C2PA signing key {self.key_path} is not an ES256 (P-256) key", fix)
        if cert.public_key().public_numbers() != key.public_key().public_numbers():
            raise ConfigError(f"the C2PA signing key {self.key_path} does not belong to the certificate in "
                              f"{self.chain_path}", fix)
        now = _dt.datetime.now(_dt.timezone.utc)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ConfigError(f"the C2PA signing certificate in {self.chain_path} is not valid now (valid "
                              f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})", fix)

    def serial(self) -> str:
        """The signing certificate's serial number as decimal text (how C2PA readers report it)."""
        from cryptography import x509

        return str(x509.load_pem_x509_certificates(self.load()[0])[0].serial_number)

    def describe(self) -> dict[str, str | bool]:
        """Subject, issuer, validity and whether this is a local (self-signed) key, for display.

        Raises:
            ConfigError: unreadable or malformed certificate.
        """
        from cryptography import x509

        chain, _ = self.load()
        try:
            cert = x509.load_pem_x509_certificates(chain)[0]
        except ValueError as exc:
            raise ConfigError(f"the certificate chain {self.chain_path} cannot be parsed ({exc})",
                              "give a PEM certificate chain, or run `talkstudio keys create`") from exc
        from cryptography.x509.oid import NameOID

        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return {"common_name": str(names[0].value) if names else cert.subject.rfc4514_string(),
                "subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
                "not_after": cert.not_valid_after_utc.date().isoformat(),
                "local": any(a.value == LOCAL_ORG for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)),
                "key": str(self.key_path), "chain": str(self.chain_path)}


def signing_key() -> SigningKey | None:
    """The configured signing key: ``TALKSTUDIO_SIGNING_KEY`` + ``TALKSTUDIO_SIGNING_CHAIN`` when set,
    else the files in :func:`key_dir` if both exist, else None."""
    env_key, env_chain = os.environ.get("TALKSTUDIO_SIGNING_KEY"), os.environ.get("TALKSTUDIO_SIGNING_CHAIN")
    if env_key or env_chain:
        if not (env_key and env_chain):
            raise ConfigError("TALKSTUDIO_SIGNING_KEY and TALKSTUDIO_SIGNING_CHAIN must be set together",
                              "set both (the key and its certificate chain) or neither")
        return SigningKey(Path(env_key).expanduser(), Path(env_chain).expanduser())
    folder = key_dir()
    key = SigningKey(folder / KEY_FILE, folder / CHAIN_FILE)
    return key if key.key_path.is_file() and key.chain_path.is_file() else None


def _name(common: str, org: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 from the start (``mkstemp`` creates the file 0600,
    so it is never readable by others, not even half-written)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def create_local_key(folder: Path | None = None, *, overwrite: bool = False, years: int = 5) -> SigningKey:
    """Make a local signing key: a P-256 certificate authority and an ES256 signing certificate issued
    by it (only the signing key is kept; the authority's key is discarded after use).

    Args:
        folder: where to write (default :func:`key_dir`); created if missing, mode 0700.
        overwrite: replace an existing key (videos signed with the old one stay valid).
        years: validity of the signing certificate.

    Returns:
        The new :class:`SigningKey` (key file mode 0600).

    Raises:
        OutputError: a key exists and ``overwrite`` is False, or the folder is not writable.
    """
    folder = Path(folder) if folder is not None else key_dir()
    key = SigningKey(folder / KEY_FILE, folder / CHAIN_FILE)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {exc.strerror or exc}", "check the folder's permissions") from exc
    with _creation_lock(folder):  # two first exports at once must not mix one's key with the other's certificate
        if not overwrite and (key.key_path.exists() or key.chain_path.exists()):
            raise OutputError(f"a signing key already exists in {folder}",
                              "use it, or pass --overwrite to replace it (videos signed with it stay valid)")
        _make_key(key, years)
    return key


@contextlib.contextmanager
def _creation_lock(folder: Path):
    """An exclusive lock (``flock`` on ``folder/.lock``) while a key is made; a no-op where flock is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _make_key(key: SigningKey, years: int) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    # a random label, not the user or host name: the signer's name is readable in every video it signs
    who = f"key {secrets.token_hex(4)}"
    now = dt.datetime.now(dt.timezone.utc)
    no_use = dict(content_commitment=False, key_encipherment=False, data_encipherment=False,
                  key_agreement=False, encipher_only=False, decipher_only=False)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"Talking Head Studio local CA ({who})", LOCAL_ORG)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365 * (years + 5)))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **no_use),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    ee_key = ec.generate_private_key(ec.SECP256R1())
    ee = (x509.CertificateBuilder().subject_name(_name(f"Talking Head Studio ({who})", LOCAL_ORG))
          .issuer_name(ca_name).public_key(ee_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365 * years))
          .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **no_use),
                         critical=True)
          .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ee_key.public_key()), critical=False)
          .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = ee_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        _write_private(key.key_path, key_pem)
        _write_private(key.chain_path, ee.public_bytes(pem) + ca.public_bytes(pem))
    except OSError as exc:
        raise OutputError(f"cannot write the signing key to {key.key_path.parent}: {exc.strerror or exc}",
                          "check the folder's permissions and free space") from exc


# ----------------------------------------------------------------------------------------------
# signing


@dataclass(frozen=True)
class Ingredient:
    """A file the video was made from, recorded by hash (no copy of it goes into the manifest).

    Attributes:
        title: file name. format: MIME type. sha256: hex digest of its bytes.
        role: what it was used for ("identity", "speech", "pose", "expression", "person").
    """

    title: str
    format: str
    sha256: str
    role: str

    @classmethod
    def of(cls, path: str | os.PathLike[str], role: str) -> "Ingredient":
        """Hash ``path`` (streamed). Raises InputError if it cannot be read."""
        import mimetypes

        path = Path(path)
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return cls(path.name, mime, sha256_file(path), role)


@dataclass(frozen=True)
class ContentCredentials:
    """What to sign into an exported video and with which key.

    Attributes:
        engine: the engine that made the frames ("lite", "neural").
        key: the :class:`SigningKey`.
        ingredients: the inputs, by hash.
        mark_id: the invisible watermark's 32-bit id in the frames (None if unmarked).
        extra: more JSON-able facts for our assertion (e.g. {"re_voiced": True}).
    """

    engine: str
    key: SigningKey
    ingredients: tuple[Ingredient, ...] = ()
    mark_id: int | None = None
    extra: dict = field(default_factory=dict)

    def manifest(self, title: str) -> dict:
        """The manifest definition (c2pa-python's JSON) for a video named ``title``."""
        labels = [f"ingredient_{i}" for i in range(len(self.ingredients))]
        ingredients = [
            {"title": ing.title, "format": ing.format, "relationship": "inputTo", "label": label,
             "instance_id": f"sha256:{ing.sha256}",
             "metadata": {"org.talkingheadstudio.sha256": ing.sha256, "org.talkingheadstudio.role": ing.role}}
            for ing, label in zip(self.ingredients, labels)
        ]
        render = {"generator": GENERATOR, "version": __version__, "engine": self.engine, **self.extra}
        if self.mark_id is not None:
            render["watermark"] = {"id": f"{self.mark_id:08x}", "method": "talkingheadstudio-tiled-ss-v1"}
        created = {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                   "softwareAgent": {"name": GENERATOR, "version": __version__},
                   "description": f"talking-head video synthesised by the {self.engine} engine from a face and speech"}
        if labels:
            created["parameters"] = {"ingredientIds": labels}
        return {
            "claim_generator_info": [{"name": GENERATOR, "version": __version__}],
            "title": title,
            "format": "video/mp4",
            "ingredients": ingredients,
            "assertions": [
                {"label": "c2pa.actions.v2", "data": {"actions": [created]}},
                {"label": RENDER_ASSERTION, "data": render},
            ],
        }

    def sign(self, source: Path, destination: Path, *, title: str | None = None) -> None:
        """Write ``source`` (an MP4) with this manifest embedded to ``destination``.

        Raises:
            ConfigError: the key cannot be read or c2pa refuses it (expired, wrong kind of certificate).
            OutputError: writing failed.
        """
        import c2pa

        chain, key = self.key.load()
        try:
            signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))
        except c2pa.C2paError as exc:
            raise ConfigError(f"the C2PA signing key {self.key.key_path} cannot be used: {exc}",
                              "run `talkstudio keys create --overwrite` for a new local key") from exc
        definition = self.manifest(title or Path(destination).name)
        try:
            with signer, c2pa.Builder(definition, context=_context()) as builder:
                with open(source, "rb") as src, open(destination, "wb") as dst:
                    builder.sign(signer, "video/mp4", src, dst)
        except c2pa.C2paError as exc:
            text = str(exc)
            if any(word in text.lower() for word in ("certificate", "signature", "signer", "key")):
                raise ConfigError(f"C2PA refused the signing key {self.key.key_path}: {text}",
                                  "run `talkstudio keys create --overwrite` for a new local key") from exc
            raise OutputError(f"signing the video's Content Credentials failed: {text}",
                              "check free disk space; if it keeps failing, report this message") from exc
        except OSError as exc:
            raise OutputError(f"cannot write the signed video {destination}: {exc.strerror or exc}",
                              "check free disk space and the output folder") from exc


def _context(*, reading: bool = False):
    """c2pa settings: no thumbnails of ingredients; when reading an untrusted file, nothing fetched from the
    network (a manifest may point at a remote copy of itself, or ask for an OCSP check: a file must not make
    the studio contact an address of its choosing)."""
    import c2pa

    config: dict = {"builder": {"thumbnail": {"enabled": False}}}
    if reading:
        config["verify"] = {"remote_manifest_fetch": False, "ocsp_fetch": False}
    return c2pa.Context(settings=c2pa.Settings.from_dict(config))


# ----------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class CredentialsReport:
    """Content Credentials as read from a file.

    Attributes:
        state: "absent" (no manifest), "unsupported" (a file type that cannot carry one), "remote" (the file
            points at a manifest stored elsewhere, which is not fetched), "valid" (signature and hashes check
            out; the signer is not on a trust list), "own" (valid, and signed with this computer's own key) or
            "invalid" (the file was changed after signing, or the manifest is broken).
        signer: the signing certificate's common name. issuer: its issuer's organisation/name.
        failures: C2PA failure codes (``assertion.bmffHash.mismatch`` = the media was changed).
        generator: claim generator "name version". source_type: the digitalSourceType of its action.
        engine, mark_id: from our assertion (None when absent).
        ingredients: (title, role, sha256) per ingredient.
    """

    state: str
    signer: str | None = None
    issuer: str | None = None
    failures: tuple[str, ...] = ()
    generator: str | None = None
    source_type: str | None = None
    actions: tuple[str, ...] = ()
    engine: str | None = None
    mark_id: int | None = None
    ingredients: tuple[tuple[str, str, str], ...] = ()

    @property
    def synthetic(self) -> bool:
        """The manifest declares the content as made by a trained generative model."""
        return self.source_type == TRAINED_ALGORITHMIC_MEDIA


def read_credentials(path: str | os.PathLike[str]) -> CredentialsReport:
    """Read and validate the C2PA manifest of ``path``.

    Returns:
        :class:`CredentialsReport` (state "absent" when the file has none).

    Raises:
        InputError: the file cannot be read or is not a media file c2pa understands.
    """
    import c2pa

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}", "check the path")
    try:
        with c2pa.Reader(str(path), context=_context(reading=True)) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError.ManifestNotFound:
        return CredentialsReport("absent")
    except c2pa.C2paError.NotSupported:
        return CredentialsReport("unsupported")
    except c2pa.C2paError.Io as exc:
        raise InputError(f"cannot read {path}: {exc}", "check that the file exists and is readable") from exc
    except c2pa.C2paError as exc:
        text = str(exc)
        if "remote" in text.lower():
            return CredentialsReport("remote", failures=(text,))
        return CredentialsReport("invalid", failures=(text,))
    except (ValueError, UnicodeDecodeError) as exc:  # a manifest store that is not JSON
        return CredentialsReport("invalid", failures=(f"unreadable manifest store: {exc}",))
    try:
        own = signing_key()
        own_serial = own.serial() if own is not None else None
    except (ConfigError, ValueError):
        own_serial = None
    return _report(store, own_serial)


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _report(store: dict, own_serial: str | None = None) -> CredentialsReport:
    """The report of a manifest store (c2pa-python's JSON). Every field is checked for its type: the store comes
    from an untrusted file."""
    store = _dict(store)
    manifest = _dict(_dict(store.get("manifests")).get(store.get("active_manifest", "")))
    results = _dict(_dict(store.get("validation_results")).get("activeManifest"))
    failures = tuple(sorted({_text(_dict(f).get("code")) or "" for f in results.get("failure", []) or []
                             if isinstance(f, dict)} - {""}))
    state = "valid" if store.get("validation_state") in ("Valid", "Trusted") else "invalid"
    info = _dict(manifest.get("signature_info"))
    if state == "valid" and own_serial is not None and str(info.get("cert_serial_number")) == own_serial:
        state = "own"
    gens = manifest.get("claim_generator_info")
    gen = _dict(gens[0]) if isinstance(gens, list) and gens else {}
    actions: list[dict] = []
    render: dict = {}
    for assertion in manifest.get("assertions", []) if isinstance(manifest.get("assertions"), list) else []:
        assertion = _dict(assertion)
        label = _text(assertion.get("label")) or ""
        if label.startswith("c2pa.actions"):
            listed = _dict(assertion.get("data")).get("actions")
            actions += [_dict(a) for a in listed] if isinstance(listed, list) else []
        elif label == RENDER_ASSERTION:
            render = _dict(assertion.get("data"))
    source = next((_text(a.get("digitalSourceType")) for a in actions if a.get("action") == "c2pa.created"), None)
    mark = _text(_dict(render.get("watermark")).get("id"))
    try:
        mark_id = int(mark, 16) if mark and len(mark) <= 8 else None
    except ValueError:
        mark_id = None
    ingredients = []
    listed = manifest.get("ingredients")
    for item in listed if isinstance(listed, list) else []:
        if not isinstance(item, dict):
            continue
        meta = _dict(item.get("metadata"))
        ingredients.append((_text(item.get("title")) or "", _text(meta.get("org.talkingheadstudio.role")) or "",
                            _text(meta.get("org.talkingheadstudio.sha256")) or ""))
    name = " ".join(t for t in (_text(gen.get("name")), _text(gen.get("version"))) if t) or None
    return CredentialsReport(state, _text(info.get("common_name")), _text(info.get("issuer")), failures, name,
                             source, tuple(_text(a.get("action")) or "?" for a in actions),
                             _text(render.get("engine")), mark_id, tuple(ingredients))


def ingredients_for(paths: Iterable[tuple[str | os.PathLike[str] | None, str]]) -> tuple[Ingredient, ...]:
    """Ingredients for (path, role) pairs, skipping None paths and repeated files."""
    seen: set[Path] = set()
    out = []
    for path, role in paths:
        if path is None:
            continue
        resolved = Path(path).expanduser().resolve()
        if resolved in seen or not resolved.is_file():
            continue
        seen.add(resolved)
        out.append(Ingredient.of(resolved, role))
    return tuple(out)


__all__ = ["CHAIN_FILE", "ContentCredentials", "CredentialsReport", "GENERATOR", "Ingredient", "KEY_FILE",
           "RENDER_ASSERTION", "SigningKey", "TRAINED_ALGORITHMIC_MEDIA", "create_local_key", "ingredients_for",
           "key_dir", "read_credentials", "sha256_file", "signing_key"]
