"""The closing upper eyelid: a synthesized lid layer composited over the eye during blinks.

The warp (:meth:`FaceRig.blink_inverse`) slides the lash line down over the eyeball and stretches the
skin above it. Stretched photo skin there reads as the crease and eyeshadow dragged down from the brow,
so the skin that a closing lid uncovers is painted instead, like the mouth interior: in the eye's own
frame, with colours taken from the photo (the upper lid skin for the lid, its darkest pixels along the
lid margin for the lashes), shaded as a convex lid and faded in with the closure. The lid covers the photo's
own lashes (moved down onto a closed lid they read as spikes); a dark anti-aliased lash line with a soft
fringe is drawn where the lids meet instead, and it covers the last of the eyeball.
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


@dataclass(frozen=True)
class LidPalette:
    """Colours of one eye's upper lid (float32 RGB in [0, 255]) sampled from the photo."""

    knots: np.ndarray  # (K,) lateral positions a (eye frame, pixels) of the lid colours
    lid: np.ndarray  # (K, 3) lid skin colour across the eye
    lash: np.ndarray  # (3,) lash line colour
    detail: np.ndarray  # (h, w) float32 relative luma detail of the skin under the eye (the lid's texture)
    detail_xy: tuple[int, int]  # image position of detail[0, 0]

    @classmethod
    def from_photo(cls, rgb: np.ndarray, eye: dict, layout) -> "LidPalette":
        """Sample one eye's lid and lash colours and the skin texture.

        Args:
            rgb: (H, W, 3) uint8 photo.
            eye: a :attr:`FaceRig.eyes` entry (origin, ea, eb, knots, b_up, b_lo, stretch).
            layout: ``FaceRig.lid_layout`` (per-column lid geometry at a closure).
        """
        h, w = rgb.shape[:2]
        knots = eye["knots"]
        a0, a1 = float(knots[0]), float(knots[-1])
        gap_max = float(np.max(eye["b_lo"] - eye["b_up"]))
        S = eye["stretch"]
        # the pixels of the eye's neighbourhood, in the eye frame
        corners = np.array([eye["origin"] + a * eye["ea"] + b * eye["eb"]
                            for a in (a0, a1) for b in (float(eye["b_up"].min()) - 2 * S - gap_max,
                                                        float(eye["b_lo"].max()) + gap_max)])
        x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, [w - 1, h - 1])
        x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 1, 1, [w, h])
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
        rel = np.stack([gx, gy], -1) - eye["origin"]
        a, b = rel @ eye["ea"], rel @ eye["eb"]
        pix = rgb[y0:y1, x0:x1].astype(np.float32)
        b_up, _, lash_h, _ = layout(eye, a, 0.0)
        width = a1 - a0
        central = (a > a0 + 0.12 * width) & (a < a1 - 0.12 * width)
        # lid skin: between the top of the lashes and the crease; its lighter part (the crease shadow,
        # stray lashes and brow hairs are darker), per lateral bin, held near the whole eye's value
        band = central & (b < b_up - lash_h - 0.1 * S) & (b > b_up - lash_h - S)
        if band.sum() < 12:
            band = central & (b < b_up - 1) & (b > b_up - 1 - 2 * S)
        b_lo = np.interp(a, knots, eye["b_lo"])
        under = central & (b > b_lo + 0.35 * gap_max) & (b < b_lo + 1.2 * gap_max)
        # a closed lid catches the light like the skin around the eye: half the lid skin above the lashes
        # (eyeshadow included), half the skin under the eye
        upper = _robust(pix[band]) if band.sum() >= 4 else _robust(pix.reshape(-1, 3))
        lower = _robust(pix[under]) if under.sum() >= 4 else upper
        overall = 0.5 * (upper + lower)
        k = 5
        centres = a0 + width * (0.12 + 0.76 * (np.arange(k) + 0.5) / k)
        lid = []
        for c in centres:
            sel = band & (np.abs(a - c) < 0.76 * width / k)
            col = 0.5 * (_robust(pix[sel]) + lower) if sel.sum() >= 6 else overall
            # a per-bin colour within 10 % of the eye's own (shadows at the corners, eyeshadow gradients)
            lid.append(np.clip(col, overall * 0.9, overall * 1.1))
        # texture: the fine luma detail of the photo (skin grain, fine wrinkles), mild
        y = _luma(pix)
        sigma = max(1.0, 0.12 * gap_max)
        # (dark outliers, lower lashes and pores, are held back more than the light ones)
        detail = np.clip(y / np.maximum(cv2.GaussianBlur(y, (0, 0), sigma), 1.0) - 1.0, -0.05, 0.08)
        # lashes: the darkest pixels along the upper lid margin
        margin = central & (b > b_up - 0.35 * gap_max - 1) & (b < b_up + 0.1 * gap_max + 0.5)
        if margin.sum() >= 6:
            m = pix[margin]
            y = _luma(m)
            lash = m[y <= np.percentile(y, 12)].mean(axis=0)
        else:
            lash = overall * 0.35
        # a lash line is always clearly darker than the lid it sits on
        lash = np.minimum(lash, upper * 0.55)
        return cls(knots=centres.astype(np.float32), lid=np.array(lid, dtype=np.float32),
                   lash=lash.astype(np.float32), detail=detail.astype(np.float32), detail_xy=(int(x0), int(y0)))


def _robust(px: np.ndarray) -> np.ndarray:
    """Median colour of the pixels whose luma lies between its 40th and 90th percentiles."""
    y = _luma(px)
    lo, hi = np.percentile(y, [40, 90])
    sel = (y >= lo) & (y <= hi)
    return np.median(px[sel] if sel.sum() >= 3 else px, axis=0).astype(np.float32)


def composite_lid(window: np.ndarray, a: np.ndarray, b: np.ndarray, f: float, eye: dict, layout,
                  palette: LidPalette) -> None:
    """Paint the lid layer of one eye over ``window`` (in place).

    Args:
        window: (h, w, 3) float32 RGB of the warped frame over the eye.
        a, b: (h, w) float32 eye-frame coordinates of each pixel before the blink (head motion only).
        f: the eye's closure in (0, 1].
        eye: the :attr:`FaceRig.eyes` entry; layout: ``FaceRig.lid_layout``.
        palette: from :meth:`LidPalette.from_photo`.
    """
    b_up, travel, lash_h, shift = layout(eye, a, f)
    S = eye["stretch"]
    gap = travel / 1.15
    gap_max = float(np.max(eye["b_lo"] - eye["b_up"]))
    margin = b_up + shift  # where the lid margin (the lashes' root) is now
    lash_top = margin - lash_h  # the top of the lash band, which moves rigidly with it
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
    col = (np.stack([np.interp(a, palette.knots, palette.lid[:, c]) for c in range(3)], -1)
           .astype(np.float32))
    # a convex lid: lit in the middle, darker towards the crease and in the lashes' shadow
    shade = 0.93 + 0.1 * np.sin(np.pi * t_lid) - 0.08 * _smooth((t_lid - 0.8) / 0.2)
    r = np.clip(2.0 * (a - 0.5 * (palette.knots[0] + palette.knots[-1]))
                / max(float(palette.knots[-1] - palette.knots[0]) / 0.76, 1.0), -1.0, 1.0)
    shade = shade * (1.0 - 0.06 * r * r)
    # skin texture from under the eye (mirrored: its rows just under the lid go to the lid margin)
    b_lo = b_up + gap
    b_tex = b_lo + 0.6 * gap_max + (1.0 - t_lid) * 0.8 * gap_max
    ox, oy = eye["origin"][0] - palette.detail_xy[0], eye["origin"][1] - palette.detail_xy[1]
    ea, eb = eye["ea"], eye["eb"]
    tx = (ox + a * ea[0] + b_tex * eb[0]).astype(np.float32)
    ty = (oy + a * ea[1] + b_tex * eb[1]).astype(np.float32)
    grain = cv2.remap(palette.detail, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    shade = shade * (1.0 + 0.8 * grain)
    col *= shade[..., None].astype(np.float32)
    alpha = float(_smooth(f / 0.35)) * cover * lateral
    alpha = alpha * np.clip(margin - b + 0.5, 0.0, 1.0)  # ends at the lid margin (anti-aliased)
    window += (col - window) * alpha[..., None].astype(np.float32)
    # the lash line along the lid margin; once the lids meet, it also covers what is left of the eyeball
    width = max(0.8, 0.07 * gap_max) * (0.5 + 0.5 * _smooth(gap / (0.6 * gap_max)))
    below = 0.3 * width + float(_smooth((f - 0.75) / 0.25)) * (travel - shift + 0.08 * gap + 0.5)
    line = np.clip(np.minimum(b - (margin - width) + 0.5, margin + below - b + 0.5), 0.0, 1.0)
    # the lashes: a soft dark fringe hanging from the margin (over the lower lid once closed)
    fringe = 0.5 * (1.0 - _smooth((b - margin - below) / (0.12 * gap_max + 1.0))) * (b > margin)
    strength = float(_smooth(f / 0.5)) * 0.85 * _smooth(gap / (0.2 * gap_max))
    line_alpha = (np.maximum(line, fringe) * strength * lateral ** 0.5).astype(np.float32)
    window += (palette.lash - window) * line_alpha[..., None]
