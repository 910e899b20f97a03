"""Identity panel: the photo (or a video's best frame) with the detected face, landmarks and aligned crop.

Dropping or opening a photo/video pushes a command; the panel observes the document and inspects the new
identity in a worker (face detection never runs on the UI thread). Problems (no face, several faces, too
small) are shown inline with what to do. It also holds the engine choice and the PTI button, which stay
disabled with an explanation while the neural models are missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton,
                               QSizePolicy,
                               QSpinBox, QVBoxLayout, QWidget)

from studio.app.identity import IdentityInfo, inspect_identity
from studio.engine.settings import ENGINE_NAMES
from studio.media.kinds import IMAGE_SUFFIXES, VIDEO_SUFFIXES, file_filter, is_image, is_video
from studio.gui import commands
from studio.gui.commands import DocumentModel
from studio.gui.views.common import ACCENT, FileDropTarget, MessageLabel, escape_html
from studio.gui.workers import JobWorker, rgb_to_qimage

#: the engine combo's first labels (the neural one changes once its models are checked)
ENGINE_LABELS = {"lite": "lite (embedded, CPU)", "neural": "neural (checking…)"}
IDENTITY_FILTER = file_filter("Photos and videos", IMAGE_SUFFIXES, VIDEO_SUFFIXES)


def _model_statuses() -> tuple[tuple[bool, str], tuple[bool, str]]:
    """((available, reason) of the neural engine, the same for PTI) from the model store; the first call
    imports torch (seconds)."""
    from studio.app.models import neural_status, pti_status

    neural, pti = neural_status(), pti_status()
    return (neural.available, neural.reason), (pti.available, pti.reason)


class FaceView(QWidget):
    """Paints an image scaled to fit, with face boxes (chosen one highlighted) and landmarks."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(120, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._image: QImage | None = None
        self._size = (1, 1)
        self._boxes: list[tuple[float, float, float, float]] = []
        self._chosen = -1
        self._points = np.zeros((0, 2), np.float32)
        self.placeholder = "Drop a face photo or a short video here"

    def set_content(self, image: np.ndarray | None, boxes=(), chosen: int = -1, points: np.ndarray | None = None) -> None:
        self._image = None if image is None else rgb_to_qimage(image)
        self._size = (1, 1) if image is None else (image.shape[1], image.shape[0])
        self._boxes = [tuple(b) for b in boxes]
        self._chosen = chosen
        self._points = np.zeros((0, 2), np.float32) if points is None else np.asarray(points, np.float32)
        self.update()

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#1b1d22"))
        if self._image is None:
            p.setPen(QColor("#8a93a3"))
            p.drawText(self.rect().adjusted(12, 12, -12, -12), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self.placeholder)
            return
        w, h = self._size
        s = min(self.width() / w, self.height() / h)
        ox, oy = (self.width() - w * s) / 2, (self.height() - h * s) / 2
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.drawImage(QRectF(ox, oy, w * s, h * s), self._image)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        for i, (x0, y0, x1, y1) in enumerate(self._boxes):
            pen = QPen(QColor(ACCENT if i == self._chosen else "#b0b0b0"), 2 if i == self._chosen else 1)
            if i != self._chosen:
                pen.setStyle(Qt.PenStyle.DashLine)
            p.setPen(pen)
            p.drawRect(QRectF(ox + x0 * s, oy + y0 * s, (x1 - x0) * s, (y1 - y0) * s))
        if len(self._points):
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(120, 255, 170, 200))
            r = max(0.8, min(2.0, s * 1.2))
            for x, y in self._points[::2]:
                p.drawEllipse(QPointF(ox + x * s, oy + y * s), r, r)


class IdentityPanel(QWidget):
    """The Identity dock's content.

    Signals:
        inspected(IdentityInfo): a new identity was analysed (with or without a problem).
    """

    inspected = Signal(object)

    def __init__(self, model: DocumentModel, parent: QWidget | None = None, *, check_models: bool = True) -> None:
        """``check_models=False`` leaves the neural engine and PTI disabled ("checking…") until
        :meth:`refresh_models` or :meth:`refresh_models_in_background`: the model store imports torch, which
        the studio loads after its window is shown."""
        super().__init__(parent)
        self.model = model
        self.info: IdentityInfo | None = None
        self._worker: JobWorker | None = None
        self._inspected_key = None

        self.view = FaceView()
        self.crop = QLabel("aligned\ncrop")
        self.crop.setFixedSize(96, 96)
        self.crop.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.crop.setStyleSheet("background:#1b1d22;color:#8a93a3;border:1px solid #333;")
        self.crop.setToolTip("FFHQ-aligned crop of the chosen face (what the neural engine sees)")
        self.file_label = QLabel("No identity")
        self.file_label.setWordWrap(True)
        self.file_label.setMinimumWidth(60)
        self.status = QLabel("")
        self.status.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.status.setStyleSheet("color:#8a93a3;")
        self.message = MessageLabel()
        self.notice = MessageLabel()

        open_btn = QPushButton("Open photo or video…")
        open_btn.clicked.connect(self.open_dialog)
        self.face_index = QSpinBox()
        self.face_index.setRange(0, 0)
        self.face_index.setToolTip("Which face to animate when the photo has several (0 = largest)")
        self.face_index.valueChanged.connect(self._face_index_edited)

        self.engine = QComboBox()
        for name in ENGINE_NAMES:
            self.engine.addItem(ENGINE_LABELS[name], name)
        self.engine.model().item(self.engine.findData("neural")).setEnabled(False)
        self.engine.setToolTip("lite runs everywhere; neural needs the models listed in Help > Models…")
        self.engine.currentIndexChanged.connect(self._engine_edited)
        self.engine.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.engine.setMinimumContentsLength(12)

        self.pti = QPushButton("Personalize (PTI)")
        self.pti.setEnabled(False)
        self.pti.clicked.connect(self._pti_clicked)
        self.pti_note = QLabel("Checking the neural models…")
        self.pti_note.setWordWrap(True)
        self.pti_note.setStyleSheet("color:#8a93a3;font-size:11px;")
        self._models_worker: JobWorker | None = None
        self.pti_progress = QProgressBar()
        self.pti_progress.setRange(0, 1000)
        self.pti_progress.setVisible(False)
        self._pti_worker: JobWorker | None = None
        self.person: Path | None = None  # the last personalisation written

        top = QHBoxLayout()
        top.addWidget(open_btn)
        top.addStretch(1)
        top.addWidget(QLabel("Face"))
        top.addWidget(self.face_index)
        side = QVBoxLayout()
        side.addWidget(self.crop)
        side.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(self.view, 1)
        row.addLayout(side)
        form = QFormLayout()
        form.addRow("Engine", self.engine)
        name_row = QHBoxLayout()  # file name and "W×H px, N faces" share a line: the dock is often short
        name_row.addWidget(self.file_label, 1)
        name_row.addWidget(self.status)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(name_row)
        lay.addLayout(row, 1)
        lay.addWidget(self.message)
        lay.addWidget(self.notice)
        lay.addLayout(form)
        lay.addWidget(self.pti)
        lay.addWidget(self.pti_progress)
        lay.addWidget(self.pti_note)

        self.drop = FileDropTarget(self.view, lambda p: is_image(p) or is_video(p), self.set_identity)
        model.changed.connect(self._on_changed)
        if check_models:
            self.refresh_models()

    # -- the neural models -----------------------------------------------------------------------------

    def refresh_models(self) -> None:
        """Ask the model store whether the neural engine and PTI can run, and enable them accordingly."""
        self._apply_models(_model_statuses())

    def refresh_models_in_background(self) -> JobWorker:
        """Like :meth:`refresh_models`, but the store (and torch, which it imports) loads in a worker thread;
        the UI is updated when it is done. Returns the worker (``finished`` tells when)."""
        worker = JobWorker(lambda cancel: _model_statuses(), name="models", parent=self)
        worker.finished_ok.connect(self._apply_models)
        worker.failed.connect(lambda m, h: self._apply_models(((False, f"{m} — {h}" if h else m),) * 2))
        worker.finished.connect(self._models_checked)
        self._models_worker = worker
        worker.start()
        return worker

    def wait_for_models(self) -> None:
        """Block until a background model check has finished (it cannot be interrupted while torch imports);
        call it before the application exits so that its thread is not destroyed while running."""
        if self._models_worker is not None:
            self._models_worker.wait()

    def _models_checked(self) -> None:
        if self._models_worker is not None:
            self._models_worker.deleteLater()
        self._models_worker = None

    def _apply_models(self, statuses: tuple[tuple[bool, str], tuple[bool, str]]) -> None:
        (neural_ok, neural_reason), (pti_ok, pti_reason) = statuses
        row = self.engine.findData("neural")
        self.engine.setItemText(row, "neural" if neural_ok else "neural (not installed)")
        self.engine.model().item(row).setEnabled(neural_ok)
        self.engine.model().item(row).setToolTip(neural_reason)
        if self._pti_worker is None:  # while tuning, the button is the enabled "Cancel"
            self.pti.setEnabled(pti_ok)
        self.pti_note.setText("" if pti_ok else
                              "PTI needs the neural models, which are not installed (Help › Models…).")
        # rich text: Qt wraps it, where a plain long reason was one screen-wide line
        self.pti.setToolTip(f"<p>PTI is {escape_html(pti_reason)}</p>" if not pti_ok else
                            "<p>Tune the generator to this face (pivotal tuning inversion)</p>")

    # -- edits -------------------------------------------------------------------------------------

    def set_identity(self, path: Path) -> None:
        """Make ``path`` the identity (an undoable edit)."""
        self.model.push(commands.set_identity(self.model, Path(path)))

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a face photo or a short video", "", IDENTITY_FILTER)
        if path:
            self.set_identity(Path(path))

    def _face_index_edited(self, value: int) -> None:
        if value != self.model.state.settings.face_index:
            self.model.push(commands.set_value(self.model, "face_index", value, f"Animate face {value}"))

    def _engine_edited(self, _index: int) -> None:
        engine = self.engine.currentData()
        if engine != self.model.state.settings.engine.name:
            self.model.push(commands.set_value(self.model, "engine", engine, f"Use the {engine} engine"))

    # -- observing the document ----------------------------------------------------------------------

    def _on_changed(self, changed: frozenset[str]) -> None:
        state = self.model.state
        if "*" in changed or "engine" in changed:
            self.engine.blockSignals(True)
            self.engine.setCurrentIndex(max(0, self.engine.findData(state.settings.engine.name)))
            self.engine.blockSignals(False)
        if "*" in changed or changed & {"identity", "face_index"}:
            self._inspect()

    def _inspect(self) -> None:
        state = self.model.state
        key = (state.identity, state.settings.face_index)
        if key == self._inspected_key:
            return
        self._inspected_key = key
        if self._worker is not None:
            self._worker.cancel()
        self.message.clear_message()
        self.notice.clear_message()
        if state.identity is None:
            self.info = None
            self.view.set_content(None)
            self.file_label.setText("No identity")
            self.crop.clear()
            return
        # a long file name wraps at its _ . - (a zero-width space after each) instead of being cut off
        name = state.identity.name
        breakable = "".join(c + "\u200b" if c in "_.-" else c for c in escape_html(name))
        self.file_label.setText(f"<b>{breakable}</b>")
        self.file_label.setToolTip(str(state.identity))
        self.status.setText("Finding the face…")
        source, index = state.identity, state.settings.face_index
        worker = JobWorker(lambda cancel: inspect_identity(source, face_index=index, cancel=cancel),
                           name="identity", parent=self)
        worker.finished_ok.connect(lambda info, w=worker: self._show(info) if w is self._worker else None)
        worker.failed.connect(lambda m, h, w=worker: self._fail(m, h) if w is self._worker else None)
        worker.finished.connect(worker.deleteLater)
        self._worker = worker
        worker.start()

    def _fail(self, message: str, hint: str) -> None:
        self.status.setText("")
        self.info = None
        self.view.set_content(None)
        self.message.show_message(message, hint)

    def _show(self, info: IdentityInfo) -> None:
        self.info = info
        faces = len(info.faces)
        self.status.setText(f"{info.image.shape[1]}×{info.image.shape[0]} px · {faces} face{'s' if faces != 1 else ''}"
                            + (f", frame at {info.frame_s:.2f} s" if info.frame_s is not None else ""))
        chosen = -1 if info.face is None else next(i for i, f in enumerate(info.faces) if f is info.face)
        self.view.set_content(info.image, [f.box for f in info.faces], chosen,
                              None if info.face is None else info.face.points)
        if info.aligned is not None:
            from PySide6.QtGui import QPixmap

            self.crop.setPixmap(QPixmap.fromImage(rgb_to_qimage(info.aligned)).scaled(
                self.crop.size(), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))
        else:
            self.crop.clear()
            self.crop.setText("no face")
        if info.problem is not None:
            self.message.show_message(info.problem.message, info.problem.hint)
        if info.notices:
            self.notice.show_message(info.notices[0], kind="warning")
        self.face_index.blockSignals(True)
        self.face_index.setRange(0, max(0, len(info.faces) - 1))
        self.face_index.setValue(self.model.state.settings.face_index)
        self.face_index.blockSignals(False)
        self.inspected.emit(info)

    # ------------------------------------------------------------------ one-click PTI
    def _pti_clicked(self) -> None:
        if self._pti_worker is not None:  # the button reads "Cancel" while tuning
            self._pti_worker.cancel()
            return
        state = self.model.state
        if state.identity is None:
            self.message.show_message("no identity to personalise", "open a photo or a short video first")
            return
        from studio.app.models import person_output_path
        from studio.engine.neural.pti import tune_person

        source = Path(state.identity)
        output = person_output_path(source, self.model.project.path)
        kind = {"video": source} if is_video(source) else {"image": source}
        worker = JobWorker(lambda cancel: tune_person(**kind, output=output, face_index=state.settings.face_index,
                                                      cancel=cancel), name="pti", parent=self)
        worker.progress.connect(lambda f, stage, msg: (self.pti_progress.setValue(int(f * 1000)),
                                                       self.pti_progress.setFormat(f"{msg}  %p%")))
        worker.finished_ok.connect(self._pti_done)
        worker.failed.connect(lambda m, h: self.message.show_message(m, h))
        worker.cancelled.connect(lambda: self.notice.show_message("personalisation cancelled; nothing was saved",
                                                                  kind="warning"))
        worker.finished.connect(self._pti_finished)
        self._pti_worker = worker
        self.pti.setText("Cancel personalization")
        self.pti_progress.setValue(0)
        self.pti_progress.setVisible(True)
        self.message.clear_message()
        worker.start()

    def _pti_done(self, result) -> None:
        self.person = result.path
        # the neural engine renders with the tuned generator from now on (undoable)
        self.model.push(commands.set_value(self.model, "person", result.path, "Personalize (PTI)"))
        self.notice.show_message(
            f"personalised in {result.steps} steps: LPIPS {result.initial_lpips:.3f} → {result.final_lpips:.3f}; "
            f"saved to {result.path}", kind="info")

    def _pti_finished(self) -> None:
        if self._pti_worker is not None:
            self._pti_worker.deleteLater()
        self._pti_worker = None
        self.pti.setText("Personalize (PTI)")
        self.pti_progress.setVisible(False)

    def problem_text(self) -> str:
        """The inline error shown, as plain text ("" when none)."""
        return self.message.plain_text()
