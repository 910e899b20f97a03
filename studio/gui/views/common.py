"""Helpers shared by the views: file drops, inline message boxes, colours."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QLabel, QWidget

#: Accent colours (matching the dark plots).
ACCENT = "#4aa3ff"
WARN = "#f0b429"
ERROR = "#ff6b6b"

PathFilter = Callable[[Path], bool]


def dropped_files(event: QDragEnterEvent | QDropEvent) -> list[Path]:
    """Local files carried by a drag (file URLs), in order."""
    mime = event.mimeData()
    if mime is None or not mime.hasUrls():
        return []
    return [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]


class FileDropTarget(QObject):
    """Makes ``widget`` accept drops of files that pass ``accepts``; the first one goes to ``on_drop``.

    It is an event filter, so it works on any widget (for a QGraphicsView, pass its viewport).

    Args:
        widget: the drop target. accepts: predicate on the file path. on_drop: called with the path.
    """

    def __init__(self, widget: QWidget, accepts: PathFilter, on_drop: Callable[[Path], None]) -> None:
        super().__init__(widget)
        self.accepts = accepts
        self.on_drop = on_drop
        widget.setAcceptDrops(True)
        widget.installEventFilter(self)

    def _first(self, event) -> Path | None:
        return next((p for p in dropped_files(event) if self.accepts(p)), None)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        kind = event.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            if self._first(event) is not None:
                event.acceptProposedAction()
            else:
                event.ignore()
            return True
        if kind == QEvent.Type.Drop:
            path = self._first(event)
            if path is None:
                event.ignore()
            else:
                event.acceptProposedAction()
                self.on_drop(path)
            return True
        return False


class MessageLabel(QLabel):
    """An inline message: hidden when empty, coloured by severity ("error", "warning", "info")."""

    _STYLES = {
        "error": f"background:#3a1f24;border:1px solid {ERROR};color:#ffd7d7;",
        "warning": f"background:#3a321c;border:1px solid {WARN};color:#ffe9b0;",
        "info": "background:#1f2a38;border:1px solid #3d5a80;color:#d6e6ff;",
    }

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hide()

    def show_message(self, text: str, hint: str = "", *, kind: str = "error") -> None:
        if not text:
            self.clear_message()
            return
        body = f"<b>{_escape(text)}</b>"
        if hint:
            body += f"<br>{_escape(hint)}"
        self.setStyleSheet(f"QLabel{{{self._STYLES[kind]}border-radius:4px;padding:6px;}}")
        self.setText(body)
        self.setProperty("plain_text", f"{text} — {hint}" if hint else text)
        self.show()

    def clear_message(self) -> None:
        self.setText("")
        self.setProperty("plain_text", "")
        self.hide()

    def plain_text(self) -> str:
        return str(self.property("plain_text") or "")


def escape_html(text: str) -> str:
    """``text`` safe inside a rich-text label (&, < and > escaped)."""
    return _escape(text)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def format_time(t: float) -> str:
    """``m:ss.cc`` for a time in seconds."""
    m, s = divmod(max(0.0, t), 60)
    return f"{int(m)}:{s:05.2f}"
