"""The lite engine's face rig: landmark-driven displacement fields over a coarse grid.

A :class:`FaceRig` is built once per identity from its 478 landmarks. It holds, for each animation
control, the *forward* displacement field (where a source pixel moves, in pixels, for a unit value of
the control) sampled on a coarse grid covering the head. A frame's deformation is the linear
combination of these basis fields with that frame's control values; :mod:`studio.engine.lite.warp`
inverts it into the backward map that ``cv2.remap`` needs.

The mouth opens a hole, so the deformation is discontinuous across the lip line. It is therefore kept as
two smooth *layers*: ``up`` (used for source points above the upper inner lip) and ``lo`` (below the
lower inner lip); outside the mouth corners the two layers agree, so the face stays continuous. Two
more layers drive the mouth interior: ``skull`` (head motion only: upper teeth are fixed to the skull)
and ``jaw`` (head motion plus the jaw: lower teeth and tongue ride on the mandible).

The photo's own mouth is the rest state (``rest_mouth="photo"``, what a photo is animated with): a photo
that shows its lips parted keeps them parted between words, and speech opens from there; lip contacts
(M/B/P press, F/V teeth) and the rest closure of a pause (the ``close`` control) bring the lips together
(see :meth:`FaceRig.coefficients`). ``rest_mouth="closed"`` (the default, used to re-voice video frames whose
mouth carries their own speech) always brings the inner lips together first.

All lengths come from the face itself (mouth width ``M``, face height ``H``), so the rig is
resolution-independent. Control units: mouth controls in [0, 1] (see :class:`MouthTrack`), blinks in
[0, 1], yaw/pitch/roll in degrees, tx/ty as fractions of the face height, scale as a relative change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio.engine.face import topology as T

# control names, in basis order
CONTROLS = ("jaw", "open", "spread", "press", "teeth", "close", "blink_l", "blink_r",
            "yaw", "pitch", "roll", "tx", "ty", "scale", "smile", "brow", "brow_inner", "eyes")
HEAD_CONTROLS = ("yaw", "pitch", "roll", "tx", "ty", "scale")
REST_MOUTHS = ("closed", "photo")
# the speech opening s and the photo's own lip gap g0 combine as (g0^p + s^p)^(1/p): a smooth maximum,
# so the photo's gap is kept while speech asks for less and wider shapes open beyond it
_REST_SOFTMAX_P = 2.0
# internal bases: the mouth controls map onto these (see FaceRig.coefficients)
BASES = ("close", "upper_raise", "lower_drop", "jaw", "spread", "press", "smile", "brow", "brow_inner",
         "brow_knit", "yaw", "pitch", "roll", "tx", "ty", "scale")
_B = {name: i for i, name in enumerate(BASES)}


def _fall(t: np.ndarray) -> np.ndarray:
    """Smooth falloff: 1 for t <= 0, 0 for t >= 1, C1-continuous smoothstep in between."""
    t = np.clip(t, 0.0, 1.0)
    return 1.0 - t * t * (3.0 - 2.0 * t)


def _rise(t: np.ndarray) -> np.ndarray:
    return 1.0 - _fall(t)


@dataclass(frozen=True)
class Proportions:
    """How far each mouth control moves, as fractions of the mouth width M or face height H.

    Values are chosen from typical speech articulation (jaw drop of 10-15 mm on a ~190 mm face,
    lip opening up to about a third of the mouth width for open vowels).
    """

    jaw_drop_h: float = 0.065  # chin drop at jaw = 1, fraction of H
    upper_raise_m: float = 0.055  # upper lip rise at open = 1, fraction of M
    lower_drop_m: float = 0.045  # lower lip drop (beyond the jaw) at open = 1, fraction of M
    spread_m: float = 0.07  # each corner moves out at spread = +1 (in by this x 1.4 at -1), fraction of M
    press_m: float = 0.03  # lips roll in at press = 1, fraction of M
    teeth_raise_m: float = 0.065  # F/V: upper lip rise at teeth = 1, fraction of M
    teeth_tuck_m: float = 0.02  # F/V: lower lip rises under the upper teeth, fraction of M
    # as the lips part they stretch vertically and the corners come in: each corner moves towards the
    # centre by this fraction of the opening the speech adds at the mouth centre (a rendered opening
    # otherwise reads as a wider mouth, where real mouths keep or lose width as they open)
    corner_in_open: float = 0.15


class FaceRig:
    """Per-identity geometry and basis displacement fields.

    Args:
        points: (478, 2) float landmarks in pixels (MediaPipe indexing) of the identity photo.
        image_size: (height, width) of the photo in pixels.
        depth: (478,) relative landmark depth in pixels (MediaPipe z; negative = towards the camera).
        proportions: articulation ranges.
        rest_mouth: ``"closed"``: the inner lips are brought together at rest (the photo's own opening is
            always closed first); ``"photo"``: the photo's own lip gap is the rest state (see
            :meth:`coefficients`).
        head_rotation: build the yaw/pitch rotation lever (a kernel regression over the mesh's depth).
            False gives a mouth-only rig whose yaw/pitch fields are zero, about 20x cheaper to build
            (~30 ms instead of ~600 ms for a 512 px face): what re-voicing a video fits to every frame,
            since there the video itself turns the head.

    Attributes:
        roi: (x0, y0, x1, y1) integer pixel box that contains every non-zero displacement.
        stride: coarse grid spacing in pixels.
        grid_xy: (Gh, Gw, 2) float32 pixel positions of the coarse grid samples.
        basis_up, basis_lo: (K, Gh, Gw, 2) float32 forward fields (pixels per unit), K = len(BASES).
    """

    def __init__(self, points: np.ndarray, image_size: tuple[int, int], *, depth: np.ndarray | None = None,
                 proportions: Proportions = Proportions(), rest_mouth: str = "closed",
                 head_rotation: bool = True) -> None:
        if rest_mouth not in REST_MOUTHS:
            raise ValueError(f"rest_mouth must be one of {REST_MOUTHS}, got {rest_mouth!r}")
        self.rest_mouth = rest_mouth
        self.head_rotation = head_rotation
        p = np.asarray(points, dtype=np.float64)
        if p.shape != (478, 2):
            raise ValueError(f"expected (478, 2) landmarks, got {p.shape}")
        self.points = p
        # relative depth per landmark (pixels, negative towards the camera); a flat face if unknown
        self.depth = np.zeros(478) if depth is None else np.asarray(depth, dtype=np.float64)
        self.image_h, self.image_w = image_size
        self.prop = proportions
        self.M = T.mouth_width(p)
        self.H = float(np.linalg.norm(p[T.CHIN] - p[T.FOREHEAD]))
        self.face_w = float(np.linalg.norm(p[T.CHEEK_RIGHT] - p[T.CHEEK_LEFT]))
        self._mouth_frame()
        self._eye_frames()
        self._head_frame()
        self._grid()
        self._build_bases()

    # ------------------------------------------------------------------ geometry
    def _mouth_frame(self) -> None:
        p = self.points
        eu = p[T.MOUTH_RIGHT] - p[T.MOUTH_LEFT]
        self.eu = eu / np.linalg.norm(eu)
        self.ev = np.array([-self.eu[1], self.eu[0]])  # perpendicular, pointing down the face
        self.mouth_origin = (p[13] + p[14]) / 2
        up_uv = self.to_mouth(p[list(T.LIPS_UPPER_INNER)])
        lo_uv = self.to_mouth(p[list(T.LIPS_LOWER_INNER)])
        self.u_left = float(self.to_mouth(p[T.MOUTH_LEFT])[0])
        self.u_right = float(self.to_mouth(p[T.MOUTH_RIGHT])[0])
        self._u_knots = np.linspace(self.u_left, self.u_right, 33)
        v_up = np.interp(self._u_knots, *_sorted_xy(up_uv))
        v_lo = np.interp(self._u_knots, *_sorted_xy(lo_uv))
        noise = 0.015 * self.M  # landmark jitter: a closed mouth reads as a few px of "gap"
        gap = np.maximum(v_lo - v_up - noise, 0.0)
        gap[[0, -1]] = 0.0
        self._v_line = (v_up + v_lo) / 2
        self._gap = gap
        self.gap0 = float(np.max(gap))  # the photo's own inner-lip gap, pixels
        self.shows_teeth = self.gap0 > 0.06 * self.M  # open enough to reuse the photo's own interior
        line0 = float(np.interp(0.0, self._u_knots, self._v_line))
        self.lip_upper = max(line0 - float(self.to_mouth(p[0])[1]), 0.05 * self.M)
        self.lip_lower = max(float(self.to_mouth(p[17])[1]) - line0, 0.05 * self.M)
        self.d_nose = max(line0 - float(self.to_mouth(p[T.SUBNASALE])[1]), 2.0 * self.lip_upper)
        self.d_chin = max(float(self.to_mouth(p[T.CHIN])[1]) - line0, 2.0 * self.lip_lower)
        jl = abs(float(self.to_mouth(p[T.JAW_ANGLE_LEFT])[0]))
        jr = abs(float(self.to_mouth(p[T.JAW_ANGLE_RIGHT])[0]))
        self.jaw_half = (max(jl, 1.2 * abs(self.u_left)), max(jr, 1.2 * self.u_right))

    def to_mouth(self, xy: np.ndarray) -> np.ndarray:
        """Pixel positions (..., 2) -> mouth-frame (u along the mouth, v down the face), pixels."""
        d = np.asarray(xy, dtype=np.float64) - self.mouth_origin
        return np.stack([d @ self.eu, d @ self.ev], axis=-1)

    def lip_line(self, u: np.ndarray) -> np.ndarray:
        """v of the photo's lip line (midway between the inner lips) at mouth-frame u, pixels."""
        return np.interp(u, self._u_knots, self._v_line)

    def lip_gap(self, u: np.ndarray) -> np.ndarray:
        """The photo's inner-lip gap at mouth-frame u (0 beyond the corners), pixels."""
        return np.interp(u, self._u_knots, self._gap, left=0.0, right=0.0)

    def mouth_profile(self, u: np.ndarray) -> np.ndarray:
        """Opening profile across the mouth: 1 at the centre, 0 at and beyond the corners."""
        half = np.where(u < 0, -self.u_left, self.u_right)
        t = np.clip(1.0 - (u / half) ** 2, 0.0, 1.0)
        return t ** 0.6

    def _eye_frames(self) -> None:
        self.eyes = []
        for eye in (T.EYE_IMAGE_LEFT, T.EYE_IMAGE_RIGHT):
            p = self.points
            c0, c1 = p[eye["corners"][0]], p[eye["corners"][1]]
            ea = (c1 - c0) if c1[0] > c0[0] else (c0 - c1)
            ea = ea / np.linalg.norm(ea)
            eb = np.array([-ea[1], ea[0]])
            origin = (c0 + c1) / 2
            up = (p[list(eye["upper"])] - origin) @ np.stack([ea, eb], axis=1)
            lo = (p[list(eye["lower"])] - origin) @ np.stack([ea, eb], axis=1)
            a0, a1 = float(min(up[:, 0].min(), lo[:, 0].min())), float(max(up[:, 0].max(), lo[:, 0].max()))
            knots = np.linspace(a0, a1, 17)
            b_up = np.interp(knots, *_sorted_xy(up))
            b_lo = np.interp(knots, *_sorted_xy(lo))
            brow = (p[list(eye["brow"])] - origin) @ eb
            # the lid skin stretches over the lower half of the way to the brow; the brow itself stays
            brow_dist = max(0.6 * float(np.mean(b_up) - np.mean(brow)), 1.2 * float(np.max(b_lo - b_up)), 1.0)
            # the stretch of a blink stays in the lid skin just above the lashes (the warp's stretched skin
            # is painted over by the lid layer): the crease and the brow above it stay where they are
            stretch = max(min(0.8 * float(np.max(b_lo - b_up)), brow_dist), 1.0)
            self.eyes.append(dict(origin=origin, ea=ea, eb=eb, knots=knots, b_up=b_up, b_lo=b_lo,
                                  brow=brow_dist, stretch=stretch))

    def _head_frame(self) -> None:
        p = self.points
        eh = p[T.CHEEK_RIGHT] - p[T.CHEEK_LEFT]
        self.eh = eh / np.linalg.norm(eh)
        self.ed = np.array([-self.eh[1], self.eh[0]])
        self.face_center = (p[T.FOREHEAD] + p[T.CHIN]) / 2
        self.head_center = self.face_center - 0.12 * self.H * self.ed
        self.head_rx = 0.62 * self.face_w
        self.head_ry = 0.72 * self.H
        self.head_falloff = 0.7  # the head mask fades out between 1x and 1.7x its radii
        self.pivot = p[T.CHIN] + 0.3 * self.H * self.ed  # the neck: roll/scale happen about it

    def _grid(self) -> None:
        reach = 1.0 + self.head_falloff
        c, rx, ry = self.head_center, self.head_rx * reach, self.head_ry * reach
        corners = np.array([c + sx * rx * self.eh + sy * ry * self.ed for sx in (-1, 1) for sy in (-1, 1)])
        x0, y0 = np.floor(corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
        # the mouth/jaw fields reach below the head ellipse only by the neck falloff; include the chin region
        chin_reach = self.points[T.CHIN] + 0.6 * self.d_chin * self.ev
        y1 = max(y1, int(np.ceil(chin_reach[1])) + 2)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.image_w), min(y1, self.image_h)
        self.stride = int(np.clip(round(self.H / 110.0), 2, 16))
        s = self.stride
        # grid cells around a window that a solve must include: the largest displacement the rig makes
        self.solve_margin = int(np.ceil(0.2 * self.H / s)) + 2
        gw, gh = -(-(x1 - x0) // s), -(-(y1 - y0) // s)
        self.roi = (int(x0), int(y0), int(x1), int(y1))
        self.grid_shape = (gh, gw)
        xs = x0 + (np.arange(gw) + 0.5) * s - 0.5
        ys = y0 + (np.arange(gh) + 0.5) * s - 0.5
        gx, gy = np.meshgrid(xs, ys)
        self.grid_xy = np.stack([gx, gy], axis=-1).astype(np.float32)

    # ------------------------------------------------------------------ basis fields
    def _build_bases(self) -> None:
        P = self.grid_xy.astype(np.float64)
        uv = self.to_mouth(P)
        u, v = uv[..., 0], uv[..., 1]
        vl = v - self.lip_line(u)  # signed distance below the lip line, pixels
        prof = self.mouth_profile(u)
        gap_half = self.lip_gap(u) / 2
        ev = self.ev
        k = len(BASES)
        up = np.zeros((k,) + P.shape, dtype=np.float64)
        lo = np.zeros_like(up)

        # upper lip: full motion from the lip line up through the lip, fading out at the nose base
        f_up = _fall((-vl - self.lip_upper) / max(self.d_nose - self.lip_upper, 1.0))
        # lower lip only (no jaw): fades out before the chin
        f_lo = _fall((vl - self.lip_lower) / max(0.85 * self.d_chin - self.lip_lower, 1.0))
        up[_B["close"]] = (gap_half * f_up)[..., None] * ev
        lo[_B["close"]] = (-gap_half * f_lo)[..., None] * ev
        up[_B["upper_raise"]] = (-prof * f_up)[..., None] * ev
        lo[_B["lower_drop"]] = (prof * f_lo)[..., None] * ev

        # jaw: the mandible (lower lip to chin) drops; cheeks beyond the corners stretch; the neck fades
        jl, jr = self.jaw_half
        half = np.where(u < 0, jl, jr)
        lateral = _fall((np.abs(u) - 0.7 * half) / (0.6 * half))
        below = np.where(vl > 0, _rise(vl / (0.5 * self.d_chin)), 0.0)
        neck = _fall((vl - self.d_chin) / (0.5 * self.d_chin))
        lo[_B["jaw"]] = ((prof + (1 - prof) * below) * lateral * neck)[..., None] * ev

        # spread (+) / round (-): corners move along the mouth axis, the lips and cheeks follow
        cu = np.where(u < 0, -self.u_left, self.u_right)
        q = np.where(np.abs(u) <= cu, u / cu, np.sign(u) * _fall((np.abs(u) - cu) / (0.8 * cu)))
        reach = np.where(vl < 0, 0.8 * self.d_nose, 0.6 * self.d_chin)
        thick = np.where(vl < 0, self.lip_upper, self.lip_lower)
        vert = _fall((np.abs(vl) - thick) / reach)
        up[_B["spread"]] = lo[_B["spread"]] = (q * vert)[..., None] * self.eu

        # press: both lips roll in towards the lip line
        up[_B["press"]] = (prof * _fall((-vl - 0.5 * self.lip_upper) / self.lip_upper))[..., None] * ev
        lo[_B["press"]] = (-prof * _fall((vl - 0.5 * self.lip_lower) / self.lip_lower))[..., None] * ev

        # smile (+) / frown (-): the corners go up and out, the cheeks above them follow
        corner = np.exp(-(((np.abs(u) - cu) / (0.5 * cu)) ** 2))
        reach_s = np.where(vl < 0, 0.9 * self.d_nose, 0.7 * self.d_chin)
        smile = corner * _fall((np.abs(vl) - thick) / reach_s)
        up[_B["smile"]] = lo[_B["smile"]] = smile[..., None] * (
            -0.055 * self.M * ev + (0.03 * self.M * np.sign(u))[..., None] * self.eu)
        brow, inner, knit = self._brow_fields(P)
        up[_B["brow"]] = lo[_B["brow"]] = brow
        up[_B["brow_inner"]] = lo[_B["brow_inner"]] = inner
        up[_B["brow_knit"]] = lo[_B["brow_knit"]] = knit

        head = self.head_mask(P)
        rad = np.pi / 180.0
        d = P - self.pivot
        up[_B["roll"]] = lo[_B["roll"]] = (rad * head)[..., None] * np.stack([-d[..., 1], d[..., 0]], -1)
        # yaw/pitch: rotate the face's own 3-D mesh about an axis through the middle of the head; the nose
        # travels furthest, the outline (turning in depth) least: that parallax is what reads as a turn
        front = (self._rotation_lever(P) if self.head_rotation else np.zeros(P.shape[:-1])) * head
        up[_B["yaw"]] = lo[_B["yaw"]] = (rad * front)[..., None] * self.eh
        up[_B["pitch"]] = lo[_B["pitch"]] = (rad * front)[..., None] * self.ed
        up[_B["tx"]] = lo[_B["tx"]] = head[..., None] * np.array([1.0, 0.0])
        up[_B["ty"]] = lo[_B["ty"]] = head[..., None] * np.array([0.0, 1.0])
        up[_B["scale"]] = lo[_B["scale"]] = head[..., None] * d
        self.basis_up = up.astype(np.float32)
        self.basis_lo = lo.astype(np.float32)

    def _brow_fields(self, P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Brow raise (up by 4.5 % of H), inner-brow raise (3.5 % of H) and knit (inner ends 1.5 % of H
        towards the midline) for unit coefficients, each (..., 2) pixels. The forehead above and the lid
        skin below stretch; the eyelid margin does not move."""
        brow = np.zeros(P.shape)
        inner = np.zeros(P.shape)
        knit = np.zeros(P.shape)
        mid = (self.points[T.FOREHEAD] + self.points[T.NOSE_TIP]) / 2
        for eye, spec in zip(self.eyes, (T.EYE_IMAGE_LEFT, T.EYE_IMAGE_RIGHT)):
            rel = P - eye["origin"]
            a, b = rel @ eye["ea"], rel @ eye["eb"]
            bp = (self.points[list(spec["brow"])] - eye["origin"]) @ np.stack([eye["ea"], eye["eb"]], axis=1)
            order = np.argsort(bp[:, 0])
            b_brow = np.interp(a, bp[order, 0], bp[order, 1])
            span = float(np.ptp(bp[:, 0]))
            centre = float(bp[:, 0].mean())
            lateral = _fall((np.abs(a - centre) - 0.5 * span) / (0.4 * span))
            b_lid = np.interp(a, eye["knots"], eye["b_up"])
            gap = np.maximum(b_lid - b_brow, 1.0)
            below = _fall((b - b_brow) / gap)  # 1 at the brow, 0 at the lid margin
            above = _fall((b_brow - b) / (1.5 * gap))  # fades up the forehead
            w = lateral * np.where(b >= b_brow, below, above)
            brow += (-0.045 * self.H * w)[..., None] * eye["eb"]
            # the inner end is the one nearer the face's midline
            inner_a = bp[order[0], 0] if abs(bp[order[0], 0] + eye["origin"] @ eye["ea"] - mid @ eye["ea"]) < abs(
                bp[order[-1], 0] + eye["origin"] @ eye["ea"] - mid @ eye["ea"]) else bp[order[-1], 0]
            w_in = w * _fall(np.abs(a - inner_a) / (0.8 * span))
            inner += (-0.035 * self.H * w_in)[..., None] * eye["eb"]
            towards_mid = np.sign((mid - eye["origin"]) @ eye["ea"]) * eye["ea"]
            knit += (0.015 * self.H * w_in)[..., None] * towards_mid
        return brow, inner, knit

    def blink_inverse(self, pos: np.ndarray, closure: tuple[float, float]) -> np.ndarray:
        """Apply the eyelids' backward map to source positions (in place) and return them.

        A blink slides the upper lid down by ``closure`` of the way to a line a little below the lower lid
        margin (so the lashes overlap); the lid skin just above the lash band stretches (over
        ``eye["stretch"]``, so the crease and brow stay put; the engine paints a synthesized lid over that
        skin, see :mod:`studio.engine.lite.eyelid`) and the eyeball under it compresses. The motion is
        along each eye's vertical axis only, so it is inverted exactly per column; it composes after the
        other (smooth) fields' inverse.

        Args:
            pos: (..., 2) float32 source positions in pixels, modified in place.
            closure: (image-left eye, image-right eye) closure in [-0.25, 1] (1 = closed, < 0 = widened).
        """
        for eye, k in zip(self.eyes, closure):
            if float(np.clip(k, -0.25, 1.0)) == 0.0:
                continue
            rel = pos - eye["origin"].astype(np.float32)
            a = rel @ eye["ea"].astype(np.float32)
            b = rel @ eye["eb"].astype(np.float32)
            near = (a > eye["knots"][0] - 1) & (a < eye["knots"][-1] + 1) & (b > -2.5 * eye["brow"]) & (
                b < eye["b_lo"].max() + 2 * (eye["b_lo"] - eye["b_up"]).max() + 2)
            if not near.any():
                continue
            a_n, b_d = a[near], b[near]
            b_up, travel, lash, shift = self.lid_layout(eye, a_n, k)
            f = float(np.clip(k, -0.25, 1.0)) * 0.97
            b_end = b_up + travel
            # eyeball: [b_up, b_end] was squeezed into [b_up + shift, b_end]
            inside = b_d >= b_up + shift
            src = np.where(inside, b_end - (b_end - b_d) / np.maximum(1.0 - f, 1e-3), b_d)
            # lid skin: solve b + shift * fall((b_up - lash - b) / stretch) = b_d. The left side only grows
            # with b (the skin stretches), so Newton from the lowest candidate converges monotonically.
            # The lash band (just above the margin) moves rigidly, so the lashes stay a thin line; the
            # skin above it stretches (the lid layer of the engine paints over it).
            span = eye["stretch"]
            lid = b_d - shift
            for _ in range(6):
                t = np.clip((b_up - lash - lid) / span, 0.0, 1.0)
                g = lid + shift * _fall(t) - b_d
                lid = lid - g / (1.0 + 6.0 * shift * t * (1.0 - t) / span)
            src = np.where(inside | (b_d >= b_end), np.where(b_d >= b_end, b_d, src), lid)
            delta = (src - b_d).astype(np.float32)
            pos[near] += delta[:, None] * eye["eb"].astype(np.float32)
        return pos

    @staticmethod
    def lid_layout(eye: dict, a: np.ndarray, closure: float) -> tuple[np.ndarray, ...]:
        """One eye's upper lid at lateral positions ``a`` (eye frame, pixels) for a closure.

        Returns:
            (b_up, travel, lash, shift): the photo's lid margin, how far it travels to close (a little past
            the lower lid margin, so the lashes overlap), the height of the lash band that moves rigidly
            with it, and how far it has moved at this closure (a sliver is kept so the map stays
            invertible; negative closure = widen, the lid rises, at most 25 %).
        """
        f = float(np.clip(closure, -0.25, 1.0)) * 0.97
        b_up = np.interp(a, eye["knots"], eye["b_up"])
        travel = 1.15 * np.interp(a, eye["knots"], np.maximum(eye["b_lo"] - eye["b_up"], 0.0), left=0.0, right=0.0)
        return b_up, travel, 0.3 * travel, f * travel

    def _rotation_lever(self, P: np.ndarray) -> np.ndarray:
        """How far in front of the head's rotation axis each position is, in pixels (per radian of yaw or
        pitch that is its displacement), interpolated from the mesh's depth over the grid.

        The axis sits 0.55 face widths behind the mean face depth (the middle of the skull). Between
        landmarks: Gaussian kernel regression (sigma = 7 % of the face height); off the face it settles to
        the outline's value, so hair and ears move with the skull.
        """
        mesh = self.points[:468]
        depth = self.depth[:468]
        axis_depth = float(depth.mean()) + 0.55 * self.face_w
        lever = axis_depth - depth  # > 0: in front of the axis
        outline = float(lever[list(T.FACE_OVAL)].mean())
        sigma = 0.07 * self.H
        flat = P.reshape(-1, 2)
        num = np.zeros(len(flat))
        den = np.zeros(len(flat))
        for chunk in range(0, len(mesh), 64):
            d2 = ((flat[:, None, :] - mesh[None, chunk:chunk + 64, :]) ** 2).sum(-1)
            w = np.exp(-0.5 * d2 / sigma ** 2)
            num += w @ lever[chunk:chunk + 64]
            den += w.sum(axis=1)
        eps = 0.05
        return ((num + eps * outline) / (den + eps)).reshape(P.shape[:-1])

    def head_mask(self, P: np.ndarray) -> np.ndarray:
        """Weight in [0, 1] of the head motion at pixel positions (..., 2): 1 on the head, 0 far away."""
        rel = P - self.head_center
        rho = np.sqrt(((rel @ self.eh) / self.head_rx) ** 2 + ((rel @ self.ed) / self.head_ry) ** 2)
        return _fall((rho - 1.0) / self.head_falloff)

    # ------------------------------------------------------------------ controls
    def coefficients(self, controls: dict[str, float]) -> np.ndarray:
        """Map one frame's control values to basis coefficients (pixels per basis unit).

        Args:
            controls: values for names in :data:`CONTROLS` (missing = 0). Mouth controls in [0, 1]
                (spread in [-1, 1]); yaw/pitch/roll in degrees; tx, ty fractions of the face height;
                scale relative (0.01 = 1 % larger).

        Returns:
            (K,) float32 coefficients for :data:`BASES`.
        """
        g = {name: float(controls.get(name, 0.0)) for name in CONTROLS}
        pr, M, H = self.prop, self.M, self.H
        c = np.zeros(len(BASES), dtype=np.float32)
        c[_B["jaw"]] = g["jaw"] * pr.jaw_drop_h * H
        c[_B["upper_raise"]] = (g["open"] * pr.upper_raise_m + g["teeth"] * pr.teeth_raise_m) * M
        c[_B["lower_drop"]] = (g["open"] * pr.lower_drop_m - g["teeth"] * pr.teeth_tuck_m) * M
        opening = float(c[_B["jaw"]] + c[_B["upper_raise"]] + c[_B["lower_drop"]])
        c[_B["close"]] = self._closure(opening, max(g["press"], g["teeth"], g["close"], 0.0))
        spread = g["spread"]
        c[_B["spread"]] = spread * pr.spread_m * M * (1.0 if spread >= 0 else 1.4) - pr.corner_in_open * max(opening, 0.0)
        c[_B["press"]] = g["press"] * pr.press_m * M
        c[_B["smile"]] = np.clip(g["smile"], -1.0, 1.0)
        c[_B["brow"]] = np.clip(g["brow"], -1.0, 1.0)
        c[_B["brow_inner"]] = np.clip(g["brow_inner"], -1.0, 1.0)
        c[_B["brow_knit"]] = np.clip(-g["brow_inner"], 0.0, 1.0)
        c[_B["yaw"]] = g["yaw"]
        c[_B["pitch"]] = g["pitch"]
        c[_B["roll"]] = g["roll"]
        c[_B["tx"]] = g["tx"] * H
        c[_B["ty"]] = g["ty"] * H
        c[_B["scale"]] = g["scale"]
        return c

    def _closure(self, opening: float, contact: float) -> float:
        """Coefficient of the ``close`` basis (the fraction of the photo's own lip gap taken away).

        ``opening`` is the gap the speech controls add at the mouth centre (pixels) and ``contact`` how far
        the lips are pressed together, tucked under the teeth or brought together at rest in a pause (the
        ``close`` control), [0, 1]. With ``rest_mouth="photo"`` the centre gap is the smooth maximum of the
        photo's gap g0 and that opening, (g0^p + s^p)^(1/p): the photo's parted lips stay as they are while
        speech asks for less, and open shapes wider than them open further; contacts and pauses still close
        the lips completely.
        """
        g0 = self.gap0
        if self.rest_mouth == "closed" or g0 < 1.0:
            return 1.0
        s = max(opening, 0.0)
        p = _REST_SOFTMAX_P
        gap = (g0 ** p + s ** p) ** (1.0 / p)
        keep = float(np.clip((g0 + s - gap) / g0, 0.0, 1.0))
        return max(keep, min(contact, 1.0))

    @staticmethod
    def eye_closure(controls: dict[str, float]) -> tuple[float, float]:
        """Per-eye lid closure from blinks and the ``eyes`` expression (narrowing closes up to 35 %,
        widening opens up to 25 %)."""
        eyes = float(controls.get("eyes", 0.0))
        extra = 0.35 * max(0.0, -eyes) - 0.25 * max(0.0, eyes)
        return tuple(float(np.clip(max(float(controls.get(k, 0.0)), 0.0) + extra, -0.25, 1.0))
                     for k in ("blink_l", "blink_r"))

    @staticmethod
    def head_only(c: np.ndarray) -> np.ndarray:
        """Coefficients of the skull layer: head motion only (upper teeth are fixed to the skull)."""
        out = np.zeros_like(c)
        for name in HEAD_CONTROLS:
            out[_B[name]] = c[_B[name]]
        return out

    @staticmethod
    def jaw_only(c: np.ndarray) -> np.ndarray:
        """Coefficients of the jaw layer: head motion plus the jaw (lower teeth, tongue)."""
        out = FaceRig.head_only(c)
        out[_B["jaw"]] = c[_B["jaw"]]
        return out


def _sorted_xy(uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(uv[:, 0])
    return uv[order, 0], uv[order, 1]
