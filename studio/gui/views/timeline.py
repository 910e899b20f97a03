"""Audio timeline (pyqtgraph): waveform, time ruler, playhead, phoneme/viseme lane and in/out range.

- The waveform is drawn from a :class:`~studio.app.analysis.WaveformPyramid`: each redraw takes about two
  min/max buckets per pixel of the visible span, so a 10-minute clip pans and zooms as fluidly as 2 s.
- Wheel or right-drag zooms, middle- or Shift-drag pans, a left click or drag seeks; the playhead line can
  be dragged too. The in/out range is a shaded region whose edges are dragged (or set with I / O).
- Dropping an audio or video file on the timeline replaces the speech (an undoable edit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QGraphicsItem, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

from studio.app.analysis import PhoneSegment, WaveformPyramid
from studio.media.kinds import is_audio, is_video
from studio.gui.views.common import ACCENT, FileDropTarget, MessageLabel, format_time

#: Rhubarb viseme classes -> lane colours.
VISEME_COLORS = {
    "A": "#5b8def", "B": "#49b6a4", "C": "#e0a03a", "D": "#e06a3a", "E": "#b46bd6",
    "F": "#d65b8f", "G": "#7cbf4f", "H": "#c9c24a", "X": "#3a3f4b",
}
PLAYHEAD_COLOR = "#ffd166"
MAX_LABELS = 120
CACHE_COLOR = "#4fd18b"


class SeekViewBox(pg.ViewBox):
    """A time-axis view box: left click/drag seeks; wheel/right-drag zoom x; middle/Shift-drag pans."""

    seek = Signal(float)

    def __init__(self) -> None:
        super().__init__(enableMenu=False)
        self.setMouseEnabled(x=True, y=False)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph API
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.seek.emit(float(self.mapSceneToView(ev.scenePos()).x()))
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - pyqtgraph API
        if ev.button() == Qt.MouseButton.LeftButton and not ev.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            ev.accept()
            self.seek.emit(float(self.mapSceneToView(ev.scenePos()).x()))
        else:
            super().mouseDragEvent(ev, axis)


class _RangeRegion(pg.LinearRegionItem):
    """The in/out range: its edges move, its body does not (a drag inside it seeks)."""

    def mouseDragEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph API
        ev.ignore()


class TimelineView(QWidget):
    """The Timeline dock's content.

    Signals:
        seek_requested(seconds); range_edited((in, out) seconds or None); audio_dropped(path);
        play_toggled().
    """

    seek_requested = Signal(float)
    range_edited = Signal(object)
    audio_dropped = Signal(Path)
    play_toggled = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.pyramid: WaveformPyramid | None = None
        self.duration = 0.0
        self.playhead = 0.0
        self.segments: list[PhoneSegment] = []

        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setBackground("#15171c")
        self.plots.setMinimumHeight(150)
        self.wave = self.plots.addPlot(row=0, col=0, viewBox=SeekViewBox())
        self.lane = self.plots.addPlot(row=1, col=0, viewBox=SeekViewBox())
        self.plots.ci.layout.setRowStretchFactor(0, 4)
        self.plots.ci.layout.setRowStretchFactor(1, 1)
        self.lane.setXLink(self.wave)
        for plot in (self.wave, self.lane):
            plot.hideButtons()
            plot.getAxis("left").setWidth(44)
            for axis in ("left", "top", "bottom"):
                plot.getAxis(axis).enableAutoSIPrefix(False)
            plot.vb.seek.connect(self.seek_requested)
        self.wave.hideAxis("bottom")
        self.wave.showAxis("top")
        self.wave.getAxis("top").setLabel("time (s)")
        self.wave.setYRange(-1, 1, padding=0.02)
        self.wave.getAxis("left").setTicks([[(0, "0")]])
        self.wave.getAxis("left").setLabel("speech")
        self.lane.setYRange(0, 1, padding=0)
        self.lane.getAxis("left").setTicks([[]])
        self.lane.getAxis("left").setLabel("phones")  # as "speech" above it: a rotated axis title that fits
        for plot in (self.wave, self.lane):  # one width, so the two lanes' time axes line up
            plot.getAxis("left").setWidth(44)
        self.lane.hideAxis("bottom")
        self.lane.setMaximumHeight(56)

        self.curve = pg.PlotCurveItem(connect="pairs", pen=pg.mkPen("#6fb3ff", width=1))
        self.wave.addItem(self.curve)
        self.placeholder = pg.TextItem("Drop a speech recording (audio or video file) here", color="#8a93a3",
                                       anchor=(0.5, 0.5))
        self.wave.addItem(self.placeholder)
        self.region = _RangeRegion(brush=pg.mkBrush(74, 163, 255, 40), pen=pg.mkPen(ACCENT, width=2),
                                   hoverBrush=pg.mkBrush(74, 163, 255, 60))
        self.region.setZValue(-5)
        self.region.hide()
        self.region.sigRegionChangeFinished.connect(self._region_finished)
        self.wave.addItem(self.region)
        # frames in the preview's render-ahead cache: a strip along the bottom of the waveform
        self.cache_strip = pg.PlotCurveItem(connect="pairs", pen=pg.mkPen(CACHE_COLOR, width=3))
        self.cache_strip.setToolTip("preview frames rendered ahead (cached)")
        self.wave.addItem(self.cache_strip)
        self.cached_spans: list[tuple[float, float]] = []
        self.bars = pg.BarGraphItem(x0=[], width=[], height=[], y0=[], brushes=[])
        self.lane.addItem(self.bars)
        # drawn once into pixmaps: the playhead moving over them every frame of playback then costs a blit, not a
        # redraw of every line (QPainter.drawLines took a third of the UI thread while playing a 60 s clip)
        for item in (self.curve, self.cache_strip, self.bars):
            item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self._labels: list[pg.TextItem] = []
        self.head = pg.InfiniteLine(0, movable=True, pen=pg.mkPen(PLAYHEAD_COLOR, width=2),
                                    hoverPen=pg.mkPen("#fff1b8", width=3))
        self.head.sigDragged.connect(lambda line: self.seek_requested.emit(float(line.value())))
        self.wave.addItem(self.head, ignoreBounds=True)  # the playhead never changes the view's range
        self.lane_head = pg.InfiniteLine(0, movable=False, pen=pg.mkPen(PLAYHEAD_COLOR, width=2))
        self.lane.addItem(self.lane_head, ignoreBounds=True)  # the playhead never changes the view's range
        self.wave.vb.sigXRangeChanged.connect(self._redraw)
        self.wave.vb.sigResized.connect(self._redraw)

        self.play = QPushButton("▶ Play")
        self.play.setToolTip("Play / pause (Space)")
        self.play.setMinimumWidth(90)
        self.play.clicked.connect(self.play_toggled)
        self.time_label = QLabel("0:00.00 / 0:00.00")
        self.time_label.setMinimumWidth(150)
        self.time_label.setStyleSheet("font-family:monospace;")
        self.in_btn = self._tool("In", "Set the in point at the playhead (I)", lambda: self.set_edge(0))
        self.out_btn = self._tool("Out", "Set the out point at the playhead (O)", lambda: self.set_edge(1))
        self.clear_btn = self._tool("Clear range", "Export and play the whole clip", lambda: self.range_edited.emit(None))
        self.fit_btn = self._tool("Fit", "Zoom to the whole clip", self.zoom_to_fit)
        self.range_label = QLabel("")
        self.range_label.setStyleSheet("color:#8a93a3;")
        bar = QHBoxLayout()
        bar.addWidget(self.play)
        bar.addWidget(self.time_label)
        bar.addSpacing(12)
        for w in (self.in_btn, self.out_btn, self.clear_btn, self.range_label):
            bar.addWidget(w)
        bar.addStretch(1)
        self.plots.setToolTip("Click or drag to seek · wheel or right-drag to zoom · middle- or Shift-drag to pan · "
                              "drag the range edges to trim · drop an audio or video file to replace the speech")
        bar.addWidget(self.fit_btn)
        # a problem with the speech (failed load, truncated file) stays here until dismissed or replaced
        self.message = MessageLabel()
        self.dismiss = QToolButton()
        self.dismiss.setText("✕")
        self.dismiss.setToolTip("Dismiss this message")
        self.dismiss.setAutoRaise(True)
        self.dismiss.hide()
        self.dismiss.clicked.connect(self.clear_message)
        msg_row = QHBoxLayout()
        msg_row.addWidget(self.message, 1)
        msg_row.addWidget(self.dismiss, 0, Qt.AlignmentFlag.AlignTop)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(bar)
        lay.addLayout(msg_row)
        lay.addWidget(self.plots, 1)

        self.drop = FileDropTarget(self.plots.viewport(), lambda p: is_audio(p) or is_video(p), self.audio_dropped.emit)
        self.set_waveform(None)

    @staticmethod
    def _tool(text: str, tip: str, slot) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setToolTip(tip)
        b.clicked.connect(slot)
        return b

    # -- content -----------------------------------------------------------------------------------

    def set_waveform(self, pyramid: WaveformPyramid | None) -> None:
        """Show a new speech clip (None: empty timeline with the drop hint)."""
        self.pyramid = pyramid
        self.duration = 0.0 if pyramid is None else pyramid.duration
        self.placeholder.setVisible(pyramid is None)
        span = self.duration if self.duration > 0 else 10.0
        self.placeholder.setPos(span / 2, 0)
        peak = 1.0 if pyramid is None else max(0.05, float(max(-pyramid.levels[-1][0][0], pyramid.levels[-1][1][0])))
        self.wave.setYRange(-peak, peak, padding=0.05)  # normalised view: quiet recordings stay readable
        for plot in (self.wave, self.lane):
            plot.vb.setLimits(xMin=-0.02 * span, xMax=span * 1.02, minXRange=min(0.05, span))
        self.zoom_to_fit()
        self._redraw()

    def set_phones(self, segments: list[PhoneSegment]) -> None:
        """The phoneme lane: one bar per phone, coloured by its viseme class."""
        self.segments = segments
        if segments:
            x0 = np.array([s.start_s for s in segments])
            width = np.array([max(1e-3, s.end_s - s.start_s) for s in segments])
            brushes = [pg.mkBrush(VISEME_COLORS.get(s.viseme, "#555")) for s in segments]
            self.bars.setOpts(x0=x0, width=width * 0.98, height=np.ones(len(segments)) * 0.9,
                              y0=np.full(len(segments), 0.05), brushes=brushes, pen=None)
        else:
            self.bars.setOpts(x0=[], width=[], height=[], y0=[], brushes=[])
        self._redraw()

    def zoom_to_fit(self) -> None:
        span = self.duration if self.duration > 0 else 10.0
        self.wave.setXRange(0, span, padding=0.01)

    def set_playhead(self, t: float) -> None:
        self.playhead = t
        for line in (self.head, self.lane_head):
            line.blockSignals(True)
            line.setValue(t)
            line.blockSignals(False)
        self.time_label.setText(f"{format_time(t)} / {format_time(self.duration)}")

    def set_range(self, range_s: tuple[float, float] | None) -> None:
        self.region.blockSignals(True)
        if range_s is None:
            self.region.hide()
            self.range_label.setText("")
        else:
            self.region.setRegion(range_s)
            self.region.show()
            self.range_label.setText(f"{format_time(range_s[0])} – {format_time(range_s[1])}")
        self.region.blockSignals(False)

    def set_cached(self, frames, fps: float) -> None:
        """Mark the cached preview frames (indices, any order) as spans along the waveform's bottom edge."""
        k = np.unique(np.asarray(frames, dtype=np.int64))
        spans: list[tuple[float, float]] = []
        if k.size:
            breaks = np.flatnonzero(np.diff(k) > 1)
            starts, ends = np.r_[k[0], k[breaks + 1]], np.r_[k[breaks], k[-1]] + 1
            spans = [(a / fps, b / fps) for a, b in zip(starts.tolist(), ends.tolist())]
        self.cached_spans = spans
        x = np.asarray(spans, dtype=float).ravel()
        self.cache_strip.setData(x, np.full(x.shape, -0.97))

    def show_message(self, text: str, hint: str = "", *, kind: str = "error") -> None:
        """Show a problem with the speech above the waveform until :meth:`clear_message` (or ✕)."""
        self.message.show_message(text, hint, kind=kind)
        self.dismiss.setVisible(bool(text))

    def clear_message(self) -> None:
        self.message.clear_message()
        self.dismiss.hide()

    def set_playing(self, playing: bool) -> None:
        self.play.setText("❚❚ Pause" if playing else "▶ Play")

    # -- internals ---------------------------------------------------------------------------------

    def set_edge(self, which: int) -> None:
        if self.duration <= 0:
            return
        a, b = self.region.getRegion() if self.region.isVisible() else (0.0, self.duration)
        a, b = (self.playhead, b) if which == 0 else (a, self.playhead)
        if b - a < 0.04:
            a, b = (a, self.duration) if which == 0 else (0.0, b)
        self.range_edited.emit((round(a, 3), round(b, 3)))

    def _region_finished(self) -> None:
        a, b = self.region.getRegion()
        a, b = max(0.0, a), min(self.duration, b)
        self.range_edited.emit((round(a, 3), round(b, 3)) if b - a >= 0.04 else None)

    def _redraw(self, *_args) -> None:
        if self.pyramid is None:
            self.curve.setData([], [])
            return
        t0, t1 = self.wave.vb.viewRange()[0]
        px = max(200, int(self.wave.vb.width()))
        t, lo, hi = self.pyramid.envelope(t0, t1, max_buckets=px)
        self.curve.setData(np.repeat(t, 2), np.column_stack([lo, hi]).ravel())
        self._update_labels(t0, t1)

    def _update_labels(self, t0: float, t1: float) -> None:
        """Label the phones of the visible span whose segment is wide enough on screen for the text."""
        px_per_s = max(1.0, float(self.lane.vb.width())) / max(t1 - t0, 1e-6)
        char_px = QFontMetrics(self.font()).horizontalAdvance("M")
        visible = [s for s in self.segments if s.end_s > t0 and s.start_s < t1 and s.phone not in ("SIL", "sil")
                   and (s.end_s - s.start_s) * px_per_s >= char_px * len(s.phone) + 4]
        show = visible if len(visible) <= MAX_LABELS else []
        while len(self._labels) < len(show):
            item = pg.TextItem("", color="#f0f0f0", anchor=(0.5, 0.5))
            self.lane.addItem(item)
            self._labels.append(item)
        for item, seg in zip(self._labels, show):
            item.setText(seg.phone)
            item.setPos((seg.start_s + seg.end_s) / 2, 0.5)
            item.show()
        for item in self._labels[len(show):]:
            item.hide()
