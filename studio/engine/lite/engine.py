"""The embedded default engine ("lite"): a landmark-driven warp of the photo, no neural weights.

Per frame: combine the rig's basis fields with the frame's controls, invert them into backward maps
(one per layer), remap the head region of the full-resolution photo, then fill the lip opening with the
mouth interior. Only the head region (``FaceRig.roi``) is ever touched; every other pixel of the
output is the photo's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import cv2
import numpy as np

from studio.core.events import CancelToken, Job, ProgressMonitor
from studio.core.tracks import ControlTrack
from studio.engine.base import frame_buffer
from studio.engine.face.detect import FaceLandmarks
from studio.engine.face.identity import Identity
from studio.engine.lite.eyelid import LidPalette, composite_lid
from studio.engine.lite.mouth import (ATLAS_COLS, ATLAS_ROWS, MouthAtlas, MouthPalette, refine_inner_lips,
                                      shade_interior)
from studio.engine.lite.rig import BASES, HEAD_CONTROLS, REST_MOUTHS, FaceRig, Proportions
from studio.engine.lite.warp import invert_field, upsample


#: the lips' inner rim (pixels) taken from further into the lip (see ``_render_mouth``); of 0 / 1 / 1.5, 1.5 gave the
#: darkest closed contact on hdtf_katie_hill re-voiced (brightest closed frame 186 / 222 / 166, its teeth 219) and on
#: taylor_256px closed (contact p90 137 / 89 / 89, lips 77)
RIM_PX = 1.5


@dataclass(frozen=True)
class LitePrepared:
    """Everything the lite engine precomputes for one photo (:meth:`LiteEngine.prepare_photo`). Immutable:
    any number of sessions and threads render from it at once, each into its own buffer."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, the photo (even size), read-only
    rig: FaceRig
    palette: MouthPalette
    mouth_window: tuple[int, int, int, int]  # (i0, i1, j0, j1) coarse rows/cols the lip opening can reach
    mouth_zone: tuple[int, int, int, int]  # coarse rows/cols where the lip layers differ from the head motion
    upper_edge: float  # v of the upper incisal edge below the lip line (skull frame), pixels
    roi_xy: np.ndarray  # (h, w, 2) float32 pixel coordinates of the ROI (the identity map), read-only

    @cached_property
    def lids(self) -> tuple[LidPalette, ...]:
        """Per eye (image-left, image-right): the closing lids' colours, sampled on the first blink (video
        re-voicing prepares every frame and never blinks, so it never pays for them). Computing it twice
        from two threads gives the same value, so the cache needs no lock."""
        # the image-left eye's outer corner is towards image left
        return tuple(LidPalette.from_photo(self.image, eye, self.rig.lid_layout, outward, seed=i)
                     for i, (eye, outward) in enumerate(zip(self.rig.eyes, (-1.0, 1.0))))


class LiteEngine:
    """Landmark-warp talking-head renderer that runs on any CPU (implements :class:`~studio.engine.base.Engine`).

    Args:
        proportions: articulation ranges (see :class:`~studio.engine.lite.rig.Proportions`).
        rest_mouth: the rest state of the rigs it builds: ``"photo"`` (default) keeps the photo's own lip
            gap between words and opens from it (pauses and lip contacts still close it); ``"closed"`` brings the lips together first (see
            :class:`~studio.engine.lite.rig.FaceRig`).
        head_rotation: False builds mouth-only rigs (no yaw/pitch lever; ~20x cheaper): re-voicing a
            video prepares one per frame and the video itself turns the head.
    """

    name = "lite"
    batch_size = 1

    def __init__(self, *, proportions: Proportions = Proportions(), rest_mouth: str = "photo",
                 head_rotation: bool = True, mouth_atlas: MouthAtlas | None = None) -> None:
        if rest_mouth not in REST_MOUTHS:
            raise ValueError(f"rest_mouth must be one of {REST_MOUTHS}, got {rest_mouth!r}")
        self.proportions = proportions
        self.rest_mouth = rest_mouth
        self.head_rotation = head_rotation
        self.mouth_atlas = mouth_atlas if mouth_atlas is not None and len(mouth_atlas) else None

    @classmethod
    def check(cls, settings=None) -> None:
        """Nothing to check: the lite engine has no options and no models."""

    @classmethod
    def load(cls, settings=None, *, monitor: ProgressMonitor | None = None,
             cancel: CancelToken | None = None) -> Job["LiteEngine"]:
        """The engine (it has no weights to load and no options: ``settings`` is ignored)."""
        yield from ()
        return cls()

    # ------------------------------------------------------------------ the Engine interface
    def prepare(self, identity: Identity, speech=None, controls: ControlTrack | None = None, *,
                monitor: ProgressMonitor | None = None, cancel: CancelToken | None = None) -> Job[LitePrepared]:
        """:meth:`prepare_photo` of the identity's image and face (the speech and controls are used per
        frame only). Yields one Progress (stage "rig")."""
        monitor = monitor or ProgressMonitor()
        prepared = self.prepare_photo(identity.image, identity.face)
        yield monitor.event("rig", 1, 1, "face rig ready")
        return prepared

    def render(self, prepared: LitePrepared, controls: ControlTrack, frames: Sequence[int], *,
               out: np.ndarray | None = None) -> np.ndarray:
        """Frames ``frames`` of ``controls`` as (N, H, W, 3) uint8 RGB (into ``out`` when given)."""
        h, w = prepared.image.shape[:2]
        out = frame_buffer(out, len(frames), h, w)
        for i, k in enumerate(frames):
            self.render_values(prepared, controls.frame(int(k)), out=out[i])
        return out

    def latent_summary(self, prepared: LitePrepared, controls: ControlTrack) -> None:
        """The lite engine has no latent codes: None."""
        return None

    # ------------------------------------------------------------------ per photo
    def prepare_photo(self, image: np.ndarray, face: FaceLandmarks) -> LitePrepared:
        """Build the rig and colour palette for one photo.

        Args:
            image: (H, W, 3) uint8 RGB photo; H and W even (the video size).
            face: the subject's landmarks in that photo.

        Raises:
            ValueError: not an (H, W, 3) uint8 image.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        image = np.ascontiguousarray(image)
        if image.flags.writeable:
            image = image.copy()
            image.flags.writeable = False
        points = refine_inner_lips(image, face.points)  # onto the real lip edges where the teeth show
        rig = FaceRig(points, image.shape[:2], depth=face.depth, proportions=self.proportions,
                      rest_mouth=self.rest_mouth, head_rotation=self.head_rotation)
        palette = MouthPalette.from_photo(image, points, rig.gap0, rig.M)
        window = self._mouth_window(rig)
        upper_edge = 0.4 * rig.gap0 / 2 if rig.shows_teeth else 0.05 * rig.M
        x0, y0, x1, y1 = rig.roi
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        roi_xy = np.stack([gx, gy], axis=-1)
        roi_xy.flags.writeable = False
        return LitePrepared(image=image, rig=rig, palette=palette, mouth_window=window,
                            mouth_zone=self._mouth_zone(rig, window), upper_edge=upper_edge, roi_xy=roi_xy)

    @staticmethod
    def _mouth_window(rig: FaceRig) -> tuple[int, int, int, int]:
        """Coarse-grid rows/cols covering every place the lip opening can reach."""
        pr = rig.prop
        reach_down = pr.jaw_drop_h * rig.H + pr.lower_drop_m * rig.M + rig.lip_lower + 0.05 * rig.M
        reach_up = (pr.upper_raise_m + pr.teeth_raise_m) * rig.M + rig.lip_upper + 0.05 * rig.M
        o, eu, ev = rig.mouth_origin, rig.eu, rig.ev
        side = 0.25 * rig.M
        pts = np.array([o + a * eu + b * ev for a in (rig.u_left - side, rig.u_right + side)
                        for b in (-reach_up, reach_down)])
        x0, y0, _, _ = rig.roi
        s = rig.stride
        gh, gw = rig.grid_shape
        j0 = int(np.clip(np.floor((pts[:, 0].min() - x0) / s) - 1, 0, gw))
        j1 = int(np.clip(np.ceil((pts[:, 0].max() - x0) / s) + 2, 0, gw))
        i0 = int(np.clip(np.floor((pts[:, 1].min() - y0) / s) - 1, 0, gh))
        i1 = int(np.clip(np.ceil((pts[:, 1].max() - y0) / s) + 2, 0, gh))
        return i0, i1, j0, j1

    @staticmethod
    def _mouth_zone(rig: FaceRig, window: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """Bounding rows/cols of the mouth bases that matter: the upper layer down to the opening's lowest
        reach, the lower layer from the opening's highest reach down (elsewhere the other layer shows)."""
        i0, i1, j0, j1 = window
        mouth = [k for k, name in enumerate(BASES) if name not in HEAD_CONTROLS]
        up = (np.abs(rig.basis_up[mouth]).max(axis=(0, 3)) > 1e-3)
        lo = (np.abs(rig.basis_lo[mouth]).max(axis=(0, 3)) > 1e-3)
        up[i1:] = False
        lo[:i0] = False
        mask = up | lo
        mask[i0:i1, j0:j1] = True
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1

    # ------------------------------------------------------------------ per frame
    def render_values(self, ident: LitePrepared, controls: dict[str, float], *,
                      out: np.ndarray | None = None) -> np.ndarray:
        """Render one frame from one frame's control values.

        Args:
            ident: from :meth:`prepare_photo`.
            controls: this frame's values (see :data:`~studio.engine.lite.rig.CONTROLS`; missing = 0).
            out: an (H, W, 3) uint8 buffer the caller owns (None: a new one).

        Returns:
            (H, W, 3) uint8 RGB frame: ``out`` when given. Only the head region (``rig.roi``) is warped;
            every other pixel is the photo's.
        """
        h, w = ident.image.shape[:2]
        out = frame_buffer(None if out is None else out[None], 1, h, w)[0]
        rig = ident.rig
        s = rig.stride
        x0, y0, x1, y1 = rig.roi
        gh, gw = rig.grid_shape
        c = rig.coefficients(controls)
        head = rig.head_only(c)
        # the head motion is smooth everywhere; the two lip layers differ from it only in the mouth zone
        # head motion is smooth and a few pixels: two Newton steps are exact to ~0.1 px
        p_head = (self._solve(rig, head, rig.basis_up, (0, gh, 0, gw), iterations=2) if head.any()
                  else rig.grid_xy.copy())
        zi0, zi1, zj0, zj1 = zone = ident.mouth_zone
        p_up = self._solve(rig, c, rig.basis_up, zone)
        p_lo = self._solve(rig, c, rig.basis_lo, zone)
        a_up, a_lo = self._lip_depths(rig, p_up, p_lo)
        coarse = p_head
        coarse[zi0:zi1, zj0:zj1] = np.where((a_up <= 0)[..., None], p_up,
                                            np.where((a_lo <= 0)[..., None], p_lo, p_up))
        closure = rig.eye_closure(controls)
        # the eyes' positions under head motion alone locate the lid layers (only for closing eyes)
        unblinked = coarse.copy() if max(closure) > 0.0 else None
        rig.blink_inverse(coarse, closure)
        # upsample the displacement, not the positions: it is 0 at the ROI's edge, so clamping there is exact
        fine = upsample(coarse - rig.grid_xy, s, (y1 - y0, x1 - x0))
        fine += ident.roi_xy
        roi = cv2.remap(ident.image, fine[..., 0], fine[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        self._render_mouth(ident, c, roi, p_head, p_up, p_lo)
        if unblinked is not None:
            self._render_lids(ident, roi, unblinked, closure)
        if y0 > 0:
            out[:y0] = ident.image[:y0]
        if y1 < h:
            out[y1:] = ident.image[y1:]
        out[y0:y1, :x0] = ident.image[y0:y1, :x0]
        out[y0:y1, x1:] = ident.image[y0:y1, x1:]
        out[y0:y1, x0:x1] = roi
        return out

    @staticmethod
    def _render_lids(ident: LitePrepared, roi: np.ndarray, unblinked: np.ndarray,
                     closure: tuple[float, float]) -> None:
        """Composite the synthesized upper lid over each closing eye, in the eye's bounding box only.

        ``unblinked``: the coarse backward map before the blink (head and brow motion only), which gives
        each output pixel's position in the eye's own frame."""
        rig = ident.rig
        s = rig.stride
        disp = unblinked - rig.grid_xy
        for eye, k, palette in zip(rig.eyes, closure, ident.lids):
            if k <= 0.0:
                continue
            gap = eye["b_lo"] - eye["b_up"]
            # the whole layer (up to its faded top) and the lashes, with skin around them to colour it from
            lo_b = float(eye["b_up"].min()) - 0.5 * float(gap.max()) - 1.3 * eye["stretch"] - 3.0
            hi_b = float(eye["b_lo"].max()) + 0.6 * float(gap.max()) + 2.0
            rel = unblinked - eye["origin"].astype(np.float32)
            a = rel @ eye["ea"].astype(np.float32)
            b = rel @ eye["eb"].astype(np.float32)
            cells = (a > eye["knots"][0] - 1) & (a < eye["knots"][-1] + 1) & (b > lo_b) & (b < hi_b)
            if not cells.any():
                continue
            rows, cols = np.flatnonzero(cells.any(axis=1)), np.flatnonzero(cells.any(axis=0))
            y0, y1 = max(rows[0] - 1, 0) * s, min((rows[-1] + 2) * s, roi.shape[0])
            x0, x1 = max(cols[0] - 1, 0) * s, min((cols[-1] + 2) * s, roi.shape[1])
            if y1 <= y0 or x1 <= x0:
                continue
            # the same bilinear upsampling as the full map (pixel centres at (i + .5) / s - .5 on the grid)
            gx, gy = np.meshgrid((np.arange(x0, x1, dtype=np.float32) + 0.5) / s - 0.5,
                                 (np.arange(y0, y1, dtype=np.float32) + 0.5) / s - 0.5)
            d = cv2.remap(disp, gx, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            px = d[..., 0] + ident.roi_xy[y0:y1, x0:x1, 0] - eye["origin"][0]
            py = d[..., 1] + ident.roi_xy[y0:y1, x0:x1, 1] - eye["origin"][1]
            ea, eb = eye["ea"], eye["eb"]
            pa = (px * ea[0] + py * ea[1]).astype(np.float32)
            pb = (px * eb[0] + py * eb[1]).astype(np.float32)
            window = roi[y0:y1, x0:x1].astype(np.float32)
            composite_lid(window, pa, pb, float(k), eye, rig.lid_layout, palette)
            roi[y0:y1, x0:x1] = np.clip(window + 0.5, 0, 255).astype(np.uint8)

    def _solve(self, rig: FaceRig, coef: np.ndarray, basis: np.ndarray,
               window: tuple[int, int, int, int], *, iterations: int = 3) -> np.ndarray:
        """Source pixel positions (h, w, 2) of the grid samples in ``window`` for the field ``coef . basis``.

        Only the window plus a margin (the largest displacement the rig can make) is combined and inverted.
        """
        i0, i1, j0, j1 = window
        gh, gw = rig.grid_shape
        m = rig.solve_margin
        ci0, ci1, cj0, cj1 = max(0, i0 - m), min(gh, i1 + m), max(0, j0 - m), min(gw, j1 + m)
        nz = np.flatnonzero(coef)
        if nz.size == 0:
            return rig.grid_xy[i0:i1, j0:j1].copy()
        field = np.tensordot(coef[nz] / rig.stride, basis[nz, ci0:ci1, cj0:cj1], axes=1)
        grid = invert_field(field, window=(i0 - ci0, i1 - ci0, j0 - cj0, j1 - cj0), iterations=iterations)
        grid[..., 0] += cj0
        grid[..., 1] += ci0
        return self._to_pixels(rig, grid)

    @staticmethod
    def _to_pixels(rig: FaceRig, grid_pos: np.ndarray) -> np.ndarray:
        """Grid units (column, row) -> absolute pixel positions."""
        s = rig.stride
        x0, y0 = rig.roi[:2]
        out = (grid_pos + 0.5) * s - 0.5
        out[..., 0] += x0
        out[..., 1] += y0
        return out.astype(np.float32)

    @staticmethod
    def _lip_depths(rig: FaceRig, p_up: np.ndarray, p_lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How far the upper-layer source lies below the upper inner lip, and the lower-layer source above
        the lower inner lip (pixels; <= 0 means the pixel shows that lip or the skin beyond it)."""
        uv_up = rig.to_mouth(p_up)
        uv_lo = rig.to_mouth(p_lo)
        a_up = uv_up[..., 1] - rig.lip_line(uv_up[..., 0]) + rig.lip_gap(uv_up[..., 0]) / 2
        a_lo = rig.lip_gap(uv_lo[..., 0]) / 2 - (uv_lo[..., 1] - rig.lip_line(uv_lo[..., 0]))
        return a_up.astype(np.float32), a_lo.astype(np.float32)

    def _render_mouth(self, ident: LitePrepared, c: np.ndarray, roi: np.ndarray, p_head: np.ndarray,
                      p_up: np.ndarray, p_lo: np.ndarray) -> None:
        """Redo the mouth window at full resolution: exact lip edges, then the interior in the opening.

        ``p_head`` covers the whole grid; ``p_up`` / ``p_lo`` cover the mouth zone."""
        rig = ident.rig
        s = rig.stride
        i0, i1, j0, j1 = ident.mouth_window
        zi0, _, zj0, _ = ident.mouth_zone
        size = (min((i1 - i0) * s, roi.shape[0] - i0 * s), min((j1 - j0) * s, roi.shape[1] - j0 * s))
        if size[0] <= 0 or size[1] <= 0:
            return
        local = (slice(i0 - zi0, i1 - zi0), slice(j0 - zj0, j1 - zj0))
        f_up = upsample(p_up[local], s, size)
        f_lo = upsample(p_lo[local], s, size)
        a_up, a_lo = self._lip_depths(rig, f_up, f_lo)
        if not rig.shows_teeth:
            # a closed-mouth photo: only the rows/columns around the opening need the exact treatment
            near = np.minimum(a_up, a_lo) > -1.0
            if not near.any():
                return
            rows, cols = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
            r0, r1 = max(rows[0] - 2, 0), min(rows[-1] + 3, size[0])
            q0, q1 = max(cols[0] - 2, 0), min(cols[-1] + 3, size[1])
            a_up, a_lo, f_up, f_lo = (x[r0:r1, q0:q1] for x in (a_up, a_lo, f_up, f_lo))
        else:
            r0, q0 = 0, 0
        # For a photo with an open mouth the whole window is redone, open or not: where the lips meet or
        # press, the coarse map interpolates between the two layers across the lip line and would sample
        # the photo's teeth as a thin bright line.
        # Inside the opening (both depths > 0) the lip layer shows the nearer lip's edge, never the photo's
        # own mouth interior: where the opening is under a pixel wide, that edge is what blends with it.
        ev = rig.ev.astype(np.float32)
        edge = np.where((a_up <= a_lo)[..., None], f_up - (a_up + 0.5)[..., None] * ev,
                        f_lo + (a_lo + 0.5)[..., None] * ev)
        # each lip's last source row at its inner edge is a pixel mixing lip and what lies behind it (a photo's teeth):
        # the lips' inner rim is taken from RIM_PX further into the lip, so lips brought together never show a line
        # of it between them
        rim_up = np.clip(a_up + RIM_PX, 0.0, RIM_PX)[..., None] * (a_up <= 0)[..., None]
        rim_lo = np.clip(a_lo + RIM_PX, 0.0, RIM_PX)[..., None] * (a_lo <= 0)[..., None]
        lips_map = np.where((a_up <= 0)[..., None], f_up - rim_up * ev,
                            np.where((a_lo <= 0)[..., None], f_lo + rim_lo * ev, edge))
        window = cv2.remap(ident.image, lips_map[..., 0], lips_map[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        # pixel coverage of the opening: 1 px anti-aliasing, never more than the opening is wide
        alpha = np.clip(np.minimum(np.minimum(a_up, a_lo) + 0.5, a_up + a_lo), 0.0, 1.0)
        rows = np.flatnonzero(alpha.any(axis=1))
        if rows.size:  # shade the interior only in the opening's bounding box
            cols = np.flatnonzero(alpha.any(axis=0))
            box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            full = (slice(r0 + rows[0], r0 + rows[-1] + 1), slice(q0 + cols[0], q0 + cols[-1] + 1))
            skull = upsample(p_head[i0:i1, j0:j1], s, size)[full]
            if self.mouth_atlas is not None and not rig.shows_teeth:  # an open source frame shows its own
                interior = self._interior_from_atlas(ident, skull, a_up[box], a_lo[box])
            else:
                jaw = upsample(self._solve(rig, rig.jaw_only(c), rig.basis_lo, ident.mouth_window), s, size)[full]
                interior = self._interior(ident, skull, jaw, a_up[box], a_lo[box])
            window[box] += (interior - window[box]) * alpha[box][..., None]
        y0, x0 = i0 * s + r0, j0 * s + q0
        roi[y0:y0 + window.shape[0], x0:x0 + window.shape[1]] = np.clip(window + 0.5, 0, 255).astype(np.uint8)

    @staticmethod
    def _slit_shadow(col: np.ndarray, a_up: np.ndarray, a_lo: np.ndarray, ident: LitePrepared,
                     width: float) -> np.ndarray:
        """A slit of an opening is in the lips' shadow: the interior fades into the dark cavity colour as the
        opening narrows below ``width`` mouth widths."""
        light = np.clip((a_up + a_lo) / (width * ident.rig.M), 0.0, 1.0)[..., None]
        light = light * light * (3 - 2 * light)
        cavity = ident.palette.cavity * 0.8
        return cavity + (col - cavity) * light

    def _interior_from_atlas(self, ident: LitePrepared, skull: np.ndarray, a_up: np.ndarray,
                             a_lo: np.ndarray) -> np.ndarray:
        """(h, w, 3) float32 interior from the person's own open-mouth frames (:class:`MouthAtlas`): each pixel's
        place across the mouth (corner to corner, from its source position on the skull) and down the opening
        (upper to lower inner lip) picks its texel of the atlas entry nearest to this opening, lit like this
        frame's lips."""
        rig = ident.rig
        u = rig.to_mouth(skull)[..., 0]
        height = np.maximum(a_up + a_lo, 1e-3)
        opening = float(height.max()) / rig.M
        tex = self.mouth_atlas.lookup(opening, ident.palette.lip)
        su = (u - rig.u_left) / max(rig.u_right - rig.u_left, 1e-3) * ATLAS_COLS - 0.5
        sv = np.clip(a_up / height, 0.0, 1.0) * ATLAS_ROWS - 0.5
        col = cv2.remap(tex, su.astype(np.float32), sv.astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
        return self._slit_shadow(col, a_up, a_lo, ident, 0.04)  # the real interior has its own shading

    def _interior(self, ident: LitePrepared, skull: np.ndarray, jaw: np.ndarray, a_up: np.ndarray,
                  a_lo: np.ndarray) -> np.ndarray:
        """(h, w, 3) float32 interior colours, given each pixel's source position on the skull (upper
        teeth) and on the jaw (lower teeth, tongue), and its depth below/above the lips."""
        rig = ident.rig
        uv_s = rig.to_mouth(skull)
        uv_j = rig.to_mouth(jaw)
        v_s = (uv_s[..., 1] - rig.lip_line(uv_s[..., 0])).astype(np.float32)
        v_j = (uv_j[..., 1] - rig.lip_line(uv_j[..., 0])).astype(np.float32)
        u = uv_s[..., 0].astype(np.float32)
        half = np.where(u < 0, -rig.u_left, rig.u_right).astype(np.float32)
        col = shade_interior(u=u, v_skull=v_s, v_jaw=v_j, depth_up=a_up, depth_lo=a_lo, half_width=half,
                             mouth_w=rig.M, upper_edge=ident.upper_edge, palette=ident.palette)
        if ident.palette.blur > 0.6:  # no sharper than the photo around it (the model is drawn with 1 px edges)
            col = cv2.GaussianBlur(col, (0, 0), float(np.sqrt(ident.palette.blur ** 2 - 0.25)))
        if rig.shows_teeth:
            # the photo's own teeth: a smile mostly shows the upper teeth, so the upper 70 % of its
            # opening rides on the skull and the rest (lower teeth, if any) on the jaw
            g_s = rig.lip_gap(uv_s[..., 0]) / 2
            g_j = rig.lip_gap(uv_j[..., 0]) / 2
            split_s, split_j = 0.4 * g_s, 0.4 * g_j  # 70 % of the way down the opening [-g, g]
            w_s = np.clip(np.minimum(v_s + g_s, split_s - v_s) + 0.5, 0, 1) * (g_s > 1)
            w_j = np.clip(np.minimum(v_j - split_j, g_j - v_j) + 0.5, 0, 1) * (g_j > 1) * (1 - w_s)
            for w, p in ((w_s, skull), (w_j, jaw)):
                if w.max() > 0:
                    real = cv2.remap(ident.image, p[..., 0], p[..., 1], cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
                    col += (real - col) * w[..., None].astype(np.float32)
        return self._slit_shadow(col, a_up, a_lo, ident, 0.06)
