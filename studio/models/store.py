"""The user's model store: which checkpoints the studio knows, which are installed, and loading them.

The studio ships no weights. ``model_store/manifest.toml`` lists every checkpoint it can use (where
to download it, its license, hash when published, checkpoint layout and architecture). The user
downloads a file and *imports* it::

    talkstudio models import ~/Downloads/stylegan2-ffhq-config-f.pt

:func:`import_model` identifies the file (by ``--name``, by its file name, by a published hash, or
by trying each manifest entry's layout and signature keys), verifies the published sha256 when
there is one, checks every key and shape against the architecture (built on the ``meta`` device, so
a 1024² generator allocates nothing), and stores the weights as ``<name>.safetensors`` in
:func:`studio.core.paths.model_dir` (``TALKSTUDIO_DATA_DIR`` overrides) with the architecture in
its header. ``index.json`` beside it records, per model, the source file name, the sha256 of the
original and of the stored file, and the import time. Writes are atomic; a failed import leaves
nothing behind. :func:`verify` re-hashes stored files against the index; :func:`load` verifies the
hash (once per process) and returns the built module.

For checkpoints whose sha256 is not published upstream (``sha256 = ""`` in the manifest), the
imported original's hash is recorded in the index and everything later is checked against it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from studio.core.errors import ModelError
from studio.core.paths import model_dir
from studio.models import registry
from studio.models.registry import Architecture, Checkpoint, Layout

MANIFEST_SCHEMA_VERSION = 1
INDEX_SCHEMA_VERSION = 1
INDEX_NAME = "index.json"
KINDS = ("generator", "encoder", "lpips_backbone", "syncnet", "inception", "audio_model")
#: ``TALKSTUDIO_MANIFEST`` overrides where the manifest is read from.
MANIFEST_ENV = "TALKSTUDIO_MANIFEST"
DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "model_store" / "manifest.toml"

INSTALLED = "installed"
MISSING = "missing"
CORRUPT = "corrupt"

_STORED_SUFFIX = ".safetensors"


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestEntry:
    """One checkpoint the studio can use (a ``[models.<name>]`` table of the manifest).

    Attributes:
        name: identifier (``stylegan2-ffhq-config-f``); the stored file is ``<name>.safetensors``.
        file: the upstream file name the user downloads (``stylegan2-ffhq-config-f.pt``).
        kind: one of :data:`KINDS`.
        title: one-line human name.
        description: what the studio uses it for.
        urls: public download locations (for the user; the studio never downloads).
        upstream: the project page that publishes it.
        sha256: published full hex digest, or "" when none is published.
        sha256_prefix: published digest prefix (torch.hub file names carry one), or "".
        bytes: published size in bytes, or None when unknown.
        license: license of the weights.
        needed_for: features that need it ("render --engine neural", ...).
        layout: where the weights sit in the upstream file.
        architecture: module the weights load into, or None when this version has no module for it
            (then imports are checked against :attr:`signature` only).
        signature: a few ``key -> shape`` pairs that identify the checkpoint.
        match_opts: ``opts`` values that tell apart files of the same layout (pSp vs e4e).
    """

    name: str
    file: str
    kind: str
    title: str
    description: str
    urls: tuple[str, ...]
    upstream: str
    sha256: str
    sha256_prefix: str
    bytes: int | None
    license: str
    needed_for: tuple[str, ...]
    layout: Layout
    architecture: Architecture | None
    signature: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    match_opts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def stored_file(self) -> str:
        """Name of the imported weights in the model dir."""
        return self.name + _STORED_SUFFIX

    @property
    def published_hash(self) -> str:
        """The full digest if published, else the published prefix, else ""."""
        return self.sha256 or self.sha256_prefix

    def expected_text(self) -> str:
        """What the file should be, for hints ("a rosinality StyleGAN2 checkpoint ... for X")."""
        return f"{self.file} ({self.title}): {self.layout.description}"


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest: entries by name, in file order."""

    path: Path
    schema_version: int
    entries: Mapping[str, ManifestEntry]

    def __getitem__(self, name: str) -> ManifestEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise ModelError(f"unknown model {name!r}", f"known models: {', '.join(self.entries)}") from None

    def __iter__(self):
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)


def _manifest_v0_to_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 0 (no ``schema_version``) had one ``url`` string per model; version 1 has ``urls``."""
    for table in data.get("models", {}).values():
        if "url" in table and "urls" not in table:
            url = table.pop("url")
            table["urls"] = [url] if url else []
    data["schema_version"] = 1
    return data


#: schema_version N -> function migrating a manifest dict of version N to N + 1.
_MANIFEST_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _manifest_v0_to_v1}


def _migrate(data: dict[str, Any], *, current: int, migrations: Mapping[int, Callable[[dict], dict]],
             what: str) -> dict[str, Any]:
    """Bring ``data`` to ``current``: older versions migrate step by step, newer ones are an error."""
    version = data.get("schema_version", 0)
    if not isinstance(version, int) or version < 0:
        raise ModelError(f"{what} has an invalid schema_version {version!r}",
                         "restore the file shipped with the studio")
    if version > current:
        raise ModelError(f"{what} has schema_version {version}, newer than this studio understands ({current})",
                         "update Talking Head Studio")
    while version < current:
        step = migrations.get(version)
        if step is None:
            raise ModelError(f"{what} has schema_version {version}, which can no longer be migrated",
                             "restore the file shipped with the studio")
        data = step(data)
        version = data["schema_version"]
    return data


def _str_tuple(value: Any, *, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ModelError(f"{where}: {key} must be a string or a list of strings")


def _parse_entry(name: str, table: Mapping[str, Any], *, where: str) -> ManifestEntry:
    def req(key: str) -> Any:
        if key not in table:
            raise ModelError(f"{where}: [models.{name}] has no {key!r}", "restore the file shipped with the studio")
        return table[key]

    kind = req("kind")
    if kind not in KINDS:
        raise ModelError(f"{where}: [models.{name}] has unknown kind {kind!r}", f"kinds: {', '.join(KINDS)}")
    sha256 = str(table.get("sha256", "")).strip().lower()
    if sha256 == "unknown":
        sha256 = ""
    prefix = str(table.get("sha256_prefix", "")).strip().lower()
    for digest, full in ((sha256, True), (prefix, False)):
        if digest and (any(c not in "0123456789abcdef" for c in digest) or (full and len(digest) != 64)):
            raise ModelError(f"{where}: [models.{name}] has a malformed sha256 {digest!r}")
    size = table.get("bytes", 0)
    if not isinstance(size, int) or size < 0:
        raise ModelError(f"{where}: [models.{name}] bytes must be a non-negative integer (0 = unknown)")
    layout = registry.get_layout(req("layout")).with_overrides(
        state_key=table.get("state_key"), prefix=table.get("prefix"), extra=table.get("extra"))
    arch_table = table.get("architecture")
    architecture = Architecture.from_dict(arch_table, source=f"{where} [models.{name}]") if arch_table else None
    signature = {str(k): tuple(int(s) for s in v) for k, v in table.get("signature", {}).items()}
    return ManifestEntry(
        name=name,
        file=str(req("file")),
        kind=kind,
        title=str(table.get("title", name)),
        description=str(table.get("description", "")),
        urls=_str_tuple(table.get("urls", []), key="urls", where=where),
        upstream=str(table.get("upstream", "")),
        sha256=sha256,
        sha256_prefix=prefix,
        bytes=size or None,
        license=str(req("license")),
        needed_for=_str_tuple(table.get("needed_for", []), key="needed_for", where=where),
        layout=layout,
        architecture=architecture,
        signature=signature,
        match_opts=dict(table.get("match_opts", {})),
    )


def manifest_path() -> Path:
    """The manifest in use: ``$TALKSTUDIO_MANIFEST`` or ``model_store/manifest.toml`` of the studio."""
    env = os.environ.get(MANIFEST_ENV)
    return Path(env) if env else DEFAULT_MANIFEST


def load_manifest(path: str | os.PathLike[str] | None = None) -> Manifest:
    """Read and validate the manifest (TOML, ``schema_version`` checked and migrated).

    Raises:
        ModelError: missing or malformed file, unknown kind, malformed hash, or a schema_version
            newer than :data:`MANIFEST_SCHEMA_VERSION`.
    """
    path = Path(path) if path is not None else manifest_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"model manifest not found: {path}", "reinstall Talking Head Studio") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"model manifest {path} is unreadable: {exc}",
                         "restore the file shipped with the studio") from None
    data = _migrate(data, current=MANIFEST_SCHEMA_VERSION, migrations=_MANIFEST_MIGRATIONS,
                    what=f"model manifest {path}")
    models = data.get("models", {})
    if not isinstance(models, Mapping):
        raise ModelError(f"model manifest {path}: [models] must be a table of tables")
    entries = {name: _parse_entry(name, table, where=str(path)) for name, table in models.items()}
    return Manifest(path, MANIFEST_SCHEMA_VERSION, entries)


# --------------------------------------------------------------------------------------------
# Index (what is imported)
# --------------------------------------------------------------------------------------------


def index_path() -> Path:
    """``index.json`` in the model dir."""
    return model_dir() / INDEX_NAME


#: Index migrations (none yet: version 1 is the first).
_INDEX_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _read_index() -> dict[str, Any]:
    """The index as ``{"schema_version": 1, "models": {name: record}}`` (empty when absent)."""
    path = index_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"schema_version": INDEX_SCHEMA_VERSION, "models": {}}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"the model store index {path} is unreadable ({exc})",
                         "delete it and import the models again") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ModelError(f"{path} is not a model store index (no schema_version)",
                         "delete it and import the models again")
    data = _migrate(data, current=INDEX_SCHEMA_VERSION, migrations=_INDEX_MIGRATIONS, what=f"model store index {path}")
    if not isinstance(data.get("models"), dict):
        data["models"] = {}
    return data


def _index_text(index: Mapping[str, Any]) -> str:
    return json.dumps(index, indent=2, sort_keys=True) + "\n"


# --------------------------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelStatus:
    """One manifest model as the user's store has it.

    Attributes:
        name, file, kind, title, license, needed_for, urls: from the manifest.
        state: ``"installed"``, ``"missing"`` or ``"corrupt"``.
        path: where the imported weights live (``<model_dir>/<name>.safetensors``), present or not.
        size: size of the stored file in bytes (None when missing).
        detail: why it is missing/corrupt, or what was imported ("from X, sha256 ...").
        pending: an upstream file found in the model dir that is not imported yet (else None).
    """

    name: str
    file: str
    kind: str
    title: str
    state: str
    path: Path
    size: int | None
    license: str
    needed_for: tuple[str, ...]
    urls: tuple[str, ...]
    detail: str = ""
    pending: Path | None = None

    @property
    def installed(self) -> bool:
        return self.state == INSTALLED


def _status(entry: ManifestEntry, record: Mapping[str, Any] | None, *, state: str | None = None,
            detail: str | None = None) -> ModelStatus:
    """Status from the index record and the files present (sizes only; ``state`` forces a state)."""
    path = model_dir() / entry.stored_file
    size = path.stat().st_size if path.is_file() else None
    if state is None:
        if record is None:
            state, detail = MISSING, "not imported"
        elif size is None:
            state, detail = MISSING, f"{entry.stored_file} was removed from the model folder"
        elif size != record.get("stored_bytes"):
            state = CORRUPT
            detail = f"{entry.stored_file} has {size} bytes, the index recorded {record.get('stored_bytes')}"
        else:
            state = INSTALLED
    if detail is None and record is not None:
        detail = f"imported from {record.get('source_file')} (sha256 {str(record.get('source_sha256'))[:12]}...)"
    pending = model_dir() / entry.file
    pending_path = pending if state != INSTALLED and pending.is_file() else None
    if pending_path is not None and record is None:
        detail = f"{entry.file} is in the model folder but not imported yet"
    return ModelStatus(entry.name, entry.file, entry.kind, entry.title, state, path, size, entry.license,
                       entry.needed_for, entry.urls, detail or "", pending_path)


def list_models(*, manifest: Manifest | None = None) -> list[ModelStatus]:
    """Every manifest model with its state (fast: sizes only, no hashing; see :func:`verify`)."""
    man = manifest or load_manifest()
    records = _read_index()["models"]
    return [_status(entry, records.get(entry.name)) for entry in man]


def verify(*, manifest: Manifest | None = None,
           on_progress: Callable[[str, int, int], None] | None = None) -> list[ModelStatus]:
    """Re-hash every stored file against the index.

    Args:
        manifest: defaults to :func:`load_manifest`.
        on_progress: ``on_progress(name, bytes_done, bytes_total)`` while hashing.

    Returns:
        One :class:`ModelStatus` per manifest model; ``"corrupt"`` where the stored file's sha256
        differs from the one recorded at import.
    """
    man = manifest or load_manifest()
    records = _read_index()["models"]
    out = []
    for entry in man:
        record = records.get(entry.name)
        status = _status(entry, record)
        if status.state == INSTALLED:
            progress = (lambda d, t, n=entry.name: on_progress(n, d, t)) if on_progress else None
            digest = registry.sha256_of(status.path, on_progress=progress)
            if digest != record.get("stored_sha256"):
                imported = str(record.get("stored_sha256"))[:12]
                status = _status(entry, record, state=CORRUPT,
                                 detail=f"sha256 {digest[:12]}... differs from the imported {imported}...")
            else:
                _VERIFIED[_file_key(status.path)] = digest
        out.append(status)
    return out


def model_path(name: str, *, manifest: Manifest | None = None) -> Path:
    """Where model ``name``'s imported weights live (whether or not they are there yet)."""
    man = manifest or load_manifest()
    return model_dir() / man[name].stored_file


def require(*names: str, feature: str, manifest: Manifest | None = None) -> list[Path]:
    """Make sure the named models are installed; return their stored paths.

    Args:
        names: manifest model names.
        feature: what needs them, for the message ("the neural engine").

    Raises:
        ModelError: naming exactly which files are missing (or corrupt), where to download them and
            how to import them.
    """
    man = manifest or load_manifest()
    wanted = [man[n] for n in names]
    statuses = {s.name: s for s in list_models(manifest=man)}
    bad = [statuses[e.name] for e in wanted if not statuses[e.name].installed]
    if not bad:
        return [statuses[e.name].path for e in wanted]
    listed = ", ".join(f"{s.file} ({s.title}{'' if s.state == MISSING else ', ' + s.state})" for s in bad)
    pending = [s for s in bad if s.pending is not None]
    steps = []
    if pending:
        steps.append("found in the model folder but not imported yet: run "
                     + "; ".join(f"`talkstudio models import {s.pending}`" for s in pending))
    rest = [s for s in bad if s.pending is None]
    if rest:
        sources = "; ".join(f"{s.file} from {s.urls[0] if s.urls else 'its publisher'}" for s in rest)
        steps.append(f"download {sources}, then run `talkstudio models import <downloaded file>`")
    steps.append(f"imported models are kept in {model_dir()} (see model_store/README.md)")
    noun = "file" if len(bad) == 1 else "files"
    verb = "is" if len(bad) == 1 else "are"
    raise ModelError(f"{feature} needs {len(bad)} model {noun} that {verb} not installed: {listed}", "; ".join(steps))


# --------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Match:
    entry: ManifestEntry
    state: dict[str, torch.Tensor]
    extras: dict[str, Any]
    #: the architecture recorded in a studio-written file (models the studio trains, whose size varies)
    architecture: registry.Architecture | None = None


def _signature_problem(entry: ManifestEntry, state: Mapping[str, torch.Tensor]) -> str:
    """"" if the state has the entry's signature keys with their shapes, else why not."""
    for key, shape in entry.signature.items():
        if key not in state:
            return f"no key {key!r}"
        if tuple(state[key].shape) != shape:
            return f"{key} has shape {tuple(state[key].shape)}, expected {shape}"
    return ""


def _opts_problem(entry: ManifestEntry, extras: Mapping[str, Any]) -> str:
    """"" if ``opts`` agrees with ``match_opts`` (a file without that option has no say), else why not."""
    opts = extras.get("opts")
    for key, want in entry.match_opts.items():
        have = registry.opts_value(opts, key)
        if have is None:
            continue
        if have != want:
            return f"opts.{key} is {have!r}, expected {want!r}"
    return ""


def _try_entry(ckpt: Checkpoint, entry: ManifestEntry) -> _Match | None:
    """``entry``'s layout extracted from the file if it has the entry's signature and opts, else None."""
    try:
        state, extras = ckpt.extract(entry.layout)
    except ModelError:
        return None
    if _signature_problem(entry, state) or _opts_problem(entry, extras):
        return None
    return _Match(entry, state, extras, ckpt.architecture)


def _identify(ckpt: Checkpoint, man: Manifest, explicit: ManifestEntry | None) -> _Match:
    """Which manifest entry the file is.

    With ``explicit`` (``--name``, or the upstream file name) only that entry is tried, and a
    mismatch says what the file looks like instead (and which entry it would match).
    """
    if explicit is not None:
        try:
            state, extras = ckpt.extract(explicit.layout)
        except ModelError as exc:
            others = [e.name for e in man if e is not explicit and _try_entry(ckpt, e) is not None]
            hint = (f"it looks like {others[0]}: import it with --name {others[0]}" if others
                    else f"expected {explicit.expected_text()}")
            raise ModelError(f"{exc.message} (expected for {explicit.name})", hint) from None
        problem = _opts_problem(explicit, extras)
        if problem:
            raise ModelError(f"{ckpt.path.name} is not {explicit.name}: {problem}",
                             f"expected {explicit.expected_text()}")
        if explicit.architecture is None and (problem := _signature_problem(explicit, state)):
            raise ModelError(f"{ckpt.path.name} does not match {explicit.name}: {problem}",
                             f"expected {explicit.expected_text()}")
        return _Match(explicit, state, extras, ckpt.architecture)
    matches = [m for m in (_try_entry(ckpt, e) for e in man) if m is not None]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ModelError(f"{ckpt.path.name} is {ckpt.describe()}, which matches no model in the manifest",
                         f"known models: {', '.join(man.entries)}; pass --name NAME to check it against one")
    raise ModelError(f"{ckpt.path.name} could be any of: {', '.join(m.entry.name for m in matches)}",
                     "pass --name NAME to say which")


def _check_published(entry: ManifestEntry, src: Path, size: int, digest: str) -> str:
    """Compare with the manifest's published hash and size; returns how the file was verified.

    The hash decides: a file whose sha256 matches the published one (or prefix) is accepted even if the
    manifest's ``bytes`` disagrees (then the manifest's size is wrong, not the file), and a file that does
    not match is refused, saying so by its size when that differs too ("has N bytes, ... has M": a
    truncated download). Without a published hash the size cannot prove anything either way: a different
    size is only noted in the returned text (the index's ``verified_by``).

    Raises:
        ModelError: the sha256 does not match the published one ("corrupt or different file").
    """
    hint = (f"download {entry.file} again from {entry.urls[0]}" if entry.urls else "download the file again")
    size_differs = entry.bytes is not None and size != entry.bytes
    if entry.published_hash:
        if size_differs and not digest.startswith(entry.published_hash):
            raise ModelError(f"{src.name} has {size} bytes, {entry.file} has {entry.bytes}: corrupt or different "
                             "file", hint)
        registry.verify_sha256(src, entry.published_hash, actual=digest, hint=hint)
        return "published sha256" if entry.sha256 else f"published sha256 prefix {entry.sha256_prefix}"
    how = f"sha256 recorded at import (none published for {entry.file})"
    if size_differs:
        how += f"; {size} bytes, not the {entry.bytes} bytes published for {entry.file}"
    return how


def import_model(
    src: str | os.PathLike[str],
    *,
    name: str | None = None,
    manifest: Manifest | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ModelStatus:
    """Check a downloaded checkpoint and store it in the model dir as safetensors.

    Args:
        src: the downloaded file (left untouched).
        name: manifest model name; None identifies the file by name, published hash or content.
        manifest: defaults to :func:`load_manifest`.
        on_progress: ``on_progress(bytes_done, bytes_total)`` while hashing the source.

    Returns:
        The model's new status (``"installed"``).

    Raises:
        ModelError: unreadable/unsafe/truncated file, unknown or ambiguous model, hash mismatch
            ("corrupt or different file"), wrong layout, or keys/shapes that do not match the
            architecture (named). Nothing is written then.
    """
    man = manifest or load_manifest()
    src = Path(src).expanduser()
    if not src.is_file():
        raise ModelError(f"{src} does not exist or is not a file", "give the path of the downloaded checkpoint")
    explicit = man[name] if name else None
    digest = registry.sha256_of(src, on_progress=on_progress)
    size = src.stat().st_size
    if explicit is None:
        by_hash = [e for e in man if e.published_hash and digest.startswith(e.published_hash)]
        by_file = [e for e in man if e.file == src.name]
        explicit = (by_hash or by_file or [None])[0]
    if explicit is not None:  # a wrong hash says "corrupt or different file" before any parsing
        verified = _check_published(explicit, src, size, digest)
    ckpt = registry.read_checkpoint(src)
    match = _identify(ckpt, man, explicit)
    entry = match.entry
    if explicit is None:
        verified = _check_published(entry, src, size, digest)
    arch = entry.architecture or match.architecture
    if arch is not None:
        registry.check_state(arch, match.state, source=src.name, target=f"{entry.name} ({arch})",
                             hint=f"expected {entry.expected_text()}")
    return _store(entry, match, src=src, source_sha256=digest, source_bytes=size, verified=verified)


def _store(entry: ManifestEntry, match: _Match, *, src: Path, source_sha256: str, source_bytes: int,
           verified: str) -> ModelStatus:
    """Write ``<name>.safetensors`` and its index record: both change together or neither does.

    Both files are staged beside their targets first; a model imported before is moved aside and
    put back if anything fails before the index is committed (a full disk, Ctrl-C).
    """
    folder = model_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / entry.stored_file
    staged_weights = staged_index = backup = None
    weights_committed = False
    try:
        staged_weights = registry.stage_path(dest)
        registry.save_safetensors(
            staged_weights, match.state, architecture=entry.architecture or match.architecture, extras=match.extras,
            metadata={"talkstudio.name": entry.name, "talkstudio.source_file": src.name,
                      "talkstudio.source_sha256": source_sha256},
        )
        record = {
            "file": entry.file,
            "stored_file": entry.stored_file,
            "stored_sha256": registry.sha256_of(staged_weights),
            "stored_bytes": staged_weights.stat().st_size,
            "source_file": src.name,
            "source_sha256": source_sha256,
            "source_bytes": source_bytes,
            "verified_by": verified,
            "imported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        index = _read_index()
        index["models"][entry.name] = record
        staged_index = registry.stage_path(index_path())
        staged_index.write_text(_index_text(index), encoding="utf-8")
        if dest.exists():
            backup = registry.stage_path(dest)
            os.replace(dest, backup)
        registry.commit(staged_weights, dest)
        staged_weights, weights_committed = None, True
        registry.commit(staged_index, index_path())
        staged_index = None
    except BaseException as exc:
        if weights_committed:
            dest.unlink(missing_ok=True)
        if backup is not None:
            os.replace(backup, dest)
            backup = None
        if isinstance(exc, OSError):
            raise ModelError(f"cannot write to the model folder {folder}: {exc.strerror or exc}",
                             "check free disk space and permissions") from exc
        raise
    finally:
        for leftover in (staged_weights, staged_index, backup):
            registry.discard(leftover)
    _VERIFIED[_file_key(dest)] = record["stored_sha256"]
    return _status(entry, record)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

#: Stored files whose hash was checked in this process, keyed by (path, size, mtime_ns).
_VERIFIED: dict[tuple[str, int, int], str] = {}


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class LoadedModel:
    """A model from the store.

    Attributes:
        name: manifest name.
        module: the built module in eval mode on the requested device (None from :func:`load_weights`).
        state: the weights (``{key: tensor}``, CPU).
        extras: ``latent_avg`` (W-space mean, tensor), ``opts`` (dict), ... as imported.
        source_sha256: sha256 of the original upstream file (identifies the base checkpoint, e.g.
            for PTI deltas).
        stored_sha256: sha256 of the stored safetensors file.
        path: the stored file.
    """

    name: str
    module: nn.Module | None
    state: Mapping[str, torch.Tensor]
    extras: Mapping[str, Any]
    source_sha256: str
    stored_sha256: str
    path: Path


def _open_stored(name: str, man: Manifest) -> tuple[ManifestEntry, Checkpoint, Mapping[str, Any]]:
    entry = man[name]
    require(name, feature=f"loading {name}", manifest=man)
    record = _read_index()["models"][name]
    path = model_dir() / entry.stored_file
    key = _file_key(path)
    if _VERIFIED.get(key) != record["stored_sha256"]:
        registry.verify_sha256(path, record["stored_sha256"],
                               hint=f"import {entry.file} again with `talkstudio models import`")
        _VERIFIED[key] = record["stored_sha256"]
    return entry, registry.read_checkpoint(path), record


def load_weights(name: str, *, manifest: Manifest | None = None) -> LoadedModel:
    """The stored weights and extras of model ``name`` without building a module.

    Raises:
        ModelError: not installed (see :func:`require`), or the stored file's hash changed.
    """
    man = manifest or load_manifest()
    _entry, ckpt, record = _open_stored(name, man)
    state, extras = ckpt.extract("stored")
    return LoadedModel(name, None, state, extras, record["source_sha256"], record["stored_sha256"], ckpt.path)


def _attach_extras(module: nn.Module, extras: Mapping[str, Any]) -> None:
    """Tensor extras named like a buffer the module declares (e.g. the Generator's non-persistent
    ``latent_avg``) are assigned to it, on the module's device."""
    for key, value in extras.items():
        if isinstance(value, torch.Tensor) and key in module._buffers:
            ref = next(iter(module.parameters()), None)
            setattr(module, key, value.to(ref.device) if ref is not None else value)


def load(name: str, device: str | torch.device = "cpu", *, manifest: Manifest | None = None) -> LoadedModel:
    """Build model ``name`` from the store (architecture from the file's own header), in eval mode.

    Args:
        name: manifest name (``"stylegan2-ffhq-config-f"``).
        device: where the module goes (``"cpu"``, ``"cuda"``).

    Returns:
        :class:`LoadedModel` with ``module`` and ``extras`` (``latent_avg`` etc.); a tensor extra
        named like a buffer the module declares (the Generator's ``latent_avg``) is also set on it.

    Raises:
        ModelError: not installed, corrupt, no module for this kind in this version, or keys/shapes
            that do not match.
    """
    man = manifest or load_manifest()
    entry, ckpt, record = _open_stored(name, man)
    state, extras = ckpt.extract("stored")
    arch = ckpt.architecture or entry.architecture
    module = registry.build_module(arch if arch is not None else entry, state, device=device, source=entry.stored_file)
    _attach_extras(module, extras)
    return LoadedModel(name, module, state, extras, record["source_sha256"], record["stored_sha256"], ckpt.path)


def installed_names(*, manifest: Manifest | None = None) -> list[str]:
    """Names of installed models (for enabling features in the UI)."""
    return [s.name for s in list_models(manifest=manifest) if s.installed]


def entries_for(feature: str, *, manifest: Manifest | None = None) -> list[ManifestEntry]:
    """Manifest entries whose ``needed_for`` mentions ``feature`` (substring match)."""
    man = manifest or load_manifest()
    return [e for e in man if any(feature in f for f in e.needed_for)]


__all__ = [
    "CORRUPT", "INSTALLED", "KINDS", "MISSING", "LoadedModel", "Manifest", "ManifestEntry", "ModelStatus",
    "entries_for", "import_model", "index_path", "installed_names", "list_models", "load", "load_manifest",
    "load_weights", "manifest_path", "model_path", "require", "verify",
]
