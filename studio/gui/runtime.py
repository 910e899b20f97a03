"""Keep the UI thread's pauses short: full garbage collections of a heap this size stall it.

After start-up the process holds hundreds of thousands of long-lived objects (torch, MediaPipe, Qt and
pyqtgraph internals); CPython's oldest-generation collection walks all of them and was measured at
100-240 ms here, long enough to freeze the window in the middle of an export. ``gc.freeze()`` moves
everything alive now into a permanent generation that collections skip; later garbage is still collected.
"""

from __future__ import annotations

import gc


def freeze_heap() -> None:
    """Collect once, then exempt every surviving object from future collections' scans."""
    gc.collect()
    gc.freeze()
