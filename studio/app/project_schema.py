"""The JSON Schema of a project file (``.talkproj``, schema_version 2) and its validation.

A project file may come from anywhere (a download, a colleague, an attacker), so it is validated before a
single value is used: with `jsonschema <https://python-jsonschema.readthedocs.io>`_ (Draft 2020-12) against
the schema below, built from the studio's own constants (engine names, presets, ranges), so it cannot drift
from what the settings accept. JSON Schema rather than pydantic: the file format is JSON and its contract
is declarative and language-neutral (:func:`project_schema` can be published for other tools), and the
in-memory types (:class:`~studio.app.project.ProjectState`, RenderSettings) already exist as frozen
dataclasses with their own semantic checks, which run after this structural check.

What the schema bounds: every type (a boolean is not an integer), every enumeration, every numeric range
(fps, intensities, CRF, seed, face index, times >= 0), string lengths (paths 4096, the transcript 1 MiB), the
number of keyframe channels (only the studio's control channels) and keys. Unknown top-level keys are
ignored (a newer minor version may add some); ``base_dir`` / ``autosave_of`` / ``saved_at`` belong to
autosaves.
"""

from __future__ import annotations

from typing import Any

from studio.core.errors import InputError
from studio.core.tracks import CHANNELS
from studio.engine.settings import (
    ENCODER_CHOICES,
    ENGINE_NAMES,
    MAX_FPS,
    MAX_MOUTH_INTENSITY,
    MAX_MOUTH_OFFSET_MS,
    MIN_FPS,
    MOUTH_MODES,
    SETTINGS_SCHEMA_VERSION,
    X264_PRESETS,
)
from studio.engine.sources.settings import BLINK_MODES, EMOTIONS, MAX_POSE_INTENSITY, MAX_SEED, POSE_PRESETS

#: the longest path string accepted (PATH_MAX on Linux)
MAX_PATH_CHARS = 4096
#: the longest transcript accepted (as the command line's --transcript-file)
MAX_TRANSCRIPT_CHARS = 1 << 20
#: keyframes per channel (one per frame of 14 minutes at 120 fps; far more than anyone sets by hand)
MAX_KEYFRAMES = 100_000
#: the latest time a project refers to, in seconds (a day)
MAX_TIME_S = 86_400.0
#: the largest keyframe value in any channel's units (degrees, fractions, 0..1 mouth values)
MAX_KEY_VALUE = 1_000.0


def _path() -> dict[str, Any]:
    return {"type": ["string", "null"], "maxLength": MAX_PATH_CHARS}


def _number(lo: float, hi: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "number", "minimum": lo}
    if hi is not None:
        out["maximum"] = hi
    return out


def _int(lo: int, hi: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": lo, "maximum": hi}


def project_schema(*, schema_version: int = 2, resolutions: tuple[str, ...] = (),
                   codecs: tuple[str, ...] = ()) -> dict[str, Any]:
    """The Draft 2020-12 JSON Schema of a migrated project dict (``schema_version`` 2).

    Args:
        resolutions, codecs: the export dialog's choices (:data:`studio.app.project.RESOLUTIONS` keys and
            :data:`~studio.app.project.CODECS`), passed in by the project module.
    """
    settings = {
        "type": "object",
        "properties": {
            "schema_version": _int(1, SETTINGS_SCHEMA_VERSION),
            "fps": _number(MIN_FPS, MAX_FPS),
            "face_index": _int(0, 1000),
            "transcript": {"type": ["string", "null"], "maxLength": MAX_TRANSCRIPT_CHARS},
            "mouth_offset_ms": _number(-MAX_MOUTH_OFFSET_MS, MAX_MOUTH_OFFSET_MS),
            "mouth_intensity": _number(0.0, MAX_MOUTH_INTENSITY),
            "sources": {
                "type": "object",
                "properties": {
                    "pose": {"oneOf": [{"enum": list(POSE_PRESETS)},
                                       {"type": "object", "properties": {"video": {"type": "string", "minLength": 1,
                                                                                   "maxLength": MAX_PATH_CHARS}},
                                        "required": ["video"], "additionalProperties": False}]},
                    "pose_intensity": _number(0.0, MAX_POSE_INTENSITY),
                    "emotion": {"enum": list(EMOTIONS)},
                    "emotion_intensity": _number(0.0, 1.0),
                    "emotion_source": _path(),
                    "blink": {"enum": list(BLINK_MODES)},
                    "seed": _int(0, MAX_SEED),
                },
            },
            "engine": {
                "type": "object",
                "properties": {
                    "name": {"enum": list(ENGINE_NAMES)},
                    "person": _path(),
                    "encoder": {"enum": list(ENCODER_CHOICES)},
                    "projection_steps": _int(0, 100_000),
                    "mouth": {"enum": list(MOUTH_MODES)},
                },
            },
            "encode": {"type": "object", "properties": {"crf": _int(0, 51), "preset": {"enum": list(X264_PRESETS)},
                                                       "content_credentials": {"type": "boolean"}}},
        },
    }
    keyframe = {"type": "array", "prefixItems": [_number(0.0, MAX_TIME_S), _number(-MAX_KEY_VALUE, MAX_KEY_VALUE)],
                "minItems": 2, "maxItems": 2}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Talking Head Studio project",
        "type": "object",
        "required": ["schema_version"],
        "properties": {
            "schema_version": {"const": schema_version},
            "identity": _path(),
            "identity_frame_s": {"type": ["number", "null"], "minimum": 0, "maximum": MAX_TIME_S},
            "audio": _path(),
            "settings": settings,
            "keyframes": {
                "type": "object",
                "propertyNames": {"enum": list(CHANNELS)},
                "additionalProperties": {"type": "array", "maxItems": MAX_KEYFRAMES, "items": keyframe},
            },
            "range_s": {"oneOf": [{"type": "null"},
                                  {"type": "array", "prefixItems": [_number(0.0, MAX_TIME_S), _number(0.0, MAX_TIME_S)],
                                   "minItems": 2, "maxItems": 2}]},
            "export": {
                "type": "object",
                "properties": {
                    "output": _path(),
                    "resolution": {"enum": list(resolutions)} if resolutions else {"type": "string"},
                    "codec": {"enum": list(codecs)} if codecs else {"type": "string"},
                    "use_range": {"type": "boolean"},
                },
            },
            "base_dir": _path(),
            "autosave_of": _path(),
            "saved_at": {"type": "number"},
        },
    }


_VALIDATORS: dict[tuple, Any] = {}


def validate_project(data: Any, *, source: str, schema_version: int, resolutions: tuple[str, ...],
                     codecs: tuple[str, ...]) -> None:
    """Check a migrated project dict against :func:`project_schema`.

    Raises:
        InputError: naming the first invalid field (its JSON path, e.g. ``settings.sources.seed``), what is
            wrong with it, and the file.
    """
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    key = (schema_version, resolutions, codecs)
    validator = _VALIDATORS.get(key)
    if validator is None:
        validator = _VALIDATORS[key] = Draft202012Validator(
            project_schema(schema_version=schema_version, resolutions=resolutions, codecs=codecs))
    error = best_match(validator.iter_errors(data))
    if error is None:
        return
    where = ".".join(str(p) for p in error.absolute_path) or "(the file)"
    detail = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    raise InputError(f"the project {source} has an invalid field {where}: {detail}",
                     "the file is damaged or was not written by Talking Head Studio; fix or remove that field")


__all__ = ["MAX_KEY_VALUE", "MAX_KEYFRAMES", "MAX_TIME_S", "MAX_PATH_CHARS", "MAX_TRANSCRIPT_CHARS", "project_schema", "validate_project"]
