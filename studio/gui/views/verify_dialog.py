"""File › Verify…: check videos for the studio's provenance marks, as ``talkstudio verify`` does."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QLabel, QPlainTextEdit, QProgressBar,
                               QPushButton, QVBoxLayout, QWidget)

from studio.app.provenance import MARKED, UNMARKED, Verification, verify_files
from studio.gui.views.common import MessageLabel
from studio.gui.workers import JobWorker

_VIDEO_FILTER = "Videos (*.mp4 *.m4v *.mov *.mkv *.webm *.avi *.mpg);;All files (*)"


class VerifyDialog(QDialog):
    """Pick videos; each is checked off the UI thread for Content Credentials (present, valid, signer) and the
    invisible watermark (found, id), and the findings are listed as text that can be copied.

    Attributes:
        results: the last run's :class:`~studio.app.provenance.Verification` per file.
    """

    def __init__(self, parent: QWidget | None = None, *, start_dir: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Verify videos")
        self.resize(720, 460)
        self.start_dir = start_dir
        self.worker: JobWorker | None = None
        self.results: list[Verification] = []
        intro = QLabel("Checks whether videos carry the marks this studio puts on everything it exports: signed "
                       "Content Credentials (C2PA) and an invisible watermark that survives re-encoding, scaling, "
                       "cropping and excerpts. Finding no mark does not prove that a video is real.")
        intro.setWordWrap(True)
        self.report = QPlainTextEdit()
        self.report.setReadOnly(True)
        self.report.setPlaceholderText("Choose videos to check…")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.summary = QLabel("")
        self.message = MessageLabel()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.choose_btn = QPushButton("Choose videos…")
        buttons.addButton(self.choose_btn, QDialogButtonBox.ButtonRole.ActionRole)
        self.choose_btn.clicked.connect(self._choose)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        for w in (intro, self.report, self.progress, self.summary, self.message, buttons):
            lay.addWidget(w)

    def _choose(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Verify videos", self.start_dir, _VIDEO_FILTER)
        if files:
            self.check([Path(f) for f in files])

    def check(self, paths: list[Path]) -> None:
        """Verify ``paths`` in a worker thread; the report fills in when it finishes."""
        if self.worker is not None or not paths:
            return
        self.message.clear_message()
        self.report.setPlainText("")
        self.summary.setText(f"Checking {len(paths)} file(s)…")
        self.choose_btn.setEnabled(False)
        worker = JobWorker(lambda cancel: verify_files(paths, cancel=cancel), name="verify", parent=self)
        worker.progress.connect(lambda f, _stage, _msg: self.progress.setValue(int(f * 1000)))
        worker.finished_ok.connect(self._show)
        worker.failed.connect(lambda m, h: self.message.show_message(m, h))
        worker.finished.connect(self._finished)
        self.worker = worker
        worker.start()

    def _show(self, results: list[Verification]) -> None:
        self.results = results
        blocks = [str(r.path) + "\n" + "\n".join(f"  {line}" for line in r.lines()) for r in results]
        self.report.setPlainText("\n\n".join(blocks))
        marked = sum(r.status == MARKED for r in results)
        unmarked = sum(r.status == UNMARKED for r in results)
        errors = len(results) - marked - unmarked
        self.summary.setText(f"{marked} marked as synthetic, {unmarked} without a mark"
                             + (f", {errors} could not be checked" if errors else ""))
        self.progress.setValue(1000)

    def _finished(self) -> None:
        if self.worker is not None:
            self.worker.deleteLater()
        self.worker = None
        self.choose_btn.setEnabled(True)

    def done(self, result: int) -> None:  # Close, Esc and the window's X all end here
        if self.worker is not None:  # stop between files and wait: the thread must not outlive the dialog
            self.worker.cancel()
            self.worker.wait()
        super().done(result)
