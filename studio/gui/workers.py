"""Background workers: long jobs and the newest-request-only frame renderer, as Qt signals.

:class:`JobWorker` runs a long job (a generator of ``Progress`` / ``Notice`` events that returns its
result, see :func:`studio.core.events.drive`) or a plain function in a QThread; the UI thread only
receives signals. Progress signals are throttled (at most one every
``min_interval_s``) so a fast job never floods the event loop. :class:`FrameRenderer` renders preview
frames in its own thread and keeps only the newest request (NVlabs stylegan3 ``AsyncRenderer``): while
the playhead is dragged, stale frames are dropped, never queued. When idle during playback it renders
ahead into a small cache, so playback stays smooth when the engine is slower than real time.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Generator

import cv2
import numpy as np
from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtGui import QImage

from studio.core.errors import Cancelled, StudioError
from studio.core.events import CancelToken, Notice, Progress, drive

log = logging.getLogger(__name__)

JobFactory = Callable[[CancelToken], Any]


class JobWorker(QThread):
    """Run ``factory(cancel)`` in a thread and report its events as signals: a long job (generator) is
    driven to its end; anything else the factory returns is the result (so a plain function runs there too).

    Signals:
        progress(fraction 0..1, stage, message); notice(text, level "warning" | "note");
        finished_ok(the job's result); failed(message, hint); cancelled(). Exactly one of the last three is
        emitted.
    """

    progress = Signal(float, str, str)
    notice = Signal(str, str)
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
        last_emit = 0.0

        def on_progress(ev: Progress) -> None:
            nonlocal last_emit
            now = time.perf_counter()
            if now - last_emit >= self._min_interval_s or ev.fraction >= 1.0:
                last_emit = now
                self.progress.emit(float(ev.fraction), ev.stage, ev.message)

        def on_notice(ev: Notice) -> None:
            self.notice.emit(ev.message, ev.level)

        try:
            result = self._factory(self.token)
            if isinstance(result, Generator):
                result = drive(result, on_progress=on_progress, on_notice=on_notice)
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

    A request replaces any request not yet started, so dragging the playhead never queues stale frames
    (NVlabs stylegan3 ``AsyncRenderer`` does the same). Between requests the thread renders ahead of the
    last requested frame, up to ``ahead_frames`` or the end of the play range, into an LRU cache of at most
    ``cache_mb`` MiB of QImages: always while playing, and while paused once no request came for
    ``idle_delay_s`` and the last frame rendered in under ``idle_budget_s`` (a slow engine, e.g. the neural
    one on a CPU, would otherwise make the next scrub wait for a frame nobody asked for). Play from a
    warm cache then shows every frame even when the engine is slower than real time.

    Signals:
        frame_ready(QImage, frame index, generation, render seconds); failed(message);
        cache_changed(): frames were added to or dropped from the cache (throttled; see :meth:`cached_frames`).
    """

    frame_ready = Signal(QImage, int, int, float)
    failed = Signal(str)
    cache_changed = Signal()

    def __init__(self, *, cache_mb: float = 384.0, ahead_frames: int = 100, idle_delay_s: float = 0.3,
                 idle_budget_s: float = 0.25, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("preview-renderer")
        self._cond = threading.Condition()
        self._source: RenderSource | None = None
        self._request: int | None = None
        self._max_side: int | None = None
        self._playing = False
        self._stop_frame: int | None = None
        self._stop = False
        self._cache: OrderedDict[tuple[int, int, int | None], QImage] = OrderedDict()
        self._cache_bytes = 0
        self._cache_budget = int(cache_mb * 2**20)
        self._frame_bytes = 0  # size of the last rendered frame: bounds the look-ahead to what the cache holds
        self._ahead = ahead_frames
        self._idle_delay_s = idle_delay_s
        self._idle_budget_s = idle_budget_s
        # the last few render times: render-ahead while paused uses the fastest (what the engine can do), so
        # one slow frame (a garbage collection, a busy machine) does not switch it off until the next request
        self._render_times: collections.deque[float] = collections.deque(maxlen=5)
        self._last_request_at = 0.0
        self._last_signal_at = 0.0
        self.requests = 0
        self.renders = 0  # frames rendered because they were requested
        self.prefetched = 0  # frames rendered ahead

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

    def set_stop_frame(self, stop: int | None) -> None:
        """Render ahead no further than frame ``stop - 1`` (the end of the play range; None: the clip's end)."""
        with self._cond:
            self._stop_frame = None if stop is None else int(stop)
            self._cond.notify()

    def request(self, k: int) -> None:
        """Ask for frame k; replaces any request not yet started."""
        with self._cond:
            self.requests += 1
            self._request = int(k)
            self._last_request_at = time.monotonic()
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self.wait(5000)

    def cached(self, generation: int, k: int) -> QImage | None:
        """A cached frame, if present (UI thread: used for instant display during playback)."""
        with self._cond:
            return self._cache.get((generation, k, self._max_side))

    def clear_cache(self) -> None:
        """Drop every cached frame."""
        with self._cond:
            self._cache.clear()
            self._cache_bytes = 0
        self.cache_changed.emit()

    def cached_frames(self, generation: int) -> list[int]:
        """Sorted indices of the frames of ``generation`` cached at the current quality."""
        with self._cond:
            side = self._max_side
            return sorted(k for g, k, s in self._cache if g == generation and s == side)

    # -- thread ----------------------------------------------------------------------------------

    def run(self) -> None:
        own_session = None
        own_generation = -1
        anchor = 0  # the last requested frame: render-ahead fills the frames after it
        while True:
            with self._cond:
                while not self._stop and not (self._source is not None and (
                        self._request is not None or (self._may_render_ahead() and self._next_ahead(anchor) is not None))):
                    self._cond.wait(0.05 if self._source is not None and not self._playing else 0.5)
                if self._stop:
                    return
                source, max_side = self._source, self._max_side
                if self._request is not None:
                    k, prefetch = self._request, False
                    anchor = k
                else:
                    k, prefetch = self._next_ahead(anchor), True
                self._request = None
                cached = self._cache.get((source.generation, k, max_side))
                if cached is not None:
                    self._cache.move_to_end((source.generation, k, max_side))
            try:
                if cached is not None:
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
                if prefetch:
                    self.prefetched += 1
                else:
                    self.renders += 1
            except Exception as exc:  # noqa: BLE001
                log.error("preview render failed:\n%s", traceback.format_exc())
                self.failed.emit(str(exc))
                continue
            with self._cond:
                self._render_times.append(dt)
                self._store((source.generation, k, max_side), image)
                now = time.monotonic()
                signal = not prefetch or now - self._last_signal_at >= 0.25 or self._next_ahead(anchor) is None
                if signal:
                    self._last_signal_at = now
            if not prefetch:
                self.frame_ready.emit(image, k, source.generation, dt)
            if signal:
                self.cache_changed.emit()

    def _store(self, key: tuple[int, int, int | None], image: QImage) -> None:
        """(lock held) Add a frame, dropping the least recently used ones beyond the byte budget."""
        old = self._cache.pop(key, None)
        if old is not None:
            self._cache_bytes -= old.sizeInBytes()
        self._cache[key] = image
        self._frame_bytes = image.sizeInBytes()
        self._cache_bytes += self._frame_bytes
        while self._cache_bytes > self._cache_budget and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cache_bytes -= dropped.sizeInBytes()

    def _may_render_ahead(self) -> bool:
        """(lock held) Playing, or paused for a while with an engine fast enough to fill the cache idly."""
        if self._playing:
            return True
        fastest = min(self._render_times, default=0.0)
        return fastest <= self._idle_budget_s and time.monotonic() - self._last_request_at >= self._idle_delay_s

    def _next_ahead(self, anchor: int) -> int | None:
        """(lock held) The next frame after ``anchor`` not yet cached, within the look-ahead window (no
        longer than what the cache holds, so the look-ahead never evicts its own frames)."""
        src = self._source
        if src is None:
            return None
        window = self._ahead
        if self._frame_bytes:
            window = min(window, self._cache_budget // self._frame_bytes - 2)
        stop = src.controls.n_frames if self._stop_frame is None else min(self._stop_frame, src.controls.n_frames)
        for k in range(anchor + 1, min(stop, anchor + 1 + window)):
            if (src.generation, k, self._max_side) not in self._cache:
                return k
        return None
