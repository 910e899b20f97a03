"""User settings: window state, recent projects and preferences, in ``config_dir()/settings.toml``.

Read with the standard library's :mod:`tomllib`; written by :func:`dump_toml`, a small writer for the
flat tables used here (strings, numbers, booleans and lists of strings), atomically.
"""

from __future__ import annotations

import logging
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from studio.app.project import atomic_write_text
from studio.core.paths import config_dir

log = logging.getLogger(__name__)

SETTINGS_VERSION = 1
MAX_RECENT = 10
PREVIEW_QUALITIES = ("preview", "full")


@dataclass
class Settings:
    """Everything the studio remembers between sessions.

    Attributes:
        window_geometry, window_state: base64 of QMainWindow.saveGeometry()/saveState() ("" = default).
        recent: recently opened project files, most recent first (at most :data:`MAX_RECENT`).
        preview_quality: "preview" (display-sized frames) or "full" (full resolution).
        preview_max_side: longest side of a "preview" quality frame in pixels.
        autosave_interval_s: seconds between autosaves of a changed project.
        last_dir: folder of the last file dialog.
    """

    window_geometry: str = ""
    window_state: str = ""
    recent: list[str] = field(default_factory=list)
    preview_quality: str = "preview"
    preview_max_side: int = 512
    autosave_interval_s: float = 30.0
    last_dir: str = ""

    def add_recent(self, path: Path) -> None:
        """Put ``path`` first in the recent list (no duplicates, at most MAX_RECENT)."""
        text = str(Path(path).absolute())
        self.recent = [text] + [r for r in self.recent if r != text][: MAX_RECENT - 1]

    def to_toml(self) -> str:
        data: dict[str, Any] = {"version": SETTINGS_VERSION}
        data["window"] = {"geometry": self.window_geometry, "state": self.window_state}
        data["files"] = {"recent": list(self.recent), "last_dir": self.last_dir}
        data["preferences"] = {"preview_quality": self.preview_quality, "preview_max_side": self.preview_max_side,
                               "autosave_interval_s": self.autosave_interval_s}
        return dump_toml(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "Settings":
        s = cls()
        window = data.get("window", {})
        files = data.get("files", {})
        prefs = data.get("preferences", {})
        s.window_geometry = str(window.get("geometry", ""))
        s.window_state = str(window.get("state", ""))
        s.recent = [str(r) for r in files.get("recent", []) if isinstance(r, str)][:MAX_RECENT]
        s.last_dir = str(files.get("last_dir", ""))
        if prefs.get("preview_quality") in PREVIEW_QUALITIES:
            s.preview_quality = prefs["preview_quality"]
        side = prefs.get("preview_max_side")
        if isinstance(side, int) and 128 <= side <= 4096:
            s.preview_max_side = side
        interval = prefs.get("autosave_interval_s")
        if isinstance(interval, (int, float)) and 1 <= interval <= 3600:
            s.autosave_interval_s = float(interval)
        return s


def settings_path() -> Path:
    return config_dir() / "settings.toml"


def load_settings(path: Path | None = None) -> Settings:
    """Read the settings; a missing or damaged file gives the defaults (a damaged one is logged)."""
    path = path or settings_path()
    try:
        with open(path, "rb") as fh:
            return Settings.from_mapping(tomllib.load(fh))
    except FileNotFoundError:
        return Settings()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        log.warning("ignoring unreadable settings %s: %s", path, exc)
        return Settings()


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write the settings atomically (creating the config folder)."""
    path = path or settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, settings.to_toml())
    return path


# ------------------------------------------------------------------------------------------------
# a minimal TOML writer

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value} to TOML")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        for ch, esc in (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
            escaped = escaped.replace(ch, esc)
        escaped = "".join(c if ord(c) >= 0x20 and c != "\x7f" else f"\\u{ord(c):04x}" for c in escaped)
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} to TOML")


def dump_toml(data: Mapping[str, Any]) -> str:
    """TOML text for a mapping of scalars/lists and one level of tables (``{"t": {"k": v}}``)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    for name, table in data.items():
        if isinstance(table, Mapping):
            lines.append(f"\n[{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
