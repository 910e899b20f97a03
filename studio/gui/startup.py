"""Start-up measurements and unattended runs of the studio window (used by ``packaging/smoke.sh``).

Everything here is off unless an environment variable asks for it:

``TALKSTUDIO_STARTUP_LOG=1``
    print ``startup: window shown after X.XX s`` on stderr once the window is up and the event loop runs,
    and ``startup: models checked after X.XX s`` once the model store (torch) has loaded in the background.
    The clock starts at ``TALKSTUDIO_STARTUP_T0`` (seconds since the epoch, e.g. ``date +%s.%N`` in the
    launching shell) when given, else at the process start (Linux), else when this module was imported.
``TALKSTUDIO_QUIT_AFTER=SECONDS``
    close the window and leave the event loop after that long (exit status 0 when nothing failed).
``TALKSTUDIO_SCREENSHOT=FILE.png``
    with ``TALKSTUDIO_QUIT_AFTER``: grab the window into FILE.png just before quitting.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QWidget

_IMPORTED_AT = time.time()
_report = None  # where the start-up lines go (see watch_startup)


def _process_start() -> float:
    """Seconds since the epoch when this process started: the launcher's clock, /proc, or import time."""
    t0 = os.environ.get("TALKSTUDIO_STARTUP_T0", "").strip()
    if t0:
        try:
            return float(t0)
        except ValueError:
            print(f"warning: ignoring TALKSTUDIO_STARTUP_T0={t0!r} (not a number of seconds)", file=sys.stderr)
    try:  # Linux: start time in clock ticks after boot (field 22 of /proc/self/stat) + boot time
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration, AttributeError):
        return _IMPORTED_AT


def elapsed_since_start() -> float:
    """Seconds since the process (or the launcher's ``TALKSTUDIO_STARTUP_T0``) started."""
    return time.time() - _process_start()


def _log(what: str) -> None:
    if os.environ.get("TALKSTUDIO_STARTUP_LOG"):
        print(f"startup: {what} after {elapsed_since_start():.2f} s", file=_report or sys.stderr, flush=True)


def models_checked() -> None:
    """Note (with ``TALKSTUDIO_STARTUP_LOG``) that the background model check, and torch, finished."""
    _log("models checked")


def watch_startup(app: QApplication, window: QWidget) -> None:
    """Install the start-up report and the unattended quit/screenshot asked for by the environment.

    Call it right after ``window.show()`` and before ``app.exec()``: the report fires when the event loop
    has processed the window's first show.
    """
    global _report
    if os.environ.get("TALKSTUDIO_STARTUP_LOG") and _report is None:
        # a duplicate of stderr taken now: face detection briefly points fd 2 at /dev/null in its worker
        # (studio.engine.face.detect silences MediaPipe's native logging), which swallowed these lines
        try:
            _report = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
        except (OSError, ValueError, AttributeError):
            _report = sys.stderr
    _window_timer(window, 0, lambda: _log("window shown"))
    quit_after = os.environ.get("TALKSTUDIO_QUIT_AFTER", "").strip()
    if not quit_after:
        return
    try:
        seconds = float(quit_after)
    except ValueError:
        print(f"warning: ignoring TALKSTUDIO_QUIT_AFTER={quit_after!r} (give seconds, e.g. 10)", file=sys.stderr)
        return
    shot = os.environ.get("TALKSTUDIO_SCREENSHOT", "").strip()

    def finish() -> None:
        if shot:
            ok = window.grab().save(shot)
            print(f"startup: screenshot {'saved to ' + shot if ok else 'FAILED: ' + shot}",
                  file=_report or sys.stderr, flush=True)
        window.close()
        app.quit()

    _window_timer(window, int(seconds * 1000), finish)


def _window_timer(window: QWidget, msec: int, slot) -> QTimer:
    """A started single-shot timer that ``window`` owns (it lives as long as the window)."""
    timer = QTimer(window)
    timer.setSingleShot(True)
    timer.timeout.connect(slot)
    timer.start(msec)
    return timer
