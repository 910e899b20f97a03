"""User-facing errors.

Every failure a user can cause (bad file, no face, silent audio, unwritable folder) is raised as a
:class:`StudioError` subclass carrying a one-line ``message`` and a ``hint`` that says what to do.
The CLI prints ``error: <message> (<hint>)`` on stderr and exits non-zero; the GUI shows both inline.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base class for errors a user can act on.

    Args:
        message: what went wrong, naming the file or value involved.
        hint: what the user should do about it (may be empty).
    """

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # pragma: no cover - trivial
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(StudioError):
    """A file given by the user is missing, unreadable or not of the expected kind."""


class ImageError(InputError):
    """The identity image cannot be read or decoded."""


class AudioError(InputError):
    """The speech audio is missing, empty, undecodable or in an unsupported format."""


class FaceError(StudioError):
    """No usable face: none found, or the chosen one is too small / out of range."""


class OutputError(StudioError):
    """The output cannot be written (folder missing or not writable, disk full, encoder failed)."""


class ConfigError(StudioError):
    """An option has an invalid value (fps out of range, unknown engine, ...)."""


class ModelError(StudioError):
    """A checkpoint is missing, corrupt, or does not match the expected layout."""


class Cancelled(StudioError):
    """The user cancelled a long job (Ctrl-C, Cancel button). Nothing was written."""

    exit_code = 130

    def __init__(self, message: str = "cancelled", hint: str = "") -> None:
        super().__init__(message, hint)
