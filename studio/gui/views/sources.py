"""Pose and emotion source pickers, blink mode and render options (fps, seed, transcript).

Each :class:`SourcePicker` offers None / the presets / "From video…" (or a dropped video), an intensity
slider and a thumbnail of the chosen source; they edit the document fields that become the engine's
``RenderSettings.pose`` / ``pose_intensity`` and ``emotion`` / ``emotion_source`` / ``emotion_intensity``.
Slider drags merge into one undo step per drag.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QSlider, QSpinBox, QVBoxLayout, QWidget)

from studio.media.kinds import IMAGE_SUFFIXES, VIDEO_SUFFIXES, file_filter, is_image, is_video
from studio.app.jobs import source_thumbnail
from studio.app.project import ProjectState
from studio.engine.settings import MAX_FPS, MAX_MOUTH_INTENSITY, MAX_MOUTH_OFFSET_MS, MIN_FPS
from studio.engine.sources.settings import BLINK_MODES, EMOTIONS, MAX_POSE_INTENSITY, POSE_PRESETS
from studio.gui import commands
from studio.gui.commands import DocumentModel, SetFields
from studio.gui.views.common import FileDropTarget
from studio.gui.workers import JobWorker, rgb_to_qimage

FROM_FILE = "__file__"
VIDEO_FILTER = file_filter("Videos", VIDEO_SUFFIXES)


@dataclass(frozen=True)
class SourceSpec:
    """How one picker maps to the document.

    Attributes:
        title: group title. presets: (label, value) pairs, the first being "None".
        file_label: the "From video…" item's text. accepts: which dropped/opened files are sources.
        intensity_field / intensity_max / intensity_label: the slider's field, upper bound and unit text.
        read: state -> (preset value, source file or None). write: (preset, file) -> field changes.
    """

    title: str
    presets: tuple[tuple[str, str], ...]
    file_label: str
    file_filter: str
    accepts: Callable[[Path], bool]
    intensity_field: str
    intensity_max: float
    read: Callable[[ProjectState], tuple[str, Path | None]]
    write: Callable[[str, Path | None], dict]


POSE = SourceSpec(
    title="Head pose",
    presets=tuple(("None (still)" if p == "still" else p.replace("-", " ").capitalize(), p) for p in POSE_PRESETS),
    file_label="From video…", file_filter=VIDEO_FILTER, accepts=is_video,
    intensity_field="pose_intensity", intensity_max=MAX_POSE_INTENSITY,
    read=lambda s: ((s.settings.sources.pose, None) if s.settings.pose_video is None
                    else ("", s.settings.pose_video)),
    write=lambda preset, path: {"pose": str(path) if path is not None else preset},
)

EMOTION = SourceSpec(
    title="Emotion",
    presets=tuple((("None (neutral)" if e == "neutral" else e.capitalize()), e) for e in EMOTIONS),
    file_label="From video or photo…", file_filter=file_filter("Videos and photos", VIDEO_SUFFIXES, IMAGE_SUFFIXES),
    accepts=lambda p: is_video(p) or is_image(p),
    intensity_field="emotion_intensity", intensity_max=1.0,
    read=lambda s: (s.settings.sources.emotion, s.settings.sources.emotion_source),
    write=lambda preset, path: ({"emotion_source": path} if path is not None
                                else {"emotion": preset, "emotion_source": None}),
)


class SourcePicker(QGroupBox):
    """One source picker (pose or emotion) bound to the document."""

    SLIDER_STEPS = 100

    def __init__(self, model: DocumentModel, spec: SourceSpec, parent: QWidget | None = None) -> None:
        super().__init__(spec.title, parent)
        self.model = model
        self.spec = spec
        self._drag_serial = 0
        self._thumb_worker: JobWorker | None = None
        self._thumb_key: object = None

        self.combo = QComboBox()
        for label, value in spec.presets:
            self.combo.addItem(label, value)
        self.combo.addItem(spec.file_label, FROM_FILE)
        self.combo.activated.connect(self._combo_activated)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, int(round(spec.intensity_max * self.SLIDER_STEPS)))
        self.slider.setToolTip(f"Intensity, 0..{spec.intensity_max:g}")
        self.slider.sliderPressed.connect(self._new_drag)
        self.slider.valueChanged.connect(self._slider_moved)
        self.value_label = QLabel("")
        self.value_label.setMinimumWidth(36)
        self.thumb = QLabel()
        self.thumb.setFixedSize(72, 72)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setWordWrap(True)
        self.thumb.setStyleSheet("background:#1b1d22;color:#c8d0dc;border:1px solid #333;font-size:10px;")
        self.thumb.setToolTip(f"Drop a {'video' if spec.accepts is is_video else 'video or photo'} here")
        self.file_label = QLabel("")
        self.file_label.setStyleSheet("color:#8a93a3;font-size:11px;")
        self.file_label.setWordWrap(True)

        right = QVBoxLayout()
        right.addWidget(self.combo)
        row = QHBoxLayout()
        row.addWidget(QLabel("Intensity"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.value_label)
        right.addLayout(row)
        right.addWidget(self.file_label)
        lay = QHBoxLayout(self)
        lay.addWidget(self.thumb)
        lay.addLayout(right, 1)
        self.drop = FileDropTarget(self, spec.accepts, self.set_source_file)
        model.changed.connect(self._on_changed)
        self._on_changed(frozenset({"*"}))

    # -- edits -------------------------------------------------------------------------------------

    def set_preset(self, value: str) -> None:
        self.model.push(SetFields(self.model, self.spec.write(value, None), f"{self.spec.title}: {value}"))

    def set_source_file(self, path: Path) -> None:
        self.model.push(SetFields(self.model, self.spec.write("", Path(path)), f"{self.spec.title} from {Path(path).name}"))

    def set_intensity(self, value: float, *, merge_key: str | None = None) -> None:
        field = self.spec.intensity_field
        value = round(min(max(value, 0.0), self.spec.intensity_max), 3)
        self.model.push(SetFields(self.model, {field: value}, f"{self.spec.title} intensity {value:g}",
                                  merge_key=merge_key))

    def _combo_activated(self, index: int) -> None:
        value = self.combo.itemData(index)
        if value != FROM_FILE:
            self.set_preset(value)
            return
        path, _ = QFileDialog.getOpenFileName(self, self.spec.file_label.rstrip("…"), "", self.spec.file_filter)
        if path:
            self.set_source_file(Path(path))
        else:
            self._on_changed(frozenset({"*"}))  # restore the combo

    def _new_drag(self) -> None:
        self._drag_serial += 1

    def _slider_moved(self, position: int) -> None:
        value = position / self.SLIDER_STEPS
        if abs(value - self.model.state.value(self.spec.intensity_field)) > 1e-9:
            self.set_intensity(value, merge_key=f"{self.spec.intensity_field}:{self._drag_serial}")

    # -- observing -----------------------------------------------------------------------------------

    def _on_changed(self, changed: frozenset[str]) -> None:
        state = self.model.state
        preset, path = self.spec.read(state)
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex(self.combo.findData(FROM_FILE if path is not None else preset))
        self.combo.blockSignals(False)
        value = state.value(self.spec.intensity_field)
        self.slider.blockSignals(True)
        self.slider.setValue(int(round(value * self.SLIDER_STEPS)))
        self.slider.blockSignals(False)
        self.value_label.setText(f"{value:.2f}")
        self.file_label.setText("" if path is None else path.name)
        self._update_thumbnail(preset, path)

    def _update_thumbnail(self, preset: str, path: Path | None) -> None:
        key = path or preset
        if key == self._thumb_key:
            return
        self._thumb_key = key
        if self._thumb_worker is not None:
            self._thumb_worker.cancel()
            self._thumb_worker = None
        if path is None:
            self.thumb.setPixmap(QPixmap())
            self.thumb.setText(self.combo.currentText())
            return
        self.thumb.setText("…")

        def job(cancel):
            return source_thumbnail(path, max_side=72)

        worker = JobWorker(job, name="thumbnail", parent=self)
        worker.finished_ok.connect(lambda img, w=worker: self._set_thumb(img) if w is self._thumb_worker else None)
        worker.failed.connect(lambda m, h, w=worker: self.thumb.setText("unreadable") if w is self._thumb_worker else None)
        worker.finished.connect(worker.deleteLater)
        self._thumb_worker = worker
        worker.start()

    def _set_thumb(self, rgb) -> None:
        self.thumb.setText("")
        self.thumb.setPixmap(QPixmap.fromImage(rgb_to_qimage(rgb)))

    def thumbnail_ready(self) -> bool:
        """True once the thumbnail of a file source is shown (tests)."""
        pm = self.thumb.pixmap()
        return pm is not None and not pm.isNull()


class SourcesPanel(QWidget):
    """The Sources dock: pose and emotion pickers, blinks and render options."""

    def __init__(self, model: DocumentModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.pose = SourcePicker(model, POSE)
        self.emotion = SourcePicker(model, EMOTION)
        self.blink = QComboBox()
        for mode, label in zip(BLINK_MODES, ("Natural (automatic)", "Off", "From the source video")):
            self.blink.addItem(label, mode)
        self.blink.activated.connect(lambda i: self._set("blink", self.blink.itemData(i), "Blinks"))
        self.fps = QDoubleSpinBox()
        self.fps.setRange(MIN_FPS, MAX_FPS)
        self.fps.setDecimals(2)
        self.fps.setSuffix(" fps")
        self.fps.setKeyboardTracking(False)
        self.fps.valueChanged.connect(lambda v: self._set("fps", float(v), "Frame rate"))
        self.seed = QSpinBox()
        self.seed.setRange(0, 1_000_000)
        self.seed.setKeyboardTracking(False)
        self.seed.setToolTip("Seed of the natural blinks and idle head motion")
        self.seed.valueChanged.connect(lambda v: self._set("seed", int(v), "Seed"))
        self.mouth_offset = QDoubleSpinBox()
        self.mouth_offset.setRange(-MAX_MOUTH_OFFSET_MS, MAX_MOUTH_OFFSET_MS)
        self.mouth_offset.setDecimals(0)
        self.mouth_offset.setSingleStep(10)
        self.mouth_offset.setSuffix(" ms")
        self.mouth_offset.setKeyboardTracking(False)
        self.mouth_offset.setToolTip("Shift the mouth against the sound: positive = the mouth moves later")
        self.mouth_offset.valueChanged.connect(lambda v: self._set("mouth_offset_ms", float(v), "Mouth offset"))
        self.mouth_intensity = QDoubleSpinBox()
        self.mouth_intensity.setRange(0.0, MAX_MOUTH_INTENSITY)
        self.mouth_intensity.setDecimals(2)
        self.mouth_intensity.setSingleStep(0.05)
        self.mouth_intensity.setKeyboardTracking(False)
        self.mouth_intensity.setToolTip("How far the mouth opens, spreads and rounds (1 = as analysed); lip "
                                        "contacts and pauses still close fully")
        self.mouth_intensity.valueChanged.connect(
            lambda v: self._set("mouth_intensity", float(v), "Mouth intensity"))
        self.transcript = QLineEdit()
        self.transcript.setPlaceholderText("optional: what is said (English) for exact lip timing")
        self.transcript.editingFinished.connect(
            lambda: self._set("transcript", self.transcript.text().strip() or None, "Transcript"))

        render = QGroupBox("Render")
        form = QFormLayout(render)
        form.addRow("Blinks", self.blink)
        form.addRow("Frame rate", self.fps)
        form.addRow("Seed", self.seed)
        form.addRow("Mouth offset", self.mouth_offset)
        form.addRow("Mouth intensity", self.mouth_intensity)
        form.addRow("Transcript", self.transcript)
        lay = QVBoxLayout(self)
        lay.addWidget(self.pose)
        lay.addWidget(self.emotion)
        lay.addWidget(render)
        lay.addStretch(1)
        model.changed.connect(self._on_changed)
        self._on_changed(frozenset({"*"}))

    def _set(self, field: str, value, label: str) -> None:
        if self.model.state.value(field) != value:
            self.model.push(commands.set_value(self.model, field, value, f"{label}: {value}"))

    def _on_changed(self, _changed: frozenset[str]) -> None:
        s = self.model.state.settings
        for widget, setter in ((self.blink, lambda: self.blink.setCurrentIndex(self.blink.findData(s.sources.blink))),
                               (self.fps, lambda: self.fps.setValue(s.fps)),
                               (self.seed, lambda: self.seed.setValue(s.sources.seed)),
                               (self.mouth_offset, lambda: self.mouth_offset.setValue(s.mouth_offset_ms)),
                               (self.mouth_intensity, lambda: self.mouth_intensity.setValue(s.mouth_intensity)),
                               (self.transcript, lambda: self.transcript.setText(s.transcript or ""))):
            widget.blockSignals(True)
            setter()
            widget.blockSignals(False)
