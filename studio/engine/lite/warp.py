"""Backward maps from forward displacement fields: Newton inversion on a coarse grid, then upsampling.

``cv2.remap`` needs, for every output pixel y, the source position x with x + F(x) = y, where F is the
forward displacement (source pixel -> where it goes). We solve that per coarse-grid sample with a few
damped Newton steps, using the field's Jacobian; this stays accurate where the warp compresses strongly
(an eyelid closing over the eye, lips pressing), where plain fixed-point iteration diverges.
"""

from __future__ import annotations

import cv2
import numpy as np


def _jacobian_stack(field: np.ndarray) -> np.ndarray:
    """(Gh, Gw, 2) field in grid units -> (Gh, Gw, 6): [fx, fy, dfx/dj, dfx/di, dfy/dj, dfy/di]."""
    fx, fy = field[..., 0], field[..., 1]
    gh, gw = fx.shape
    d = [np.gradient(f, axis=a) if f.shape[a] > 1 else np.zeros_like(f) for f in (fx, fy) for a in (1, 0)]
    return np.ascontiguousarray(np.stack([fx, fy, *d], axis=-1), dtype=np.float32)


def invert_field(field: np.ndarray, *, window: tuple[int, int, int, int] | None = None,
                 iterations: int = 3, min_det: float = 0.05) -> np.ndarray:
    """Solve x + f(x) = y for every grid sample y (optionally only those in a window).

    Args:
        field: (Gh, Gw, 2) float32 forward displacement in *grid units* (pixels / stride), sampled at the
            grid positions (j, i) = (column, row).
        window: (i0, i1, j0, j1) rows/columns of the targets y to solve for; default the whole grid.
            The field is still sampled everywhere, so sources may lie outside the window.
        iterations: Newton steps after the first-order guess x = y - f(y).
        min_det: floor on |det(I + Jf)|, so folds and full collapses stay finite.

    Returns:
        (i1 - i0, j1 - j0, 2) float32 source positions in grid units (column, row).
    """
    gh, gw = field.shape[:2]
    i0, i1, j0, j1 = window if window is not None else (0, gh, 0, gw)
    jj, ii = np.meshgrid(np.arange(j0, j1, dtype=np.float32), np.arange(i0, i1, dtype=np.float32))
    stack = _jacobian_stack(field)
    x = np.stack([jj, ii], axis=-1) - field[i0:i1, j0:j1]
    for _ in range(iterations):
        s = cv2.remap(stack, x[..., 0], x[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        r0 = x[..., 0] + s[..., 0] - jj
        r1 = x[..., 1] + s[..., 1] - ii
        a, b, c, d = 1.0 + s[..., 2], s[..., 3], s[..., 4], 1.0 + s[..., 5]
        det = a * d - b * c
        det = np.where(np.abs(det) < min_det, np.where(det < 0, -min_det, min_det), det)
        x[..., 0] -= (d * r0 - b * r1) / det
        x[..., 1] -= (-c * r0 + a * r1) / det
    return x


def upsample(coarse: np.ndarray, stride: int, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a coarse-grid array whose sample (i, j) sits at pixel ((j+.5)s-.5, (i+.5)s-.5).

    Args:
        coarse: (Gh, Gw) or (Gh, Gw, C) float32.
        stride: grid spacing s in pixels.
        size: (height, width) of the fine output (at most Gh*s x Gw*s).

    Returns:
        (height, width[, C]) float32, exactly aligned with the fine pixel grid.
    """
    gh, gw = coarse.shape[:2]
    if stride == 1:
        fine = coarse
    else:
        fine = cv2.resize(coarse, (gw * stride, gh * stride), interpolation=cv2.INTER_LINEAR)
    return fine[: size[0], : size[1]]
