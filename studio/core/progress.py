"""Progress reporting and cooperative cancellation for long jobs.

Long work is written as a generator that yields :class:`Progress` events and calls
:meth:`CancelToken.raise_if_cancelled` between units of work; the CLI turns the events into a
progress bar, the GUI into Qt signals. Nested stages report through :meth:`ProgressMonitor.sub`
so that the overall fraction never goes backwards (cf. NVlabs stylegan3 ``ProgressMonitor``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from studio.core.errors import Cancelled


class CancelToken:
    """A thread-safe flag that a worker polls; :meth:`cancel` may be called from any thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~studio.core.errors.Cancelled` if :meth:`cancel` was called."""
        if self._event.is_set():
            raise Cancelled()


@dataclass(frozen=True)
class Progress:
    """One progress report.

    Attributes:
        stage: short name of the current stage ("detect", "speech", "render", ...).
        fraction: overall completion in [0, 1], monotonic over a job.
        message: human-readable detail ("frame 120/250").
        done: units finished in this stage; total: units in this stage (0 when unknown).
    """

    stage: str
    fraction: float
    message: str = ""
    done: int = 0
    total: int = 0


class ProgressMonitor:
    """Maps a stage's local progress into a sub-range [lo, hi] of the overall [0, 1]."""

    def __init__(self, lo: float = 0.0, hi: float = 1.0) -> None:
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"invalid progress range [{lo}, {hi}]")
        self.lo = lo
        self.hi = hi

    def sub(self, lo: float, hi: float) -> "ProgressMonitor":
        """A monitor for the part [lo, hi] (fractions of this monitor's range)."""
        span = self.hi - self.lo
        return ProgressMonitor(self.lo + span * lo, self.lo + span * hi)

    def event(self, stage: str, done: int, total: int, message: str = "") -> Progress:
        """Build a :class:`Progress` for ``done`` of ``total`` units of this monitor's stage."""
        local = 1.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
        return Progress(stage, self.lo + (self.hi - self.lo) * local, message, done, total)
