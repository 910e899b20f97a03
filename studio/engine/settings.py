"""The settings of one render, declared once.

:class:`RenderSettings` is frozen and composed of the sources' (:class:`SourceSettings`), the engine's
(:class:`EngineSettings`) and the encoder's (:class:`EncodeSettings`) settings, plus the frame rate, the
face to animate and the transcript. Everything else derives from it:

- the CLI's options and the studio's combo boxes take their choices from the constants here and in
  :mod:`studio.engine.sources.settings`;
- a project (:class:`studio.app.project.ProjectState`) holds a RenderSettings, and a batch job holds
  overrides of the batch's RenderSettings (:meth:`RenderSettings.with_values`);
- on disk, :meth:`RenderSettings.to_dict` / :meth:`RenderSettings.from_dict` give a JSON-ready dict with
  its own ``schema_version``.

Every setting also has one *flat name* (its field name: ``pose``, ``crf``, ``mouth``; the engine's name is
``engine``), unique across the groups: the name of its project field and CSV column, and of its CLI option
(``--pose-source`` is also ``--pose``; an emotion's intensity is given as ``--emotion NAME:INTENSITY``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from studio.core.errors import ConfigError
from studio.engine.sources.settings import SourceSettings

SETTINGS_SCHEMA_VERSION = 1

ENGINE_NAMES = ("lite", "neural")
#: values of the neural engine's ``encoder`` (E_I): "auto" = e4e if installed, else pSp, else
#: optimisation-based projection alone; "none" = projection alone
ENCODER_CHOICES = ("auto", "e4e", "psp", "none")
#: what drives the neural engine's mouth: "auto" (the trained speech-to-latent model when installed,
#: else the discovered mouth directions), "audio-model" or "directions"
MOUTH_MODES = ("auto", "audio-model", "directions")
#: libx264 speed presets (ffmpeg's names), fastest first
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
MIN_FPS, MAX_FPS = 1.0, 120.0
MAX_CRF = 51
MAX_MOUTH_OFFSET_MS = 500.0
MAX_MOUTH_INTENSITY = 2.0


@dataclass(frozen=True)
class EngineSettings:
    """Which engine renders, and the neural engine's options (the lite engine has none).

    Attributes:
        name: one of :data:`ENGINE_NAMES`.
        person: a PTI person file (``talkstudio tune``; neural only). encoder: E_I, one of
            :data:`ENCODER_CHOICES`. projection_steps: optimisation steps refining E_I's code (without an
            encoder: the projection's steps, 0 = 450). mouth: one of :data:`MOUTH_MODES`.
    """

    name: str = "lite"
    person: Path | None = None
    encoder: str = "auto"
    projection_steps: int = 0
    mouth: str = "auto"

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an unknown engine, encoder or mouth mode, or negative steps."""
        if self.name not in ENGINE_NAMES:
            raise ConfigError(f"unknown engine {self.name!r}", f"choose one of: {', '.join(ENGINE_NAMES)}")
        if self.encoder not in ENCODER_CHOICES:
            raise ConfigError(f"unknown encoder {self.encoder!r}", f"use one of: {', '.join(ENCODER_CHOICES)}")
        if self.mouth not in MOUTH_MODES:
            raise ConfigError(f"unknown mouth mode {self.mouth!r}", f"use one of: {', '.join(MOUTH_MODES)}")
        if self.projection_steps < 0:
            raise ConfigError(f"invalid projection steps {self.projection_steps}", "use 0 or more")


@dataclass(frozen=True)
class EncodeSettings:
    """H.264 encoding of the output.

    Attributes:
        crf: x264 constant rate factor, 0 (lossless) .. 51; 18 is visually lossless.
        preset: x264 speed preset, one of :data:`X264_PRESETS`.
        content_credentials: sign a C2PA manifest into the video (:mod:`studio.media.credentials`). On by
            default; turning it off is shown as a warning. (The invisible watermark cannot be turned off.)
    """

    crf: int = 18
    preset: str = "veryfast"
    content_credentials: bool = True

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a CRF outside 0..51 or an unknown preset."""
        if not 0 <= int(self.crf) <= MAX_CRF:
            raise ConfigError(f"quality (CRF) must be 0..{MAX_CRF}, got {self.crf}", "18 is visually lossless")
        if self.preset not in X264_PRESETS:
            raise ConfigError(f"unknown x264 preset {self.preset!r}", f"use one of: {', '.join(X264_PRESETS)}")
        if not isinstance(self.content_credentials, bool):
            raise ConfigError(f"content_credentials must be true or false, got {self.content_credentials!r}",
                              "give true or false")


_GROUPS = {"sources": SourceSettings, "engine": EngineSettings, "encode": EncodeSettings}
_TOP = ("fps", "face_index", "transcript", "mouth_offset_ms", "mouth_intensity")
#: flat name -> (group or None, field name in it)
FLAT_NAMES: dict[str, tuple[str | None, str]] = {name: (None, name) for name in _TOP}
for _group, _cls in _GROUPS.items():
    for _f in fields(_cls):
        _flat = "engine" if (_group, _f.name) == ("engine", "name") else _f.name
        assert _flat not in FLAT_NAMES, f"flat setting name {_flat!r} is not unique"
        FLAT_NAMES[_flat] = (_group, _f.name)
#: settings that are paths (stored relative to a project's folder, resolved against a CSV's folder)
PATH_NAMES = frozenset({"emotion_source", "person"})
_FLOATS = frozenset({"fps", "pose_intensity", "emotion_intensity", "mouth_offset_ms", "mouth_intensity"})
_INTS = frozenset({"face_index", "seed", "crf", "projection_steps"})
_BOOLS = frozenset({"content_credentials"})
_TRUE, _FALSE = frozenset({"true", "yes", "on", "1"}), frozenset({"false", "no", "off", "0"})


def _coerce(name: str, value: Any) -> Any:
    """A flat setting's value from JSON/CSV/CLI text as its field's type (None stays None for optional ones).

    Raises:
        ConfigError: a number that does not parse, or a switch that is not true/false (yes/no, on/off, 1/0).
    """
    try:
        if name in _FLOATS:
            return float(value)
        if name in _INTS:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"invalid {name.replace('_', ' ')} {value!r}", "give a number") from None
    if name in _BOOLS:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ConfigError(f"invalid {name.replace('_', ' ')} {value!r}", "give true or false")
    if name in PATH_NAMES or name == "transcript":
        return None if value in (None, "") else (Path(value) if name in PATH_NAMES else str(value))
    if value is None:
        raise ConfigError(f"the {name.replace('_', ' ')} setting cannot be empty",
                          f"give a value (default: {RenderSettings().value(name)})")
    return str(value)


@dataclass(frozen=True)
class RenderSettings:
    """Every option of one render (the CLI's defaults).

    Attributes:
        fps: output frame rate in frames per second, 1..120 (25 = the paper's).
        face_index: which face to animate when the photo has several (0 = largest).
        transcript: optional text of the speech; enables forced alignment (more exact visemes).
        mouth_offset_ms: shifts the mouth against the sound, milliseconds in [-500, 500] (positive: the
            mouth moves later), for speech whose picture must lead or trail it.
        mouth_intensity: scales how far the mouth opens, spreads and rounds, [0, 2] (1: as analysed; lip
            contacts and pauses still close fully).
        sources: head pose, expression, blinks and their seed (:class:`SourceSettings`).
        engine: which engine and its options (:class:`EngineSettings`).
        encode: H.264 quality and speed (:class:`EncodeSettings`).
    """

    fps: float = 25.0
    face_index: int = 0
    transcript: str | None = None
    mouth_offset_ms: float = 0.0
    mouth_intensity: float = 1.0
    sources: SourceSettings = field(default_factory=SourceSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    encode: EncodeSettings = field(default_factory=EncodeSettings)

    # -------------------------------------------------------------------------------- flat access
    def value(self, name: str) -> Any:
        """The setting of flat name ``name`` (see :data:`FLAT_NAMES`). Raises KeyError for an unknown name."""
        group, attr = FLAT_NAMES[name]
        return getattr(self if group is None else getattr(self, group), attr)

    def values(self) -> dict[str, Any]:
        """Every setting by flat name."""
        return {name: self.value(name) for name in FLAT_NAMES}

    def with_values(self, **changes: Any) -> "RenderSettings":
        """A copy with the named flat settings replaced (values are coerced to the field's type, so text from
        a CSV or JSON works).

        Raises:
            ConfigError: an unknown setting name or a number that does not parse.
        """
        unknown = sorted(set(changes) - set(FLAT_NAMES))
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r}", f"use one of: {', '.join(FLAT_NAMES)}")
        top: dict[str, Any] = {}
        groups: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            group, attr = FLAT_NAMES[name]
            value = _coerce(name, value)
            if group is None:
                top[attr] = value
            else:
                groups.setdefault(group, {})[attr] = value
        for group, kw in groups.items():
            top[group] = replace(getattr(self, group), **kw)
        return replace(self, **top)

    @property
    def pose_video(self) -> Path | None:
        """The pose source video, or None for a preset."""
        return self.sources.pose_video

    # -------------------------------------------------------------------------------- checks
    def check_values(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid value (without looking at files or models)."""
        if not np.isfinite(self.fps) or not MIN_FPS <= self.fps <= MAX_FPS:
            raise ConfigError(f"invalid fps {self.fps!r}", f"use a frame rate between {MIN_FPS:g} and {MAX_FPS:g}")
        if self.face_index < 0:
            raise ConfigError(f"invalid face index {self.face_index}", "use 0 for the largest face, 1 for the next")
        if not np.isfinite(self.mouth_offset_ms) or abs(self.mouth_offset_ms) > MAX_MOUTH_OFFSET_MS:
            raise ConfigError(f"invalid mouth offset {self.mouth_offset_ms} ms",
                              f"use -{MAX_MOUTH_OFFSET_MS:g} to {MAX_MOUTH_OFFSET_MS:g} ms (positive: the mouth later)")
        if not np.isfinite(self.mouth_intensity) or not 0.0 <= self.mouth_intensity <= MAX_MOUTH_INTENSITY:
            raise ConfigError(f"invalid mouth intensity {self.mouth_intensity}",
                              f"use 0 to {MAX_MOUTH_INTENSITY:g} (1 = as analysed)")
        self.engine.validate()
        self.sources.validate(check_files=False)
        self.encode.validate()

    def validate(self) -> None:
        """:meth:`check_values`, then InputError for a missing source file. (Whether the engine's models are
        installed is the engine's to say: :func:`studio.engine.pipeline.check_settings`.)"""
        self.check_values()
        self.sources.validate()

    # -------------------------------------------------------------------------------- files
    def to_dict(self, *, relative_to: Path | None = None) -> dict[str, Any]:
        """JSON-ready dict: ``schema_version`` and the three groups; paths as text (relative to
        ``relative_to`` when given, see :func:`relative_path`)."""
        def text(path: Path | None) -> str | None:
            return None if path is None else relative_path(Path(path), relative_to)

        src = self.sources
        return {
            "schema_version": SETTINGS_SCHEMA_VERSION,
            "fps": float(self.fps), "face_index": int(self.face_index), "transcript": self.transcript,
            "mouth_offset_ms": float(self.mouth_offset_ms), "mouth_intensity": float(self.mouth_intensity),
            "sources": {"pose": src.pose if src.pose_video is None else {"video": text(src.pose_video)},
                        "pose_intensity": float(src.pose_intensity), "emotion": src.emotion,
                        "emotion_intensity": float(src.emotion_intensity),
                        "emotion_source": text(src.emotion_source), "blink": src.blink, "seed": int(src.seed)},
            "engine": {"name": self.engine.name, "person": text(self.engine.person),
                       "encoder": self.engine.encoder, "projection_steps": int(self.engine.projection_steps),
                       "mouth": self.engine.mouth},
            "encode": {"crf": int(self.encode.crf), "preset": self.encode.preset,
                       "content_credentials": bool(self.encode.content_credentials)},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, relative_to: Path | None = None) -> "RenderSettings":
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys are ignored.

        Raises:
            ConfigError: not a mapping, a newer schema_version, a group that is not a mapping, or a value
                of the wrong type. (Validity of the values: :meth:`validate`.)
        """
        if not isinstance(data, Mapping):
            raise ConfigError("render settings must be a JSON object", "the file is damaged")
        version = data.get("schema_version", SETTINGS_SCHEMA_VERSION)
        if not isinstance(version, int) or version > SETTINGS_SCHEMA_VERSION:
            raise ConfigError(f"render settings of schema {version!r} (this studio reads up to "
                              f"{SETTINGS_SCHEMA_VERSION})", "update Talking Head Studio to read them")
        flat: dict[str, Any] = {k: data[k] for k in _TOP if k in data}
        for group, klass in _GROUPS.items():
            part = data.get(group, {})
            if not isinstance(part, Mapping):
                raise ConfigError(f"render settings: {group!r} must be a JSON object", "the file is damaged")
            for f in fields(klass):
                if f.name in part:
                    flat["engine" if (group, f.name) == ("engine", "name") else f.name] = part[f.name]
        pose = flat.get("pose")
        if isinstance(pose, Mapping):
            flat["pose"] = str(absolute_path(str(pose.get("video", "")), relative_to))
        for name in PATH_NAMES:
            if flat.get(name) not in (None, ""):
                flat[name] = absolute_path(str(flat[name]), relative_to)
        return cls().with_values(**flat)


def relative_path(path: Path, base: Path | None) -> str:
    """``path`` as POSIX text relative to the folder ``base`` (absolute when ``base`` is None or on
    another drive)."""
    if base is None:
        return str(path)
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:  # another drive on Windows
        return str(path)


def absolute_path(text: str, base: Path | None) -> Path:
    """Inverse of :func:`relative_path`: ``text`` (``~`` expanded) resolved against ``base`` when relative.

    Raises:
        ConfigError: ``~user`` names a user unknown here (or there is no home folder), or the text is not a
            usable path (a NUL byte, too long).
    """
    try:
        p = Path(text).expanduser()
        return p if p.is_absolute() or base is None else (Path(base) / p).resolve()
    except RuntimeError:  # "~nobody-here/x"
        raise ConfigError(f"cannot resolve the path {text!r}: no such user's home folder",
                          "give the full path instead of ~user/...") from None
    except (ValueError, OSError) as exc:  # a NUL byte, a name too long, a loop of links
        raise ConfigError(f"invalid path {text[:80]!r}: {exc}", "give the path of an existing file") from None


__all__ = ["ENCODER_CHOICES", "ENGINE_NAMES", "EncodeSettings", "EngineSettings", "FLAT_NAMES", "MAX_FPS",
           "MIN_FPS", "MOUTH_MODES", "PATH_NAMES", "RenderSettings", "SETTINGS_SCHEMA_VERSION", "SourceSettings",
           "X264_PRESETS", "absolute_path", "relative_path"]
