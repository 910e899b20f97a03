"""Termination signals unwind the process like Ctrl-C, so that every cleanup path runs.

``timeout``, ``docker stop``, systemd and ``kill`` send SIGTERM; closing a terminal sends SIGHUP. By default
Python dies on them at once, leaving half-written outputs and temporary files behind. Inside
:func:`termination_raises` the first of these signals raises :class:`Terminated` (a ``KeyboardInterrupt``)
in the main thread instead: the encoder aborts (ffmpeg killed, ``.partial`` file and temp WAV deleted), a batch
marks its running job cancelled and releases its queue, and the command line exits with ``128 + signal``
after one line on stderr. Further termination signals during that short cleanup are ignored.

After SIGKILL nothing can run; :func:`pid_alive` lets the next run recognise and delete what a dead process
left (see :func:`studio.media.video.remove_stale_temp_files`).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: the signals that end a process politely (SIGHUP does not exist on Windows)
TERMINATION_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


#: the largest process id Linux hands out (PID_MAX_LIMIT on 64-bit); larger numbers are not pids here
PID_MAX = 1 << 22


class Terminated(KeyboardInterrupt):
    """A termination signal arrived (raised in the main thread by the handler of :func:`termination_raises`).

    A ``KeyboardInterrupt`` subclass, so code that cleans up after Ctrl-C cleans up after it too.
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(self.signal_name)

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number (SIGTERM 143, SIGHUP 129)."""
        return 128 + self.signum


@contextmanager
def termination_raises() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread (once).

    Outside the main thread (where Python cannot install handlers) the block runs unchanged. A signal that is
    ignored (SIGHUP under ``nohup``) stays ignored. The previous handlers are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = threading.Event()

    def handler(signum, frame):  # noqa: ARG001 - the signal module's signature
        if fired.is_set():  # already unwinding: let the cleanup finish
            return
        fired.set()
        raise Terminated(signum)

    previous = {}
    try:
        for sig in TERMINATION_SIGNALS:
            current = signal.getsignal(sig)
            if current is signal.SIG_IGN:  # e.g. SIGHUP under nohup: the user asked to be left running
                continue
            previous[sig] = signal.signal(sig, handler)
        yield
    finally:
        for sig, old in previous.items():
            # None: the previous handler was installed from C and cannot be restored from Python
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine: pids of other hosts mean nothing here).

    A process we may not signal (another user's) exists; an id that does not exist is dead.
    """
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if os.name == "nt":  # pragma: no cover - no os.kill(pid, 0) probe on Windows
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        ctypes.windll.kernel32.CloseHandle(handle)
        return True
    if pid > PID_MAX:  # no such pid on Linux (or another machine's): not a process we can know about
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return True
