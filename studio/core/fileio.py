"""Files that appear whole or not at all: write to a temporary name in the same folder, then rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from studio.core.errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    Raises:
        OutputError: the folder is missing or not writable, or the disk is full.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}",
                          "choose a folder that exists and that you can write to") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only; give it the usual mode
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}", "check free disk space and permissions") from exc
    except BaseException:  # Ctrl-C or a termination signal (see studio.core.termination) mid-write
        Path(tmp).unlink(missing_ok=True)
        raise


def read_text_bounded(path: Path, *, what: str, max_bytes: int, hint: str, encoding: str = "utf-8") -> str:
    """Read a small text file we were given (a transcript, a jobs CSV, a project): untrusted, so bounded.

    The path must name a regular file (not a folder, device such as ``/dev/zero``, FIFO or socket) of at
    most ``max_bytes``; the size is checked before reading and enforced while reading (a file that grows
    meanwhile is not read past the limit).

    Args:
        path: the file. what: how to name it in messages ("jobs file"). max_bytes: the limit in bytes.
        hint: what the user should give instead (the error's hint). encoding: e.g. "utf-8-sig" to drop a BOM.

    Raises:
        InputError: missing, not a regular file, too large, unreadable or not valid text in ``encoding``.
    """
    import stat

    from studio.core.errors import InputError

    path = Path(path)
    limit = f"{max_bytes / 2 ** 20:g} MiB" if max_bytes >= 2 ** 20 else f"{max_bytes} bytes"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}", hint) from None
    except OSError as exc:
        raise InputError(f"cannot read the {what} {path}: {exc.strerror or exc}", hint) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"the {what} {path} is not a regular file", hint)
    if st.st_size > max_bytes:
        raise InputError(f"the {what} {path} is too large ({st.st_size} bytes; at most {limit})", hint)
    try:
        with open(path, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # swapped for something else since the stat
                raise InputError(f"the {what} {path} is not a regular file", hint)
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"cannot read the {what} {path}: {exc.strerror or exc}", hint) from None
    if len(data) > max_bytes:
        raise InputError(f"the {what} {path} is too large (more than {limit})", hint)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(f"the {what} {path} is not {encoding.split('-sig')[0].upper()} text ({exc.reason} at byte "
                         f"{exc.start})", hint) from None
