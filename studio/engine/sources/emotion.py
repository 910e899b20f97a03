"""Facial expression: presets, and measurement from landmarks of a source photo or video.

Expression channels (engine-independent, each roughly in [-1, 1]):
    smile       mouth corners up and out (+, happy) or down (-, sad);
    brow        both brows raised (+, surprise) or lowered (-, anger);
    brow_inner  inner brow ends raised (+, sadness) or drawn down together (-, anger);
    eyes        eyes widened (+, surprise) or narrowed (-, a smile's cheek raise, anger).
"""

from __future__ import annotations

import numpy as np

from studio.engine.face import topology as T

EXPRESSION_CHANNELS = ("smile", "brow", "brow_inner", "eyes")

#: Preset expressions at intensity 1 (added to the speech-driven mouth; jaw/open offsets for surprise).
PRESETS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"smile": 1.0, "eyes": -0.35, "brow": 0.1},
    "sad": {"smile": -0.75, "brow_inner": 0.9, "brow": -0.15, "eyes": -0.25},
    "angry": {"smile": -0.35, "brow": -0.6, "brow_inner": -1.0, "eyes": -0.3, "press": 0.15},
    "surprised": {"brow": 1.0, "brow_inner": 0.3, "eyes": 0.8, "jaw": 0.15, "open": 0.1},
}

# Population reference ("neutral") values of the landmark measures below and the change that counts as
# 1.0 on each channel, in inter-ocular distances (EAR is unitless). The neutral values are the means
# over near-neutral frontal faces; a photo is compared with them, a video too (frame by frame).
_NEUTRAL = {"smile": 0.02, "brow": 0.35, "brow_inner": 0.07, "eyes": 0.28}
_UNIT = {"smile": 0.09, "brow": 0.08, "brow_inner": 0.08, "eyes": 0.1}


def expression_measures(points: np.ndarray) -> dict[str, float]:
    """Raw landmark measures of one face.

    Args:
        points: (478, 2) landmarks in pixels.

    Returns:
        smile: mouth-corner lift above the lip centre; brow: brow height above the eye centres;
        brow_inner: inner-minus-outer brow height (all in inter-ocular distances, along the face's own
        vertical so head roll does not count); eyes: mean eye aspect ratio.
    """
    p = np.asarray(points, dtype=np.float64)
    left = p[list(T.EYE_IMAGE_LEFT["upper"]) + list(T.EYE_IMAGE_LEFT["lower"])].mean(axis=0)
    right = p[list(T.EYE_IMAGE_RIGHT["upper"]) + list(T.EYE_IMAGE_RIGHT["lower"])].mean(axis=0)
    iod = float(np.linalg.norm(right - left))
    eh = (right - left) / iod
    up = np.array([eh[1], -eh[0]])  # the face's upward direction
    lip_centre = (p[13] + p[14]) / 2
    corners = (p[T.MOUTH_LEFT] + p[T.MOUTH_RIGHT]) / 2
    eye_centre = (left + right) / 2
    brows = np.r_[p[list(T.EYE_IMAGE_LEFT["brow"])], p[list(T.EYE_IMAGE_RIGHT["brow"])]]
    inner = np.mean([(p[107] - left) @ up, (p[336] - right) @ up])
    outer = np.mean([(p[70] - left) @ up, (p[300] - right) @ up])
    return {
        "smile": float((corners - lip_centre) @ up) / iod,
        "brow": float(np.mean((brows - eye_centre) @ up)) / iod,
        "brow_inner": float(inner - outer) / iod,
        "eyes": float(np.mean([T.eye_aspect_ratio(p, e) for e in (T.EYE_IMAGE_LEFT, T.EYE_IMAGE_RIGHT)])),
    }


def expression_channels(points: np.ndarray) -> dict[str, float]:
    """Expression channel values (clipped to [-1, 1]) of a face, relative to the population neutral."""
    m = expression_measures(points)
    return {k: float(np.clip((m[k] - _NEUTRAL[k]) / _UNIT[k], -1.0, 1.0)) for k in EXPRESSION_CHANNELS}


def preset(name: str, intensity: float) -> dict[str, float]:
    """Channel offsets of an emotion preset at ``intensity`` in [0, 1].

    Raises:
        KeyError: unknown preset name.
    """
    return {k: v * float(intensity) for k, v in PRESETS[name].items()}
