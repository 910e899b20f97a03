"""Events of long jobs: progress, notices, cooperative cancellation, and the one loop that drives a job.

Long work is a generator that yields :class:`Progress` and :class:`Notice` events, calls
:meth:`CancelToken.raise_if_cancelled` between units of work, and **returns** its result::

    def stage(..., monitor: ProgressMonitor) -> Job[Result]:
        yield monitor.event("load", 0, 2, "reading")
        part = yield from substage(..., monitor=monitor.sub(0.0, 0.5))   # nested: a sub-range
        ...
        return Result(...)

    result = drive(stage(...), on_progress=bar.update, on_notice=print)   # CLI, GUI worker, batch

Nested stages report through :meth:`ProgressMonitor.sub`; every monitor derived from one root shares
that root's floor, so the overall fraction a job reports never goes backwards, whatever order its
stages report in (cf. NVlabs stylegan3 ``ProgressMonitor``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Generator, Generic, Iterator, TypeVar, Union

from studio.core.errors import Cancelled

NOTICE_LEVELS = ("warning", "note")

R = TypeVar("R")
E = TypeVar("E")


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
        stage: short name of the current stage ("load", "speech", "render", ...).
        fraction: overall completion in [0, 1], monotonic over a job (see :class:`ProgressMonitor`).
        message: human-readable detail ("frame 120/250").
        done: units finished in this stage; total: units in this stage (0 when unknown).
    """

    stage: str
    fraction: float
    message: str = ""
    done: int = 0
    total: int = 0


@dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop the job.

    Attributes:
        message: the text. level: "warning" (something is off: several faces, silent audio, a skipped
            file) or "note" (information: which model drives the mouth, a resumed run).
    """

    message: str
    level: str = "warning"

    def __post_init__(self) -> None:
        if self.level not in NOTICE_LEVELS:
            raise ValueError(f"notice level must be one of {NOTICE_LEVELS}, got {self.level!r}")


Event = Union[Progress, Notice]
#: A long job: yields events, returns its result (``result = yield from job`` or ``drive(job)``).
Job = Generator[Event, None, R]


class _Floor:
    """The highest fraction reported so far by any monitor of one job (shared by all its sub-monitors)."""

    __slots__ = ("value", "lock")

    def __init__(self) -> None:
        self.value = 0.0
        self.lock = threading.Lock()


class ProgressMonitor:
    """Maps a stage's local progress into a sub-range [lo, hi] of the job's overall [0, 1].

    Every monitor made with :meth:`sub` shares the root's floor: :meth:`event` never reports less than
    the highest fraction already reported by any monitor of the job, so progress is monotonic by
    construction even when a later stage re-reports an earlier range (a stage that was skipped, a
    sub-stage discovered late).

    Raises:
        ValueError: a range outside [0, 1] or with lo > hi.
    """

    def __init__(self, lo: float = 0.0, hi: float = 1.0, *, _floor: _Floor | None = None) -> None:
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"invalid progress range [{lo}, {hi}]")
        self.lo = lo
        self.hi = hi
        self._floor = _floor if _floor is not None else _Floor()

    def sub(self, lo: float, hi: float) -> "ProgressMonitor":
        """A monitor for the part [lo, hi] (fractions of this monitor's range), sharing this job's floor."""
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"invalid progress sub-range [{lo}, {hi}]")
        span = self.hi - self.lo
        return ProgressMonitor(self.lo + span * lo, self.lo + span * hi, _floor=self._floor)

    def event(self, stage: str, done: int, total: int, message: str = "") -> Progress:
        """A :class:`Progress` for ``done`` of ``total`` units of this monitor's stage (total <= 0: complete)."""
        local = 1.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
        fraction = self.lo + (self.hi - self.lo) * local
        with self._floor.lock:
            fraction = max(fraction, self._floor.value)
            self._floor.value = fraction
        return Progress(stage, fraction, message, done, total)

    @property
    def reported(self) -> float:
        """The highest fraction this job has reported so far."""
        return self._floor.value


class Returning(Generic[E, R]):
    """Iterate over a generator's yielded items; afterwards :attr:`result` holds what it returned.

    For consumers that handle every item themselves (a batch's per-job events)::

        run = Returning(run_batch(queue))
        for event in run:
            show(event)
        report = run.result
    """

    def __init__(self, gen: Generator[E, None, R]) -> None:
        self._gen = gen
        self.result: R | None = None

    def __iter__(self) -> Iterator[E]:
        self.result = yield from self._gen


def drive(job: Job[R], *, on_progress: Callable[[Progress], None] | None = None,
          on_notice: Callable[[Notice], None] | None = None) -> R:
    """Run a long job to its end, passing its events to the callbacks, and return its result.

    Args:
        job: a generator yielding :class:`Progress` / :class:`Notice` and returning the result.
        on_progress, on_notice: called for each event of that type (None: ignored).

    Returns:
        The job's return value.

    Raises:
        Whatever the job raises (it is closed first when a callback raises). TypeError: the job yielded
        something that is not an event (a result must be returned, not yielded).
    """
    try:
        while True:
            try:
                event = next(job)
            except StopIteration as stop:
                return stop.value
            if isinstance(event, Progress):
                if on_progress is not None:
                    on_progress(event)
            elif isinstance(event, Notice):
                if on_notice is not None:
                    on_notice(event)
            else:
                raise TypeError(f"a job yielded {type(event).__name__}; results are returned, not yielded")
    finally:
        job.close()


__all__ = ["CancelToken", "Event", "Job", "NOTICE_LEVELS", "Notice", "Progress", "ProgressMonitor", "Returning",
           "drive"]
