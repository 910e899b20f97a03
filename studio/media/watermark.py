"""Invisible watermark: a tiled spread-spectrum mark in the luma of every exported frame.

Every video the studio writes carries a 56-bit mark in its pixels, so that it can be recognised as
synthetic after what happens to videos on the way to a viewer (re-encoding, scaling, cropping,
excerpts), where container tags and Content Credentials are lost. The mark holds:

====  =====  ===============================================================================
bits  width  meaning
====  =====  ===============================================================================
0-7   8      header: :data:`HEADER` (format version 1; its presence means "synthetic")
8-39  32     mark id: a random number per export, also recorded in the video's C2PA manifest
40-55 16     CRC-16/CCITT-FALSE of bits 0-39
====  =====  ===============================================================================

Method (ours; the ideas are the classic ones of spread-spectrum watermarking, Cox et al., "Secure
spread spectrum watermarking for multimedia", IEEE TIP 1997, and of self-synchronising periodic
marks, Kutter, "Watermarking resisting to translation, rotation and scaling", SPIE 1998):

* **Tile.** A 32x32 grid of cells; each cell belongs to one payload bit (a fixed pseudo-random
  assignment, ~18 cells per bit) and carries ``chip * (+-1 for the bit)`` with a fixed pseudo-random
  chip. The grid is interpolated (bicubic, periodic) into a smooth field whose period is
  ``min(width, height) / 4`` pixels and repeated over the frame, so that the mark lives at low-mid
  spatial frequencies (cells of ~8 pixels at 1024 px) that survive H.264 and down-scaling.
* **Embedding.** ``frame += amplitude * field`` on all three channels (a luma-only change). The
  amplitude follows contrast masking in the mark's own frequency band, taken along x and along y and
  the smaller of the two used (smooth folds and gradients vary one way only and do not hide blobs):
  0.5 levels where the picture has no texture at the cells' scale (walls, sky, gradients, folds), plus
  0.4 x (the local RMS of the luma in that band - 1.5 levels), at most 3 levels, less near black and white, and at
  most 1.85 RMS over the frame (PSNR >= 42.5 dB by construction; the field's peaks are ~2x its RMS).
  A fixed dither before rounding keeps sub-level amplitudes from vanishing in 8-bit rounding. The same
  field is added to every frame, so the mark adds up over frames.
* **Detection** (the video's size, crop and scale are unknown). The luma of the frames is averaged.
  For every candidate tile period (a geometric grid from 0.55 x ``min(w, h) / 4`` to ``min(w, h) / 1.8``,
  covering down-scaling, crops and small videos) the mean frame is resampled to 2 samples per cell,
  high-passed, weighted by the inverse of its local variance (edges and texture carry picture, flat
  regions carry mostly mark) and folded onto one tile. A circular cross-correlation (FFT) with each
  bit's template gives, at every shift, all 56 soft bits. The periods whose energy peak is highest are
  refined and decoded; a hit needs the header and the CRC to match (flips of up to two of the six least
  reliable bits are tried too, so the false-alarm chance of one search is ~1e-5).
* **Limits.** Frames smaller than ~450 px on the shorter side hold too little of the mark to promise
  detection; rotation, mirroring and heavy re-framing (crops of more than ~40 %) are not handled.

The mark is not a secret (the seed is public: anybody may check a video) and it does not prove
where a video came from; it says that the studio made it. See the README's "Provenance".
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from studio.core.errors import InputError

#: cells per side of the tile
GRID = 32
#: payload layout
HEADER = 0xB5
HEADER_BITS = 8
ID_BITS = 32
CRC_BITS = 16
PAYLOAD_BITS = HEADER_BITS + ID_BITS + CRC_BITS
#: tiles per shorter side of the frame at embedding
TILES_PER_SIDE = 4
#: amplitude (8-bit levels) in flat regions and at most, and the masking gain on the local RMS of the luma in
#: the mark's frequency band
AMPLITUDE_FLAT = 0.5
AMPLITUDE_MAX = 3.0
MASK_GAIN = 0.4
#: texture (levels of band RMS) below which nothing is added to the floor amplitude. Measured trade-off on 7
#: photos x 6 transformations: 0 -> 39/42 found, the out-of-focus curtain of obama_official at ~1 level;
#: 1.5 -> 31/42, ~0.8 level there; masking without the x/y minimum -> 42/42, but 2 levels there (visible)
MASK_FLOOR = 0.0
#: at most this RMS amplitude over a frame: MSE = RMS² + the dither's ~0.1 <= 3.6, i.e. PSNR >= 42.5 dB
AMPLITUDE_RMS = 1.85
#: the pattern's public seed (changing it makes earlier marks undetectable)
_SEED = 0x7A1C_5EED
#: detection: samples per cell, the smallest tile period tried and the step between periods
_OVERSAMPLE = 2
_SMALLEST_PERIOD = 0.55  # x min side / TILES_PER_SIDE: the largest down-scaling + crop searched
_SCALE_STEP = 1.015
_MIN_SIDE = 96
#: below this many pixels on the shorter side a mark holds too little energy to be read reliably (a 256 px
#: export of a 256 px photo is marked, but not found even untouched; 474 px exports are found after every
#: transformation of benchmarks/bench_watermark.py)
RELIABLE_SIDE = 448
#: detection looks for tiles of up to min side / this (an upscaled small video has ~2 tiles)
_MIN_TILES_SEEN = 1.8
#: the smallest tile period at embedding, pixels (cells of >= 4 px)
MIN_PERIOD = 128.0
#: detection: noise floor (levels) of the inverse-variance weights
_NOISE_FLOOR = 0.5


def crc16(bits: np.ndarray) -> np.ndarray:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of a bit sequence, as 16 bits (MSB first).

    Args:
        bits: (n,) array of 0/1.
    Returns:
        (16,) uint8 array of 0/1.
    """
    reg = 0xFFFF
    for b in np.asarray(bits, dtype=np.uint8):
        top = ((reg >> 15) & 1) ^ int(b)
        reg = (reg << 1) & 0xFFFF
        if top:
            reg ^= 0x1021
    return np.array([(reg >> (15 - i)) & 1 for i in range(16)], dtype=np.uint8)


def _int_bits(value: int, n: int) -> np.ndarray:
    return np.array([(value >> (n - 1 - i)) & 1 for i in range(n)], dtype=np.uint8)


def payload_bits(mark_id: int) -> np.ndarray:
    """The 56 payload bits (0/1, uint8) for ``mark_id`` (0 <= mark_id < 2**32): header, id, CRC.

    Raises:
        ValueError: ``mark_id`` out of range.
    """
    if not 0 <= int(mark_id) < 2**ID_BITS:
        raise ValueError(f"mark id must be in 0..2**32-1, got {mark_id}")
    head = np.concatenate([_int_bits(HEADER, HEADER_BITS), _int_bits(int(mark_id), ID_BITS)])
    return np.concatenate([head, crc16(head)])


def new_mark_id() -> int:
    """A random 32-bit mark id (``secrets``), never 0."""
    return secrets.randbelow(2**ID_BITS - 1) + 1


def format_mark_id(mark_id: int) -> str:
    """The id as printed and recorded: 8 hex digits, e.g. ``"1f0c9a3e"``."""
    return f"{int(mark_id):08x}"


@lru_cache(maxsize=1)
def _layout() -> tuple[np.ndarray, np.ndarray]:
    """(cell -> bit index, cell chip +-1), both (GRID, GRID): the fixed public spreading code."""
    rng = np.random.default_rng(_SEED)
    order = rng.permutation(GRID * GRID)
    bit_of = np.empty(GRID * GRID, dtype=np.int64)
    bit_of[order] = np.arange(GRID * GRID) % PAYLOAD_BITS
    chips = rng.choice(np.array([-1.0, 1.0]), size=GRID * GRID)
    return bit_of.reshape(GRID, GRID), chips.reshape(GRID, GRID)


def _periodic_upsample(cells: np.ndarray, out_h: int, out_w: int, period: float,
                       origin: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Bicubic, periodic interpolation of a (GRID, GRID) (or (k, GRID, GRID)) cell grid onto an
    (out_h, out_w) pixel grid whose tile period is ``period`` pixels; returns float32."""
    import cv2

    stack = cells if cells.ndim == 3 else cells[None]
    pad = 3
    ys = (np.arange(out_h, dtype=np.float64) - origin[0]) * GRID / period
    xs = (np.arange(out_w, dtype=np.float64) - origin[1]) * GRID / period
    # cell centres sit at integer + 0.5 in cell units; sample positions in the padded grid
    map_y = (np.mod(ys - 0.5, GRID) + pad).astype(np.float32)
    map_x = (np.mod(xs - 0.5, GRID) + pad).astype(np.float32)
    mx, my = np.meshgrid(map_x, map_y)
    out = np.empty((stack.shape[0], out_h, out_w), dtype=np.float32)
    for i, grid in enumerate(stack):
        padded = np.pad(grid.astype(np.float32), pad, mode="wrap")
        out[i] = cv2.remap(padded, mx, my, interpolation=cv2.INTER_CUBIC, borderMode=cv2.BORDER_WRAP)
    return out if cells.ndim == 3 else out[0]


def tile_period(width: int, height: int) -> float:
    """The tile period in pixels for a frame of ``width`` x ``height``: min side / 4, at least 128 px
    (smaller frames get fewer, larger tiles so that cells stay >= 4 pixels)."""
    return max(min(width, height) / TILES_PER_SIDE, MIN_PERIOD)


@dataclass
class WatermarkEmbedder:
    """Adds the mark for ``mark_id`` to frames of one size.

    Args:
        width, height: frame size in pixels. Frames under :data:`RELIABLE_SIDE` pixels on a side are
            marked too, but the mark may be too weak to be found after re-encoding (under 96: never).
        mark_id: the 32-bit id to carry (:func:`new_mark_id`).

    Use :meth:`apply` on every (height, width, 3) uint8 RGB frame, in place. Cost: ~1-2 ms per 1024²
    frame on one core (the masking map is recomputed every ``mask_every`` frames).
    """

    width: int
    height: int
    mark_id: int
    mask_every: int = 4

    def __post_init__(self) -> None:
        import cv2

        bits = payload_bits(self.mark_id).astype(np.float32) * 2 - 1
        bit_of, chips = _layout()
        cells = chips * bits[bit_of]
        period = tile_period(self.width, self.height)
        origin = (self.height / 2.0, self.width / 2.0)  # centred: a symmetric crop keeps the phase
        field = _periodic_upsample(cells, self.height, self.width, period, origin)
        field /= float(np.sqrt(np.mean(field**2)) + 1e-12)
        self._field = field
        rng = np.random.default_rng(_SEED + 1)
        self._dither = rng.random((self.height, self.width), dtype=np.float32) - 0.5
        self._small = (max(8, self.width // 4), max(8, self.height // 4))
        self._cell = max(0.5, period / GRID / 4.0)  # a cell's size on the quarter-resolution copy, pixels
        radius = int(np.ceil(6 * self._cell)) + 1
        xs = np.arange(-radius, radius + 1, dtype=np.float64)

        def gauss(sigma: float) -> np.ndarray:
            g = np.exp(-0.5 * (xs / sigma) ** 2)
            return g / g.sum()

        self._band = (gauss(0.5 * self._cell) - gauss(2.0 * self._cell)).astype(np.float32)  # 1-D band-pass
        self._smooth = gauss(0.5 * self._cell).astype(np.float32)
        self._delta: np.ndarray | None = None
        self._up = self._down = None
        self._count = 0
        self._cv2 = cv2

    def _amplitude(self, frame: np.ndarray) -> np.ndarray:
        """Per-pixel amplitude in 8-bit levels (contrast masking). The mask is the luma's local RMS in the mark's
        own frequency band (a difference of Gaussians at 0.5 and 2 cells, on a quarter-resolution copy), taken
        along x and along y, and the smaller of the two is used: a round blob hides in texture that varies both
        ways (hair, fabric, pores) but shows on smooth folds, gradients, walls and sky, which vary one way or
        not at all. Amplitude = AMPLITUDE_FLAT + MASK_GAIN x (that - MASK_FLOOR), at most AMPLITUDE_MAX, lowered within ~12
        levels of black and white (where clipping would make the mark one-sided), and scaled down when the
        frame's RMS amplitude would exceed AMPLITUDE_RMS."""
        cv2 = self._cv2
        small = cv2.resize(frame, self._small, interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        along_x = cv2.sepFilter2D(gray, -1, self._band, self._smooth)
        along_y = cv2.sepFilter2D(gray, -1, self._smooth, self._band)
        spread = 2.0 * self._cell
        energy = np.sqrt(2.0 * np.minimum(cv2.GaussianBlur(along_x * along_x, (0, 0), spread),
                                          cv2.GaussianBlur(along_y * along_y, (0, 0), spread)))
        amp = np.clip(AMPLITUDE_FLAT + MASK_GAIN * (energy - MASK_FLOOR), AMPLITUDE_FLAT, AMPLITUDE_MAX)
        headroom = cv2.GaussianBlur(np.minimum(gray, 255.0 - gray), (0, 0), self._cell)
        amp *= np.clip(headroom / 12.0, 0.25, 1.0)
        rms = float(np.sqrt(np.mean(amp * amp)))
        if rms > AMPLITUDE_RMS:  # a busy picture: keep the whole frame's PSNR >= 42.5 dB
            amp *= AMPLITUDE_RMS / rms
        return cv2.resize(amp, (self.width, self.height), interpolation=cv2.INTER_LINEAR)

    def delta(self, frame: np.ndarray) -> np.ndarray:
        """The (height, width) int16 change that :meth:`apply` adds to each channel of ``frame``
        (the masking map is refreshed from ``frame`` every ``mask_every`` calls)."""
        if self._delta is None or self._count % self.mask_every == 0:
            amp = self._amplitude(frame)
            self._delta = np.rint(self._field * amp + self._dither).astype(np.int16)
            cv2 = self._cv2
            up = np.clip(self._delta, 0, 255).astype(np.uint8)
            down = np.clip(-self._delta, 0, 255).astype(np.uint8)
            self._up, self._down = cv2.merge([up, up, up]), cv2.merge([down, down, down])
        self._count += 1
        return self._delta

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Mark ``frame`` ((height, width, 3) uint8 RGB) in place and return it.

        Raises:
            ValueError: wrong shape or dtype.
        """
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be ({self.height}, {self.width}, 3) uint8, got {frame.shape} {frame.dtype}")
        self.delta(frame)
        # two saturating uint8 operations: much cheaper than int16 arithmetic on the whole frame
        self._cv2.add(frame, self._up, dst=frame)
        self._cv2.subtract(frame, self._down, dst=frame)
        return frame


# ----------------------------------------------------------------------------------------------
# detection


@dataclass(frozen=True)
class Detection:
    """What :func:`detect_mark` found.

    Attributes:
        found: the header and CRC matched: the studio marked this video as synthetic.
        mark_id: the 32-bit id (None when not found).
        confidence: 1 - the false-alarm probability of the search that found it (the chance that an unmarked
            video passes the header and CRC checks somewhere in it, ~1e-5), in [0, 1]; 0.0 when nothing was
            found.
        peak: normalised correlation peak (z-score of the energy surface) at the best candidate.
        period_px: tile period found in the examined frames, in pixels.
        frames: number of frames averaged.
        flipped: bits corrected by the CRC search (0..2).
        size: (width, height) of the examined frames in pixels.
    """

    found: bool
    mark_id: int | None
    confidence: float
    peak: float
    period_px: float
    frames: int
    flipped: int = 0
    size: tuple[int, int] = (0, 0)

    @property
    def weak(self) -> bool:
        """The frames are smaller than :data:`RELIABLE_SIDE` on a side: a mark may be unreadable there."""
        return 0 < min(self.size) < RELIABLE_SIDE

    @property
    def mark_hex(self) -> str | None:
        return None if self.mark_id is None else format_mark_id(self.mark_id)


@lru_cache(maxsize=1)
def _templates() -> np.ndarray:
    """Conjugate real FFTs of the per-bit templates on the oversampled tile, (PAYLOAD_BITS, G, G//2+1)."""
    bit_of, chips = _layout()
    g = GRID * _OVERSAMPLE
    stack = np.zeros((PAYLOAD_BITS, GRID, GRID), dtype=np.float32)
    for k in range(PAYLOAD_BITS):
        stack[k][bit_of == k] = chips[bit_of == k]
    up = _periodic_upsample(stack, g, g, float(g))
    return np.conj(np.fft.rfft2(up))


def _fold(image: np.ndarray, g: int, step_y: float, step_x: float) -> np.ndarray:
    """Sum ``image`` onto a (g, g) tile: pixel (i, j) lands in bin (round(i*step_y), round(j*step_x)) mod g,
    where ``step`` is the tile's samples per image pixel (exact, so a non-integer period folds right)."""
    h, w = image.shape
    yy = np.rint(np.arange(h) * step_y).astype(np.int64) % g
    xx = np.rint(np.arange(w) * step_x).astype(np.int64) % g
    idx = (yy[:, None] * g + xx[None, :]).ravel()
    return np.bincount(idx, weights=image.ravel(), minlength=g * g).reshape(g, g)


def _soft_bits(mean_luma: np.ndarray, period: float) -> np.ndarray:
    """Correlation volume (PAYLOAD_BITS, G, G) of the folded, whitened mean luma with each bit's
    template, for one tile period (pixels): entry [k, y, x] is bit k's soft value at shift (y, x)."""
    import cv2

    g = GRID * _OVERSAMPLE
    scale = g / period
    h, w = mean_luma.shape
    size = (max(g, round(w * scale)), max(g, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    img = cv2.resize(mean_luma, size, interpolation=interp)
    high = img - cv2.GaussianBlur(img, (0, 0), 1.5 * _OVERSAMPLE)
    # inverse-variance weights: edges and texture carry picture, flat regions carry mostly mark
    var = cv2.GaussianBlur(high * high, (0, 0), 1.0 * _OVERSAMPLE)
    weight = 1.0 / (var + _NOISE_FLOOR**2)
    step_y = h * scale / size[1]
    step_x = w * scale / size[0]
    folded = _fold(high * weight, g, step_y, step_x) / np.maximum(_fold(weight, g, step_y, step_x), 1e-12)
    folded -= folded.mean()
    conj = _templates()
    return np.fft.irfft2(np.fft.rfft2(folded)[None] * conj, s=(g, g), axes=(1, 2))


def _best_shift(corr: np.ndarray) -> tuple[float, tuple[int, int]]:
    """(z-score of the energy peak, its (y, x) shift) for a correlation volume."""
    energy = np.sum(corr**2, axis=0)
    flat = int(np.argmax(energy))
    z = float((energy.flat[flat] - energy.mean()) / (energy.std() + 1e-12))
    return z, divmod(flat, energy.shape[1])


def _decode(soft: np.ndarray) -> tuple[int | None, int, int]:
    """(mark id, bits flipped, payloads tried) when the header and CRC match after flipping at most two of the
    least reliable bits (either sign: the energy search cannot tell +field from -field)."""
    header = _int_bits(HEADER, HEADER_BITS)
    tried = 0
    for sign in (1.0, -1.0):
        s = soft * sign
        bits = (s > 0).astype(np.uint8)
        weak = np.argsort(np.abs(s))[:6]
        trials = [()] + [(i,) for i in weak] + [(i, j) for a, i in enumerate(weak) for j in weak[a + 1:]]
        for flip in trials:
            tried += 1
            b = bits.copy()
            b[list(flip)] ^= 1
            if not np.array_equal(b[:HEADER_BITS], header):
                continue
            if np.array_equal(crc16(b[: HEADER_BITS + ID_BITS]), b[HEADER_BITS + ID_BITS:]):
                mark = int("".join(map(str, b[HEADER_BITS:HEADER_BITS + ID_BITS])), 2)
                return mark, len(flip), tried
    return None, 0, tried


def detect_in_mean(mean_luma: np.ndarray, *, frames: int = 1, candidates: int = 4) -> Detection:
    """Look for the mark in a mean luma image.

    Args:
        mean_luma: (H, W) float array, the average of the frames' luma (0..255), H, W >= 96.
        frames: how many frames were averaged (reported only).
        candidates: how many of the strongest tile periods to refine and try to decode.

    Returns:
        :class:`Detection`; ``confidence`` is 1 minus the chance that an unmarked video passes the
        header and CRC checks somewhere in this search (false-alarm probability, ~1e-5).

    Raises:
        InputError: the image is smaller than 96 pixels on a side.
    """
    h, w = mean_luma.shape
    if min(h, w) < _MIN_SIDE:
        raise InputError(f"the video is too small to carry a readable mark ({w}x{h})",
                         f"a mark can be read from videos of at least {_MIN_SIDE} pixels on each side")
    low = _SMALLEST_PERIOD * min(h, w) / TILES_PER_SIDE
    high = min(h, w) / _MIN_TILES_SEEN
    n_steps = max(1, int(math.log(high / low) / math.log(_SCALE_STEP)) + 1)
    periods = low * _SCALE_STEP ** np.arange(n_steps)
    luma = mean_luma.astype(np.float32)
    scored = sorted(((*_best_shift(_soft_bits(luma, float(p))), float(p)) for p in periods), key=lambda t: -t[0])
    trials = 0
    fine = np.linspace(-0.008, 0.008, 9)
    for _z, _pos, period in scored[:candidates]:
        refined = []
        for p in period * (1.0 + fine):
            corr = _soft_bits(luma, float(p))
            z, pos = _best_shift(corr)
            refined.append((z, float(p), corr[:, pos[0], pos[1]]))
        z, p, soft = max(refined, key=lambda t: t[0])
        mark, flipped, tried = _decode(soft)
        trials += tried
        if mark is not None:
            p_false = trials * 2.0 ** -(HEADER_BITS + CRC_BITS)
            return Detection(True, mark, float(1.0 - p_false), z, p, frames, flipped, (w, h))
    return Detection(False, None, 0.0, scored[0][0], scored[0][2], frames, 0, (w, h))


__all__ = ["Detection", "WatermarkEmbedder", "crc16", "detect_in_mean", "format_mark_id",
           "new_mark_id", "payload_bits", "tile_period"]
