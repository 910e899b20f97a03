"""The mouth interior shown between the opened lips: cavity, tongue, lower and upper teeth.

Where the photo already shows the inside of the mouth (a smile with teeth), that real texture is used,
anchored to the skull (upper teeth) or to the jaw (lower teeth) so it moves like real teeth. Everywhere
else the interior is shaded procedurally in the same skull/jaw coordinates, with colours taken from the
photo (lip colour for the cavity and tongue, the whites of the eyes for the teeth), so it matches the
lighting of the face.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from studio.engine.face import topology as T


def _smooth(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _polygon_mask(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    for poly in polygons:
        cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


@dataclass(frozen=True)
class MouthPalette:
    """Colours (float32 RGB in [0, 255]) sampled from the identity photo."""

    lip: np.ndarray
    teeth: np.ndarray
    cavity: np.ndarray
    tongue: np.ndarray

    @classmethod
    def from_photo(cls, rgb: np.ndarray, points: np.ndarray, gap0: float, mouth_w: float) -> "MouthPalette":
        """Sample lip and teeth colours.

        Args:
            rgb: (H, W, 3) uint8 photo. points: (478, 2) landmarks in pixels.
            gap0: the photo's inner-lip gap in pixels; mouth_w: mouth width in pixels.
        """
        h, w = rgb.shape[:2]
        outer = np.concatenate([points[list(T.LIPS_UPPER_OUTER)], points[list(T.LIPS_LOWER_OUTER)][::-1]])
        inner = np.concatenate([points[list(T.LIPS_UPPER_INNER)], points[list(T.LIPS_LOWER_INNER)][::-1]])
        lips = _polygon_mask((h, w), [outer]) & ~_polygon_mask((h, w), [inner])
        skin_ref = rgb[lips].astype(np.float32) if lips.any() else np.array([[150.0, 90.0, 90.0]])
        lip = np.median(skin_ref, axis=0)
        teeth = None
        if gap0 > 0.06 * mouth_w:  # the photo shows its teeth (same test as FaceRig.shows_teeth): take their colour
            inside = rgb[_polygon_mask((h, w), [inner])].astype(np.float32)
            if len(inside) > 20:
                lum = inside.mean(axis=1)
                teeth = inside[lum >= np.percentile(lum, 80)].mean(axis=0)
        if teeth is None:  # the whites of the eyes tell the lighting on a white surface
            eyes = []
            for eye in (T.EYE_IMAGE_LEFT, T.EYE_IMAGE_RIGHT):
                eyes.append(np.concatenate([points[list(eye["upper"])], points[list(eye["lower"])][::-1]]))
            inside = rgb[_polygon_mask((h, w), eyes)].astype(np.float32)
            if len(inside) > 10:
                lum = inside.mean(axis=1)
                sclera = inside[lum >= np.percentile(lum, 85)].mean(axis=0)
            else:
                sclera = np.array([225.0, 220.0, 210.0])
            # teeth are ivory; the whites of the eyes tell how bright a white surface is in this light, but
            # they are often shadowed or tinted by make-up, so the skin sets a floor on the brightness
            face = _polygon_mask((h, w), [points[list(T.FACE_OVAL)]])
            skin_lum = float(np.median(rgb[face].astype(np.float32).mean(axis=1))) if face.any() else 180.0
            lum = float(np.clip(max(sclera.mean() * 1.1, skin_lum * 1.12), 150.0, 240.0))
            teeth = lum * np.array([1.04, 1.0, 0.9])
        teeth = np.clip(teeth, 0, 255)
        return cls(lip=lip.astype(np.float32), teeth=teeth.astype(np.float32),
                   cavity=(lip * np.array([0.42, 0.24, 0.24])).astype(np.float32),
                   tongue=(lip * np.array([0.95, 0.62, 0.62])).astype(np.float32))


def shade_interior(*, u: np.ndarray, v_skull: np.ndarray, v_jaw: np.ndarray, depth_up: np.ndarray,
                   depth_lo: np.ndarray, half_width: np.ndarray, mouth_w: float, upper_edge: float,
                   palette: MouthPalette) -> np.ndarray:
    """Procedural mouth interior for pixels inside the lip opening.

    All inputs are (h, w) float32 arrays over the pixels being shaded, in pixels:
        u: lateral position along the mouth (0 at the centre), in the skull frame.
        v_skull / v_jaw: depth below the photo's lip line in the skull / jaw frame.
        depth_up / depth_lo: distance below the upper lip edge / above the lower lip edge.
        half_width: the mouth's half width on that side.
    Args:
        mouth_w: mouth width M in pixels; upper_edge: v of the upper incisal edge in the skull frame.

    Returns:
        (h, w, 3) float32 RGB in [0, 255].
    """
    M = mouth_w
    r = np.abs(u) / np.maximum(half_width, 1.0)
    aa = 1.0  # anti-aliasing width, pixels
    # cavity: darkest at the back (centre) and right under the upper teeth, lighter at the cheeks
    col = np.broadcast_to(palette.cavity, u.shape + (3,)).astype(np.float32)
    col = col * ((0.7 + 0.6 * r * r) * (0.75 + 0.25 * _smooth(depth_up / (0.15 * M))))[..., None]

    # tongue: rides on the jaw; its tip shows just above the lower teeth
    lower_edge = upper_edge + 0.05 * M
    tr = np.clip(np.abs(u) / (0.6 * half_width), 0, 1)
    tongue_top = lower_edge - 0.05 * M + 0.1 * M * tr * tr
    t_mask = _smooth((v_jaw - tongue_top) / (2 * aa) + 0.5) * (1 - _smooth((tr - 0.9) / 0.1))
    tongue = palette.tongue * (0.6 + 0.4 * _smooth((v_jaw - tongue_top) / (0.1 * M)))[..., None]
    col = col + (tongue - col) * t_mask[..., None]

    # lower teeth: on the jaw, mostly behind the lower lip, in shadow
    l_mask = _smooth((v_jaw - lower_edge) / aa + 0.5) * (1 - _smooth((r - 0.6) / 0.12))
    lower = palette.teeth * 0.8 * (1 - 0.35 * r * r)[..., None]
    col = col + (lower - col) * l_mask[..., None]

    # upper teeth: fixed to the skull, from the gum line down to the incisal edge
    u_mask = _smooth((upper_edge - v_skull) / aa + 0.5) * (1 - _smooth((r - 0.72) / 0.12))
    tooth_shade = 1 - 0.35 * r * r
    tooth_shade *= 1 - 0.1 * _smooth((v_skull - (upper_edge - 0.03 * M)) / (0.03 * M))  # translucent tip
    # faint gaps between the incisors and canines
    for k, pos in enumerate((0.0, 0.095, 0.18)):
        for sgn in ((1,) if pos == 0 else (-1, 1)):
            gap = np.abs(u - sgn * pos * M)
            tooth_shade *= 1 - (0.16 if k == 0 else 0.1) * (1 - _smooth(gap / 0.8))
    upper = palette.teeth * tooth_shade[..., None]
    col = col + (upper - col) * u_mask[..., None]

    # the lips cast a soft shadow into the mouth
    shade = (0.8 + 0.2 * _smooth(depth_up / (0.03 * M))) * (0.85 + 0.15 * _smooth(depth_lo / (0.03 * M)))
    return np.clip(col * shade[..., None], 0, 255)
