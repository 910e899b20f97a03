"""Batch dubbing dialog: many identities x many speech tracks into videos, on the resumable batch queue.

Drop photos, videos and speech files anywhere on the dialog (or use the Add buttons): every new identity x
speech pair becomes a row of the queue kept in the output folder (``.talkstudio-batch.sqlite``, the same
queue as ``talkstudio batch``, so a batch started here resumes from the CLI and vice versa). Output name
and frame rate are edited in place, rows can be removed; each row shows its status, progress and, for a
failed job, its error (also as the row's tooltip). Start runs :func:`~studio.app.batch.run_batch` in a
:class:`BatchWorker` thread; Pause stops after the running job, Cancel stops the running job at once (its
temp file is removed). The UI thread only reads the queue and receives signals.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, QThread, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDialog, QFileDialog, QHBoxLayout,
                               QHeaderView, QLabel, QLineEdit, QListWidget, QProgressBar, QPushButton,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from studio.app.batch import BatchEvent, BatchQueue, BatchReport, Job, JobSpec, cross_product, run_batch
from studio.media.kinds import (AUDIO_SUFFIXES, IMAGE_SUFFIXES, VIDEO_SUFFIXES, is_audio, is_image, is_video,
                                with_output_suffix)
from studio.core.errors import StudioError
from studio.core.events import CancelToken, Returning
from studio.engine.dub import VIDEO_FITS
from studio.engine.settings import RenderSettings
from studio.gui.views.common import MessageLabel, dropped_files

COLUMNS = ("Identity", "Speech", "Output", "FPS", "Status", "Progress", "Node", "Error")
COL = {name: i for i, name in enumerate(COLUMNS)}
EDITABLE = ("Output", "FPS")
FIT_LABELS = {"loop": "Videos loop with a crossfade", "trim": "Videos are trimmed (never repeat)"}
_STATUS_COLOURS = {"done": "#7ddc8b", "failed": "#ff6b6b", "cancelled": "#f0b429", "running": "#4aa3ff"}


class BatchWorker(QThread):
    """Runs :func:`run_batch` on a queue in a thread.

    Signals:
        event(BatchEvent): every job event (progress events at most every ``min_interval_s``).
        finished_report(BatchReport): the run ended (done, paused or cancelled).
        failed(message, hint): the run could not start or stopped on an unexpected error.
    """

    event = Signal(object)
    finished_report = Signal(object)
    failed = Signal(str, str)

    def __init__(self, queue: BatchQueue, *, overwrite: bool = False, min_interval_s: float = 0.1,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("batch")
        self.queue = queue
        self.overwrite = overwrite
        self.token = CancelToken()
        self.pause_flag = threading.Event()
        self._min_interval_s = min_interval_s

    def cancel(self) -> None:
        """Stop the running job at its next frame and end the run (thread-safe)."""
        self.token.cancel()

    def pause(self) -> None:
        """End the run after the running job (thread-safe)."""
        self.pause_flag.set()

    def run(self) -> None:  # noqa: D401 - QThread API
        last = 0.0
        try:
            events = Returning(run_batch(self.queue, overwrite=self.overwrite, cancel=self.token,
                                         pause=self.pause_flag))
            for ev in events:
                if ev.kind == "progress":
                    now = time.perf_counter()
                    if now - last >= self._min_interval_s:
                        last = now
                        self.event.emit(ev)
                else:
                    self.event.emit(ev)
            self.finished_report.emit(events.result)
        except StudioError as exc:
            self.failed.emit(exc.message, exc.hint)
        except Exception as exc:  # noqa: BLE001 - never crash the studio
            self.failed.emit(f"{type(exc).__name__}: {exc}", "this is a bug; please report it with the log")


class BatchDialog(QDialog):
    """The studio's Batch dubbing window (non-modal).

    Args:
        output_dir: initial output folder (its queue, if any, is loaded).
    """

    def __init__(self, output_dir: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Batch dubbing")
        self.resize(980, 560)
        self.setAcceptDrops(True)
        self.queue: BatchQueue | None = None
        self.worker: BatchWorker | None = None
        self.report: BatchReport | None = None
        self.identities: list[Path] = []
        self.audios: list[Path] = []
        self._rows: dict[int, int] = {}  # job id -> table row
        self._filling = False
        self._t0 = 0.0

        self.output = QLineEdit(str(output_dir or Path.home() / "Talking Head Studio batch"))
        self.output.editingFinished.connect(self.load_queue)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_output)
        self.open_btn = QPushButton("Open folder")
        self.open_btn.clicked.connect(self.open_folder)
        out_row = QHBoxLayout()
        out_row.addWidget(QLabel("Output folder"))
        out_row.addWidget(self.output, 1)
        out_row.addWidget(browse)
        out_row.addWidget(self.open_btn)

        self.id_list = QListWidget()
        self.audio_list = QListWidget()
        for lst in (self.id_list, self.audio_list):
            lst.setMaximumHeight(110)
            lst.setAcceptDrops(True)
            lst.installEventFilter(self)
            lst.viewport().installEventFilter(self)
        add_id = QPushButton("Add photos or videos…")
        add_id.clicked.connect(self._add_identities_dialog)
        add_audio = QPushButton("Add speech…")
        add_audio.clicked.connect(self._add_audio_dialog)
        self.fit = QComboBox()
        for fit in VIDEO_FITS:
            self.fit.addItem(FIT_LABELS[fit], fit)
        self.fps = QComboBox()
        for v in (25.0, 24.0, 30.0, 12.0):
            self.fps.addItem(f"{v:g} fps (photos)", v)
        lists = QHBoxLayout()
        for title, lst, btn in (("Identities — drop photos or videos", self.id_list, add_id),
                                ("Speech — drop audio files", self.audio_list, add_audio)):
            col = QVBoxLayout()
            col.addWidget(QLabel(title))
            col.addWidget(lst)
            col.addWidget(btn)
            lists.addLayout(col, 1)
        opts = QVBoxLayout()
        opts.addWidget(QLabel("New jobs"))
        opts.addWidget(self.fps)
        opts.addWidget(self.fit)
        self.overwrite = QCheckBox("Overwrite existing videos")
        opts.addWidget(self.overwrite)
        opts.addStretch(1)
        lists.addLayout(opts)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                   | QAbstractItemView.EditTrigger.EditKeyPressed)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(COL["Error"], QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COL["Output"], QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemChanged.connect(self._item_changed)

        self.overall = QProgressBar()
        self.overall.setRange(0, 1000)
        self.status = QLabel("Drop photos, videos and speech files here.")
        self.message = MessageLabel()
        self.remove_btn = QPushButton("Remove selected")
        self.remove_btn.clicked.connect(self.remove_selected)
        self.start_btn = QPushButton("Start")
        self.start_btn.clicked.connect(self.start)
        self.pause_btn = QPushButton("Pause")
        self.pause_btn.setToolTip("Stop after the video being rendered")
        self.pause_btn.clicked.connect(self.pause)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop now; the unfinished video is discarded")
        self.cancel_btn.clicked.connect(self.cancel)
        self.close_btn = QPushButton("Close")
        self.close_btn.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.remove_btn)
        buttons.addStretch(1)
        for b in (self.start_btn, self.pause_btn, self.cancel_btn, self.close_btn):
            buttons.addWidget(b)

        lay = QVBoxLayout(self)
        lay.addLayout(out_row)
        lay.addLayout(lists)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.overall)
        lay.addWidget(self.status)
        lay.addWidget(self.message)
        lay.addLayout(buttons)
        self._set_running(False)
        self.load_queue()

    # -- queue -----------------------------------------------------------------------------------

    def output_dir(self) -> Path:
        return Path(self.output.text().strip() or ".").expanduser().absolute()

    def load_queue(self) -> None:
        """Open the output folder's queue (creating it when the folder exists) and show its jobs."""
        if self.worker is not None:
            return
        folder = self.output_dir()
        self.message.clear_message()
        self.queue = None
        if folder.is_dir():
            try:
                self.queue = BatchQueue(folder)
            except StudioError as exc:
                self.message.show_message(exc.message, exc.hint)
        self.refresh()

    def _ensure_queue(self) -> BatchQueue | None:
        if self.queue is None or self.queue.output_dir != self.output_dir():
            try:
                self.queue = BatchQueue(self.output_dir())
            except StudioError as exc:
                self.message.show_message(exc.message, exc.hint)
                return None
        return self.queue

    def refresh(self) -> None:
        """Rebuild the table from the queue."""
        jobs = self.queue.jobs() if self.queue is not None else []
        self._filling = True
        try:
            self.table.setRowCount(len(jobs))
            self._rows = {}
            for row, job in enumerate(jobs):
                self._rows[job.id] = row
                self._fill_row(row, job)
        finally:
            self._filling = False
        n = len(jobs)
        if self.worker is None:
            todo = sum(j.status in ("pending", "cancelled", "running") for j in jobs)
            self.status.setText(f"{n} job(s), {todo} to do" if n else "Drop photos, videos and speech files here.")
        self.start_btn.setEnabled(self.worker is None and n > 0)

    def _fill_row(self, row: int, job: Job) -> None:
        self._filling = True
        try:
            values = {"Identity": job.identity.name, "Speech": job.audio.name, "Output": job.output.name,
                      "FPS": f"{job.settings.fps:g}", "Status": job.status, "Node": job.node or "",
                      "Error": (job.error + (f" — {job.hint}" if job.hint else "")) if job.status == "failed" else ""}
            for name, text in values.items():
                item = self.table.item(row, COL[name])
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, COL[name], item)
                item.setText(text)
                item.setData(Qt.ItemDataRole.UserRole, job.id)
                flags = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
                if name in EDITABLE and job.status != "running":
                    flags |= Qt.ItemFlag.ItemIsEditable
                item.setFlags(flags)
                tip = f"{job.identity}\n{job.audio}\n→ {job.output}"
                if job.node:
                    tip += f"\nrun on {job.node} (a cluster node)"
                if job.mark_id:
                    tip += f"\nwatermark id {job.mark_id}" + (f", signed by {job.signed_by}" if job.signed_by else "")
                if job.status == "failed":
                    tip += f"\n\nFailed: {job.error}" + (f"\n{job.hint}" if job.hint else "")
                item.setToolTip(tip)
            colour = _STATUS_COLOURS.get(job.status)
            if colour:
                self.table.item(row, COL["Status"]).setForeground(QColor(colour))
            bar = self.table.cellWidget(row, COL["Progress"])
            if not isinstance(bar, QProgressBar):
                bar = QProgressBar()
                bar.setRange(0, 1000)
                bar.setTextVisible(True)
                self.table.setCellWidget(row, COL["Progress"], bar)
            bar.setValue(int(1000 * (1.0 if job.status == "done" else job.progress if job.status == "running" else 0)))
        finally:
            self._filling = False

    def row_of(self, job_id: int) -> int | None:
        """Table row of a job (None if it is not shown)."""
        return self._rows.get(job_id)

    def progress_of(self, job_id: int) -> int:
        """The row's progress bar value, 0..1000."""
        bar = self.table.cellWidget(self._rows[job_id], COL["Progress"])
        return bar.value() if isinstance(bar, QProgressBar) else 0

    # -- adding files ----------------------------------------------------------------------------

    def add_files(self, paths: list[Path]) -> int:
        """Sort dropped files into identities (photos, videos) and speech (audio), and queue every new
        identity x speech pair. Returns the number of jobs added."""
        new_ids = [p for p in paths if (is_image(p) or is_video(p)) and p not in self.identities]
        new_aud = [p for p in paths if is_audio(p) and p not in self.audios]
        ignored = [p.name for p in paths if not (is_image(p) or is_video(p) or is_audio(p))]
        if ignored:
            self.message.show_message(f"not a photo, video or speech file: {', '.join(ignored)}",
                                      "drop JPEG/PNG photos, MP4 videos and WAV/MP3/M4A speech", kind="warning")
        self.identities += new_ids
        self.audios += new_aud
        for p in new_ids:
            self.id_list.addItem(p.name)
        for p in new_aud:
            self.audio_list.addItem(p.name)
        pairs = [(i, a) for i in new_ids for a in self.audios] + [(i, a) for i in self.identities
                                                                 if i not in new_ids for a in new_aud]
        if not pairs:
            return 0
        queue = self._ensure_queue()
        if queue is None:
            return 0
        defaults = JobSpec(Path(), Path(), Path(), settings=RenderSettings(fps=float(self.fps.currentData())),
                           video_fit=str(self.fit.currentData()))
        specs = []
        for ident, audio in pairs:
            specs += cross_product([ident], [audio], queue.output_dir, defaults=defaults)
        try:
            queue.add(specs)
        except StudioError as exc:
            self.message.show_message(exc.message, exc.hint)
            return 0
        self.refresh()
        return len(specs)

    def _add_identities_dialog(self) -> None:
        pattern = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))
        files, _ = QFileDialog.getOpenFileNames(self, "Add photos or videos", "", f"Photos and videos ({pattern})")
        self.add_files([Path(f) for f in files])

    def _add_audio_dialog(self) -> None:
        pattern = " ".join(f"*{s}" for s in sorted(AUDIO_SUFFIXES))
        files, _ = QFileDialog.getOpenFileNames(self, "Add speech", "", f"Speech ({pattern})")
        self.add_files([Path(f) for f in files])

    def _browse_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.output.text())
        if folder:
            self.output.setText(folder)
            self.load_queue()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() in (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop):
            self._drag(event)
            return True
        return False

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._drag(event)

    def dragMoveEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._drag(event)

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._drag(event)

    def _drag(self, event) -> None:
        files = dropped_files(event)
        if not files or self.worker is not None:
            event.ignore()
            return
        event.acceptProposedAction()
        if event.type() == QEvent.Type.Drop:
            self.add_files(files)

    # -- editing ---------------------------------------------------------------------------------

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or self.queue is None:
            return
        job_id = item.data(Qt.ItemDataRole.UserRole)
        name = COLUMNS[item.column()]
        text = item.text().strip()
        try:
            if name == "Output":
                out = with_output_suffix(text)
                self.queue.edit(job_id, output=out)
            elif name == "FPS":
                self.queue.edit(job_id, fps=text)  # checked there (a number within 1..120)
            self.message.clear_message()
        except StudioError as exc:
            self.message.show_message(exc.message, exc.hint)
        row = self._rows.get(job_id)
        if row is not None:
            self._fill_row(row, self.queue.get(job_id))

    def remove_selected(self) -> int:
        """Remove the selected rows' jobs from the queue (not the running one). Returns how many."""
        if self.queue is None:
            return 0
        ids = {self.table.item(i.row(), 0).data(Qt.ItemDataRole.UserRole)
               for i in self.table.selectionModel().selectedRows()}
        n = self.queue.remove(ids)
        self.refresh()
        return n

    # -- running ---------------------------------------------------------------------------------

    def _set_running(self, running: bool) -> None:
        self.start_btn.setEnabled(not running and self.table.rowCount() > 0)
        self.pause_btn.setEnabled(running)
        self.cancel_btn.setEnabled(running)
        self.remove_btn.setEnabled(not running)
        self.output.setEnabled(not running)
        self.overwrite.setEnabled(not running)

    def start(self) -> None:
        """Run every outstanding job of the queue in a worker thread."""
        if self.worker is not None or self._ensure_queue() is None:
            return
        self.message.clear_message()
        self.report = None
        # no Qt parent and no deleteLater: once finished, the thread is joined and dropped from Python, so
        # its wrapper and its C++ object go together (a deleteLater'd QThread whose wrapper lingers in a
        # reference cycle crashed a later garbage collection)
        worker = BatchWorker(self.queue, overwrite=self.overwrite.isChecked())
        worker.event.connect(self._on_event)
        worker.finished_report.connect(self._on_report)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self._on_worker_finished)
        self.worker = worker
        self._t0 = time.perf_counter()
        self.overall.setValue(0)
        self.status.setText("Starting…")
        self._set_running(True)
        worker.start()

    def pause(self) -> None:
        if self.worker is not None:
            self.worker.pause()
            self.status.setText("Pausing after the current video…")

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.status.setText("Cancelling…")

    def _on_event(self, ev: BatchEvent) -> None:
        row = self._rows.get(ev.job.id)
        if row is None:
            self.refresh()
            row = self._rows.get(ev.job.id)
        if row is not None:
            job = ev.job
            if ev.kind == "progress":
                bar = self.table.cellWidget(row, COL["Progress"])
                if isinstance(bar, QProgressBar):
                    bar.setValue(int(ev.fraction * 1000))
            else:
                self._fill_row(row, job)
        self.overall.setValue(int(ev.overall * 1000))
        eta = f", about {ev.eta_s:.0f} s left" if ev.eta_s is not None else ""
        self.status.setText(f"Job {ev.index + 1}/{ev.total}: {ev.job.output.name} — {ev.stage or ev.kind} "
                            f"{ev.message}{eta}")

    def _on_report(self, report: BatchReport) -> None:
        self.report = report
        c = report.counts
        what = {"paused": "Paused", "cancelled": "Cancelled"}.get(report.stopped, "Finished")
        self.status.setText(f"{what}: {c['done']} done, {c['failed']} failed, "
                            f"{c['pending'] + c['cancelled']} to do — report {report.report_path.name}")
        if not report.stopped:
            self.overall.setValue(1000)

    def _on_failed(self, message: str, hint: str) -> None:
        self.message.show_message(message, hint)

    def _on_worker_finished(self) -> None:
        if self.worker is not None:
            self.worker.wait()
        self.worker = None
        self._set_running(False)
        status = self.status.text()
        self.refresh()
        self.status.setText(status)

    def open_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.output_dir())))

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        if self.worker is not None:
            self.worker.cancel()
            self.worker.wait(30000)
        super().closeEvent(event)
