"""Preview: the frame at the playhead, as the background renderer delivers it (aspect-fit, dark frame)."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget


class PreviewView(QWidget):
    """Paints the newest rendered frame scaled to fit, with a small overlay (frame, time, render ms)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(240, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.image: QImage | None = None
        self.frame_index = -1
        self.overlay = ""
        self.placeholder = "Drop a face photo on Identity and a speech recording on the timeline"
        self.busy_text = ""

    def show_frame(self, image: QImage, k: int, overlay: str) -> None:
        self.image = image
        self.frame_index = k
        self.overlay = overlay
        self.update()

    def clear(self, placeholder: str | None = None) -> None:
        self.image = None
        self.frame_index = -1
        if placeholder is not None:
            self.placeholder = placeholder
        self.update()

    def set_busy(self, text: str) -> None:
        self.busy_text = text
        self.update()

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#0f1013"))
        if self.image is None:
            p.setPen(QColor("#8a93a3"))
            p.drawText(self.rect().adjusted(24, 24, -24, -24), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       self.busy_text or self.placeholder)
            return
        w, h = self.image.width(), self.image.height()
        s = min(self.width() / w, self.height() / h)
        target = QRectF((self.width() - w * s) / 2, (self.height() - h * s) / 2, w * s, h * s)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.drawImage(target, self.image)
        font = QFont(p.font())
        font.setPointSizeF(max(8.0, font.pointSizeF() * 0.9))
        p.setFont(font)
        for text, align in ((self.overlay, Qt.AlignmentFlag.AlignLeft), (self.busy_text, Qt.AlignmentFlag.AlignRight)):
            if not text:
                continue
            rect = p.fontMetrics().boundingRect(text).adjusted(-6, -3, 6, 3)
            x = 8 if align == Qt.AlignmentFlag.AlignLeft else self.width() - rect.width() - 8
            rect.moveTo(x, 8)
            p.fillRect(rect, QColor(0, 0, 0, 150))
            p.setPen(QColor("#e8eaef"))
            p.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
