"""Keep the UI thread's pauses short while workers render and encode.

Three things stalled the window (measured with a 10 ms QTimer probe during exports): full garbage
collections, the GIL staying with worker threads for several switch intervals, and OpenCV's thread pool
plus the encoder taking every core.

After start-up the process holds hundreds of thousands of long-lived objects (torch, MediaPipe, Qt and
pyqtgraph internals); CPython's oldest-generation collection walks all of them and was measured at
100-240 ms here, long enough to freeze the window in the middle of an export. ``gc.freeze()`` moves
everything alive now into a permanent generation that collections skip; later garbage is still collected.
"""

from __future__ import annotations

import gc


def freeze_heap(*, full: bool = True) -> None:
    """Collect, then exempt every surviving object from future collections' scans.

    ``full``: a full collection first (at start-up, before the window shows: it walks the whole heap, 0.1-0.2 s).
    Otherwise only the young generations are collected (milliseconds), for a freeze on the UI thread while the
    window is in use, such as after each new session; the little cyclic garbage already in the old generation
    then stays (it was measured at nothing noticeable; the next start-up's full collection is not affected)."""
    gc.collect() if full else gc.collect(1)
    gc.freeze()


def tune_for_ui() -> None:
    """Process-wide settings for a responsive UI thread next to busy Python workers.

    - GIL switch interval 2 ms (default 5 ms): a UI thread waiting for the GIL gets it sooner;
    - OpenCV's thread pool one smaller than the core count, leaving a core to the UI (the export's
      encoder also leaves one).
    """
    import os
    import sys

    import cv2

    sys.setswitchinterval(0.002)
    cv2.setNumThreads(max(1, (os.cpu_count() or 2) - 1))
