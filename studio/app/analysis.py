"""Display data for the studio's plots, computed with numpy only (no Qt).

- :class:`WaveformPyramid`: min/max envelopes at power-of-two decimations, so drawing any view of a
  10-minute clip touches at most a few thousand points.
- :data:`TRAJECTORY_GROUPS` and :func:`project_2d`: which channels of a control track the trajectory
  viewer plots, and a 2-D PCA projection of the per-frame codes.
- :func:`phone_segments`: the phoneme lane's segments with their viseme classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Trajectory viewer lanes for the lite engine: (title, unit, channel names).
TRAJECTORY_GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Mouth", "0..1", ("jaw", "open", "spread")),
    ("Head", "degrees", ("yaw", "pitch", "roll")),
    ("Eyes", "closed", ("blink_l", "blink_r")),
    ("Expression", "-1..1", ("smile", "brow", "brow_inner", "eyes")),
)


class WaveformPyramid:
    """Min/max envelopes of a mono signal at decimations ``base * 2**level`` samples per bucket.

    Args:
        samples: (N,) float mono samples in [-1, 1].
        sample_rate: Hz.
        base: samples per bucket of the finest level.
    """

    def __init__(self, samples: np.ndarray, sample_rate: int, *, base: int = 16) -> None:
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"samples must be 1-D, got {x.shape}")
        self.sample_rate = int(sample_rate)
        self.n_samples = int(x.shape[0])
        self.base = int(base)
        n = max(1, -(-self.n_samples // self.base))
        padded = np.zeros(n * self.base, np.float32)
        padded[: self.n_samples] = x
        blocks = padded.reshape(n, self.base)
        lo, hi = blocks.min(axis=1), blocks.max(axis=1)
        self.levels: list[tuple[np.ndarray, np.ndarray]] = [(lo, hi)]
        while lo.shape[0] > 1:
            if lo.shape[0] % 2:
                lo, hi = np.append(lo, lo[-1]), np.append(hi, hi[-1])
            lo = np.minimum(lo[0::2], lo[1::2])
            hi = np.maximum(hi[0::2], hi[1::2])
            self.levels.append((lo, hi))

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.n_samples / self.sample_rate

    def envelope(self, t0: float, t1: float, max_buckets: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The envelope of [t0, t1] seconds with at most ~``max_buckets`` buckets.

        Returns:
            (t, lo, hi): bucket start times in seconds and the min / max sample of each bucket.
        """
        t0, t1 = max(0.0, t0), min(self.duration, t1)
        if t1 <= t0:
            empty = np.zeros(0, np.float32)
            return empty, empty, empty
        span = (t1 - t0) * self.sample_rate
        level = int(np.clip(np.ceil(np.log2(max(span / (self.base * max_buckets), 1.0))), 0, len(self.levels) - 1))
        bucket = self.base * 2 ** level
        lo, hi = self.levels[level]
        a = max(0, int(t0 * self.sample_rate // bucket) - 1)
        b = min(lo.shape[0], int(np.ceil(t1 * self.sample_rate / bucket)) + 1)
        t = np.arange(a, b, dtype=np.float64) * bucket / self.sample_rate
        return t, lo[a:b], hi[a:b]


def project_2d(values: np.ndarray) -> np.ndarray:
    """(T, 2) projection of per-frame codes (T, C) on their two leading principal components.

    Channels are standardised first (degrees and 0..1 values weigh alike); constant channels drop out.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0:
        return np.zeros((0, 2))
    std = v.std(axis=0)
    keep = std > 1e-9
    if not keep.any():
        return np.zeros((v.shape[0], 2))
    z = (v[:, keep] - v[:, keep].mean(axis=0)) / std[keep]
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    out = z @ vt[:2].T
    if out.shape[1] < 2:
        out = np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    return out


@dataclass(frozen=True)
class PhoneSegment:
    """One phone of the speech: label, start and end (s), and the viseme class shown at its middle."""

    phone: str
    start_s: float
    end_s: float
    viseme: str


def phone_segments(phones, visemes, fps: float) -> list[PhoneSegment]:
    """Join the speech analysis's (phone, start_s, end_s) with the per-frame viseme labels."""
    out = []
    n = len(visemes)
    for phone, a, b in phones:
        k = int((a + b) / 2 * fps)
        vis = visemes[min(max(k, 0), n - 1)] if n else "X"
        out.append(PhoneSegment(str(phone), float(a), float(b), str(vis)))
    return out
