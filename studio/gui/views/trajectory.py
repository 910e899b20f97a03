"""Latent trajectory viewer (pyqtgraph): the control channels over time and a 2-D map of the frames.

For the lite engine the trajectory is its control track: mouth (jaw, lip opening, spread/rounding),
head (yaw/pitch/roll in degrees) and eyes (blinks). The right plot projects every frame's code onto its
two leading principal components, with the current frame highlighted. A playhead follows the timeline.

Dragging a point of a channel up or down sets a keyframe override at that time (stored in the document,
undoable); a click elsewhere seeks. Diamonds mark the keyframes.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGraphicsItem, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from studio.app.analysis import TRAJECTORY_GROUPS, project_2d
from studio.core.tracks import ControlTrack
from studio.gui.views.timeline import PLAYHEAD_COLOR, SeekViewBox

CHANNEL_COLORS = ("#6fb3ff", "#ff8c69", "#7fdc8a", "#b388ff")  # one per channel of the widest group
LEGEND_COLUMNS = 3
LEGEND_HEADROOM = 0.4  # y range above the highest value per legend row, as a fraction of the data span
PICK_TOLERANCE = 0.12  # fraction of the visible y span within which a press grabs a channel


#: shades of the time colour scale of the 2-D map's dots
MAP_COLOURS = 24

class KeyframeViewBox(SeekViewBox):
    """Left-drag near a channel curve sets its value at the pressed time; elsewhere left click/drag seeks
    (as on the timeline).

    Signals:
        seek(seconds); keyframe(channel, seconds, value, finished).
    """

    keyframe = Signal(str, float, float, bool)

    def __init__(self, picker) -> None:
        super().__init__()
        self._picker = picker  # (t, y, y_span) -> channel name or None
        self._drag: tuple[str, float] | None = None

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - pyqtgraph API
        if ev.button() != Qt.MouseButton.LeftButton or ev.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            pg.ViewBox.mouseDragEvent(self, ev, axis)  # pan, not the timeline's seek
            return
        ev.accept()
        pos = self.mapSceneToView(ev.scenePos())
        if ev.isStart():
            down = self.mapSceneToView(ev.buttonDownScenePos())
            (y0, y1) = self.viewRange()[1]
            channel = self._picker(float(down.x()), float(down.y()), y1 - y0)
            self._drag = None if channel is None else (channel, float(down.x()))
        if self._drag is None:
            self.seek.emit(float(pos.x()))
            return
        channel, t = self._drag
        self.keyframe.emit(channel, t, float(pos.y()), bool(ev.isFinish()))
        if ev.isFinish():
            self._drag = None


class ChannelPlot:
    """One lane of the viewer: a group of channels with their curves, keyframe marks and playhead."""

    def __init__(self, layout: pg.GraphicsLayout, row: int, title: str, unit: str, channels: tuple[str, ...],
                 viewer: "TrajectoryView") -> None:
        self.channels = channels
        self.viewer = viewer
        self.vb = KeyframeViewBox(lambda t, y, span: viewer.pick(channels, t, y, span))
        self.plot = layout.addPlot(row=row, col=0, viewBox=self.vb)
        self.plot.hideButtons()
        self.plot.setLabel("left", title, units=None)
        self.plot.getAxis("left").setWidth(52)
        self.plot.getAxis("left").setToolTip(unit)
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).enableAutoSIPrefix(False)
        # one legend row along the top; set_data leaves headroom above the curves for it
        self.legend_rows = -(-len(channels) // LEGEND_COLUMNS)
        self.plot.addLegend(offset=(4, 1), labelTextSize="8pt", brush=pg.mkBrush(21, 23, 28, 170),
                            colCount=LEGEND_COLUMNS, verSpacing=-6)
        self.curves = {}
        for name, color in zip(channels, CHANNEL_COLORS):
            curve = self.plot.plot([], [], pen=pg.mkPen(color, width=1.5), name=name)
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
            # drawn once into a pixmap: the playhead line moving over it every frame then costs a blit, not a
            # redraw of every point (which made playback of a 60 s clip drop frames)
            curve.curve.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)  # the item that draws
            self.curves[name] = curve
        self.keys = pg.ScatterPlotItem(symbol="d", size=10, pen=pg.mkPen("#ffffff"), brush=pg.mkBrush("#ffd166"))
        self.ghost = pg.ScatterPlotItem(symbol="o", size=11, pen=pg.mkPen("#ffffff", width=2), brush=None)
        self.head = pg.InfiniteLine(0, movable=False, pen=pg.mkPen(PLAYHEAD_COLOR, width=1.5))
        for item in (self.keys, self.ghost):
            self.plot.addItem(item)
        self.plot.addItem(self.head, ignoreBounds=True)  # moving it must not re-range (and repaint) the lane
        self.vb.seek.connect(viewer.seek_requested)
        self.vb.keyframe.connect(viewer._on_keyframe_drag)

    def clear(self) -> None:
        for curve in self.curves.values():
            curve.setData([], [])
        self.keys.setData([], [])

    def set_data(self, t: np.ndarray, track: ControlTrack, keyframes) -> None:
        spots_x, spots_y = [], []
        for name, curve in self.curves.items():
            if name in track.channels:
                curve.setData(t, track.channel(name))
            for kt, kv in keyframes.get(name, ()):
                spots_x.append(kt)
                spots_y.append(kv)
        self.keys.setData(spots_x, spots_y)
        values = [track.channel(n) for n in self.curves if n in track.channels] + [np.asarray(spots_y, float)]
        values = np.concatenate([v.ravel() for v in values]) if values else np.zeros(0)
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        if hi - lo < 0.2:  # a flat channel (e.g. no emotion) sits mid-lane, not on the lane's edge
            lo, hi = (lo + hi) / 2 - 0.1, (lo + hi) / 2 + 0.1
        span = hi - lo
        self.plot.setYRange(lo - 0.06 * span, hi + LEGEND_HEADROOM * self.legend_rows * span, padding=0)


class TrajectoryView(QWidget):
    """The Trajectory dock's content.

    Signals:
        seek_requested(seconds); keyframe_set(channel, seconds, value) when a drag ends.
    """

    seek_requested = Signal(float)
    keyframe_set = Signal(str, float, float)
    clear_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.track: ControlTrack | None = None
        self.projection = np.zeros((0, 2))
        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setBackground("#15171c")
        self.lanes = [ChannelPlot(self.plots.ci, row, title, unit, chans, self)
                      for row, (title, unit, chans) in enumerate(TRAJECTORY_GROUPS)]
        for lane in self.lanes[1:]:
            lane.plot.setXLink(self.lanes[0].plot)
        for lane in self.lanes[:-1]:
            lane.plot.hideAxis("bottom")
        self.lanes[-1].plot.setLabel("bottom", "time (s)")
        self.map = self.plots.addPlot(row=0, col=1, rowspan=len(self.lanes), title="frames, PCA 2-D")
        self.map.hideButtons()
        self.map.setAspectLocked(False)
        self.map.hideAxis("left")
        self.map.hideAxis("bottom")
        self.map.setMouseEnabled(False, False)
        self.plots.ci.layout.setColumnStretchFactor(0, 3)
        self.plots.ci.layout.setColumnStretchFactor(1, 1)
        self.path = pg.PlotCurveItem(pen=pg.mkPen(120, 130, 150, 70))
        self.dots = pg.ScatterPlotItem(size=4, pen=None)
        self.current = pg.ScatterPlotItem(size=14, pen=pg.mkPen("#ffffff", width=2), brush=pg.mkBrush(PLAYHEAD_COLOR))
        for item in (self.path, self.dots, self.current):
            self.map.addItem(item)
        for item in (self.path, self.dots):  # static while playing: cached (see the curves above)
            item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        # neural engine only: leading PCA coefficients h_t and the per-layer W+ displacement norms
        row = len(self.lanes)
        self.latent_plot = self.plots.addPlot(row=row, col=0, title=None)
        self.latent_plot.setLabel("left", "W+ h_t")
        self.latent_plot.getAxis("left").setWidth(52)
        self.latent_plot.addLegend(offset=(4, 1), labelTextSize="8pt", brush=pg.mkBrush(21, 23, 28, 170),
                                   colCount=3, verSpacing=-6)
        self.latent_curves = [self.latent_plot.plot([], [], pen=pg.mkPen(c, width=1.5), name=f"h{i + 1}")
                              for i, c in enumerate(CHANNEL_COLORS[:3])]
        self.norm_plot = self.plots.addPlot(row=row + 1, col=0)
        self.norm_plot.setLabel("left", "layer |Δw|")
        self.norm_plot.getAxis("left").setWidth(52)
        self.norm_image = pg.ImageItem()
        self.norm_image.setColorMap(pg.colormap.get("inferno"))
        self.norm_plot.addItem(self.norm_image)
        self.latent_heads = [pg.InfiniteLine(0, movable=False, pen=pg.mkPen(PLAYHEAD_COLOR, width=1.5))
                             for _ in range(2)]
        for plot, head in zip((self.latent_plot, self.norm_plot), self.latent_heads):
            plot.hideButtons()
            plot.setXLink(self.lanes[0].plot)
            plot.addItem(head, ignoreBounds=True)
            plot.hide()
        self.latents: tuple[np.ndarray, np.ndarray] | None = None

        self.info = QLabel("lite engine · control channels")
        self.info.setToolTip("The lite engine's trajectory is its control track. With the neural engine this view "
                             "shows the leading PCA coefficients h_t and the per-layer W+ displacement norms.")
        self.info.setStyleSheet("color:#8a93a3;")
        self.plots.setToolTip("Drag a point of a curve up or down to set a keyframe; click to seek; "
                              "wheel to zoom in time")
        clear = QToolButton()
        clear.setText("Clear keyframes")
        clear.setToolTip("Remove every keyframe override (undoable)")
        clear.clicked.connect(self.clear_requested)
        hint = QLabel("drag a curve: keyframe")
        hint.setStyleSheet("color:#8a93a3;")
        bar = QHBoxLayout()
        self.info.setMinimumWidth(40)
        bar.addWidget(self.info, 1)
        bar.addWidget(hint)
        bar.addWidget(clear)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(bar)
        lay.addWidget(self.plots, 1)

    # -- content -----------------------------------------------------------------------------------

    def set_track(self, track: ControlTrack | None, keyframes) -> None:
        """Show a control track (None: clear) with the document's keyframes (channel -> ((s, v), ...))."""
        self.track = track
        if track is None:
            for lane in self.lanes:
                lane.clear()
            for item in (self.path, self.dots, self.current):
                item.setData([], [])
            return
        t = np.arange(track.n_frames) / track.fps
        for lane in self.lanes:
            lane.set_data(t, track, keyframes)
        self.lanes[0].plot.setXRange(0, max(t[-1], 0.1) if len(t) else 1.0, padding=0.01)
        if self.latents is not None and len(self.latents[0]) == track.n_frames:
            return  # the 2-D map shows the W+ codes (set_latents)
        self.projection = project_2d(track.values)
        self._show_map(self.projection)

    def set_latents(self, summary: tuple[np.ndarray, np.ndarray] | None, fps: float = 25.0) -> None:
        """Show the neural engine's W+ trajectory: summary = (h (T, 3), per-layer norms (T, L)); None hides it
        (the lite engine) and the 2-D map goes back to the control channels."""
        self.latents = summary
        visible = summary is not None and len(summary[0]) > 0
        for plot in (self.latent_plot, self.norm_plot):
            plot.setVisible(visible)
        self.info.setText("neural · W+ trajectory" if visible else "lite engine · control channels")
        if not visible:
            return
        h, norms = summary
        t = np.arange(len(h)) / fps
        for i, curve in enumerate(self.latent_curves):
            curve.setData(t, h[:, i]) if i < h.shape[1] else curve.setData([], [])
        self.norm_image.setImage(norms, autoLevels=True)
        self.norm_image.setRect(0.0, 0.0, len(norms) / fps, float(norms.shape[1]))
        self.norm_plot.setYRange(0, norms.shape[1], padding=0)
        self.projection = project_2d(np.c_[h, norms])
        self._show_map(self.projection)

    def _show_map(self, p: np.ndarray) -> None:
        """Draw the 2-D map: the path and its dots coloured by time. The colours come from a palette of
        :data:`MAP_COLOURS` shades, so pyqtgraph renders a few dot symbols instead of one per frame (1500
        distinct brushes cost the UI thread ~0.2 s for a 60 s clip)."""
        self.path.setData(p[:, 0], p[:, 1])
        palette = pg.colormap.get("viridis").map(np.linspace(0, 1, MAP_COLOURS), mode="qcolor")
        brushes = [pg.mkBrush(c) for c in palette]
        shade = (np.arange(len(p)) * MAP_COLOURS // max(len(p), 1)).clip(0, MAP_COLOURS - 1)
        self.dots.setData(p[:, 0], p[:, 1], brush=[brushes[i] for i in shade])

    def set_playhead(self, t: float) -> None:
        for head in self.latent_heads:
            head.setValue(t)
        for lane in self.lanes:
            lane.head.setValue(t)
        if self.track is not None and len(self.projection):
            k = min(max(int(t * self.track.fps), 0), len(self.projection) - 1)
            self.current.setData([self.projection[k, 0]], [self.projection[k, 1]])

    # -- keyframe dragging -------------------------------------------------------------------------

    def pick(self, channels: tuple[str, ...], t: float, y: float, y_span: float) -> str | None:
        """The channel of ``channels`` whose curve passes nearest to (t, y), within the tolerance."""
        if self.track is None or self.track.n_frames == 0:
            return None
        k = min(max(int(round(t * self.track.fps)), 0), self.track.n_frames - 1)
        best = None
        for name in channels:
            if name in self.track.channels:
                d = abs(float(self.track.channel(name)[k]) - y)
                if d <= PICK_TOLERANCE * y_span and (best is None or d < best[0]):
                    best = (d, name)
        return None if best is None else best[1]

    def _on_keyframe_drag(self, channel: str, t: float, value: float, finished: bool) -> None:
        lane = next(lane for lane in self.lanes if channel in lane.channels)
        if finished:
            lane.ghost.setData([], [])
            if self.track is not None:
                t = min(max(0.0, round(t * self.track.fps) / self.track.fps), (self.track.n_frames - 1) / self.track.fps)
                self.keyframe_set.emit(channel, t, value)
        else:
            lane.ghost.setData([t], [value])
