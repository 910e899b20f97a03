"""Pose, emotion and blink channels of the control track, from presets or source videos/photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studio.core.errors import InputError
from studio.core.events import CancelToken
from studio.engine.face import topology as T
from studio.engine.face.detect import FaceLandmarks, detect_faces, select_face
from studio.engine.sources.emotion import EXPRESSION_CHANNELS, expression_channels, preset
from studio.engine.sources.idle import blink_track, idle_head_motion
from studio.engine.sources.pose import POSE_CHANNELS, _fill_gaps, _smooth, pose_from_faces, preset_pose, \
    resample_track, track_video
from studio.engine.sources.settings import SourceSettings
from studio.media.kinds import is_image


class SourceVideo:
    """Landmarks of a source video, tracked once and shared by the pose, emotion and blink channels."""

    def __init__(self, path: Path, *, cancel: CancelToken | None = None) -> None:
        self.path = Path(path)
        self.faces, self.fps, self.size = track_video(self.path, cancel=cancel)

    def pose(self) -> np.ndarray:
        """(S, 6) yaw, pitch, roll, tx, ty, scale relative to the video's neutral."""
        return pose_from_faces(self.faces, self.size, self.fps)

    def expressions(self) -> np.ndarray:
        """(S, 4) expression channels (smile, brow, brow_inner, eyes) per frame, smoothed over 80 ms."""
        rows = [None if f is None else np.array([expression_channels(f.points)[k] for k in EXPRESSION_CHANNELS])
                for f in self.faces]
        return _smooth(_fill_gaps(rows, len(EXPRESSION_CHANNELS)), 0.08 * self.fps)

    def blinks(self) -> np.ndarray:
        """(S,) eyelid closure in [0, 1] from the eye aspect ratio: 0 at the video's open-eye level (its
        80th percentile), 1 at 35 % of it (a closed eye's EAR)."""
        ear = _fill_gaps([None if f is None else np.array([np.mean(
            [T.eye_aspect_ratio(f.points, e) for e in (T.EYE_IMAGE_LEFT, T.EYE_IMAGE_RIGHT)])])
            for f in self.faces], 1)[:, 0]
        open_level = float(np.percentile(ear, 80))
        return np.clip((open_level - ear) / (0.65 * open_level), 0.0, 1.0)


def _photo_expression(path: Path) -> dict[str, float]:
    from studio.media.image import MIN_PHOTO_SIDE, load_image

    face: FaceLandmarks = select_face(detect_faces(load_image(path, min_side=MIN_PHOTO_SIDE)), source=str(path))
    return expression_channels(face.points)


def source_channels(n_frames: int, fps: float, settings: SourceSettings, *, energy: np.ndarray | None = None,
                    cancel: CancelToken | None = None) -> dict[str, np.ndarray]:
    """Per-frame pose / emotion / blink channels (each (T,) float32) for the given settings.

    - pose: "still" (none), "idle" (seeded sway with speech-linked nods), "nod", "look-around", or a video
      whose head motion is transferred (looped with a crossfade when shorter than the speech);
      everything is scaled by ``pose_intensity``.
    - emotion: a preset at ``emotion_intensity``, or the expression of ``emotion_source`` (a photo: constant;
      a video: per frame) scaled by ``emotion_intensity``; added to the speech-driven mouth.
    - blink: "auto" (seeded natural blinks), "off", or "source" (the pose video's, else the emotion video's).

    Args:
        n_frames: T; fps: frames per second; settings: the sources and their seed.
        energy: (T,) speech loudness in [0, 1], for speech-linked nods.
        cancel: polled while source videos are analysed.

    Raises:
        InputError / FaceError: a source file that cannot be read or shows no face.
    """
    out: dict[str, np.ndarray] = {}
    videos: dict[Path, SourceVideo] = {}

    def video(path: Path) -> SourceVideo:
        if path not in videos:
            videos[path] = SourceVideo(path, cancel=cancel)
        return videos[path]

    # pose
    k = settings.pose_intensity
    if settings.pose_video is not None:
        src = video(settings.pose_video)
        track = resample_track(src.pose(), src.fps, n_frames, fps)
        out.update({name: k * track[:, i] for i, name in enumerate(POSE_CHANNELS)})
    elif settings.pose == "idle":
        out.update(idle_head_motion(n_frames, fps, seed=settings.seed, energy=energy, intensity=k))
    elif settings.pose in ("nod", "look-around"):
        out.update({name: k * v for name, v in preset_pose(settings.pose, n_frames, fps, seed=settings.seed,
                                                           energy=energy).items()})

    # emotion
    level = settings.emotion_intensity
    if settings.emotion_source is not None:
        path = Path(settings.emotion_source)
        if is_image(path):
            values = _photo_expression(path)
            out.update({name: np.full(n_frames, level * v, np.float32) for name, v in values.items()})
        else:
            src = video(path)
            track = resample_track(src.expressions(), src.fps, n_frames, fps)
            out.update({name: level * track[:, i] for i, name in enumerate(EXPRESSION_CHANNELS)})
    else:
        for name, v in preset(settings.emotion, level).items():
            out[name] = np.full(n_frames, v, np.float32)

    # blinks
    if settings.blink == "auto":
        b = blink_track(n_frames, fps, seed=settings.seed)
        out["blink_l"], out["blink_r"] = b, b.copy()
    elif settings.blink == "source":
        path = settings.pose_video or settings.emotion_source
        if path is None or is_image(path):
            raise InputError("--blink source needs a source video", "give --pose-source VIDEO or a video "
                             "--emotion-source, or use --blink auto")
        src = video(Path(path))
        b = resample_track(src.blinks()[:, None], src.fps, n_frames, fps, crossfade_s=0.2)[:, 0]
        out["blink_l"], out["blink_r"] = b, b.copy()
    return {name: np.asarray(v, dtype=np.float32) for name, v in out.items()}
