"""Running long jobs in tests: their events and their returned result."""

from __future__ import annotations

from studio.core.events import Notice, Progress, drive


def run_job(job) -> tuple[object, list]:
    """Drive a long job (generator of Progress / Notice returning its result): (result, events in order)."""
    events: list = []
    result = drive(job, on_progress=events.append, on_notice=events.append)
    return result, events


def notices(events) -> list[str]:
    """The messages of the Notice events."""
    return [e.message for e in events if isinstance(e, Notice)]


def fractions(events) -> list[float]:
    """The overall fractions of the Progress events."""
    return [e.fraction for e in events if isinstance(e, Progress)]
