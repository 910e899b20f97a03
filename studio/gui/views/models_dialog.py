"""Help > Models…: what the model store holds for the neural engine and what is installed."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from studio.core.paths import model_dir


class ModelsDialog(QDialog):
    """A table of the model store's checkpoints (name, file, purpose, installed?) and the model folder."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(720, 300)
        from studio.app.models import model_statuses, neural_status  # imports torch: not at the studio's start

        status = neural_status()
        models = model_statuses()
        installed = sum(m.installed for m in models)
        head = QLabel(f"<b>Neural engine:</b> {'available' if status.available else status.reason}<br>"
                      f"{installed} of {len(models)} checkpoints installed in <code>{model_dir()}</code> "
                      "(import downloaded files with <code>talkstudio models import FILE</code>).<br>"
                      "The lite engine needs no downloaded weights.")
        head.setWordWrap(True)
        self.table = QTableWidget(len(models), 4)
        self.table.setHorizontalHeaderLabels(["Model", "File", "Used for", "State"])
        for row, m in enumerate(models):
            for col, text in enumerate((m.name, m.file, ", ".join(m.needed_for), m.state)):
                self.table.setItem(row, col, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(head)
        lay.addWidget(self.table)
        lay.addWidget(buttons)
