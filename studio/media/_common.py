"""Helpers shared by the media modules: input-file checks and running the bundled ffmpeg.

Private to :mod:`studio.media`; the public API lives in ``image``, ``audio`` and ``video``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

from studio.core.errors import ConfigError, InputError

#: Frame rates within this distance of N*1000/1001 are taken as the NTSC rate (29.97 -> 30000/1001).
_NTSC_TOLERANCE = 1e-3


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (``IMAGEIO_FFMPEG_EXE`` overrides it).

    Raises:
        ConfigError: no usable ffmpeg binary was found.
    """
    import imageio_ffmpeg  # local import: keeps ``import studio.media`` cheap

    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise ConfigError(
            "ffmpeg was not found",
            "reinstall the studio (the imageio-ffmpeg package ships ffmpeg) "
            "or set IMAGEIO_FFMPEG_EXE to an ffmpeg binary",
        ) from exc


def popen_kwargs() -> dict:
    """Extra ``subprocess`` arguments for ffmpeg children.

    The child gets its own process group so that a Ctrl-C in the terminal reaches only Python,
    which then stops ffmpeg itself and cleans up; on Linux it is killed when the studio dies (even by
    SIGKILL); on Windows no console window pops up.
    """
    if sys.platform == "win32":
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        return {"creationflags": flags}
    kwargs: dict = {"start_new_session": True}
    die = _die_with_parent()
    if die is not None:
        kwargs["preexec_fn"] = die
    return kwargs


def _die_with_parent():
    """On Linux, a function for ``preexec_fn`` that asks the kernel to SIGKILL the child when the thread that
    started it dies (``prctl(PR_SET_PDEATHSIG)``): after a SIGKILL of the studio, ffmpeg must not go on and
    finish a half-written file. The ctypes call is prepared here, in the parent, so the child only calls it
    (``preexec_fn`` runs between fork and exec, where little is safe in a threaded parent).

    The signal follows the *thread*: an ffmpeg child must be started by the thread that waits for it (the
    encoder is created, written and closed in one ``with`` block, on one thread). None elsewhere (macOS has
    no equivalent; there a killed parent closes ffmpeg's stdin and it stops)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)
    parent = os.getpid()

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)
        if os.getppid() != parent:  # the studio died between fork and prctl: the signal was missed
            os._exit(1)

    return preexec


def run_ffmpeg(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run ``ffmpeg -nostdin -hide_banner *args`` to completion, capturing stdout and stderr.

    The return code is not checked: ``ffmpeg -i FILE`` with no output always "fails" and callers
    interpret stderr themselves. If the wait is interrupted (Ctrl-C), ffmpeg is killed.
    """
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", *args]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, **popen_kwargs())


def stderr_tail(text: str | bytes, max_lines: int = 6) -> str:
    """The last ``max_lines`` non-empty lines of an ffmpeg log, joined with `` | `` (one-line errors)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return " | ".join(lines[-max_lines:])


def ffmpeg_reason(text: str | bytes) -> str:
    """The gist of an ffmpeg error log: its last line without the ``[ctx @ 0x..]`` prefix and the
    generic "Error opening input files:" lead-in, e.g. "Invalid data found when processing input"."""
    tail = stderr_tail(text, max_lines=1)
    tail = re.sub(r"^\[[^\]]*\]\s*", "", tail)
    return re.sub(r"^Error opening (?:input|output)(?: files?)?:\s*", "", tail)


def fps_fraction(fps: float) -> Fraction:
    """Exact rational frame rate for ``fps``: 29.97 -> 30000/1001, 25.0 -> 25, 12.5 -> 25/2.

    NTSC-style rates (N*1000/1001, given rounded as 23.976, 29.97, 59.94 ...) map to their exact
    value; any other rate is approximated with a denominator of at most 1001.
    """
    ntsc = round(fps * 1001 / 1000)
    is_ntsc = abs(fps - ntsc * 1000 / 1001) < _NTSC_TOLERANCE and abs(fps - ntsc) > _NTSC_TOLERANCE
    if ntsc > 0 and is_ntsc:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def check_input_file(path: str | os.PathLike[str], *, kind: str, error: type[InputError]) -> Path:
    """Check that ``path`` names a readable, non-empty regular file and return it as a Path.

    Args:
        path: the file given by the user.
        kind: what the file should be, for messages ("image", "audio", "video").
        error: the :class:`InputError` subclass to raise.

    Raises:
        error: the file is missing, is a folder or a special file, cannot be read, or is empty.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise error(
            f"{kind} file not found: {path}", "check the file name and folder, or choose the file again"
        )
    if path.is_dir():
        raise error(
            f"expected {_article(kind)} {kind} file but got a folder: {path}",
            "choose a file inside the folder",
        )
    if not path.is_file():
        raise error(f"not a regular file: {path}", f"choose {_article(kind)} {kind} file")
    try:
        with path.open("rb") as fh:
            first = fh.read(1)
    except PermissionError as exc:
        raise error(
            f"{kind} file is not readable (permission denied): {path}",
            "check the file's permissions or copy it to a folder you own",
        ) from exc
    except OSError as exc:
        reason = exc.strerror or exc
        raise error(f"cannot read {kind} file: {path} ({reason})", "choose another file") from exc
    if not first:
        raise error(
            f"{kind} file is empty (0 bytes): {path}",
            "the file may be damaged or still downloading; choose another file",
        )
    return path


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
