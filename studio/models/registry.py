"""The one place that reads model weights (DESIGN.md convention 1).

Every checkpoint the studio touches goes through this module:

* ``.safetensors`` files are read with :mod:`safetensors` (no code can run);
* ``.pt`` / ``.pth`` / ``.ckpt`` / ``.model`` files are read with
  ``torch.load(path, map_location="cpu", weights_only=True)`` and nothing else. The weights-only
  unpickler accepts tensors, plain containers and numbers; the only class added to it is
  :class:`argparse.Namespace` (rosinality training checkpoints store their ``args`` as one; it is
  rebuilt as a plain attribute bag, no code runs). A file that pickles anything else (a function,
  a model class, ``os.system``) is refused with a :class:`~studio.core.errors.ModelError` that
  names the offending objects. It is never unpickled "to see".

A checkpoint is turned into a flat ``{key: tensor}`` *state dict* plus *extras* (``latent_avg``,
``opts``) by a :class:`Layout`:

==============  ============================================================================
``plain``       the file is the state dict itself (torchvision, pytorch-fid, SyncNet files)
``rosinality``  ``{"g_ema": state_dict, "latent_avg": (512,) tensor, ...}`` (rosinality
                ``stylegan2-pytorch``; training checkpoints also hold ``g``, ``d``, optimisers
                and ``args``, which are ignored)
``psp``         ``{"state_dict": {"encoder.*": ..., "decoder.*": ...}, "latent_avg": ...,
                "opts": dict}`` (pSp / e4e); the ``encoder.`` entries, prefix stripped
``stored``      a ``.safetensors`` file written by :func:`save_safetensors`: tensors, extras
                under ``__extra__.<name>``, architecture and JSON extras in the header
==============  ============================================================================

:func:`check_state` compares every key and shape against a module (or a key -> shape table) and
names what mismatched; :func:`build_module` instantiates the architecture recorded for the
checkpoint and loads it strictly. :func:`sha256_of` hashes files in chunks; :func:`verify_sha256`
turns a mismatch into "corrupt or different file".
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import importlib
import io
import json
import os
import pickle
import pickletools
import re
import secrets
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from studio.core.errors import ModelError

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".model")
SAFETENSORS_SUFFIX = ".safetensors"
SUPPORTED_SUFFIXES = (SAFETENSORS_SUFFIX, *TORCH_SUFFIXES)

#: Version of the header written by :func:`save_safetensors` (``talkstudio.schema_version``).
STORED_SCHEMA_VERSION = 1
#: Tensor extras (``latent_avg``) are stored as ``__extra__.<name>`` beside the weights.
EXTRA_PREFIX = "__extra__."
META_SCHEMA = "talkstudio.schema_version"
META_ARCHITECTURE = "talkstudio.architecture"
META_EXTRAS = "talkstudio.extras"

#: The only classes the weights-only unpickler is allowed beyond its defaults.
SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)

#: Architectures may only be resolved inside these packages (a stored file names its own class:
#: without this, a crafted header could make :func:`build_module` call any function).
ARCHITECTURE_MODULES: tuple[str, ...] = ("studio.models.", "torchvision.models")
#: Factory functions (not ``nn.Module`` classes) that an architecture may name.
ARCHITECTURE_FACTORIES: frozenset[str] = frozenset({"torchvision.models:vgg16", "torchvision.models:alexnet"})

#: State dict keys ending like this may be missing from a checkpoint (see :func:`check_state`).
OPTIONAL_KEY_SUFFIX = ".num_batches_tracked"

_HASH_CHUNK = 1 << 20
_PREVIEW = 6  # names listed in an error before "... and N more"
_PREVIEW_SHAPES = 4  # wrong shapes listed in a key/shape mismatch error before "... and N more"


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _preview(items: Iterable[str], limit: int = _PREVIEW) -> str:
    """``a, b, c ... and 12 more`` for error messages."""
    items = list(items)
    shown = ", ".join(items[:limit])
    return f"{shown} ... and {len(items) - limit} more" if len(items) > limit else shown


class StateMismatchError(ModelError):
    """Keys or shapes of a checkpoint do not match the architecture (raised by :func:`check_state`).

    The message names the first few of each kind ("... and N more"); the full lists are attributes, and
    :meth:`details` lists them all (``talkstudio models import FILE --verbose`` prints it).

    Attributes:
        missing: every key the architecture needs that the file lacks, in the architecture's order.
        unexpected: every key of the file the architecture does not have, in the file's order.
        wrong_shape: ``(key, expected shape, shape in the file)`` for every key whose shape differs.
        source / target: the file and what it was checked against (for :meth:`details`).
    """

    def __init__(self, message: str, hint: str = "", *, missing: list[str], unexpected: list[str],
                 wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]], source: str = "",
                 target: str = "") -> None:
        super().__init__(message, hint)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.wrong_shape = list(wrong_shape)
        self.source = source
        self.target = target

    @property
    def truncated(self) -> bool:
        """True when the message leaves names out (more than it previews of some kind)."""
        return (len(self.missing) > _PREVIEW or len(self.unexpected) > _PREVIEW
                or len(self.wrong_shape) > _PREVIEW_SHAPES)

    def details(self) -> str:
        """Every missing key, unexpected key and wrong shape, one per line (no limit)."""
        lines = [f"{self.source} does not match {self.target}:"]
        for title, items in (("missing key(s)", self.missing), ("unexpected key(s)", self.unexpected),
                             ("wrong shape(s)", [f"{k}: expected {_fmt_shape(e)}, got {_fmt_shape(g)}"
                                                 for k, e, g in self.wrong_shape])):
            if items:
                lines.append(f"  {len(items)} {title}:")
                lines.extend(f"    {item}" for item in items)
        return "\n".join(lines)


def _shape(value: Any) -> tuple[int, ...]:
    """Shape of a tensor, or a shape given as a sequence of ints."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    return tuple(int(v) for v in value)


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def opts_value(opts: Any, key: str) -> Any:
    """``opts[key]`` for a pSp/e4e ``opts`` given as a dict or an ``argparse.Namespace`` (else None)."""
    if isinstance(opts, Mapping):
        return opts.get(key)
    if isinstance(opts, argparse.Namespace):
        return getattr(opts, key, None)
    return None


def jsonable(value: Any) -> Any:
    """``value`` as JSON-compatible data (Namespace -> dict; tensors and unknown objects -> str)."""
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# --------------------------------------------------------------------------------------------
# Atomic files
# --------------------------------------------------------------------------------------------


def stage_path(path: Path) -> Path:
    """A new, empty temporary file ``.NAME.XXXXXXXX.tmp`` beside ``path`` (same folder, so :func:`commit` is
    atomic).

    It is created like any file opened for writing (mode 0o666 less the process umask, e.g. 0o644 under
    umask 022), not owner-only as :func:`tempfile.mkstemp` would make it, so the committed file has the usual
    mode. ``O_EXCL`` and a random name make it unique to this call.
    """
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(tempfile.TMP_MAX):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask, as for open()
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {path}")


def commit(tmp: Path, path: Path) -> None:
    """fsync ``tmp`` and rename it onto ``path`` in one step (readers see old or new, never half)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def discard(tmp: Path | None) -> None:
    """Remove a staged file if it is still there."""
    if tmp is not None:
        try:
            Path(tmp).unlink()
        except FileNotFoundError:
            pass


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``), since setting it
    briefly (``os.umask``) would affect files other threads create meanwhile."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """Permission bits of a file created now with ``open()``: 0o666 less the umask (0o644 under umask 022)."""
    return 0o666 & ~_umask()


@contextmanager
def staged_file(path: Path) -> Iterator[Path]:
    """Write to the yielded temporary path; it replaces ``path`` only if the block succeeds.

    The committed file gets the mode of a new file (:func:`new_file_mode`), even when the writer replaced the
    temporary file with an owner-only one of its own (safetensors' ``save_file`` does).
    """
    tmp = stage_path(path)
    try:
        yield tmp
        if os.name == "posix":
            os.chmod(tmp, new_file_mode())
        commit(tmp, path)
    finally:
        discard(tmp)


# --------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------


def sha256_of(path: str | os.PathLike[str], *, on_progress: Callable[[int, int], None] | None = None) -> str:
    """SHA-256 of a file as 64 lowercase hex digits, read in 1 MiB chunks (constant memory).

    Args:
        path: the file.
        on_progress: called as ``on_progress(bytes_done, bytes_total)`` after each chunk.

    Raises:
        ModelError: the file does not exist or cannot be read.
    """
    path = Path(path)
    digest = hashlib.sha256()
    try:
        total = path.stat().st_size
        done = 0
        with open(path, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done, total)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}",
                         "check that the file exists and is readable") from exc
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike[str], expected: str, *, actual: str | None = None, hint: str = "") -> str:
    """Check a file against an expected SHA-256 (full 64 digits, or a published prefix).

    Args:
        path: the file.
        expected: hex digest or prefix (e.g. the ``7be5be79`` of torchvision file names).
        actual: the file's digest if already computed (saves a second pass).
        hint: what the user should do on a mismatch.

    Returns:
        The file's full digest.

    Raises:
        ModelError: the digest does not match ("corrupt or different file").
    """
    path = Path(path)
    expected = expected.strip().lower()
    actual = actual or sha256_of(path)
    if expected and not actual.startswith(expected):
        shown = expected if len(expected) < 64 else expected[:16] + "..."
        raise ModelError(
            f"{path.name} has sha256 {actual[:16]}..., expected {shown}: corrupt or different file",
            hint or "download the file again from the address in model_store/README.md",
        )
    return actual


# --------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where the weights sit inside a checkpoint object.

    Attributes:
        name: label used in messages ("plain", "rosinality", "psp", "stored").
        state_key: top-level key holding the state dict; None when the object *is* the state dict.
        prefix: only keys starting with it are kept, with it stripped ("encoder." for pSp/e4e).
        extra: top-level entries returned as extras when present (``latent_avg``, ``opts``).
        description: what such a file is, for "X is ..., not <description>" messages.
    """

    name: str = "plain"
    state_key: str | None = None
    prefix: str = ""
    extra: tuple[str, ...] = ()
    description: str = "a plain state dict (key -> tensor)"

    def with_overrides(self, *, state_key: str | None = None, prefix: str | None = None,
                       extra: Iterable[str] | None = None) -> Layout:
        """A copy with the given fields replaced (None keeps the preset's value)."""
        return Layout(
            name=self.name,
            state_key=self.state_key if state_key is None else (state_key or None),
            prefix=self.prefix if prefix is None else prefix,
            extra=self.extra if extra is None else tuple(extra),
            description=self.description,
        )


LAYOUTS: dict[str, Layout] = {
    "plain": Layout(),
    "rosinality": Layout(
        "rosinality", "g_ema", "", ("latent_avg",),
        "a rosinality StyleGAN2 checkpoint (dict with 'g_ema' and 'latent_avg')",
    ),
    "psp": Layout(
        "psp", "state_dict", "encoder.", ("latent_avg", "opts"),
        "a pSp/e4e checkpoint (dict with 'state_dict' holding 'encoder.*' weights, 'latent_avg', 'opts')",
    ),
    "stored": Layout("stored", None, "", (), "a safetensors file written by the studio's model store"),
}


def get_layout(layout: str | Layout) -> Layout:
    """A :class:`Layout` from a preset name or itself."""
    if isinstance(layout, Layout):
        return layout
    try:
        return LAYOUTS[layout]
    except KeyError:
        raise ModelError(f"unknown checkpoint layout {layout!r}", f"use one of: {', '.join(LAYOUTS)}") from None


def describe_checkpoint(obj: Any) -> str:
    """What a loaded checkpoint object looks like, for "X is ..., not ..." messages."""
    if not isinstance(obj, Mapping):
        return f"a {type(obj).__name__} (not a dict of weights)"
    if "g_ema" in obj:
        return LAYOUTS["rosinality"].description
    sd = obj.get("state_dict")
    if isinstance(sd, Mapping):
        if any(isinstance(k, str) and k.startswith("encoder.") for k in sd):
            encoder_type = opts_value(obj.get("opts"), "encoder_type")
            kind = f", encoder_type={encoder_type!r}" if encoder_type else ""
            return f"a pSp/e4e checkpoint ('state_dict' with 'encoder.*' weights{kind})"
        return f"a training checkpoint whose 'state_dict' holds {len(sd)} entries"
    keys = [str(k) for k in obj.keys()]
    if keys and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return f"a plain state dict of {len(keys)} tensors (first key {keys[0]!r})"
    return f"a dict with keys {_preview(keys, 8)}" if keys else "an empty dict"


def _tensors_under(container: Mapping[Any, Any], prefix: str, source: str) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for key, value in container.items():
        if not isinstance(key, str) or not key.startswith(prefix):
            continue
        if not isinstance(value, torch.Tensor):
            raise ModelError(
                f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor",
                "the file is not a weights checkpoint of the expected kind",
            )
        state[key[len(prefix):]] = value
    return state


def extract_state(
    obj: Any, layout: str | Layout, *, source: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a loaded checkpoint object into ``(state_dict, extras)`` according to ``layout``.

    Args:
        obj: what the weights-only loader returned.
        layout: preset name or :class:`Layout`.
        source: file name for messages.

    Returns:
        ``state``: ``{key: tensor}`` with the layout's prefix stripped; ``extras``: the layout's
        extra entries that the file has (``latent_avg`` tensor, ``opts`` dict, ...).

    Raises:
        ModelError: the object is not of this layout ("X is a pSp/e4e checkpoint ..., not a
            rosinality StyleGAN2 checkpoint ..."), or holds no weights under the prefix.
    """
    lay = get_layout(layout)
    not_this = f"{source} is {describe_checkpoint(obj)}, not {lay.description}"
    if not isinstance(obj, Mapping):
        raise ModelError(not_this, "use the checkpoint listed for this model in model_store/README.md")
    container: Any = obj
    if lay.state_key is not None:
        container = obj.get(lay.state_key)
        if not isinstance(container, Mapping):
            raise ModelError(not_this, "use the checkpoint listed for this model in model_store/README.md")
    elif not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(not_this, "use the checkpoint listed for this model in model_store/README.md")
    state = _tensors_under(container, lay.prefix, source)
    if not state:
        where = f"'{lay.prefix}*' weights" if lay.prefix else "weights"
        raise ModelError(f"{source} has no {where} ({describe_checkpoint(obj)}); expected {lay.description}",
                         "use the checkpoint listed for this model in model_store/README.md")
    extras = {name: obj[name] for name in lay.extra if name in obj}
    return state, extras


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------

#: Globals of ordinary weight checkpoints (for explaining a refusal; the weights-only loader decides).
_BENIGN_GLOBALS = frozenset({"collections.OrderedDict", "_codecs.encode", "builtins.set", "builtins.frozenset",
                             "builtins.bytearray", "argparse.Namespace"})


def _pickle_globals(data: bytes) -> list[str]:
    """Names of the globals (classes/functions) a pickle stream refers to, read statically.

    :mod:`pickletools` only parses opcodes; nothing is imported or called. Used to explain *why*
    the weights-only loader refused a file; it is not the safety mechanism itself.
    """
    names: list[str] = []
    strings: list[str] = []
    stream = io.BytesIO(data)
    try:
        for _ in range(8):  # legacy torch files are several pickles in a row
            for op, arg, _pos in pickletools.genops(stream):
                if "UNICODE" in op.name or op.name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
                    strings.append(str(arg))
                elif op.name in ("GLOBAL", "INST"):
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
            if stream.tell() >= len(data):
                break
    except Exception:  # noqa: BLE001 - end of the pickles, or not a pickle: keep what was found
        pass
    return names


def _unsafe_globals(path: Path, exc: BaseException) -> list[str]:
    """The non-weights objects a refused checkpoint pickles (empty when it is merely corrupt).

    First what the weights-only loader named, then torch's own scan of a zip checkpoint, then a
    static opcode scan (raw pickles fail on an opcode before the loader reaches their globals).
    """
    allowed = {f"{c.__module__}.{c.__qualname__}" for c in SAFE_GLOBALS}
    found = re.findall(r"GLOBAL ([\w.]+)", str(exc))
    if not found:
        try:
            found = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:  # noqa: BLE001 - not a zip checkpoint, or a broken one
            found = []
    if found:
        return [n for n in dict.fromkeys(found) if n not in allowed]
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                data = zf.read(member) if member else b""
        else:
            with open(path, "rb") as fh:
                data = fh.read(16 << 20)
    except Exception:  # noqa: BLE001 - unreadable: nothing to report
        data = b""
    return [n for n in dict.fromkeys(_pickle_globals(data))
            if not n.startswith("torch.") and n not in _BENIGN_GLOBALS and n not in allowed]


def _corrupt(path: Path, exc: BaseException) -> ModelError:
    text = str(exc).strip()
    reason = text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(exc).__name__
    return ModelError(
        f"{path.name} is truncated or corrupt and cannot be read ({reason[:160]})",
        "an interrupted download leaves a short file: download it again from the address in model_store/README.md",
    )


def _sniff(path: Path) -> str:
    """``"safetensors"`` or ``"torch"`` from the first bytes; raises for empty/HTML/unknown files."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(512)
    except FileNotFoundError:
        raise ModelError(f"{path} does not exist", "check the path, or import the model first") from None
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}", "check the file's permissions") from exc
    if size == 0:
        raise ModelError(f"{path.name} is empty (0 bytes)", "the download did not complete: download it again")
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        raise ModelError(
            f"{path.name} is a web page, not a checkpoint",
            "the download saved the host's HTML page (Google Drive shows one for large files): open the "
            "link in a browser and download the file itself",
        )
    header_len = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
    if head[8:9] == b"{" and 0 < header_len <= size - 8:  # u64 header length, then the JSON header
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch zip format, or a legacy pickle
        return "torch"
    if path.suffix == SAFETENSORS_SUFFIX:
        return "safetensors"  # let safetensors report the damage
    return "torch"


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() in SUPPORTED_SUFFIXES:
        return
    hint = f"supported checkpoint files end in {', '.join(SUPPORTED_SUFFIXES)}"
    if path.suffix.lower() == ".pkl":
        hint = ("NVIDIA .pkl networks pickle their own code and are never loaded: use the rosinality "
                "PyTorch conversion (stylegan2-ffhq-config-f.pt) listed in model_store/README.md")
    raise ModelError(f"{path.name} is not a supported checkpoint file", hint)


def _load_torch(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with errors turned into :class:`ModelError`."""
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = _unsafe_globals(path, exc)
        if unsafe:
            raise ModelError(
                f"{path.name} contains code or unsupported objects ({_preview(unsafe, 4)}) and will not be loaded",
                "only plain weight checkpoints are accepted: download the file from the address in "
                "model_store/README.md, not a re-packaged copy",
            ) from None
        raise _corrupt(path, exc) from None
    except (EOFError, OSError, RuntimeError, ValueError, KeyError, IndexError, TypeError, AttributeError,
            zipfile.BadZipFile, UnicodeDecodeError, MemoryError) as exc:
        raise _corrupt(path, exc) from None


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError
        raise _corrupt(path, exc) from None
    return tensors, metadata


@dataclass(frozen=True)
class Architecture:
    """Which module a checkpoint belongs to: ``"package.module:Name"`` plus constructor kwargs.

    Attributes:
        target: import path of an ``nn.Module`` subclass (or an allowed factory function), resolved
            lazily, so the registry never imports model code it does not need.
        kwargs: keyword arguments for the constructor (JSON/TOML values only).
    """

    target: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{"class": ..., "kwargs": {...}}`` (the manifest's and the stored header's form)."""
        return {"class": self.target, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "architecture") -> Architecture:
        """Parse ``{"class": "pkg.mod:Name", "kwargs": {...}}``; raises :class:`ModelError` if malformed."""
        target = data.get("class")
        kwargs = data.get("kwargs", {})
        if not isinstance(target, str) or ":" not in target or not isinstance(kwargs, Mapping):
            raise ModelError(f"{source}: architecture must be {{class = 'package.module:Name', kwargs = {{...}}}}, "
                             f"got {dict(data)!r}")
        return cls(target, dict(kwargs))

    def resolve(self) -> Callable[..., nn.Module]:
        """Import the class (or allowed factory) named by :attr:`target`.

        Raises:
            ModelError: outside :data:`ARCHITECTURE_MODULES`, not importable, or not an ``nn.Module``
                class / allowed factory.
        """
        module_name, _, attr = self.target.partition(":")
        if not any(module_name == p.rstrip(".") or module_name.startswith(p) for p in ARCHITECTURE_MODULES):
            raise ModelError(f"architecture {self.target!r} is outside the allowed model packages",
                             "the checkpoint's header names code the studio will not run: "
                             "import the original file again")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ModelError(f"architecture {self.target} is not available in this version of the studio ({exc})",
                             "update Talking Head Studio") from None
        if isinstance(obj, type) and issubclass(obj, nn.Module):
            return obj
        if self.target in ARCHITECTURE_FACTORIES and callable(obj):
            return obj
        raise ModelError(f"architecture {self.target} is not a model class")

    def instantiate(self, *, device: str | torch.device = "cpu") -> nn.Module:
        """Construct the module on ``device`` ("meta" allocates no memory: shapes only)."""
        factory = self.resolve()
        try:
            with torch.device(device):
                module = factory(**dict(self.kwargs))
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - bad kwargs etc.
            raise ModelError(f"cannot build {self.target}({_kwargs_text(self.kwargs)}): {exc}") from exc
        if not isinstance(module, nn.Module):
            raise ModelError(f"architecture {self.target} did not return a module")
        return module

    def __str__(self) -> str:
        return f"{self.target}({_kwargs_text(self.kwargs)})"


def _kwargs_text(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file read safely but not yet split into weights.

    Attributes:
        path: the file.
        format: ``"torch"`` (weights-only pickle) or ``"safetensors"``.
        obj: the weights-only object (torch), or ``{key: tensor}`` (safetensors).
        metadata: the safetensors header metadata (``{}`` for torch files).
    """

    path: Path
    format: str
    obj: Any
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_stored(self) -> bool:
        """Written by :func:`save_safetensors` (carries the studio's header)."""
        return META_SCHEMA in self.metadata

    @property
    def architecture(self) -> Architecture | None:
        """The architecture recorded in a stored file's header (None for other files)."""
        text = self.metadata.get(META_ARCHITECTURE)
        if not text:
            return None
        try:
            return Architecture.from_dict(json.loads(text), source=self.path.name)
        except json.JSONDecodeError:
            raise _corrupt(self.path, ValueError("unreadable architecture header")) from None

    def describe(self) -> str:
        """What the file looks like (for messages)."""
        if self.format == "safetensors":
            what = "a studio model-store file" if self.is_stored else "a safetensors file"
            first = next(iter(self.obj), None)
            return f"{what} of {len(self.obj)} tensors" + (f" (first key {first!r})" if first else "")
        return describe_checkpoint(self.obj)

    def extract(self, layout: str | Layout = "auto") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``(state_dict, extras)``; see :func:`extract_state`.

        A safetensors file is flat already: its ``__extra__.*`` tensors and header extras become the
        extras, and the layout's prefix is applied only if some keys carry it.
        """
        if self.format == "safetensors":
            return self._extract_flat(get_layout("plain") if layout == "auto" else get_layout(layout))
        return extract_state(self.obj, self._auto_layout() if layout == "auto" else layout, source=self.path.name)

    def _auto_layout(self) -> Layout:
        obj = self.obj
        if isinstance(obj, Mapping) and "g_ema" in obj:
            return LAYOUTS["rosinality"]
        if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
            return LAYOUTS["psp"]
        return LAYOUTS["plain"]

    def _extract_flat(self, layout: Layout) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        state = {k: v for k, v in self.obj.items() if not k.startswith(EXTRA_PREFIX)}
        extras: dict[str, Any] = {k[len(EXTRA_PREFIX):]: v for k, v in self.obj.items() if k.startswith(EXTRA_PREFIX)}
        if layout.prefix and any(k.startswith(layout.prefix) for k in state):
            state = {k[len(layout.prefix):]: v for k, v in state.items() if k.startswith(layout.prefix)}
        if META_EXTRAS in self.metadata:
            try:
                extras.update(json.loads(self.metadata[META_EXTRAS]))
            except json.JSONDecodeError:
                raise _corrupt(self.path, ValueError("unreadable extras header")) from None
        if not state:
            raise ModelError(f"{self.path.name} holds no weights", "import the original checkpoint again")
        return state, extras


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint file safely (safetensors, or ``torch.load(weights_only=True)``).

    Raises:
        ModelError: missing, empty, an HTML page, unsupported extension, truncated or corrupt,
            contains code or unsupported objects, or was written by a newer studio.
    """
    path = Path(path)
    _check_suffix(path)
    kind = _sniff(path)
    if kind == "safetensors":
        tensors, metadata = _load_safetensors(path)
        version = metadata.get(META_SCHEMA)
        if version is not None and (not version.isdigit() or int(version) > STORED_SCHEMA_VERSION):
            raise ModelError(f"{path.name} was written by a newer version of the studio (format {version})",
                             "update Talking Head Studio, or import the original checkpoint again")
        return Checkpoint(path, "safetensors", tensors, metadata)
    return Checkpoint(path, "torch", _load_torch(path))


def load_state(
    path: str | os.PathLike[str],
    *,
    expected: nn.Module | Mapping[str, tuple[int, ...]] | None = None,
    layout: str | Layout = "auto",
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint and return ``(state_dict, extras)``, optionally checked key by key.

    Args:
        path: ``.safetensors`` or ``.pt/.pth/.ckpt/.model`` file.
        expected: a module or ``{key: shape}`` table the state must match exactly (see
            :func:`check_state`); None skips the check.
        layout: ``"auto"`` (stored/rosinality/psp/plain guessed from the content), a preset name
            from :data:`LAYOUTS`, or a :class:`Layout`.

    Returns:
        ``state``: ``{key: tensor}`` on the CPU; ``extras``: e.g. ``latent_avg`` ((512,) or (18, 512)
        float tensor, W space) and ``opts`` (dict) when the layout lists them and the file has them.

    Raises:
        ModelError: unreadable, unsafe, wrong layout, or (with ``expected``) wrong keys/shapes.
    """
    ckpt = read_checkpoint(path)
    lay = layout if layout == "auto" else get_layout(layout)
    state, extras = ckpt.extract(lay)
    if expected is not None:
        what = lay.description if isinstance(lay, Layout) else "the expected checkpoint"
        check_state(expected, state, source=ckpt.path.name, hint=f"expected {what}")
    return state, extras


# --------------------------------------------------------------------------------------------
# Checking and building
# --------------------------------------------------------------------------------------------


def expected_shapes(spec: nn.Module | Architecture | Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` a state dict must have for ``spec``.

    An :class:`Architecture` is instantiated on the ``meta`` device (no memory for the weights, so a
    1024² generator costs nothing); if its constructor cannot run there, on the CPU.
    """
    if isinstance(spec, nn.Module):
        return {k: tuple(v.shape) for k, v in spec.state_dict().items()}
    if isinstance(spec, Architecture):
        try:
            module = spec.instantiate(device="meta")
        except ModelError as exc:
            if "cannot build" not in exc.message:
                raise
            module = spec.instantiate(device="cpu")
        return expected_shapes(module)
    return {k: _shape(v) for k, v in spec.items()}


def check_state(
    module_or_expected: nn.Module | Architecture | Mapping[str, Any],
    state: Mapping[str, Any],
    *,
    source: str = "checkpoint",
    target: str | None = None,
    hint: str | None = None,
) -> None:
    """Compare every key and shape of ``state`` with what ``module_or_expected`` needs.

    Args:
        module_or_expected: a module, an :class:`Architecture`, or ``{key: shape}``.
        state: ``{key: tensor}`` (or ``{key: shape}``).
        source: the file name, for the message.
        target: what it was checked against, for the message (default: the module's class).
        hint: what was expected (checkpoint / layout) and what to do.

    Raises:
        StateMismatchError: (a ModelError) naming the missing keys, the unexpected keys and each wrong
            shape ("key: expected (a, b), got (c, d)"), long lists shortened with a count in the message;
            the full lists are its ``missing`` / ``unexpected`` / ``wrong_shape`` attributes.
    """
    expected = expected_shapes(module_or_expected)
    got = {k: _shape(v) for k, v in state.items()}
    # BatchNorm's ``num_batches_tracked`` counter (added in PyTorch 0.4.1) is absent from older
    # checkpoints such as syncnet_v2.model; it is not used in eval mode, and load_state_dict fills it
    # with 0 for a state dict without version metadata, so its absence is not a mismatch.
    missing = [k for k in expected if k not in got and not k.endswith(OPTIONAL_KEY_SUFFIX)]
    unexpected = [k for k in got if k not in expected]
    wrong_shape = [(k, expected[k], got[k]) for k in expected if k in got and expected[k] != got[k]]
    wrong = [f"{k}: expected {_fmt_shape(e)}, got {_fmt_shape(g)}" for k, e, g in wrong_shape]
    if not (missing or unexpected or wrong):
        return
    if target is None:
        if isinstance(module_or_expected, nn.Module):
            target = type(module_or_expected).__name__
        elif isinstance(module_or_expected, Architecture):
            target = str(module_or_expected)
        else:
            target = "the expected architecture"
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_preview(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_preview(unexpected)}")
    if wrong:
        parts.append(f"{len(wrong)} wrong shape(s): {_preview(wrong, _PREVIEW_SHAPES)}")
    raise StateMismatchError(f"{source} does not match {target}: " + "; ".join(parts),
                             hint or "the file is a different model or configuration than the one expected",
                             missing=missing, unexpected=unexpected, wrong_shape=wrong_shape, source=source,
                             target=target)


def build_module(
    spec: Architecture | Any,
    state: Mapping[str, torch.Tensor],
    *,
    device: str | torch.device = "cpu",
    source: str = "checkpoint",
) -> nn.Module:
    """Instantiate the architecture, check ``state`` against it, load it strictly, return it in eval mode.

    Args:
        spec: an :class:`Architecture`, or anything with an ``architecture`` attribute (a manifest entry).
        state: ``{key: tensor}``, e.g. from :func:`load_state`.
        device: where the module ends up.
        source: file name for messages.

    Raises:
        ModelError: no architecture, architecture unavailable, or keys/shapes mismatch.
    """
    arch = spec if isinstance(spec, Architecture) else getattr(spec, "architecture", None)
    if not isinstance(arch, Architecture):
        raise ModelError(f"no module is defined for {source} in this version of the studio",
                         "its weights can be read with load_state()")
    module = arch.instantiate(device="cpu")
    check_state(module, state, source=source, target=str(arch))
    module.load_state_dict(dict(state), strict=True)
    return module.to(device).eval()


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _unshared(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, cloning any that share storage (safetensors refuses aliases)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise ModelError(f"cannot save {key!r}: a {type(value).__name__}, not a tensor")
        tensor = value.detach().to("cpu").contiguous()
        ptr = tensor.untyped_storage().data_ptr() if tensor.numel() else None
        if ptr is not None and ptr in seen:
            tensor = tensor.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[key] = tensor
    return out


def save_safetensors(
    path: str | os.PathLike[str],
    state: Mapping[str, torch.Tensor],
    *,
    metadata: Mapping[str, str] | None = None,
    architecture: Architecture | None = None,
    extras: Mapping[str, Any] | None = None,
) -> Path:
    """Write weights as one self-describing ``.safetensors`` file, atomically.

    The header carries ``talkstudio.schema_version``, the architecture (``talkstudio.architecture``,
    JSON ``{"class", "kwargs"}``: the file rebuilds its own module) and non-tensor extras as JSON
    (``talkstudio.extras``); tensor extras are stored as ``__extra__.<name>``. The file appears
    whole or not at all (temporary file + ``os.replace``).

    Args:
        path: destination (``.safetensors``).
        state: ``{key: tensor}``.
        metadata: further ``str -> str`` header entries (source file name, hashes, ...).
        architecture: the module the weights belong to.
        extras: ``latent_avg`` (tensor), ``opts`` (dict; saved as JSON), ...

    Returns:
        ``path``.

    Raises:
        ModelError: a value is not a tensor, or the file cannot be written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = dict(state)
    header: dict[str, str] = {"format": "pt", META_SCHEMA: str(STORED_SCHEMA_VERSION)}
    json_extras: dict[str, Any] = {}
    for name, value in (extras or {}).items():
        if isinstance(value, torch.Tensor):
            tensors[EXTRA_PREFIX + name] = value
        else:
            json_extras[name] = jsonable(value)
    if json_extras:
        header[META_EXTRAS] = json.dumps(json_extras, sort_keys=True)
    if architecture is not None:
        header[META_ARCHITECTURE] = json.dumps(architecture.to_dict(), sort_keys=True)
    for key, value in (metadata or {}).items():
        header[str(key)] = str(value)
    try:
        with staged_file(path) as tmp:
            save_file(_unshared(tensors), str(tmp), metadata=header)
    except OSError as exc:
        raise ModelError(f"cannot write {path}: {exc.strerror or exc}",
                         "check free disk space and permissions") from exc
    return path
