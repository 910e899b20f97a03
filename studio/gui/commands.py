"""Every edit of the project document is a QUndoCommand that changes the document only.

:class:`DocumentModel` is the Qt face of :class:`~studio.app.project.Project`: it owns the undo stack and
re-emits the document's change notifications as a signal that views observe. :class:`SetFields` is the one
command class: it records the old and new values of some fields and swaps them on undo/redo; consecutive
edits with the same ``merge_key`` (a slider being dragged, a keyframe being moved) merge into one undo step.
The helper functions build the commands the views need, with their Edit-menu text.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from studio.app.project import Project, with_keyframe, without_keyframes


class DocumentModel(QObject):
    """The open project plus its undo stack.

    Signals:
        changed(frozenset of field names; ``{"*"}`` when the whole document was replaced,
        ``{"path"}`` after a save).
    """

    changed = Signal(object)

    def __init__(self, project: Project | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self.project = project or Project()
        self.project.observe(self.changed.emit)

    @property
    def state(self):
        return self.project.state

    def replace_project(self, project: Project) -> None:
        """Swap in another document (new/open/recover); the undo history is cleared."""
        self.undo_stack.clear()
        self.project = project
        project.observe(self.changed.emit)
        self.changed.emit(frozenset({"*"}))

    def push(self, command: QUndoCommand) -> None:
        self.undo_stack.push(command)


class SetFields(QUndoCommand):
    """Set fields of the document; undo restores their previous values.

    Args:
        model: the document. changes: field name -> new value. text: the Edit menu's label.
        merge_key: commands with the same key and fields, pushed one after the other, merge into one.
    """

    def __init__(self, model: DocumentModel, changes: dict[str, Any], text: str, *,
                 merge_key: str | None = None) -> None:
        super().__init__(text)
        self._model = model
        self._new = dict(changes)
        self._old = model.project.values(changes)
        self._merge_id = -1 if merge_key is None else zlib.crc32(merge_key.encode()) & 0x7FFFFFFF
        if self._new == self._old:
            self.setObsolete(True)

    def id(self) -> int:  # noqa: A003 - Qt API
        return self._merge_id

    def redo(self) -> None:
        self._model.project.update(**self._new)

    def undo(self) -> None:
        self._model.project.update(**self._old)

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt API
        if not isinstance(other, SetFields) or other.id() != self.id() or other._new.keys() != self._new.keys():
            return False
        self._new = dict(other._new)
        self.setObsolete(self._new == self._old)
        return True


# -- the edits the views make ---------------------------------------------------------------------

def set_identity(model: DocumentModel, path: Path, frame_s: float | None = None) -> SetFields:
    return SetFields(model, {"identity": Path(path), "identity_frame_s": frame_s, "face_index": 0, "person": None},
                     f"Set identity to {Path(path).name}")


def set_audio(model: DocumentModel, path: Path) -> SetFields:
    """Replace the speech; keyframes and the in/out range belong to the old speech and are dropped."""
    return SetFields(model, {"audio": Path(path), "keyframes": {}, "range_s": None},
                     f"Set speech to {Path(path).name}")


def set_value(model: DocumentModel, field: str, value: Any, label: str, *, merge: bool = False) -> SetFields:
    """Set one field; ``merge`` makes a run of edits of the same field one undo step (sliders)."""
    return SetFields(model, {field: value}, label, merge_key=f"value:{field}" if merge else None)


def set_keyframe(model: DocumentModel, channel: str, time_s: float, value: float) -> SetFields:
    keys = with_keyframe(model.state.keyframes, channel, time_s, value)
    return SetFields(model, {"keyframes": keys}, f"Keyframe {channel} at {time_s:.2f} s")


def clear_keyframes(model: DocumentModel, channel: str | None = None) -> SetFields:
    keys = without_keyframes(model.state.keyframes, channel)
    return SetFields(model, {"keyframes": keys}, f"Clear keyframes{'' if channel is None else ' of ' + channel}")


def set_range(model: DocumentModel, range_s: tuple[float, float] | None) -> SetFields:
    text = "Clear in/out range" if range_s is None else f"Set range {range_s[0]:.2f}–{range_s[1]:.2f} s"
    return SetFields(model, {"range_s": range_s}, text, merge_key="range")
