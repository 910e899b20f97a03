"""The project document: everything a studio session edits, saved as JSON.

A :class:`Project` holds one immutable :class:`ProjectState` (identity, speech, pose and emotion sources,
intensities, keyframes, in/out range, export settings). Every edit replaces the state through
:meth:`Project.update`, which notifies observers with the names of the fields that changed; the GUI wraps
each edit in a QUndoCommand that calls :meth:`Project.update` with the old or new values. Because the
state is immutable, a worker thread can hold a snapshot while the user keeps editing.

On disk (``*.talkproj``, JSON): ``schema_version``, then the fields; file paths are stored relative to
the project file's folder, so a project folder can be moved or shared. Saving is atomic (temporary file
+ ``os.replace``). Loading an older schema migrates it (:data:`MIGRATIONS`); a newer one is a clear error.

Autosave: :class:`Autosaver` writes the dirty document to ``data_dir()/autosave`` and
:func:`find_recoveries` lists autosaves that are newer than their project file (a crash left them), so
the studio can offer to recover them at startup.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from studio.app.project_schema import validate_project
from studio.core.errors import InputError, StudioError
from studio.core.fileio import atomic_write_text, read_text_bounded
from studio.core.paths import data_dir
from studio.core.tracks import clamp_channel
from studio.engine.settings import FLAT_NAMES, RenderSettings, absolute_path, relative_path

SCHEMA_VERSION = 2
#: the largest project file read (keyframes of hours of video are well under 1 MiB)
MAX_PROJECT_BYTES = 16 << 20
PROJECT_SUFFIX = ".talkproj"

#: Fields whose change requires the speech analysis / control track to be rebuilt (``prepare``): the
#: identity and speech, and every render setting (by its flat name) except the encoder's.
PREPARE_FIELDS = frozenset({"identity", "identity_frame_s", "audio", "settings"}
                           | (set(FLAT_NAMES) - {"crf", "preset", "content_credentials"}))

#: Export resolutions: name -> maximum output height in pixels (None = the photo's own size).
RESOLUTIONS: dict[str, int | None] = {"source": None, "1080p": 1080, "720p": 720, "480p": 480}
#: H.264 encoders the export offers (ffmpeg's names)
CODECS = ("libx264", "h264_nvenc")

Keyframes = Mapping[str, tuple[tuple[float, float], ...]]


@dataclass(frozen=True)
class ExportSettings:
    """What the export dialog remembers (the quality, CRF, is a render setting: ``settings.encode.crf``).

    Attributes:
        output: the video to write (None: not chosen yet).
        resolution: a key of :data:`RESOLUTIONS`.
        codec: the H.264 encoder, one of :data:`CODECS`.
        use_range: export only the in/out range (when one is set) instead of the whole clip.
    """

    output: Path | None = None
    resolution: str = "source"
    codec: str = "libx264"
    use_range: bool = True


@dataclass(frozen=True)
class ProjectState:
    """One version of the document. Paths are absolute in memory.

    Attributes:
        identity: the photo or short video whose face is animated.
        identity_frame_s: for a video identity, the time (s) of the chosen frame (None: pick automatically).
        audio: the speech (audio file or the soundtrack of a video).
        settings: every render setting (:class:`~studio.engine.settings.RenderSettings`: frame rate, face,
            transcript, pose/emotion/blink sources, engine and its options, CRF and x264 preset).
        keyframes: channel -> ((time in s, value in the channel's units), ...), sorted by time.
        range_s: (in, out) in seconds, or None for the whole clip.
        export: the export dialog's settings.

    The render settings are edited by their flat names (``pose``, ``fps``, ``crf``, see
    :data:`~studio.engine.settings.FLAT_NAMES`) through :meth:`Project.update`, and read with :meth:`value`.
    """

    identity: Path | None = None
    identity_frame_s: float | None = None
    audio: Path | None = None
    settings: RenderSettings = field(default_factory=RenderSettings)
    keyframes: Keyframes = field(default_factory=dict)
    range_s: tuple[float, float] | None = None
    export: ExportSettings = field(default_factory=ExportSettings)

    def value(self, name: str) -> Any:
        """The field ``name`` of the state, or the render setting of that flat name.

        Raises:
            KeyError: neither.
        """
        if name in _STATE_FIELDS:
            return getattr(self, name)
        return self.settings.value(name)

    def with_values(self, **changes: Any) -> "ProjectState":
        """A copy with state fields and flat render settings replaced.

        Raises:
            ConfigError: an unknown name or a value of the wrong type.
        """
        own = {k: v for k, v in changes.items() if k in _STATE_FIELDS}
        flat = {k: v for k, v in changes.items() if k not in _STATE_FIELDS}
        if flat:
            own["settings"] = own.get("settings", self.settings).with_values(**flat)
        return replace(self, **own)

    def render_settings(self) -> RenderSettings:
        """The engine's :class:`~studio.engine.settings.RenderSettings` for this state (the person file is
        the neural engine's only)."""
        s = self.settings
        if s.engine.name != "neural" and s.engine.person is not None:
            s = s.with_values(person=None)
        return s

    def keyframes_in_frames(self, fps: float, n_frames: int) -> dict[str, list[tuple[int, float]]]:
        """Keyframes as ``apply_keyframes`` wants them: channel -> [(frame index, value)] inside the clip."""
        out: dict[str, list[tuple[int, float]]] = {}
        for name, keys in self.keyframes.items():
            frames = [(int(round(t * fps)), float(v)) for t, v in keys]
            frames = [(k, v) for k, v in frames if 0 <= k < n_frames]
            if frames:
                out[name] = frames
        return out

    def frame_range(self, fps: float, n_frames: int) -> tuple[int, int] | None:
        """The in/out range as a frame range [start, stop) clipped to the clip, or None for all of it."""
        if self.range_s is None:
            return None
        a, b = self.range_s
        start = max(0, min(n_frames - 1, int(round(a * fps))))
        stop = max(start + 1, min(n_frames, int(round(b * fps))))
        return None if (start, stop) == (0, n_frames) else (start, stop)


def with_keyframe(keyframes: Keyframes, channel: str, time_s: float, value: float, *,
                  snap_s: float = 1e-3) -> dict[str, tuple[tuple[float, float], ...]]:
    """A copy of ``keyframes`` with (time_s, value) set on ``channel`` (replacing one within ``snap_s``), the value
    limited to the channel's valid range (:data:`~studio.core.tracks.CHANNEL_RANGES`).

    Raises:
        KeyError: an unknown channel.
    """
    keys = [kv for kv in keyframes.get(channel, ()) if abs(kv[0] - time_s) > snap_s]
    keys.append((round(float(time_s), 4), clamp_channel(channel, value)))
    out = dict(keyframes)
    out[channel] = tuple(sorted(keys))
    return out


def without_keyframes(keyframes: Keyframes, channel: str | None = None) -> dict[str, tuple[tuple[float, float], ...]]:
    """A copy of ``keyframes`` without those of ``channel`` (all channels when None)."""
    return {} if channel is None else {k: v for k, v in keyframes.items() if k != channel}


# ------------------------------------------------------------------------------------------------
# (de)serialisation

_PATH_FIELDS = ("identity", "audio")


def _rel(path: Path | None, base: Path) -> str | None:
    return None if path is None else relative_path(Path(path), base)


def _abs(text: str | None, base: Path) -> Path | None:
    return None if text in (None, "") else absolute_path(str(text), base)


def state_to_dict(state: ProjectState, base: Path) -> dict[str, Any]:
    """JSON-ready dict of ``state`` with paths relative to the folder ``base``."""
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    for f in fields(ProjectState):
        value = getattr(state, f.name)
        if f.name in _PATH_FIELDS:
            value = _rel(value, base)
        elif f.name == "settings":
            value = value.to_dict(relative_to=base)
        elif f.name == "keyframes":
            value = {k: [list(kv) for kv in v] for k, v in value.items()}
        elif f.name == "range_s":
            value = None if value is None else list(value)
        elif f.name == "export":
            value = asdict(value)
            value["output"] = _rel(state.export.output, base)
        out[f.name] = value
    return out


def state_from_dict(data: Mapping[str, Any], base: Path) -> ProjectState:
    """Inverse of :func:`state_to_dict` (after migration); unknown keys are ignored.

    Raises:
        StudioError (ConfigError), TypeError, ValueError, KeyError: a field of the wrong type.
    """
    kw: dict[str, Any] = {}
    for name, value in data.items():
        if name not in _STATE_FIELDS:
            continue
        if name in _PATH_FIELDS:
            value = _abs(value, base)
        elif name == "settings":
            value = RenderSettings.from_dict(value or {}, relative_to=base)
        elif name == "keyframes":
            value = {str(k): tuple(sorted((float(t), float(v)) for t, v in keys)) for k, keys in (value or {}).items()}
        elif name == "range_s":
            value = None if value is None else (float(value[0]), float(value[1]))
        elif name == "export":
            ex = {k: v for k, v in (value or {}).items() if k in {f.name for f in fields(ExportSettings)}}
            ex["output"] = _abs(ex.get("output"), base)
            value = ExportSettings(**ex)
        elif name == "identity_frame_s" and value is not None:
            value = float(value)
        kw[name] = value
    return ProjectState(**kw)


def _migrate_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 kept the render settings as flat fields (and the CRF and codec in ``export``): nest them
    into ``settings`` (:meth:`RenderSettings.to_dict`'s layout) and rename ``export.encoder`` to ``codec``."""
    groups = {"sources": ("pose", "pose_intensity", "emotion", "emotion_intensity", "emotion_source", "blink",
                          "seed"),
              "engine": ("person",)}
    settings: dict[str, Any] = {k: data.pop(k) for k in ("fps", "face_index", "transcript") if k in data}
    for group, names in groups.items():
        settings[group] = {k: data.pop(k) for k in names if k in data}
    if "engine" in data:
        settings["engine"]["name"] = data.pop("engine")
    export = dict(data.get("export") or {})
    if "crf" in export:
        settings["encode"] = {"crf": export.pop("crf")}
    if "encoder" in export:
        export["codec"] = export.pop("encoder")
    data["export"] = export
    data["settings"] = settings
    return data


#: schema_version N -> function migrating a dict of version N to N + 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _migrate_1_to_2}


def migrate(data: dict[str, Any], *, source: str = "the project") -> dict[str, Any]:
    """Bring a loaded dict up to :data:`SCHEMA_VERSION`.

    Raises:
        InputError: no schema_version, or one newer than this version of the studio understands.
    """
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"{source} is not a Talking Head Studio project (no schema_version)",
                         "open a .talkproj file saved by the studio")
    if version > SCHEMA_VERSION:
        raise InputError(f"{source} was saved by a newer studio (schema {version}; this one reads up to "
                         f"{SCHEMA_VERSION})", "update Talking Head Studio to open it")
    while version < SCHEMA_VERSION:
        data = MIGRATIONS[version](dict(data))
        version += 1
        data["schema_version"] = version
    return data


def read_project_file(path: Path, *, autosave: bool = False) -> tuple[ProjectState, dict[str, Any]]:
    """Read and migrate a project (or autosave) file: (state, the raw migrated dict).

    Relative paths in a project file are relative to its own folder, always: a ``base_dir`` key is honoured
    only in the studio's own autosaves (``autosave=True``, files in its data folder), never in a project
    file, which may come from anywhere and must not redirect where it reads and writes.

    Raises:
        InputError: missing, not a regular file, over :data:`MAX_PROJECT_BYTES`, not JSON, not a project, or
            a field of the wrong type or value.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise InputError(f"project not found: {path}", "check the path or pick it again from File > Open")
    text = read_text_bounded(path, what="project", max_bytes=MAX_PROJECT_BYTES,
                             hint="open a .talkproj file saved by the studio")
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"cannot read the project {path}: {exc}", "the file is damaged or not a project") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a Talking Head Studio project", "open a .talkproj file")
    try:
        data = migrate(data, source=str(path))
        validate_project(data, source=str(path), schema_version=SCHEMA_VERSION, resolutions=tuple(RESOLUTIONS),
                         codecs=CODECS)
        given = data.get("base_dir")
        base = Path(given) if autosave and isinstance(given, str) and Path(given).is_absolute() else path.parent
        state = state_from_dict(data, base)
        state.settings.check_values()
        if state.range_s is not None and not state.range_s[0] < state.range_s[1]:
            raise InputError(f"the project {path} has an invalid field range_s: the in point "
                             f"{state.range_s[0]:g} s is not before the out point {state.range_s[1]:g} s",
                             "the file is damaged; remove the range or fix it")
        return state, data
    except InputError:
        raise
    except StudioError as exc:
        raise InputError(f"the project {path} has an invalid field: {exc.message}", "the file is damaged") from None
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        raise InputError(f"the project {path} has an invalid field: {exc}", "the file is damaged") from None


def _reject_constant(name: str) -> float:
    """json.loads hook: NaN and Infinity are not JSON, and no project value may be one."""
    raise ValueError(f"{name} is not a valid number here")


def _finite_float(text: str) -> float:
    """json.loads hook: a number too large for a float (``1e400``) would become infinity: refuse it."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is too large a number")
    return value


# ------------------------------------------------------------------------------------------------
# the document

Observer = Callable[[frozenset[str]], None]


class Project:
    """The open document: current state, file path, dirty flag and observers.

    Observers are called with the frozenset of changed field names after every :meth:`update`, and with
    ``{"*"}`` when the whole document was replaced (new/open/recover).
    """

    def __init__(self, state: ProjectState | None = None, path: Path | None = None) -> None:
        self._state = state or ProjectState()
        self.path = None if path is None else Path(path).absolute()
        self.dirty = False
        self.revision = 0  # increments on every change; the autosaver compares it
        self.untitled_id = uuid.uuid4().hex[:12]
        self._observers: list[Observer] = []

    @property
    def state(self) -> ProjectState:
        return self._state

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths refer to (the project's folder; the cwd while untitled)."""
        return self.path.parent if self.path is not None else Path.cwd()

    def observe(self, callback: Observer) -> None:
        self._observers.append(callback)

    def _notify(self, changed: frozenset[str]) -> None:
        for cb in list(self._observers):
            cb(changed)

    def update(self, **changes: Any) -> frozenset[str]:
        """Replace fields of the state or render settings (by flat name, see :meth:`ProjectState.value`);
        notify observers of the names that really changed.

        Returns:
            The names of the changed fields (empty when every value was already set).
        """
        current = self._state
        changed = frozenset(k for k, v in changes.items() if current.value(k) != v)
        if not changed:
            return changed
        self._state = current.with_values(**{k: changes[k] for k in changed})
        self.dirty = True
        self.revision += 1
        self._notify(changed)
        return changed

    def values(self, names: Iterable[str]) -> dict[str, Any]:
        """Current values of the named fields or flat render settings (for undo)."""
        return {n: self._state.value(n) for n in names}

    def replace_all(self, state: ProjectState, path: Path | None, *, dirty: bool = False) -> None:
        """Swap in a whole new document (new / open / recover)."""
        self._state = state
        self.path = None if path is None else Path(path).absolute()
        self.dirty = dirty
        self.revision += 1
        self.untitled_id = uuid.uuid4().hex[:12]
        self._notify(frozenset({"*"}))

    # -- files -----------------------------------------------------------------------------------

    def to_json(self, base: Path) -> str:
        return json.dumps(state_to_dict(self._state, base), indent=2, ensure_ascii=False) + "\n"

    def save(self, path: Path | None = None) -> Path:
        """Write the project (atomically) to ``path`` (default: its current path) and mark it clean.

        Raises:
            ValueError: no path given for an untitled project. OutputError: cannot write.
        """
        target = Path(path).absolute() if path is not None else self.path
        if target is None:
            raise ValueError("an untitled project needs a path to save to")
        if target.suffix != PROJECT_SUFFIX:
            target = target.with_name(target.name + PROJECT_SUFFIX)
        old_autosave = autosave_path(self)
        atomic_write_text(target, self.to_json(target.parent))
        self.path = target
        self.dirty = False
        old_autosave.unlink(missing_ok=True)
        autosave_path(self).unlink(missing_ok=True)
        self._notify(frozenset({"path"}))
        return target

    @classmethod
    def load(cls, path: Path) -> "Project":
        """Open a project file (migrating older schemas)."""
        state, _ = read_project_file(path)
        return cls(state, path)


# ------------------------------------------------------------------------------------------------
# autosave and recovery

def autosave_dir() -> Path:
    return data_dir() / "autosave"


def autosave_path(project: Project) -> Path:
    """Where the autosave of ``project`` goes: keyed by its path's hash (or its untitled id)."""
    key = (hashlib.sha256(str(project.path).encode()).hexdigest()[:16] if project.path is not None
           else f"untitled-{project.untitled_id}")
    return autosave_dir() / f"{key}.json"


@dataclass(frozen=True)
class Recovery:
    """An autosave left by a session that did not end cleanly.

    Attributes:
        autosave: the autosave file. project: the project file it belongs to (None: never saved).
        saved_at: when the autosave was written (seconds since the epoch).
    """

    autosave: Path
    project: Path | None
    saved_at: float

    def load(self) -> Project:
        """The recovered document: the autosaved state, at its project's path, marked dirty."""
        state, _ = read_project_file(self.autosave, autosave=True)
        project = Project(state, self.project)
        project.dirty = True
        return project


def write_autosave(project: Project) -> Path:
    """Write the document to its autosave file (paths absolute, plus where it belongs)."""
    folder = autosave_dir()
    folder.mkdir(parents=True, exist_ok=True)
    base = project.base_dir
    data = state_to_dict(project.state, base)
    data.update(base_dir=str(base), autosave_of=None if project.path is None else str(project.path),
                saved_at=time.time())
    target = autosave_path(project)
    atomic_write_text(target, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return target


def find_recoveries() -> list[Recovery]:
    """Autosaves newer than their project file (or of projects never saved), newest first."""
    out: list[Recovery] = []
    folder = autosave_dir()
    if not folder.is_dir():
        return out
    for path in folder.glob("*.json"):
        try:
            data = json.loads(read_text_bounded(path, what="autosave", max_bytes=MAX_PROJECT_BYTES, hint=""))
            saved_at = float(data.get("saved_at", path.stat().st_mtime))
            of = data.get("autosave_of")
            project = Path(of) if isinstance(of, str) and of else None
        except (StudioError, OSError, ValueError, TypeError, AttributeError, RecursionError):
            continue
        if project is not None and project.exists() and project.stat().st_mtime >= saved_at:
            path.unlink(missing_ok=True)  # the project was saved after: stale
            continue
        out.append(Recovery(path, project, saved_at))
    return sorted(out, key=lambda r: r.saved_at, reverse=True)


class Autosaver:
    """Writes the document's autosave when it changed since the last one (call :meth:`tick` periodically).

    Args:
        project: the document. interval_s: how often the GUI's timer should call :meth:`tick` (seconds).
    """

    def __init__(self, project: Project, interval_s: float = 30.0) -> None:
        self.project = project
        self.interval_s = float(interval_s)
        self._saved_revision = -1

    def tick(self) -> Path | None:
        """Autosave if dirty and changed since the last autosave; returns the file written, or None."""
        p = self.project
        if not p.dirty or p.revision == self._saved_revision:
            return None
        path = write_autosave(p)
        self._saved_revision = p.revision
        return path

    def discard(self) -> None:
        """Delete the autosave (after a clean save or close)."""
        autosave_path(self.project).unlink(missing_ok=True)
        self._saved_revision = -1


_STATE_FIELDS = frozenset(f.name for f in fields(ProjectState))
assert not _STATE_FIELDS & set(FLAT_NAMES), "a project field shadows a render setting's flat name"
