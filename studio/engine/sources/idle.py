"""Automatic blinks and idle head motion, so a face driven by speech alone never looks frozen.

Everything is seeded: the same seed gives the same blinks and motion. Timings are in seconds and
sampled per frame interval, so they do not depend on the frame rate.
"""

from __future__ import annotations

import numpy as np

_SUB = 8  # sub-samples per frame interval: a 100 ms blink is never missed at any fps


def _frame_times(n_frames: int, fps: float) -> np.ndarray:
    """(T, _SUB) sample times in seconds inside each frame's interval [k/fps, (k+1)/fps)."""
    k = np.arange(n_frames)[:, None] + (np.arange(_SUB)[None, :] + 0.5) / _SUB
    return k / fps


def blink_track(n_frames: int, fps: float, *, seed: int = 0, rate_per_min: float = 17.0,
                min_duration_s: float = 0.1, max_duration_s: float = 0.4) -> np.ndarray:
    """Natural eye blinks.

    Inter-blink intervals follow a gamma distribution (shape 3) with mean 60 / ``rate_per_min`` seconds
    (spontaneous blinking is 15-20 per minute in conversation) and never shorter than 1 s; each blink
    lasts ``min_duration_s``..``max_duration_s`` (closing in ~35 % of it, reopening more slowly).

    Args:
        n_frames: number of frames T; fps: frames per second.
        seed: random seed.

    Returns:
        (T,) float32 eyelid closure in [0, 1] (1 = fully closed), the maximum over each frame's interval.
    """
    if n_frames <= 0:
        return np.zeros(0, dtype=np.float32)
    rng = np.random.default_rng([seed, 0xB1])
    duration = n_frames / fps
    mean = 60.0 / rate_per_min
    blinks = []
    t = rng.uniform(0.3, 1.0) * mean  # first blink somewhere in the first interval
    while t < duration:
        blinks.append((t, rng.uniform(min_duration_s, max_duration_s)))
        t += max(1.0, rng.gamma(3.0, mean / 3.0))
    times = _frame_times(n_frames, fps)
    closure = np.zeros_like(times)
    for start, length in blinks:
        x = (times - start) / length
        close = np.clip(x / 0.35, 0, 1)
        reopen = np.clip(1 - (x - 0.45) / 0.55, 0, 1)
        closure = np.maximum(closure, np.where((x >= 0) & (x <= 1), np.minimum(close, reopen), 0.0))
    return np.sin(closure.max(axis=1) * np.pi / 2).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, *, low_hz: float, high_hz: float, n: int = 5) -> np.ndarray:
    """Sum of ``n`` sinusoids with random frequencies in [low_hz, high_hz] and phases; unit RMS."""
    out = np.zeros_like(t)
    for _ in range(n):
        f = rng.uniform(low_hz, high_hz)
        out += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    rms = float(np.sqrt(np.mean(out ** 2))) or 1.0
    return out / rms


def idle_head_motion(n_frames: int, fps: float, *, seed: int = 0, energy: np.ndarray | None = None,
                     intensity: float = 1.0) -> dict[str, np.ndarray]:
    """Subtle seeded head motion, with small nods on stressed syllables when ``energy`` is given.

    Args:
        n_frames: number of frames T; fps: frames per second.
        seed: random seed.
        energy: optional (T,) loudness envelope in [0, 1]; its sharp rises add a nod (pitch) of up to ~2 deg.
        intensity: scale of all motion (0 = still, 1 = natural idle).

    Returns:
        ``yaw``, ``pitch``, ``roll`` (degrees) and ``tx``, ``ty`` (fractions of the face height), each
        (T,) float32.
    """
    rng = np.random.default_rng([seed, 0x4EAD])
    t = (np.arange(n_frames) + 0.5) / fps
    motion = {
        "yaw": 1.6 * _smooth_noise(rng, t, low_hz=0.04, high_hz=0.3),
        "pitch": 0.9 * _smooth_noise(rng, t, low_hz=0.05, high_hz=0.35),
        "roll": 0.7 * _smooth_noise(rng, t, low_hz=0.03, high_hz=0.25),
        "tx": 0.004 * _smooth_noise(rng, t, low_hz=0.03, high_hz=0.2),
        "ty": 0.003 * _smooth_noise(rng, t, low_hz=0.03, high_hz=0.2),
    }
    if energy is not None and len(energy) == n_frames and n_frames > 2:
        # nod: a stress (sharp loudness rise) tips the head down briefly, then it recovers
        e = np.convolve(np.asarray(energy, dtype=np.float64), np.ones(3) / 3, mode="same")
        rise = np.clip(np.diff(e, prepend=e[0]), 0, None)
        thresh = max(0.08, float(np.percentile(rise, 90)))
        kernel_t = np.arange(0, 0.6, 1 / fps)
        kernel = np.sin(np.pi * np.clip(kernel_t / 0.45, 0, 1)) * (kernel_t <= 0.45)
        pulses = np.where(rise >= thresh, rise / max(rise.max(), 1e-6), 0.0)
        nod = np.convolve(pulses, kernel)[:n_frames]
        motion["pitch"] = motion["pitch"] + 1.8 * nod / max(nod.max(), 1.0)
    return {k: (v * intensity).astype(np.float32) for k, v in motion.items()}
