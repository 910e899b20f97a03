"""Export dialog: output path, resolution, fps, quality (CRF), encoder and range; progress with ETA.

The settings are stored in the document (one undoable edit when Export is pressed); the export itself
runs :func:`~studio.app.jobs.export_project` in a :class:`~studio.gui.workers.JobWorker`. The file appears
only when complete; Cancel leaves nothing behind. After success, "Open folder" shows the result.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QThread, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QMessageBox, QProgressBar, QPushButton,
                               QSpinBox, QVBoxLayout, QWidget)

from studio.app.jobs import export_project, output_size
from studio.app.project import RESOLUTIONS, ExportSettings
from studio.core.errors import StudioError
from studio.engine.base import Done
from studio.engine.settings import MAX_CRF, MAX_FPS, MIN_FPS
from studio.gui import commands
from studio.gui.commands import DocumentModel
from studio.gui.controller import SessionController
from studio.gui.views.common import MessageLabel, format_time
from studio.gui.workers import JobWorker
from studio.media.kinds import with_output_suffix
from studio.media.video import available_h264_encoders

ENCODER_LABELS = {"libx264": "H.264 — libx264 (CPU)", "h264_nvenc": "H.264 — NVENC (NVIDIA GPU)"}


class EncoderProbe(QThread):
    """Finds the usable H.264 encoders once per run of the studio, off the UI thread.

    :func:`~studio.media.video.available_h264_encoders` runs ``ffmpeg -encoders`` and asks the NVIDIA
    driver for a GPU; both wait on the outside world, so they run here, not on the UI thread.
    """

    found = Signal(tuple)
    result: tuple[str, ...] | None = None

    def run(self) -> None:
        if EncoderProbe.result is None:
            try:
                names = available_h264_encoders()
            except (OSError, StudioError):
                names = ()
            EncoderProbe.result = names or ("libx264",)
        self.found.emit(EncoderProbe.result)


class ExportDialog(QDialog):
    """Export the project to MP4.

    Signals:
        exported(Path): a video was written.
    """

    exported = Signal(Path)

    def __init__(self, model: DocumentModel, controller: SessionController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export video")
        self.setMinimumWidth(520)
        self.model = model
        self.controller = controller
        self.worker: JobWorker | None = None
        self.result: Done | None = None
        self._confirmed: Path | None = None  # a path the save dialog already asked about replacing
        ex = model.state.export

        self.output = QLineEdit(str(ex.output or self._default_output()))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.output, 1)
        out_row.addWidget(browse)
        self.resolution = QComboBox()
        size = controller.session.size if controller.session is not None else None
        for key in RESOLUTIONS:
            label = "photo size" if key == "source" else key
            if size is not None:
                label += f" ({'×'.join(map(str, output_size(size, key)))})"
            self.resolution.addItem(label, key)
        self.resolution.setCurrentIndex(max(0, self.resolution.findData(ex.resolution)))
        self.fps = QDoubleSpinBox()
        self.fps.setRange(MIN_FPS, MAX_FPS)
        self.fps.setDecimals(2)
        self.fps.setValue(model.state.settings.fps)
        self.fps.setSuffix(" fps")
        self.crf = QSpinBox()
        self.crf.setRange(0, MAX_CRF)
        self.crf.setValue(model.state.settings.encode.crf)
        self.crf.setToolTip("Constant quality: lower is better and bigger; 18 is visually lossless")
        self.codec = QComboBox()
        self._set_encoders((ex.codec,) if ex.codec == "libx264" else ("libx264",))
        self._probe = EncoderProbe(self)
        self._probe.found.connect(self._set_encoders)
        self._probe.start()
        rng = model.state.range_s
        self.use_range = QCheckBox("Only the in/out range" + (f" ({format_time(rng[0])} – {format_time(rng[1])})"
                                                              if rng else " (none set: whole clip)"))
        self.use_range.setChecked(ex.use_range and rng is not None)
        self.use_range.setEnabled(rng is not None)
        self.credentials = QCheckBox("Sign Content Credentials (C2PA)")
        self.credentials.setToolTip("A signed manifest in the file says it is AI-generated, by what, from which "
                                    "inputs (by hash); the invisible watermark is embedded either way")
        self.credentials.setChecked(model.state.settings.encode.content_credentials)
        self.credentials_warning = QLabel("⚠ Content Credentials are off: the video will carry only the invisible "
                                          "watermark. Players, platforms and fact-checkers cannot read how it was made.")
        self.credentials_warning.setWordWrap(True)
        self.credentials_warning.setStyleSheet("color: #b35900;")
        self.credentials.toggled.connect(lambda on: self.credentials_warning.setVisible(not on))
        self.credentials_warning.setVisible(not self.credentials.isChecked())

        form = QFormLayout()
        form.addRow("Output", out_row)
        form.addRow("Resolution", self.resolution)
        form.addRow("Frame rate", self.fps)
        form.addRow("Quality (CRF)", self.crf)
        form.addRow("Encoder", self.codec)
        form.addRow("Range", self.use_range)
        form.addRow("Provenance", self.credentials)
        form.addRow("", self.credentials_warning)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.message = MessageLabel()
        self.buttons = QDialogButtonBox()
        self.export_btn = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_btn = self.buttons.addButton("Cancel", QDialogButtonBox.ButtonRole.RejectRole)
        self.open_btn = self.buttons.addButton("Open folder", QDialogButtonBox.ButtonRole.ActionRole)
        self.close_btn = self.buttons.addButton("Close", QDialogButtonBox.ButtonRole.DestructiveRole)
        self.open_btn.setEnabled(False)  # shown from the start (disabled), so the buttons never move
        self.open_btn.setToolTip("Show the exported video in its folder (after an export)")
        self.cancel_btn.setEnabled(False)
        self.export_btn.clicked.connect(self.start_export)
        self.cancel_btn.clicked.connect(self.cancel_export)
        self.open_btn.clicked.connect(self.open_folder)
        self.close_btn.clicked.connect(self.close)

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.message)
        lay.addWidget(self.buttons)

    # -- settings ----------------------------------------------------------------------------------

    def _default_output(self) -> Path:
        state, project = self.model.state, self.model.project
        stem = project.path.stem if project.path else (state.audio.stem if state.audio else "talking-head")
        return project.base_dir / f"{stem}.mp4"

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export video", self.output.text(), "MP4 video (*.mp4)")
        if path:
            self.output.setText(with_output_suffix(path))
            self._confirmed = self.settings().output  # the save dialog asked before replacing it

    def _set_encoders(self, encoders: tuple) -> None:
        current = self.codec.currentData() or self.model.state.export.codec
        self.codec.clear()
        for name in encoders:
            self.codec.addItem(ENCODER_LABELS.get(name, name), name)
        self.codec.setCurrentIndex(max(0, self.codec.findData(current)))

    def settings(self) -> ExportSettings:
        """The export settings as currently entered."""
        text = self.output.text().strip()
        return ExportSettings(output=Path(text).expanduser() if text else None,
                              resolution=self.resolution.currentData(),
                              codec=self.codec.currentData() or "libx264",
                              use_range=self.use_range.isChecked())

    # -- export ------------------------------------------------------------------------------------

    def start_export(self) -> None:
        """Store the settings in the document (undoable) and start the export worker."""
        if self.worker is not None:
            return
        self.message.clear_message()
        out = self.settings().output
        if out is not None and (out.exists() or out.is_symlink()) and out != self._confirmed:
            if not self.confirm_replace(out):
                self.status.setText("Not exported: choose another output file.")
                return
        changes = {"export": self.settings(), "fps": float(self.fps.value()), "crf": int(self.crf.value()),
                   "content_credentials": self.credentials.isChecked()}
        changes = {k: v for k, v in changes.items() if self.model.state.value(k) != v}
        if changes:  # one undo step for everything the dialog changed
            self.model.push(commands.SetFields(self.model, changes, "Change export settings"))
        state = self.model.state
        session = self.controller.session
        self.result = None
        self.open_btn.setEnabled(False)
        self.progress.setValue(0)
        self.status.setText("Starting…")
        worker = JobWorker(lambda cancel: export_project(session, state, cancel=cancel), name="export", parent=self)
        worker.progress.connect(self._on_progress)
        worker.finished_ok.connect(self._on_done)
        worker.failed.connect(lambda m, h: self.message.show_message(m, h))
        worker.notice.connect(lambda text, _level: self.message.show_message(text, kind="warning"))
        worker.cancelled.connect(lambda: self.status.setText("Cancelled — nothing was written."))
        worker.finished.connect(self._on_worker_finished)
        self.worker = worker
        self._t0 = time.perf_counter()
        self.export_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        worker.start()

    def reads_and_writes(self, output: Path) -> tuple[list[Path], Path]:
        """The files the export reads (identity, speech, source videos, person file) and the one it writes:
        what a user is shown before an existing file is replaced (a project may come from anywhere)."""
        state = self.model.state
        src, eng = state.settings.sources, state.settings.engine
        reads = [Path(p) for p in (state.identity, state.audio, src.pose_video, src.emotion_source, eng.person)
                 if p is not None]
        return reads, output

    def confirm_replace(self, output: Path) -> bool:
        """Ask before replacing an existing file, listing what the export reads and writes. True: go on."""
        reads, writes = self.reads_and_writes(output)
        box = QMessageBox(QMessageBox.Icon.Warning, "Replace the existing video?",
                          f"{writes.name} already exists in {writes.parent}. Export replaces it.",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)
        box.setInformativeText("This project reads:\n" + "\n".join(f"  {p}" for p in reads)
                               + f"\n\nand writes:\n  {writes}")
        box.button(QMessageBox.StandardButton.Yes).setText("Replace")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        return box.exec() == QMessageBox.StandardButton.Yes

    def cancel_export(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.status.setText("Cancelling…")
        else:
            self.close()

    def _on_progress(self, fraction: float, stage: str, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        elapsed = time.perf_counter() - self._t0
        eta = elapsed / fraction * (1 - fraction) if fraction > 0.02 else None
        self.status.setText(f"{stage}: {message} — {fraction * 100:.0f} %"
                            + (f", about {eta:.0f} s left" if eta is not None else ""))

    def _on_done(self, done: Done) -> None:
        self.result = done
        self.progress.setValue(1000)
        self.status.setText(f"Wrote {done.output.name}: {done.size[0]}×{done.size[1]}, {done.n_frames} frames, "
                            f"{done.duration_s:.2f} s in {time.perf_counter() - self._t0:.1f} s — watermark id "
                            f"{done.mark_id:08x}, " + (f"signed by {done.signed_by}" if done.signed_by
                                                       else "no Content Credentials"))
        self.open_btn.setEnabled(True)
        self.exported.emit(done.output)

    def _on_worker_finished(self) -> None:
        if self.worker is not None:
            self.worker.deleteLater()
        self.worker = None
        self.export_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)

    def open_folder(self) -> None:
        if self.result is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.result.output.parent)))

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        if self.worker is not None:
            self.worker.cancel()
            self.worker.wait(10000)
        self._probe.wait(10000)
        super().closeEvent(event)
