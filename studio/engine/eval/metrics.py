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


#: a lip gap (inner-lip opening / mouth width) below this counts as closed lips
CLOSED_GAP = 0.07
#: articulation measures of one generated lip-gap track against the real one (see :func:`articulation`)
ARTICULATION_METRICS = ("gap_err_ratio", "closure_recall", "open_range")


def articulation(real: np.ndarray, generated: np.ndarray, static: np.ndarray, frames: np.ndarray | None = None,
                 *, closed: float = CLOSED_GAP, tolerance: int = 2) -> dict[str, float]:
    """How a generated mouth articulates against the real one, from per-frame lip gaps (:func:`lip_gap`).

    Args:
        real, generated, static: (N,) lip gaps of the real video, the render and the static baseline (the
            identity frame repeated) on the same N frames. frames: their frame indices (default 0..N-1), so
            frames without a face keep the timing. closed: the gap below which lips count as closed.
        tolerance: frames either side within which a generated closure matches a real one.

    Returns:
        ``gap_err_ratio``: mean |generated - real| / mean |static - real| (< 1: closer to the real mouth than
        a still photo; NaN when the static baseline equals the real gap on every frame); ``closure_recall``: of the real frames with
        closed lips, the share where the render also has closed lips within ``tolerance`` frames (NaN
        without real closures; it has no precision counterpart, so a mouth that never opens scores 1 when
        the identity frame's lips are closed: read it beside lip-gap r and the error); ``open_range``: 90th percentile of the generated gap / that of the real gap
        (1 = the same range of opening).
    """
    real, generated, static = (np.asarray(x, dtype=np.float64) for x in (real, generated, static))
    if not (real.shape == generated.shape == static.shape) or real.ndim != 1:
        raise ValueError(f"lip-gap tracks differ in shape: {real.shape}, {generated.shape}, {static.shape}")
    nan = float("nan")
    if real.size == 0:
        return dict.fromkeys(ARTICULATION_METRICS, nan)
    idx = np.arange(real.size) if frames is None else np.asarray(frames, dtype=np.int64)
    base = float(np.mean(np.abs(static - real)))
    err = float(np.mean(np.abs(generated - real)))
    gen_closed = idx[generated < closed]
    real_closed = idx[real < closed]
    if real_closed.size:
        hits = [bool(gen_closed.size) and int(np.min(np.abs(gen_closed - k))) <= tolerance for k in real_closed]
        recall = float(np.mean(hits))
    else:
        recall = nan
    p90_real = float(np.percentile(real, 90))
    return {"gap_err_ratio": err / base if base > 1e-9 else nan, "closure_recall": recall,
            "open_range": float(np.percentile(generated, 90)) / p90_real if p90_real > 1e-9 else nan}


#: both lip gaps above this: an open mouth whose interior (teeth, tongue, cavity) is compared
OPEN_GAP = 0.15
#: inner-mouth measures of the generated frames against the real ones (see :func:`interior_stats`)
INTERIOR_METRICS = ("mouth_de", "mouth_texture")


def interior_stats(rgb: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Colour and texture of the inner mouth (inside the inner-lip contour, 1 px in from it).

    Args:
        rgb: (H, W, 3) uint8 frame. points: (478, 2) MediaPipe landmarks in its pixels.

    Returns:
        (lab, grad): mean CIELAB colour (L in [0, 100], OpenCV's D65 conversion of sRGB) of the brightest 30 %
        of the region's pixels by L (the teeth when they show), and the mean gradient energy (Sobel 3x3 of L,
        gx² + gy², in L units² per pixel²) over the region; None when the region has under 30 pixels.
    """
    h, w = rgb.shape[:2]
    inner = np.concatenate([points[list(T.LIPS_UPPER_INNER)], points[list(T.LIPS_LOWER_INNER)][::-1]])
    x0, y0 = np.maximum(np.floor(inner.min(axis=0)).astype(int) - 3, 0)
    x1, y1 = np.minimum(np.ceil(inner.max(axis=0)).astype(int) + 4, (w, h))
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round((inner - (x0, y0)) * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
    if mask.sum() < 30:
        return None
    lab = cv2.cvtColor(rgb[y0:y1, x0:x1].astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    lum = lab[..., 0]
    gx = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3)
    px = lab[mask]
    bright = px[px[:, 0] >= np.percentile(px[:, 0], 70)]
    return bright.mean(axis=0).astype(np.float64), float(np.mean((gx * gx + gy * gy)[mask]))


def interior_difference(real: list[tuple[np.ndarray, float]], generated: list[tuple[np.ndarray, float]]) -> dict[str, float]:
    """``mouth_de``: mean CIE76 colour difference (Delta E, CIELAB units; ~2.3 is just noticeable) between the
    bright inner mouth of each generated frame and its real frame; ``mouth_texture``: mean gradient energy of
    the generated interiors over that of the real ones (1 = as much detail; a flat band is well below 1, noise
    above). Both from paired :func:`interior_stats` of the frames where both mouths are open; NaN without any."""
    if not real or len(real) != len(generated):
        return dict.fromkeys(INTERIOR_METRICS, float("nan"))
    de = [float(np.linalg.norm(a[0] - b[0])) for a, b in zip(real, generated)]
    g_real = float(np.mean([a[1] for a in real]))
    g_gen = float(np.mean([b[1] for b in generated]))
    return {"mouth_de": float(np.mean(de)), "mouth_texture": g_gen / g_real if g_real > 1e-9 else float("nan")}



def _grad_energy_l(lum: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3)
    return gx * gx + gy * gy


def eyelid_realism(open_rgb: np.ndarray, closed_rgb: np.ndarray, points: np.ndarray, eye: dict) -> dict[str, float]:
    """How a rendered closed upper lid compares with the photo's own open-lid skin (issue 17's lid measures).

    Regions, from the open face's landmarks (the lid closes over the eye's opening):
    - closed lid: the upper half of the eye's opening (between the upper lid and the middle of the opening,
      1 px in), which the closed lid's skin covers (away from the lash line where the lids meet);
    - open lid skin: the band 0.5 to 1.1 opening heights above the upper lid, without its hair (pixels
      darker than 0.7 of the band's median L: lashes, brow);
    - border: the pixels within 1 px of the edge of the changed area (L differs by > 1 between the frames,
      within 2 opening heights of the eye).

    Args:
        open_rgb, closed_rgb: (H, W, 3) uint8 renders with the eye open (rest) and closed.
        points: (478, 2) MediaPipe landmarks of the open face, in its pixels.
        eye: :data:`~studio.engine.face.topology.EYE_IMAGE_LEFT` or ``EYE_IMAGE_RIGHT``.

    Returns:
        ``texture``: mean gradient energy (Sobel 3x3 of CIELAB L, L units² / pixel²) of the closed lid over
        that of the open lid skin (1 = the same grain; a flat patch is well below 1);
        ``border_step``: mean abs L difference between neighbouring pixels (the larger of the horizontal and
        vertical one) on the changed area's border; ``skin_step``: mean abs L difference across a 2 px
        vertical shift inside the open lid skin (the photo's own variation: a border step at or below it is
        invisible). NaN where a region is empty.
    """
    up = points[list(eye["upper"])]
    lo = points[list(eye["lower"])]
    h = float(np.ptp(np.concatenate([up, lo])[:, 1]))
    nan = dict.fromkeys(("texture", "border_step", "skin_step"), float("nan"))
    if h < 2:
        return nan
    x0, y0 = np.maximum(np.floor(np.concatenate([up, lo]).min(axis=0) - 2 * h).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(np.concatenate([up, lo]).max(axis=0) + 2 * h).astype(int) + 1,
                        open_rgb.shape[1::-1])

    def lum(rgb: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(rgb[y0:y1, x0:x1].astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[..., 0]

    def poly(p: np.ndarray) -> np.ndarray:
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(m, [np.round((p - (x0, y0)) * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
        return m

    l_open, l_closed = lum(open_rgb), lum(closed_rgb)
    mid = 0.5 * (up + lo)
    lid = cv2.erode(poly(np.concatenate([up, mid[::-1]])), np.ones((3, 3), np.uint8)).astype(bool)
    band = poly(np.concatenate([up - (0, 0.5 * h), (up - (0, 1.1 * h))[::-1]])).astype(bool)
    if band.any():
        band &= l_open > 0.7 * np.median(l_open[band])
    if lid.sum() < 4 or band.sum() < 4:
        return nan
    out = dict(nan)
    e_skin = float(np.mean(_grad_energy_l(l_open)[band]))
    out["texture"] = float(np.mean(_grad_energy_l(l_closed)[lid])) / e_skin if e_skin > 1e-9 else float("nan")
    changed = (np.abs(l_closed - l_open) > 1.0).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    border = (cv2.dilate(changed, kernel) - cv2.erode(changed, kernel)).astype(bool)
    if border.any():
        dy = np.abs(np.diff(l_closed, axis=0, prepend=l_closed[:1]))
        dx = np.abs(np.diff(l_closed, axis=1, prepend=l_closed[:, :1]))
        out["border_step"] = float(np.mean(np.maximum(dx, dy)[border]))
    out["skin_step"] = float(np.mean(np.abs(l_open[2:] - l_open[:-2])[band[2:]]))
    return out
