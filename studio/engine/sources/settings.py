"""What drives the head, the expression and the blinks of a render: the sources' own frozen settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.core.errors import ConfigError, InputError
from studio.media.kinds import is_video
from studio.engine.sources.emotion import PRESETS as EMOTION_PRESETS

#: Head-motion presets; any other ``pose`` value is the path of a video whose head motion is copied.
POSE_PRESETS = ("still", "idle", "nod", "look-around")
#: Expression presets (``neutral`` first), see :data:`studio.engine.sources.emotion.PRESETS`.
EMOTIONS = tuple(EMOTION_PRESETS)
BLINK_MODES = ("auto", "off", "source")
MAX_POSE_INTENSITY = 3.0
#: Seeds are 32-bit unsigned (numpy's SeedSequence takes any non-negative int; a fixed range keeps project
#: files portable)
MAX_SEED = 2 ** 32 - 1


def parse_emotion(text: str | None) -> tuple[str, float | None]:
    """The one parser of ``NAME[:INTENSITY]`` (CLI, batch CSV): ``"happy:0.7"`` -> ("happy", 0.7),
    ``"Sad"`` -> ("sad", None), ``""``/None -> ("neutral", None). The name is not checked here
    (:meth:`SourceSettings.validate` does, with the list of presets).

    Raises:
        ConfigError: the intensity is not a number.
    """
    name, colon, level = (text or "neutral").partition(":")
    name = name.strip().lower() or "neutral"
    if not level.strip():
        if colon:
            raise ConfigError(f"invalid emotion {text!r}: no intensity after the colon",
                              "use NAME or NAME:INTENSITY, e.g. happy:0.7")
        return name, None
    try:
        return name, float(level)
    except ValueError:
        raise ConfigError(f"invalid emotion {text!r}", "use NAME or NAME:INTENSITY, e.g. happy:0.7") from None


def is_pose_preset(pose: str) -> bool:
    """True when ``pose`` names a preset of :data:`POSE_PRESETS` (else it is a video's path)."""
    return pose in POSE_PRESETS


@dataclass(frozen=True)
class SourceSettings:
    """Head pose, expression and blinks of a render.

    Attributes:
        pose: a preset of :data:`POSE_PRESETS` or the path of a video whose head motion (yaw, pitch, roll,
            translation, scale) is transferred. pose_intensity: its scale, 0..3 (0 = still).
        emotion: a preset of :data:`EMOTIONS`; emotion_intensity: its strength, 0..1.
        emotion_source: a photo or video whose expression (mouth corners, brows, eye openness) is copied
            instead of the preset (at emotion_intensity).
        blink: "auto" (natural seeded blinks), "off", or "source" (those of the pose or emotion video).
        seed: random seed of blinks and idle head motion.
    """

    pose: str = "idle"
    pose_intensity: float = 1.0
    emotion: str = "neutral"
    emotion_intensity: float = 0.7
    emotion_source: Path | None = None
    blink: str = "auto"
    seed: int = 0

    @property
    def pose_video(self) -> Path | None:
        """The pose source video, or None for a preset."""
        return None if is_pose_preset(self.pose) else Path(self.pose)

    def validate(self, *, check_files: bool = True) -> None:
        """Raise :class:`ConfigError` naming the first invalid option, or (``check_files``) :class:`InputError`
        for a missing source file."""
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"invalid seed {self.seed!r}", f"use a whole number from 0 to {MAX_SEED}")
        if not np.isfinite(self.pose_intensity) or not 0.0 <= self.pose_intensity <= MAX_POSE_INTENSITY:
            raise ConfigError(f"invalid pose intensity {self.pose_intensity}", "use a value from 0 to 3")
        if self.emotion not in EMOTIONS:
            raise ConfigError(f"unknown emotion {self.emotion!r}", f"choose one of: {', '.join(EMOTIONS)}")
        if not np.isfinite(self.emotion_intensity) or not 0.0 <= self.emotion_intensity <= 1.0:
            raise ConfigError(f"invalid emotion intensity {self.emotion_intensity}", "use a value from 0 to 1")
        if self.blink not in BLINK_MODES:
            raise ConfigError(f"unknown blink mode {self.blink!r}", f"choose one of: {', '.join(BLINK_MODES)}")
        if self.blink == "source" and self.pose_video is None and self.emotion_source is None:
            raise ConfigError("--blink source needs a source video",
                              "give a video with --pose-source or --emotion-source, or use --blink auto")
        if self.pose_video is not None and not is_video(self.pose_video):
            raise ConfigError(f"the pose source must be a video or a preset, not {Path(self.pose_video).name}",
                              f"a photo has no head motion: give a video, or a preset ({', '.join(POSE_PRESETS)})")
        for what, path in (("pose source", self.pose_video), ("emotion source", self.emotion_source)):
            if check_files and path is not None and not Path(path).is_file():
                raise InputError(f"{what} not found: {path}",
                                 f"give an existing video file, or a preset: {', '.join(POSE_PRESETS)}"
                                 if what == "pose source" else "give an existing photo or video file")


__all__ = ["BLINK_MODES", "EMOTIONS", "MAX_SEED", "POSE_PRESETS", "SourceSettings", "is_pose_preset", "parse_emotion"]
