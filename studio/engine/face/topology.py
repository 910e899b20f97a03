"""Named landmark groups of the MediaPipe 478-point face mesh (and the iBUG-68 mouth mapping).

Indices are MediaPipe Face Mesh's canonical ones (``face_mesh_connections``); left/right are the
*subject's* (so the subject's right eye appears on the image's left). Contours run from the image's
left to its right.
"""

from __future__ import annotations

import numpy as np

# lips: corners 61 (image left) and 291 (image right)
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
LIPS_UPPER_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_LOWER_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)

NOSE_TIP = 1
SUBNASALE = 2
CHIN = 152
FOREHEAD = 10
CHEEK_LEFT, CHEEK_RIGHT = 234, 454
JAW_ANGLE_LEFT, JAW_ANGLE_RIGHT = 172, 397

FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)

# eyes, image-left eye first (the subject's right). Corners: (outer, inner) for the image-left eye.
EYE_IMAGE_LEFT = {
    "corners": (33, 133),
    "upper": (33, 246, 161, 160, 159, 158, 157, 173, 133),
    "lower": (33, 7, 163, 144, 145, 153, 154, 155, 133),
    "iris": (468, 469, 470, 471, 472),
    "brow": (70, 63, 105, 66, 107),
}
EYE_IMAGE_RIGHT = {
    "corners": (362, 263),
    "upper": (362, 398, 384, 385, 386, 387, 388, 466, 263),
    "lower": (362, 382, 381, 380, 374, 373, 390, 249, 263),
    "iris": (473, 474, 475, 476, 477),
    "brow": (336, 296, 334, 293, 300),
}

# iBUG-68 mouth points 48-67 expressed with MediaPipe indices (used for LMD on MediaPipe landmarks)
IBUG_MOUTH_FROM_MEDIAPIPE = (61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91,
                             78, 82, 13, 312, 308, 317, 14, 87)


def inner_lip_gap(points: np.ndarray) -> float:
    """Inner-lip gap in pixels: distance between the mid upper (13) and mid lower (14) inner-lip points.

    Args:
        points: (478, 2) landmarks in pixels.
    """
    return float(np.linalg.norm(points[14] - points[13]))


def mouth_width(points: np.ndarray) -> float:
    """Corner-to-corner mouth width in pixels (61 to 291)."""
    return float(np.linalg.norm(points[MOUTH_RIGHT] - points[MOUTH_LEFT]))


def eye_aspect_ratio(points: np.ndarray, eye: dict) -> float:
    """Eye opening / eye width for one eye (a blink drives it towards 0); unitless."""
    upper = points[list(eye["upper"][2:-2])]
    lower = points[list(eye["lower"][2:-2])]
    opening = float(np.mean(np.linalg.norm(upper - lower, axis=1)))
    width = float(np.linalg.norm(points[eye["corners"][0]] - points[eye["corners"][1]]))
    return opening / max(width, 1e-6)
