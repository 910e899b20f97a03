"""Frame metrics of the talking-head literature: PSNR, SSIM, LMD, mouth-opening correlation.

Protocol (seed paper, section 4.3, and the works it compares with): both frames are FFHQ-aligned to
256x256 with their *own* landmarks, so head motion is factored out and the metrics judge the face; PSNR
and SSIM are on those RGB crops; LMD is the mean Euclidean distance of the 20 mouth landmarks (iBUG-68
points 48-67, taken from MediaPipe's mesh) in crop pixels after each set is mean-centred.
"""

from __future__ import annotations

import cv2
import numpy as np

from studio.engine.face import topology as T


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two (H, W, 3) uint8 images (peak 255); inf when identical."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004) of two (H, W, 3) uint8 images.

    Per RGB channel: local means, variances and covariance under a normalised 11x11 Gaussian window with
    sigma 1.5, weighted *population* statistics (E[x²] - mu², as the authors' reference ``ssim_index.m``),
    K1 = 0.01, K2 = 0.03, data range L = 255 (C1 = (K1 L)², C2 = (K2 L)²); the SSIM map is averaged over the
    positions where the whole window fits (a 5-pixel border is left out, i.e. "valid" filtering), then over
    the three channels. No downsampling. Range [-1, 1], 1 for identical images.

    This equals scikit-image's ``structural_similarity(a, b, channel_axis=-1, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=255)``. It is *not* skimage's default
    ``use_sample_covariance=True``, which rescales the variances by N/(N-1) (N = 121) and gives slightly
    different values. ``tests/test_eval.py::test_ssim_matches_an_independent_reference`` pins it against a
    scipy implementation of the paper's definition.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    blur = lambda z: cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    pad = 5  # keep only the positions where the whole 11x11 window lies inside the image
    return float(s[pad:-pad, pad:-pad].mean())


def mouth_points(points: np.ndarray) -> np.ndarray:
    """(20, 2) iBUG-68 mouth landmarks 48-67 taken from MediaPipe's 478 points."""
    return np.asarray(points)[list(T.IBUG_MOUTH_FROM_MEDIAPIPE)]


def lmd(real_mouth: np.ndarray, fake_mouth: np.ndarray) -> float:
    """Landmark distance: mean Euclidean distance between two (20, 2) mouth landmark sets after each is
    mean-centred, in the pixels of the frame they come from (256x256 aligned crops in our protocol)."""
    r = real_mouth - real_mouth.mean(axis=0)
    f = fake_mouth - fake_mouth.mean(axis=0)
    return float(np.linalg.norm(r - f, axis=1).mean())


def lip_gap(points: np.ndarray) -> float:
    """Inner-lip opening (13 to 14) over the mouth width: 0 closed, ~0.3-0.5 wide open; unitless."""
    return T.inner_lip_gap(points) / max(T.mouth_width(points), 1e-6)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 when either series is constant (a still mouth correlates with nothing)."""
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-12 else 0.0
