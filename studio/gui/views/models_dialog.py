"""Help > Models…: what the model store holds for the neural engine, where to get it, and an importer."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QHeaderView, QLabel, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from studio.core.paths import model_dir
from studio.gui.views.common import MessageLabel, escape_html
from studio.gui.workers import JobWorker

#: the table's columns: the state comes right after the name, so it is never scrolled out of sight
COLUMNS = ("Model", "State", "Used for", "File")


class ModelsDialog(QDialog):
    """A table of the model store's checkpoints (name, state, purpose, file), their download links, and
    *Import…*: check a downloaded checkpoint and store it (``talkstudio models import``), off the UI thread.

    Signals:
        imported(): a checkpoint was added to the store (what the engine choice offers may have changed).
    """

    imported = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(820, 380)
        self.worker: JobWorker | None = None
        self.head = QLabel()
        self.head.setWordWrap(True)
        self.links = QLabel()
        self.links.setWordWrap(True)
        self.links.setOpenExternalLinks(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.message = MessageLabel()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.import_btn = QPushButton("Import…")
        self.import_btn.setToolTip("Check a downloaded checkpoint (PyTorch or safetensors) and add it to the store")
        buttons.addButton(self.import_btn, QDialogButtonBox.ButtonRole.ActionRole)
        self.import_btn.clicked.connect(self._choose_file)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.head)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.links)
        lay.addWidget(self.message)
        lay.addWidget(buttons)
        self.refresh()

    def refresh(self) -> None:
        """Read the store again (imports torch: the dialog is opened on demand, not at the studio's start)."""
        from studio.app.models import model_statuses, neural_status

        status = neural_status()
        models = model_statuses()
        installed = sum(m.installed for m in models)
        self.head.setText(f"<b>Neural engine:</b> {escape_html('available' if status.available else status.reason)}"
                          f"<br>{installed} of {len(models)} checkpoints installed in "
                          f"<code>{escape_html(str(model_dir()))}</code>. The lite engine needs no downloaded weights.")
        self.table.setRowCount(len(models))
        for row, m in enumerate(models):
            for col, text in enumerate((m.name, m.state, ", ".join(m.needed_for), m.file)):
                item = QTableWidgetItem(text)
                item.setToolTip(m.detail or m.title)
                self.table.setItem(row, col, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Interactive)
        links = [f"<b>{escape_html(m.name)}</b>: " + ", ".join(f'<a href="{escape_html(u)}">{escape_html(u)}</a>'
                                                               for u in m.urls)
                 for m in models if m.urls and not m.installed]
        self.links.setText(("Download (the studio never downloads by itself), then <i>Import…</i>:<br>"
                            + "<br>".join(links)) if links else "")
        self.links.setVisible(bool(links))

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a checkpoint", str(Path.home()),
                                              "Checkpoints (*.pt *.pth *.pkl *.ckpt *.safetensors *.model);;All files (*)")
        if path:
            self.import_file(Path(path))

    def import_file(self, path: Path) -> None:
        """Import ``path`` into the store in a worker thread; the table refreshes when it is done."""
        from studio.models import store

        if self.worker is not None:
            return
        self.message.show_message(f"Importing {path.name}…", kind="info")
        self.import_btn.setEnabled(False)
        worker = JobWorker(lambda cancel: store.import_model(path), name="model-import", parent=self)
        worker.finished_ok.connect(lambda st: (self.message.show_message(
            f"Imported {path.name} as {st.name}", st.detail, kind="info"), self.imported.emit()))
        worker.failed.connect(lambda m, h: self.message.show_message(m, h))
        worker.finished.connect(self._import_finished)
        self.worker = worker
        worker.start()

    def _import_finished(self) -> None:
        if self.worker is not None:
            self.worker.deleteLater()
        self.worker = None
        self.import_btn.setEnabled(True)
        self.refresh()

    def done(self, result: int) -> None:  # noqa: D401 - Qt API (close, Esc and the Close button end here)
        """An import in progress is finished first (it writes the store atomically; stopping the thread
        mid-way would abort the studio)."""
        if self.worker is not None:
            self.message.show_message("Finishing the import…", kind="info")
            self.worker.wait()
            self._import_finished()
        super().done(result)
