"""The closing upper eyelid: a synthesized lid layer composited over the eye during blinks.

The warp (:meth:`FaceRig.blink_inverse`) slides the lash line down over the eyeball and stretches the
skin above it. Stretched photo skin there reads as the crease and eyeshadow dragged down from the brow,
so the skin that a closing lid uncovers is painted instead, like the mouth interior, in the eye's own
frame and from the photo's own skin:

- its colour is the skin around it, filled in from the layer's border inwards (push-pull interpolation of
  the frame's own pixels above, beside and below the eye), so the layer has no edge or step where it ends;
- its texture is the photo's skin grain (relative luma detail of the skin under the eye, mirrored at 1:1
  scale so the grain keeps its size), with its strength matched to the gradient energy of the photo's own
  upper lid skin;
- it is shaded as a convex lid, fades in with the closure and across the eye towards the corners;
- it covers the photo's own lashes (moved down onto a closed lid they read as spikes) and draws a lash
  line along the lid margin with individual lashes hanging from it: tapered strands, longest towards the
  outer corner and curving outwards, in the photo's darkest lid-margin colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def _smooth(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=rgb.dtype)


def _grad_energy(y: np.ndarray) -> np.ndarray:
    """Per-pixel squared Sobel gradient magnitude of a float32 image."""
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3)
    return gx * gx + gy * gy


def push_pull_fill(image: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Fill the low-weight parts of ``image`` smoothly from its high-weight parts (push-pull interpolation).

    The weighted image is averaged down an image pyramid until every pixel has support, then pulled back
    up: each level keeps its own (normalised) values where it has weight and takes the coarser level's
    elsewhere. The result is a smooth membrane through the known pixels (Gortler et al., "The
    Lumigraph", SIGGRAPH 1996, section 3.4).

    Args:
        image: (h, w, C) float32.
        weight: (h, w) float32 in [0, 1], 1 = known pixel.

    Returns:
        (h, w, C) float32; where ``weight`` is 1 it is the image itself.
    """
    levels = [(image * weight[..., None], weight)]
    while min(levels[-1][1].shape) > 2 and float(levels[-1][1].min()) < 0.5:
        num, den = levels[-1]
        down = cv2.pyrDown(num)
        levels.append((down.reshape(down.shape[0], down.shape[1], -1), cv2.pyrDown(den)))
    num, den = levels[-1]
    fill = num / np.maximum(den, 1e-6)[..., None]
    if float(den.max()) <= 1e-6:  # nothing known anywhere: the mean of the image
        fill[:] = image.reshape(-1, image.shape[-1]).mean(axis=0)
    for num, den in reversed(levels[:-1]):
        up = cv2.pyrUp(fill, dstsize=(den.shape[1], den.shape[0])).reshape(num.shape)
        k = np.clip(2.0 * den, 0.0, 1.0)[..., None]
        fill = k * (num / np.maximum(den, 1e-6)[..., None]) + (1.0 - k) * up
    return fill


@dataclass(frozen=True)
class LidPalette:
    """One eye's upper-lid appearance sampled from the photo (colours float32 RGB in [0, 255])."""

    lash: np.ndarray  # (3,) lash line colour
    detail: np.ndarray  # (h, w) float32 relative luma detail of the skin around the eye, scaled to the lid's grain
    detail_xy: tuple[int, int]  # image position of detail[0, 0]
    lashes: np.ndarray  # (n_d, n_a) float32 alpha in [0, 1] of the lashes hanging from the margin, 1 texel/pixel
    lashes_origin: tuple[float, float]  # (a, d) eye-frame position of lashes[0, 0]; d = distance below the margin

    @classmethod
    def from_photo(cls, rgb: np.ndarray, eye: dict, layout, outward: float, seed: int = 0) -> "LidPalette":
        """Sample one eye's lash colour and skin grain, and draw its lashes.

        Args:
            rgb: (H, W, 3) uint8 photo.
            eye: a :attr:`FaceRig.eyes` entry (origin, ea, eb, knots, b_up, b_lo, stretch).
            layout: ``FaceRig.lid_layout`` (per-column lid geometry at a closure).
            outward: +1 if the eye's outer corner is at its larger ``a`` (image right), else -1.
            seed: seed of the lashes' random lengths and angles (renders are deterministic).
        """
        h, w = rgb.shape[:2]
        knots = eye["knots"]
        a0, a1 = float(knots[0]), float(knots[-1])
        gap_max = max(float(np.max(eye["b_lo"] - eye["b_up"])), 1.0)
        S = eye["stretch"]
        # the pixels of the eye's neighbourhood, in the eye frame (down to the cheek, where the grain comes from)
        corners = np.array([eye["origin"] + a * eye["ea"] + b * eye["eb"]
                            for a in (a0, a1) for b in (float(eye["b_up"].min()) - 2 * S - gap_max,
                                                        float(eye["b_lo"].max()) + 3.5 * gap_max)])
        x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, [w - 1, h - 1])
        x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 1, 1, [w, h])
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
        rel = np.stack([gx, gy], -1) - eye["origin"]
        a, b = rel @ eye["ea"], rel @ eye["eb"]
        pix = rgb[y0:y1, x0:x1].astype(np.float32)
        b_up, _, lash_h, _ = layout(eye, a, 0.0)
        width = a1 - a0
        central = (a > a0 + 0.12 * width) & (a < a1 - 0.12 * width)
        b_lo = np.interp(a, knots, eye["b_lo"])
        # texture: the fine relative luma detail of the photo (skin grain, fine wrinkles); a few dark or light
        # outliers (pores, lower lashes, specks) are clipped at 3 robust deviations
        y = _luma(pix)
        sigma = max(1.0, 0.12 * gap_max)
        detail = y / np.maximum(cv2.GaussianBlur(y, (0, 0), sigma), 1.0) - 1.0
        source = central & (b > b_lo + 0.35 * gap_max) & (b < b_lo + 2.5 * gap_max)
        # the open upper lid's skin above the lashes (its hair: lashes, brow, is left out)
        above = central & (b < b_up - 0.5 * gap_max) & (b > b_up - 1.1 * gap_max)
        if source.sum() >= 12 and above.sum() >= 12:
            skin = above & (y > 0.7 * np.median(y[above]))
            dev = 1.4826 * float(np.median(np.abs(detail[source] - np.median(detail[source]))))
            detail = np.clip(detail, -3.0 * dev, 3.0 * dev)
            # the grain's strength: the luma gradient energy of that skin, over the grain's on the lid
            want = float(np.mean(_grad_energy(y)[skin])) if skin.sum() >= 12 else 0.0
            have = float(np.mean(_grad_energy(detail.astype(np.float32))[source])) * float(np.median(y[source])) ** 2
            detail *= float(np.clip(np.sqrt(want / max(have, 1e-9)), 0.5, 3.0))
        else:
            detail = np.clip(detail, -0.05, 0.05)
        # lashes: the darkest pixels along the upper lid margin
        margin = central & (b > b_up - 0.35 * gap_max - 1) & (b < b_up + 0.1 * gap_max + 0.5)
        upper = central & (b < b_up - lash_h - 0.1 * S) & (b > b_up - lash_h - S)
        lid = np.median(pix[upper], axis=0) if upper.sum() >= 4 else np.median(pix.reshape(-1, 3), axis=0)
        if margin.sum() >= 6:
            m = pix[margin]
            ym = _luma(m)
            lash = m[ym <= np.percentile(ym, 12)].mean(axis=0)
        else:
            lash = lid * 0.35
        # a lash line is always clearly darker than the lid it sits on
        lash = np.minimum(lash, lid * 0.55)
        lashes, origin = _draw_lashes(a0, a1, gap_max, outward, seed)
        return cls(lash=lash.astype(np.float32), detail=detail.astype(np.float32), detail_xy=(int(x0), int(y0)),
                   lashes=lashes, lashes_origin=origin)


def _draw_lashes(a0: float, a1: float, gap_max: float, outward: float, seed: int,
                 ss: int = 4) -> tuple[np.ndarray, tuple[float, float]]:
    """Alpha of the lashes of a closed upper lid in the eye frame (1 texel per pixel, drawn 4x supersampled).

    Lashes are about a third of the eye's opening long, shortest at the inner corner and longest in the
    outer third, hang down from the lid margin and curve towards the outer corner; each is a tapered
    anti-aliased stroke. Returns (alpha (n_d, n_a) float32, (a, d) of texel [0, 0])."""
    rng = np.random.default_rng(seed)
    width = a1 - a0
    length = max(0.55 * gap_max, 1.0)
    pad = 1.5 * length
    n_a = int(np.ceil(width + 2 * pad)) + 1
    n_d = int(np.ceil(1.3 * length)) + 3
    d_start = -1.0
    canvas = np.zeros((n_d * ss, n_a * ss), np.uint8)
    count = int(np.clip(0.6 * width, 16, 120))
    thick = max(1, int(round(ss * min(0.6, 0.045 * gap_max + 0.3))))
    for _ in range(count):
        u = rng.uniform(0.04, 0.97)  # 0 at the inner corner, 1 at the outer one
        root_a = (a0 + u * width) if outward > 0 else (a1 - u * width)
        size = length * (0.45 + 0.55 * np.sin(np.pi * min(u * 0.62 + 0.08, 1.0))) * rng.uniform(0.65, 1.1)
        tilt = np.radians(4.0 + 22.0 * u ** 1.5 + rng.normal(0.0, 5.0))
        curl = np.radians(rng.uniform(5.0, 20.0))
        pts = [np.array([root_a, rng.uniform(-0.3, 0.3)])]
        for s_i in range(3):
            ang = tilt + curl * s_i / 2.0
            step = size / 3.0
            pts.append(pts[-1] + step * np.array([outward * np.sin(ang), np.cos(ang)]))
        for s_i in range(3):
            p, q = pts[s_i], pts[s_i + 1]
            to_px = lambda v: (int(round((v[0] - a0 + pad) * ss)), int(round((v[1] - d_start) * ss)))  # noqa: E731
            cv2.line(canvas, to_px(p), to_px(q), int(235 - 60 * s_i), max(1, thick - s_i // 2), cv2.LINE_AA)
    alpha = cv2.resize(canvas, (n_a, n_d), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return alpha, (a0 - pad, d_start)


def composite_lid(window: np.ndarray, a: np.ndarray, b: np.ndarray, f: float, eye: dict, layout,
                  palette: LidPalette) -> None:
    """Paint the lid layer of one eye over ``window`` (in place).

    Args:
        window: (h, w, 3) float32 RGB of the warped frame over the eye (with a margin around the lid).
        a, b: (h, w) float32 eye-frame coordinates of each pixel before the blink (head motion only).
        f: the eye's closure in (0, 1].
        eye: the :attr:`FaceRig.eyes` entry; layout: ``FaceRig.lid_layout``.
        palette: from :meth:`LidPalette.from_photo`.
    """
    b_up, travel, lash_h, shift = layout(eye, a, f)
    S = eye["stretch"]
    gap = travel / 1.15
    gap_max = max(float(np.max(eye["b_lo"] - eye["b_up"])), 1.0)
    margin = b_up + shift  # where the lid margin (the lashes' root) is now
    # the layer covers the skin the lid uncovers: all of it that the warp stretched, fading into the
    # photo's own lid skin higher up; its extent and strength grow with the closure
    q = float(_smooth(f / 0.5))
    # across the eye it fades out at the corners, where the lid does not move, and hugs the lid there
    a0, a1 = float(eye["knots"][0]), float(eye["knots"][-1])
    lateral = _smooth(gap / (0.3 * gap_max)) * _smooth(np.minimum(a - a0, a1 - a) / (0.25 * (a1 - a0)))
    reach = S * q * np.sqrt(np.clip(gap / gap_max, 0.0, 1.0))
    top_full = b_up - lash_h - 0.3 * reach
    top_fade = 0.9 * reach + 1.0
    cover = _smooth((b - (top_full - top_fade)) / top_fade)
    t_lid = np.clip((b - (top_full - top_fade)) / np.maximum(margin - (top_full - top_fade), 1.0), 0.0, 1.0)
    # its colour: the frame's own skin around it, interpolated across it (no step at its border). Known:
    # what the layer leaves alone, except the eye's opening and its lashes (the eyeball, the lash lines)
    region = np.clip(2.0 * cover * lateral, 0.0, 1.0)
    opening = ((b > b_up - lash_h - 1.0) & (b < b_up + travel + 0.3 * gap_max + 1.0)
               & (a > a0 - 1.0) & (a < a1 + 1.0))
    known = ((1.0 - region) * ~opening).astype(np.float32)
    # of that, only skin: not the lashes' or the brow's hair, nor a highlight, nor the brow's shadow (skin
    # above the eye counts only when it is about as light as the skin beside and below it)
    y = _luma(window)
    low = (known > 0.5) & (b > b_up - lash_h - 1.0)
    ref = max(float(np.median(y[low])) if low.sum() >= 8 else float(np.median(y)), 1.0)  # > 0 on black skin
    floor = np.where(b > b_up - lash_h - 1.0, 0.7, 0.85) * ref
    known *= (_smooth((y - floor) / (0.1 * ref)) * _smooth((1.35 * ref - y) / (0.1 * ref))).astype(np.float32)
    base = push_pull_fill(window, known)
    # a convex lid: lit in the middle, darker towards the crease and in the lashes' shadow
    shade = 0.96 + 0.07 * np.sin(np.pi * t_lid) - 0.08 * _smooth((t_lid - 0.8) / 0.2)
    # skin grain from under the eye, mirrored about the lid margin at 1:1 (its rows just under the lower
    # lid's lashes go to the margin)
    b_tex = b_up + gap + 0.4 * gap_max + (margin - b)
    ox, oy = eye["origin"][0] - palette.detail_xy[0], eye["origin"][1] - palette.detail_xy[1]
    ea, eb = eye["ea"], eye["eb"]
    tx = (ox + a * ea[0] + b_tex * eb[0]).astype(np.float32)
    ty = (oy + a * ea[1] + b_tex * eb[1]).astype(np.float32)
    grain = cv2.remap(palette.detail, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    col = base * (shade * (1.0 + grain))[..., None].astype(np.float32)
    alpha = float(_smooth(f / 0.35)) * cover * lateral
    alpha = alpha * np.clip(margin - b + 0.5, 0.0, 1.0)  # ends at the lid margin (anti-aliased)
    window += (col - window) * alpha[..., None].astype(np.float32)
    # the lid margin; once the lids meet, the lash line also covers what is left of the eyeball
    width = max(0.7, 0.035 * gap_max) * (0.5 + 0.5 * _smooth(gap / (0.6 * gap_max)))
    below = 0.3 * width + float(_smooth((f - 0.75) / 0.25)) * np.maximum(b_up + gap + 0.5 - margin, 0.0)
    line = np.clip(np.minimum(b - (margin - width) + 0.5, margin + below - b + 0.5), 0.0, 1.0)
    # the lashes hanging from the margin
    la, ld = palette.lashes_origin
    hang = cv2.remap(palette.lashes, (a - la).astype(np.float32), (b - margin - ld).astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    strength = float(_smooth(f / 0.5)) * 0.9 * _smooth(gap / (0.2 * gap_max))
    line_alpha = (np.maximum(line, hang) * strength * lateral ** 0.5).astype(np.float32)
    window += (palette.lash - window) * line_alpha[..., None]
