"""Work-arounds for defects of the installed Qt bindings.

PySide6 6.12.0 on CPython 3.11 drops a reference to ``True`` on every ``Signal.emit()`` from Python and
to ``None`` on every call of a Python slot from C++ (it returns those singletons without the reference
that CPython < 3.12 requires; from 3.12 on they are immortal and the slip is harmless). The studio emits
signals all the time (the playhead ticks at 50 Hz), so after some tens of thousands of deliveries CPython
aborts with ``Fatal Python error: bool_dealloc`` / ``none_dealloc`` (at the latest at exit). PySide6
6.11.2 does not have the defect: pinning it is the real fix. Until then :func:`guard_singleton_refcounts`
detects the defect at startup and, only when present, does what CPython 3.12 does by design (PEP 683):
gives ``None``, ``True`` and ``False`` a reference count so high that it can never reach zero.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import sys

log = logging.getLogger(__name__)

_IMMORTAL_BOOST = 1 << 40
_guarded = False


def emit_leaks_references() -> bool:
    """True when emitting a Python-defined signal loses a reference to ``True`` (the PySide6 defect)."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(16):
        probe.ping.emit()
    lost = before - sys.getrefcount(True)
    if lost > 0:  # give the 16 references back
        ctypes.c_ssize_t.from_address(id(True)).value += lost
    return lost >= 16


def guard_singleton_refcounts() -> bool:
    """Apply the work-around when (and only when) it is needed; returns True if it was applied."""
    global _guarded
    if _guarded:
        return True
    if sys.version_info >= (3, 12) or platform.python_implementation() != "CPython":
        return False
    if not emit_leaks_references():
        return False
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += _IMMORTAL_BOOST
    _guarded = True
    import PySide6

    log.warning("PySide6 %s loses references to None/True on signal delivery under Python %s; "
                "guarded (pin PySide6 6.11.2 to fix it for good)", PySide6.__version__, platform.python_version())
    return True
