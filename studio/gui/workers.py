"""Background workers: long generators and the newest-request-only frame renderer, as Qt signals.

:class:`JobWorker` runs any generator of the engine's events (``Progress``, ``Notice``, a result) in a
QThread; the UI thread only receives signals. Progress signals are throttled (at most one every
``min_interval_s``) so a fast job never floods the event loop. :class:`FrameRenderer` renders preview
frames in its own thread and keeps only the newest request (NVlabs stylegan3 ``AsyncRenderer``): while
the playhead is dragged, stale frames are dropped, never queued. When idle during playback it renders
ahead into a small cache, so playback stays smooth when the engine is slower than real time.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import cv2
import numpy as np
from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtGui import QImage

from studio.core.errors import Cancelled, StudioError
from studio.core.progress import CancelToken, Progress
from studio.engine.pipeline import Notice

log = logging.getLogger(__name__)

JobFactory = Callable[[CancelToken], Iterator[Any]]


class JobWorker(QThread):
    """Run ``factory(cancel)`` (a generator) in a thread and report its events as signals.

    Signals:
        progress(fraction 0..1, stage, message); notice(text); finished_ok(last non-progress event);
        failed(message, hint); cancelled(). Exactly one of the last three is emitted.
    """

    progress = Signal(float, str, str)
    notice = Signal(str)
    finished_ok = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()

    def __init__(self, factory: JobFactory, *, name: str = "job", min_interval_s: float = 0.05,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self._factory = factory
        self._min_interval_s = min_interval_s
        self.token = CancelToken()
        self.started_at = 0.0

    def cancel(self) -> None:
        """Ask the job to stop at its next check (thread-safe)."""
        self.token.cancel()

    def run(self) -> None:  # noqa: D401 - QThread API
        self.started_at = time.perf_counter()
        result = None
        last_emit = 0.0
        try:
            for ev in self._factory(self.token):
                if isinstance(ev, Progress):
                    now = time.perf_counter()
                    if now - last_emit >= self._min_interval_s or ev.fraction >= 1.0:
                        last_emit = now
                        self.progress.emit(float(ev.fraction), ev.stage, ev.message)
                elif isinstance(ev, Notice):
                    self.notice.emit(ev.message)
                else:
                    result = ev
            self.token.raise_if_cancelled()
        except Cancelled:
            self.cancelled.emit()
            return
        except StudioError as exc:
            self.failed.emit(exc.message, exc.hint)
            return
        except Exception as exc:  # noqa: BLE001 - report, never crash the studio
            log.error("job %s failed:\n%s", self.objectName(), traceback.format_exc())
            self.failed.emit(f"{type(exc).__name__}: {exc}", "this is a bug; please report it with the log")
            return
        self.finished_ok.emit(result)


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """A QImage that owns a copy of an (H, W, 3) uint8 RGB array."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


@dataclass(frozen=True)
class RenderSource:
    """What the preview renders: a session, the control track to drive it, and a generation number
    (bumped whenever session or controls change, so cached frames of an older one are never shown)."""

    session: Any
    controls: Any
    generation: int


class FrameRenderer(QThread):
    """Preview frames in a background thread, newest request only, with a render-ahead cache.

    Signals:
        frame_ready(QImage, frame index, generation, render seconds); failed(message).
    """

    frame_ready = Signal(QImage, int, int, float)
    failed = Signal(str)

    def __init__(self, *, cache_frames: int = 64, ahead_frames: int = 25, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("preview-renderer")
        self._cond = threading.Condition()
        self._source: RenderSource | None = None
        self._request: int | None = None
        self._max_side: int | None = None
        self._playing = False
        self._stop = False
        self._cache: OrderedDict[tuple[int, int, int | None], QImage] = OrderedDict()
        self._cache_frames = cache_frames
        self._ahead = ahead_frames
        self.requests = 0
        self.renders = 0

    # -- called from the UI thread ---------------------------------------------------------------

    def set_source(self, source: RenderSource | None) -> None:
        with self._cond:
            self._source = source
            self._cond.notify()

    def set_quality(self, max_side: int | None) -> None:
        """Longest side of preview frames in pixels (None: full resolution)."""
        with self._cond:
            self._max_side = max_side
            self._cond.notify()

    def set_playing(self, playing: bool) -> None:
        with self._cond:
            self._playing = playing
            self._cond.notify()

    def request(self, k: int) -> None:
        """Ask for frame k; replaces any request not yet started."""
        with self._cond:
            self.requests += 1
            self._request = int(k)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self.wait(5000)

    # -- thread ----------------------------------------------------------------------------------

    def run(self) -> None:
        own_session = None
        own_generation = -1
        anchor = 0  # the last requested frame: render-ahead fills the frames after it
        while True:
            with self._cond:
                while not self._stop and self._source is not None and self._request is None and not (
                        self._playing and self._next_ahead(anchor) is not None):
                    self._cond.wait(0.5)
                if self._stop:
                    return
                source, max_side = self._source, self._max_side
                if source is None:
                    self._cond.wait(0.5)
                    continue
                if self._request is not None:
                    k, prefetch = self._request, False
                    anchor = k
                else:
                    k, prefetch = self._next_ahead(anchor), True
                self._request = None
                if k is None:
                    continue
                cached = self._cache.get((source.generation, k, max_side))
            try:
                if cached is not None:
                    if not prefetch:
                        self.frame_ready.emit(cached, k, source.generation, 0.0)
                    continue
                if own_generation != source.generation:
                    own_session = source.session.with_controls(source.controls)
                    own_generation = source.generation
                if not 0 <= k < own_session.n_frames:
                    continue
                t0 = time.perf_counter()
                frame = own_session.render_frame(k)
                if max_side is not None and max(frame.shape[:2]) > max_side:
                    s = max_side / max(frame.shape[:2])
                    frame = cv2.resize(frame, (round(frame.shape[1] * s), round(frame.shape[0] * s)),
                                       interpolation=cv2.INTER_AREA)
                image = rgb_to_qimage(frame)
                dt = time.perf_counter() - t0
                self.renders += 1
            except Exception as exc:  # noqa: BLE001
                log.error("preview render failed:\n%s", traceback.format_exc())
                self.failed.emit(str(exc))
                continue
            with self._cond:
                key = (source.generation, k, max_side)
                self._cache[key] = image
                self._cache.move_to_end(key)
                while len(self._cache) > self._cache_frames:
                    self._cache.popitem(last=False)
            if not prefetch:
                self.frame_ready.emit(image, k, source.generation, dt)

    def _next_ahead(self, anchor: int) -> int | None:
        """(lock held) The next frame after ``anchor`` not yet cached, within the look-ahead window."""
        src = self._source
        if src is None:
            return None
        n = src.controls.n_frames
        for k in range(anchor + 1, min(n, anchor + 1 + self._ahead)):
            if (src.generation, k, self._max_side) not in self._cache:
                return k
        return None

    def cached(self, generation: int, k: int) -> QImage | None:
        """A cached frame, if present (UI thread: used for instant display during playback)."""
        with self._cond:
            return self._cache.get((generation, k, self._max_side))
