"""The mouth interior shown between the opened lips: cavity, tongue, gums, lower and upper teeth.

Where the photo already shows the inside of the mouth (a smile with teeth), that real texture is used,
anchored to the skull (upper teeth) or to the jaw (lower teeth) so it moves like real teeth. Everywhere
else the interior is a small dental model shaded in the same skull/jaw coordinates: individual upper and
lower teeth (central and lateral incisors, canines, premolars at their projected widths in a frontal view)
with rounded incisal edges, darker embrasures between them, convex shading and a soft enamel highlight, a
scalloped gum line, a tongue behind the lower teeth and the cavity, all in the lips' shadow.

Colours live in the photo's own colour space (:class:`MouthPalette`): each material's chromaticity is its
natural offset from skin, scaled by how colourful the photo is (its lips' chromaticity distance from its skin's,
against a natural face's) and added to the photo's own skin chromaticity, so a greyscale photo gets a grey
mouth, a sepia one a sepia mouth; the teeth are natural ivory in a colour photo whatever its skin tone or
make-up, as bright as a white surface in the skin's light; the mucosa's brightness follows the skin's. The interior is blurred as much as the
photo is (:func:`photo_blur_sigma`), so it is no sharper than the lips around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


#: RGB of each material under neutral light (skin: a typical lit skin tone); only their chromaticities and the
#: relative brightness below are used
NATURAL_RGB: dict[str, tuple[float, float, float]] = {
    "skin": (200.0, 155.0, 130.0), "lip": (175.0, 100.0, 100.0), "teeth": (236.0, 226.0, 200.0),
    "gum": (195.0, 105.0, 110.0), "tongue": (205.0, 115.0, 112.0), "cavity": (95.0, 40.0, 40.0),
}
#: brightness (R + G + B) of each material relative to the skin's (teeth: their mean within 150-235)
BRIGHTNESS: dict[str, float] = {"teeth": 1.2, "gum": 0.8, "tongue": 0.85, "cavity": 0.3}


def _region_pixels(rgb: np.ndarray, polygon: np.ndarray, hole: np.ndarray | None = None,
                   max_pixels: int = 40000) -> np.ndarray:
    """(N, 3) float32 pixels inside ``polygon`` and outside ``hole`` ((K, 2) pixel polygons), from the polygon's
    bounding box only, every k-th row and column when it holds more than ``max_pixels`` (medians and
    percentiles of a region do not need all of a large face's pixels)."""
    h, w = rgb.shape[:2]
    x0, y0 = np.maximum(np.floor(polygon.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(polygon.max(axis=0)).astype(int) + 1, (w, h))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 3), np.float32)
    shape = (y1 - y0, x1 - x0)
    mask = _polygon_mask(shape, [polygon - (x0, y0)])
    if hole is not None:
        mask &= ~_polygon_mask(shape, [hole - (x0, y0)])
    k = max(1, int(np.sqrt(shape[0] * shape[1] / max_pixels)))
    return rgb[y0:y1:k, x0:x1:k][mask[::k, ::k]].astype(np.float32)


def _chromaticity(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, np.float64)
    return rgb / max(float(rgb.sum()), 1e-6)


def photo_blur_sigma(rgb: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """How blurred the photo is around the mouth, as a Gaussian sigma in pixels.

    For an edge blurred by a Gaussian of sigma s, extra blur by sigma b scales its gradient energy by
    s / sqrt(s² + b²); the ratio rho of the lightness gradient energy after and before a 1.5 px blur gives
    s = 1.5 rho / sqrt(1 - rho²).

    Args:
        rgb: (H, W, 3) uint8 photo. box: (x0, y0, x1, y1) pixels of the region (e.g. the lips' bounding box
            with a margin).

    Returns:
        sigma in [0, 4] pixels (0 for a tiny or flat region).
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, rgb.shape[1]), min(y1, rgb.shape[0])
    if x1 - x0 < 8 or y1 - y0 < 8:
        return 0.0
    lum = cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32)

    def energy(img: np.ndarray) -> float:
        gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
        return float(np.mean((gx * gx + gy * gy)[2:-2, 2:-2]))

    e0 = energy(lum)
    if e0 < 1e-3:
        return 0.0
    rho = min(energy(cv2.GaussianBlur(lum, (0, 0), 1.5)) / e0, 0.995)
    return float(np.clip(1.5 * rho / np.sqrt(1.0 - rho * rho), 0.0, 4.0))


@dataclass(frozen=True)
class MouthPalette:
    """Colours (float32 RGB in [0, 255]) of the mouth's materials, in the identity photo's colour space.

    Attributes:
        lip: median lip colour. teeth, gum, tongue, cavity: the synthesized materials (see the module).
        blur: the photo's blur around the mouth (Gaussian sigma, pixels), given to the interior.
        chroma_gain: how colourful the photo is relative to a natural colour photo (0 = greyscale).
    """

    lip: np.ndarray
    teeth: np.ndarray
    cavity: np.ndarray
    tongue: np.ndarray
    gum: np.ndarray = field(default_factory=lambda: np.array([170.0, 90.0, 95.0], np.float32))
    blur: float = 0.0
    chroma_gain: float = 1.0

    @classmethod
    def from_photo(cls, rgb: np.ndarray, points: np.ndarray, gap0: float, mouth_w: float) -> "MouthPalette":
        """Sample the photo's skin, lips and (when it shows them) teeth, and derive the materials.

        Args:
            rgb: (H, W, 3) uint8 photo. points: (478, 2) landmarks in pixels.
            gap0: the photo's inner-lip gap in pixels; mouth_w: mouth width in pixels.
        """
        outer = np.concatenate([points[list(T.LIPS_UPPER_OUTER)], points[list(T.LIPS_LOWER_OUTER)][::-1]])
        inner = np.concatenate([points[list(T.LIPS_UPPER_INNER)], points[list(T.LIPS_LOWER_INNER)][::-1]])
        lip_px = _region_pixels(rgb, outer, inner)
        lip = np.median(lip_px, axis=0) if len(lip_px) else np.array([150.0, 90.0, 90.0], np.float32)
        face_px = _region_pixels(rgb, np.asarray(points)[list(T.FACE_OVAL)], outer)
        skin = np.median(face_px, axis=0) if len(face_px) > 20 else np.array([190.0, 150.0, 130.0])
        # chromaticities (r, g, b) / (r + g + b): a tint or a grade multiplies every colour alike, so in a
        # monochrome (grey, sepia) photo lips and skin share one chromaticity; natural lips differ from skin
        skin_c, lip_c = _chromaticity(skin), _chromaticity(lip)
        nat = {k: _chromaticity(v) for k, v in NATURAL_RGB.items()}
        # (lipstick makes the lips more chromatic than natural ones: the gain stops at a natural photo's)
        gain = float(np.clip(np.linalg.norm(lip_c - skin_c) / np.linalg.norm(nat["lip"] - nat["skin"]), 0.0, 1.0))

        def material(name: str) -> np.ndarray:
            if name == "teeth":  # a near-white surface: ivory in colour, the photo's own tint in monochrome,
                # as bright as a white surface in the skin's light (never darker than a pale grey); half the skin's
                # departure from a natural skin tone is taken as the light's colour (white balance), but a colour
                # photo's teeth stay warm (red >= green >= blue: never green or blue)
                lit = np.clip(nat["teeth"] + 0.5 * (skin_c - nat["skin"]), 0.005, None)
                lit[1] = min(lit[1], lit[0])
                lit[2] = min(lit[2], lit[1])
                c = (1.0 - gain) * skin_c + gain * lit
                total = 3.0 * float(np.clip(skin.mean() * BRIGHTNESS["teeth"], 150.0, 235.0))
            else:  # mucosa: its natural offset from the skin's chromaticity
                c = np.clip(skin_c + gain * (nat[name] - nat["skin"]), 0.005, None)
                total = float(skin.sum()) * BRIGHTNESS[name]
            col = c / c.sum() * total
            return (col * min(1.0, 250.0 / max(float(col.max()), 1e-6))).astype(np.float32)  # keep the hue

        teeth = None
        if gap0 > 0.06 * mouth_w:  # the photo shows its teeth (same test as FaceRig.shows_teeth): take their colour
            inside = _region_pixels(rgb, inner)
            if len(inside) > 20:
                lum = inside.mean(axis=1)
                teeth = inside[lum >= np.percentile(lum, 80)].mean(axis=0)
        if teeth is None:
            teeth = material("teeth")
        x0, y0 = outer.min(axis=0) - 0.3 * mouth_w
        x1, y1 = outer.max(axis=0) + 0.3 * mouth_w
        return cls(lip=lip.astype(np.float32), teeth=np.clip(teeth, 0, 255).astype(np.float32),
                   cavity=material("cavity"), tongue=material("tongue"), gum=material("gum"),
                   blur=photo_blur_sigma(rgb, (x0, y0, x1, y1)), chroma_gain=gain)


#: projected tooth boundaries of a frontal arch, |u| / mouth width: central incisor, lateral incisor, canine,
#: first and second premolar (upper); the lower incisors are narrower
_UPPER_BOUNDS = np.array([0.0, 0.15, 0.26, 0.355, 0.425, 0.49], np.float32)
_LOWER_BOUNDS = np.array([0.0, 0.085, 0.18, 0.28, 0.36, 0.44], np.float32)
#: how much shorter each upper tooth's edge sits than the centrals', in mouth widths (laterals are shorter)
_UPPER_RISE = np.array([0.0, 0.014, 0.004, 0.02, 0.03], np.float32)


def _teeth(u: np.ndarray, v: np.ndarray, M: float, edge: float, bounds: np.ndarray, rise: np.ndarray | None,
           up: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row of teeth: (coverage, shade, highlight) per pixel, each (h, w) float32 in [0, 1].

    u: lateral position (pixels); v: depth below the lip line (pixels) in the frame the row is fixed to;
    edge: v of the incisal edges (upper row: teeth above it; lower row: below it).
    """
    a = np.abs(u) / M
    k = np.clip(np.searchsorted(bounds, a, side="right") - 1, 0, len(bounds) - 2)
    lo, hi = bounds[k], bounds[k + 1]
    t = np.clip((a - lo) / (hi - lo), 0.0, 1.0)  # 0 at the tooth's medial side, 1 at its distal side
    side = np.minimum(t, 1.0 - t)  # distance to the nearer boundary, in tooth widths
    width = (hi - lo) * M
    # rounded incisal corners (canines come to a cusp), shorter laterals; on a small mouth these are sub-pixel
    # and are drawn fainter, as a camera would resolve them
    detail = float(np.clip((M - 40.0) / 160.0, 0.25, 1.0))
    corner = 0.018 * M * detail * (1.0 - _smooth(side / 0.3))
    cusp = np.where(k == 2, 0.02 * M * detail * np.abs(2 * t - 1), 0.0)
    lift = (rise[k] * M if rise is not None else 0.0) + corner + cusp
    sgn = 1.0 if up else -1.0
    edge_here = edge - sgn * lift  # upper: the edge moves up; lower: down
    inside = _smooth(sgn * (edge_here - v) + 0.5)
    # embrasures: a dark line between teeth, widening into a V toward the incisal edge
    open_v = _smooth((sgn * (v - edge_here) + 0.05 * M) / (0.05 * M))
    gap_px = np.maximum(0.004 * M, 0.6) + 0.02 * width * open_v
    seam = 1.0 - _smooth((side * width) / np.maximum(gap_px, 0.5))
    cover = inside * (1.0 - 0.5 * detail * seam) * (1.0 - _smooth((a - bounds[-1] + 0.04) / 0.04))
    # convex crown: lit in the middle, darker to the sides; a translucent grey tip along the edge
    shade = (0.8 + 0.2 * np.sin(np.pi * t)) * (1.0 - 0.85 * np.clip(a / 0.5, 0, 1) ** 2)
    shade *= 1.0 - 0.12 * (1.0 - _smooth(sgn * (edge_here - v) / (0.025 * M)))
    highlight = np.exp(-(((t - 0.38) / 0.14) ** 2)) * _smooth(sgn * (edge_here - v) / (0.06 * M)) * (k <= 1)
    return cover.astype(np.float32), shade.astype(np.float32), highlight.astype(np.float32)


def shade_interior(*, u: np.ndarray, v_skull: np.ndarray, v_jaw: np.ndarray, depth_up: np.ndarray,
                   depth_lo: np.ndarray, half_width: np.ndarray, mouth_w: float, upper_edge: float,
                   palette: MouthPalette) -> np.ndarray:
    """The dental model for pixels inside the lip opening (see the module docstring).

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
    # cavity: darkest at the back (the centre) and right under the upper teeth, lighter toward the cheeks
    col = np.broadcast_to(palette.cavity, u.shape + (3,)).astype(np.float32)
    col = col * ((0.75 + 0.5 * r * r) * (0.8 + 0.2 * _smooth(depth_up / (0.15 * M))))[..., None]

    # tongue: lies on the floor of the mouth behind the lower lip, a dome filling up to ~35 % of the opening in the
    # middle and falling away to the sides; its top catches the light, with a faint midline groove
    lower_edge = upper_edge + 0.05 * M
    tr = np.clip(np.abs(u) / (0.75 * half_width), 0, 1)
    open_h = np.maximum(depth_up + depth_lo, 0.0)
    tongue_h = 0.35 * open_h * (1 - tr * tr)
    t_mask = _smooth((tongue_h - depth_lo) / 1.5 + 0.5) * (tongue_h > 0.5)
    # its front, behind the lower teeth and lip, lies in their deep shadow
    t_shade = (0.6 + 0.4 * np.clip(depth_lo / np.maximum(tongue_h, 1.0), 0, 1)) * (
        1 - 0.1 * np.exp(-((u / (0.02 * M)) ** 2)))
    t_shade *= 0.4 + 0.6 * _smooth((depth_lo - 0.1 * open_h) / np.maximum(0.12 * open_h, 1.0))
    col = col + (palette.tongue * t_shade[..., None] - col) * t_mask[..., None]

    # lower teeth: on the jaw, mostly behind the lower lip, in its shadow
    l_cov, l_shade, _ = _teeth(u, v_jaw, M, lower_edge, _LOWER_BOUNDS, None, up=False)
    col = col + (palette.teeth * (0.78 * l_shade)[..., None] - col) * l_cov[..., None]

    # upper teeth on the skull, the gum above them
    gum_line = upper_edge - 0.17 * M
    g_mask = _smooth((gum_line - v_skull) + 0.5) * (1 - _smooth((r - 0.9) / 0.1))
    col = col + (palette.gum * 0.85 - col) * g_mask[..., None]
    u_cov, u_shade, u_hi = _teeth(u, v_skull, M, upper_edge, _UPPER_BOUNDS, _UPPER_RISE, up=True)
    u_cov = u_cov * (1 - g_mask)
    upper = palette.teeth * u_shade[..., None]
    upper = upper + (np.float32(255.0) - upper) * (0.22 * u_hi)[..., None]
    col = col + (upper - col) * u_cov[..., None]

    # the lips cast a soft shadow into the mouth, the upper one more
    shade = (0.72 + 0.28 * _smooth(depth_up / (0.05 * M))) * (0.85 + 0.15 * _smooth(depth_lo / (0.03 * M)))
    return np.clip(col * shade[..., None], 0, 255)


#: the atlas's texture grid: rows from the upper to the lower inner lip, columns from corner to corner
ATLAS_ROWS, ATLAS_COLS = 24, 48
#: a frame's mouth must be at least this open (lip gap, inner opening / mouth width) to enter the atlas
ATLAS_MIN_GAP = 0.12
ATLAS_BINS = 16  # the most entries an atlas keeps: one per bin of opening
ATLAS_OPENINGS = (ATLAS_MIN_GAP, 0.6)  # the openings the bins span


def _inner_contours(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """The inner-lip contours in the mouth's own frame: (origin, ex, ey, [upper (s, t)], [lower (s, t)], width).

    s runs from the image-left corner (0) to the image-right one (width), t down across the mouth."""
    left, right = points[T.MOUTH_LEFT].astype(np.float64), points[T.MOUTH_RIGHT].astype(np.float64)
    ex = right - left
    width = float(np.linalg.norm(ex))
    ex = ex / max(width, 1e-6)
    ey = np.array([-ex[1], ex[0]])
    up = (points[list(T.LIPS_UPPER_INNER)] - left) @ np.stack([ex, ey], 1)
    lo = (points[list(T.LIPS_LOWER_INNER)] - left) @ np.stack([ex, ey], 1)
    return left, ex, ey, up[np.argsort(up[:, 0])], lo[np.argsort(lo[:, 0])], width


def mouth_opening(points: np.ndarray) -> float:
    """Inner-lip opening at the mouth's centre over its width (the atlas's index), unitless."""
    _, _, _, up, lo, width = _inner_contours(points)
    mid = width / 2
    return float((np.interp(mid, lo[:, 0], lo[:, 1]) - np.interp(mid, up[:, 0], up[:, 1])) / max(width, 1e-6))


def interior_texture(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The inside of an open mouth resampled to a (ATLAS_ROWS, ATLAS_COLS, 3) float32 RGB grid: column j at
    (j + 0.5) / ATLAS_COLS of the way from corner to corner, row i at (i + 0.5) / ATLAS_ROWS of the way from the
    upper to the lower inner lip there (so the texture is normalised to the inner-lip contour)."""
    left, ex, ey, up, lo, width = _inner_contours(points)
    s = (np.arange(ATLAS_COLS) + 0.5) / ATLAS_COLS * width
    t_up, t_lo = np.interp(s, up[:, 0], up[:, 1]), np.interp(s, lo[:, 0], lo[:, 1])
    f = (np.arange(ATLAS_ROWS) + 0.5)[:, None] / ATLAS_ROWS
    t = t_up[None] + f * (t_lo - t_up)[None]
    xy = left + s[None, :, None] * ex + t[..., None] * ey
    return cv2.remap(rgb, xy[..., 0].astype(np.float32), xy[..., 1].astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE).astype(np.float32)


@dataclass
class MouthAtlas:
    """A person's own mouth interiors (teeth, tongue, cavity) from the open-mouth frames of their video.

    Each entry is an :func:`interior_texture` with the opening it was seen at (:func:`mouth_opening`) and the
    frame's lip colour (for matching the lighting of the frame it is shown in). One entry per bin of opening
    is kept (the first frame seen in it), at most ``ATLAS_BINS``. :meth:`lookup` takes the entry nearest to an opening,
    cross-fading to the next one over the middle 30 % between them (two sets of teeth blended everywhere
    would ghost), so the interior changes smoothly as the mouth opens and closes.
    """

    textures: list[np.ndarray] = field(default_factory=list)
    openings: list[float] = field(default_factory=list)
    lips: list[np.ndarray] = field(default_factory=list)
    _bins: dict[int, tuple[float, np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def add(self, rgb: np.ndarray, points: np.ndarray) -> bool:
        """Offer one frame (H, W, 3 uint8 RGB with its (478, 2) landmarks); kept when its mouth is open enough and
        its opening bin (:data:`ATLAS_BINS` bins over :data:`ATLAS_OPENINGS`) is still empty, so the entries are
        spread over the openings the whole video shows, whatever its length. Returns whether it was taken."""
        opening = mouth_opening(points)
        if not np.isfinite(opening) or opening < ATLAS_MIN_GAP:
            return False
        lo, hi = ATLAS_OPENINGS
        b = int(np.clip((opening - lo) / (hi - lo) * ATLAS_BINS, 0, ATLAS_BINS - 1))
        if b in self._bins:
            return False
        outer = np.concatenate([points[list(T.LIPS_UPPER_OUTER)], points[list(T.LIPS_LOWER_OUTER)][::-1]])
        inner = np.concatenate([points[list(T.LIPS_UPPER_INNER)], points[list(T.LIPS_LOWER_INNER)][::-1]])
        lips = _region_pixels(rgb, outer, inner)
        if len(lips) < 20:
            return False
        self._bins[b] = (opening, interior_texture(rgb, points), np.median(lips, axis=0))
        return True

    def finish(self) -> "MouthAtlas":
        """Fix the entries in order of opening (call once after the last :meth:`add`); returns self."""
        entries = [self._bins[b] for b in sorted(self._bins)]
        self.openings = [e[0] for e in entries]
        self.textures = [e[1] for e in entries]
        self.lips = [e[2] for e in entries]
        return self

    def __len__(self) -> int:
        return len(self.textures)

    def lookup(self, opening: float, lip: np.ndarray) -> np.ndarray:
        """(ATLAS_ROWS, ATLAS_COLS, 3) float32 interior for a mouth open by ``opening`` (lip gap units), in the
        light of a frame whose lips have colour ``lip`` (RGB): the nearest entry, cross-faded into the next one
        over the middle 30 % between their openings, each scaled by the ratio of the lip colours (within 0.8-1.25
        per channel).

        Raises:
            ValueError: an empty atlas.
        """
        if not self.textures:
            raise ValueError("the mouth atlas is empty")
        o = np.asarray(self.openings)
        k = int(np.clip(np.searchsorted(o, opening), 1, max(len(o) - 1, 1)))
        if len(o) == 1:
            pairs = [(0, 1.0)]
        else:
            lo, hi = k - 1, k
            span = max(o[hi] - o[lo], 1e-6)
            # mostly one entry (two sets of teeth at different places would ghost), cross-fading in between
            wt = float(_smooth((np.clip((opening - o[lo]) / span, 0.0, 1.0) - 0.35) / 0.3))
            pairs = [(lo, 1.0 - wt), (hi, wt)]
        out = np.zeros((ATLAS_ROWS, ATLAS_COLS, 3), np.float32)
        for i, wgt in pairs:
            gain = np.clip(np.asarray(lip, np.float32) / np.maximum(self.lips[i], 1.0), 0.8, 1.25)
            out += wgt * self.textures[i] * gain
        return out


def refine_inner_lips(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Inner-lip landmarks moved onto the photo's real lip edges where its teeth show.

    On a smile with teeth, MediaPipe's inner-lip points often sit a few pixels inside the teeth; closing the
    lips along them would leave a line of teeth between the lips. Each inner-lip point (corners excepted) that
    is not on a wholly lip-coloured pixel (teeth, or an edge pixel mixing teeth and lip) is moved outward (up for
    the upper lip, down for the lower one, across the mouth's axis) to the first lip-coloured pixel, at most half
    the lip's thickness away (else to the most lip-like pixel there): a pixel counts as lip within 0.45 of the teeth-to-lip colour distance of the lips'
    median (the teeth: the bright fifth of the opening).

    Args:
        rgb: (H, W, 3) uint8 photo. points: (478, 2) landmarks in pixels.

    Returns:
        (478, 2) float64 landmarks, a copy (unchanged when the mouth does not show its teeth).
    """
    p = np.asarray(points, np.float64).copy()
    h, w = rgb.shape[:2]
    M = T.mouth_width(p)
    inner = np.concatenate([p[list(T.LIPS_UPPER_INNER)], p[list(T.LIPS_LOWER_INNER)][::-1]])
    outer = np.concatenate([p[list(T.LIPS_UPPER_OUTER)], p[list(T.LIPS_LOWER_OUTER)][::-1]])
    if T.inner_lip_gap(p) <= 0.06 * M or M < 8:
        return p
    inside = _region_pixels(rgb, inner)
    ring = _region_pixels(rgb, outer, inner)
    if len(inside) < 20 or len(ring) < 20:
        return p
    lum = inside.mean(axis=1)
    teeth = inside[lum >= np.percentile(lum, 80)].mean(axis=0)
    lip = np.median(ring, axis=0)
    if np.linalg.norm(teeth - lip) < 30.0:  # teeth and lips look alike: nothing to tell apart
        return p
    eu = p[T.MOUTH_RIGHT] - p[T.MOUTH_LEFT]
    eu = eu / max(np.linalg.norm(eu), 1e-6)
    ev = np.array([-eu[1], eu[0]])  # down the face
    centre = (p[T.MOUTH_LEFT] + p[T.MOUTH_RIGHT]) / 2
    thick_up = max(float((p[13] - p[0]) @ ev), 2.0)
    thick_lo = max(float((p[17] - p[14]) @ ev), 2.0)

    contrast = float(np.linalg.norm(teeth - lip))

    def lip_distance(xy: np.ndarray) -> float:
        """Colour distance to the lips, in teeth-to-lip distances (an edge pixel mixing the two is ~0.5)."""
        x, y = int(round(xy[0])), int(round(xy[1]))
        if not (0 <= x < w and 0 <= y < h):
            return 0.0
        return float(np.linalg.norm(rgb[y, x].astype(np.float32) - lip)) / contrast

    for ids, direction, thick in ((T.LIPS_UPPER_INNER, -ev, thick_up), (T.LIPS_LOWER_INNER, ev, thick_lo)):
        for i in ids[1:-1]:
            here = lip_distance(p[i])
            if abs(float((p[i] - centre) @ eu)) > 0.47 * M or here < 0.45:
                continue
            # the first wholly lip pixel outward, else the most lip-like one within 0.8 of the lip's thickness
            steps = np.arange(0.5, 0.8 * thick + 0.5, 0.5)
            dist = np.array([lip_distance(p[i] + s * direction) for s in steps])
            ok = np.flatnonzero(dist < 0.45)
            k = int(ok[0]) if ok.size else int(np.argmin(dist))
            if dist[k] < 0.8 * here:
                p[i] = p[i] + steps[k] * direction
    return p
