"""Pose, emotion and blink channels of the control track, from presets or source videos."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from studio.core.progress import CancelToken
from studio.engine.sources.idle import blink_track, idle_head_motion

if TYPE_CHECKING:  # pragma: no cover
    from studio.engine.pipeline import RenderSettings


def source_channels(n_frames: int, fps: float, settings: "RenderSettings", *, energy: np.ndarray | None = None,
                    cancel: CancelToken | None = None) -> dict[str, np.ndarray]:
    """Per-frame pose / emotion / blink channels (each (T,) float32) for the given settings.

    Args:
        n_frames: T; fps: frames per second; settings: the render settings (pose, emotion, blink, seed).
        energy: (T,) speech loudness in [0, 1], for speech-linked nods.
        cancel: polled while source videos are analysed.
    """
    out: dict[str, np.ndarray] = {}
    if settings.blink == "auto":
        b = blink_track(n_frames, fps, seed=settings.seed)
        out["blink_l"] = b
        out["blink_r"] = b.copy()
    if settings.pose == "idle" and settings.pose_intensity > 0:
        out.update(idle_head_motion(n_frames, fps, seed=settings.seed, energy=energy,
                                    intensity=settings.pose_intensity))
    return out
