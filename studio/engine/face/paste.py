"""Paste generated aligned faces back into the full-resolution original.

A generator renders the FFHQ-aligned crop (1024² for StyleGAN2); the export keeps the user's framing and
resolution by warping that crop back through the inverse of the alignment and blending it in with a
feathered mask that covers the face (from the landmarks), after matching its colours to the original's
face (mean and spread per channel in CIE Lab, Reinhard et al. 2001). Pixels where the mask is 0 are the
original's, bit for bit.
"""

from __future__ import annotations

import cv2
import numpy as np

from studio.engine.face import topology as T
from studio.engine.face.align import Alignment


def face_mask(alignment: Alignment, points: np.ndarray, *, feather: float = 0.04, grow: float = 0.04) -> np.ndarray:
    """Soft mask of the face in crop space.

    Args:
        alignment: the crop's alignment; points: (478, 2) landmarks in image pixels.
        feather: Gaussian feather width as a fraction of the crop size.
        grow: how far the hull of the face outline is pushed outwards, fraction of the crop size.

    Returns:
        (S, S) float32 in [0, 1]: 1 inside the face, falling smoothly to exactly 0 outside.
    """
    s = alignment.size
    oval = alignment.to_crop(np.asarray(points)[list(T.FACE_OVAL)])
    centre = oval.mean(axis=0)
    d = oval - centre
    oval = centre + d * (1 + grow * s / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6))
    mask = np.zeros((s, s), np.float32)
    cv2.fillConvexPoly(mask, np.round(cv2.convexHull(oval.astype(np.float32))[:, 0] * 16).astype(np.int32), 1.0,
                       lineType=cv2.LINE_AA, shift=4)
    sigma = max(feather * s / 2, 0.5)
    # erode by the feather radius first, so the blurred mask still reaches 0 at the hull
    k = int(2 * round(sigma) + 1)
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    mask[mask < 1e-3] = 0.0
    return mask


def _lab_stats(lab: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = weight[..., None]
    total = max(float(w.sum()), 1e-6)
    mean = (lab * w).sum(axis=(0, 1)) / total
    std = np.sqrt(((lab - mean) ** 2 * w).sum(axis=(0, 1)) / total)
    return mean, np.maximum(std, 1e-3)


def match_colors(src: np.ndarray, ref: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer: give ``src`` (H, W, 3) uint8 RGB the per-channel Lab mean and spread of
    ``ref`` (same size) over the pixels weighted by ``weight`` (H, W) in [0, 1]."""
    s = cv2.cvtColor(src, cv2.COLOR_RGB2LAB).astype(np.float32)
    r = cv2.cvtColor(ref, cv2.COLOR_RGB2LAB).astype(np.float32)
    ms, ss = _lab_stats(s, weight)
    mr, sr = _lab_stats(r, weight)
    out = (s - ms) * (sr / ss) + mr
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def paste_back(original: np.ndarray, crop: np.ndarray, alignment: Alignment, mask: np.ndarray, *,
               color_match: bool = True) -> np.ndarray:
    """Blend an aligned crop back into the full-resolution image.

    Args:
        original: (H, W, 3) uint8 RGB, the photo the alignment was computed on.
        crop: (S, S, 3) uint8 RGB generated face in the aligned frame (S = alignment.size).
        alignment: the image -> crop transform.
        mask: (S, S) float32 in [0, 1] crop-space blend mask (see :func:`face_mask`).
        color_match: match the crop's colours to the original's face first.

    Returns:
        (H, W, 3) uint8 RGB: a new image; outside the warped mask it equals ``original`` exactly.
    """
    s = alignment.size
    if crop.shape != (s, s, 3) or mask.shape != (s, s):
        raise ValueError(f"crop must be ({s}, {s}, 3) and mask ({s}, {s}), got {crop.shape} and {mask.shape}")
    h, w = original.shape[:2]
    inv = cv2.invertAffineTransform(alignment.matrix)
    # only the bounding box of the crop's footprint in the image is touched
    corners = np.array([[0, 0], [s, 0], [0, s], [s, s]], np.float64) @ inv[:, :2].T + inv[:, 2]
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    out = original.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    shift = inv.copy()
    shift[:, 2] -= (x0, y0)
    box = (x1 - x0, y1 - y0)
    if color_match:
        crop = match_colors(crop, alignment.crop(original), mask)
    face = cv2.warpAffine(crop, shift, box, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(mask, shift, box, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    region = out[y0:y1, x0:x1].astype(np.float32)
    blended = region + (face.astype(np.float32) - region) * alpha[..., None]
    inside = alpha > 0
    region_u8 = out[y0:y1, x0:x1]
    region_u8[inside] = np.clip(blended[inside] + 0.5, 0, 255).astype(np.uint8)
    return out
