"""Per-frame control tracks: what every engine consumes and the trajectory viewer shows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Control channels, with units:
#: jaw, open, press, teeth in [0, 1]; spread in [-1, 1] (-1 rounded, +1 spread); close in [0, 1] (the photo's
#: lips brought together, whatever its own mouth: their rest while talking and in pauses);
#: blink_l / blink_r in [0, 1] (1 = closed; image-left / image-right eye);
#: yaw, pitch, roll in degrees; tx, ty as fractions of the face height; scale relative (0.01 = +1 %).
#: smile, brow, brow_inner, eyes: expression in about [-1, 1] (see studio.engine.sources.emotion).
CHANNELS = ("jaw", "open", "spread", "press", "teeth", "close", "blink_l", "blink_r",
            "yaw", "pitch", "roll", "tx", "ty", "scale", "smile", "brow", "brow_inner", "eyes")

#: The valid range of each channel (its units above) for a keyframe: what a face can do. The mouth within what
#: the lite rig renders naturally (jaw and opening 0..1); head rotation within +-45 degrees of yaw and +-30 of
#: pitch and roll, translation and scale within 30 % of the face (a pose video at intensity 3 reaches that
#: far; a keyframe on its curve must not be cut short).
CHANNEL_RANGES: dict[str, tuple[float, float]] = {
    "jaw": (0.0, 1.0), "open": (0.0, 1.0), "spread": (-1.0, 1.0), "press": (0.0, 1.0), "teeth": (0.0, 1.0),
    "close": (0.0, 1.0), "blink_l": (0.0, 1.0), "blink_r": (0.0, 1.0),
    "yaw": (-45.0, 45.0), "pitch": (-30.0, 30.0), "roll": (-30.0, 30.0),
    "tx": (-0.3, 0.3), "ty": (-0.3, 0.3), "scale": (-0.3, 0.3),
    "smile": (-1.0, 1.0), "brow": (-1.0, 1.0), "brow_inner": (-1.0, 1.0), "eyes": (-1.0, 1.0),
}


def clamp_channel(name: str, value: float) -> float:
    """``value`` limited to :data:`CHANNEL_RANGES` of channel ``name`` (a keyframe cannot ask a face for the
    impossible, e.g. a jaw at 1.46). Raises KeyError for an unknown channel."""
    lo, hi = CHANNEL_RANGES[name]
    return float(min(max(float(value), lo), hi))


@dataclass(frozen=True)
class ControlTrack:
    """Control values for every output frame.

    Attributes:
        fps: frames per second; frame k shows audio time [k/fps, (k+1)/fps).
        values: (T, C) float32, column order :attr:`channels`.
        channels: channel names (default :data:`CHANNELS`).
        visemes: (T,) viseme label per frame (Rhubarb A-H, X), for display.
        energy: (T,) float32 loudness envelope in [0, 1], for display.
    """

    fps: float
    values: np.ndarray
    channels: tuple[str, ...] = CHANNELS
    visemes: tuple[str, ...] = ()
    energy: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.values.shape[1] != len(self.channels):
            raise ValueError(f"values must be (T, {len(self.channels)}), got {self.values.shape}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")

    @property
    def n_frames(self) -> int:
        return int(self.values.shape[0])

    def channel(self, name: str) -> np.ndarray:
        """(T,) float32 values of one channel."""
        return self.values[:, self.channels.index(name)]

    def frame(self, k: int) -> dict[str, float]:
        """Control values of frame k as a name -> value dict."""
        return dict(zip(self.channels, (float(v) for v in self.values[k])))

    @classmethod
    def from_channels(cls, fps: float, n_frames: int, channels: dict[str, np.ndarray], **kw) -> "ControlTrack":
        """Build from per-channel (T,) arrays; channels not given are 0."""
        values = np.zeros((n_frames, len(CHANNELS)), dtype=np.float32)
        for name, arr in channels.items():
            arr = np.asarray(arr, dtype=np.float32)
            if arr.shape != (n_frames,):
                raise ValueError(f"channel {name!r} has shape {arr.shape}, expected ({n_frames},)")
            values[:, CHANNELS.index(name)] = arr
        return cls(fps=fps, values=values, **kw)


def apply_keyframes(track: ControlTrack, keyframes: dict[str, list[tuple[int, float]]], *,
                    radius_s: float = 0.2) -> ControlTrack:
    """Override channels around keyframes, blending smoothly back to the computed values.

    Each keyframe (frame k, value v) on a channel sets that channel to exactly v at frame k; within
    ``radius_s`` seconds on either side the value is a raised-cosine blend between v and the track's own
    value, so an edit never makes the motion jump. Where the blends of neighbouring keyframes overlap,
    inverse-distance weights keep every keyframe exact at its own frame and the curve smooth between.

    Args:
        track: the computed control track.
        keyframes: channel name -> list of (frame index, value) in the channel's units (limited to
            :data:`CHANNEL_RANGES`).
        radius_s: half-width of the blend in seconds.

    Returns:
        A new ControlTrack (the input is not modified).

    Raises:
        ValueError: unknown channel or a frame index out of range.
    """
    values = track.values.copy()
    n = track.n_frames
    radius = max(1.0, radius_s * track.fps)
    k = np.arange(n)
    for name, keys in keyframes.items():
        if name not in track.channels:
            raise ValueError(f"unknown channel {name!r}; channels are {', '.join(track.channels)}")
        if not keys:
            continue
        keys = sorted((int(f), clamp_channel(name, v) if name in CHANNEL_RANGES else float(v)) for f, v in keys)
        for f, _ in keys:
            if not 0 <= f < n:
                raise ValueError(f"keyframe at frame {f} is outside 0..{n - 1}")
        frames = np.array([f for f, _ in keys], dtype=np.float64)
        vals = np.array([v for _, v in keys], dtype=np.float64)
        # one raised-cosine bump per keyframe; where bumps overlap, inverse-distance weights make each
        # keyframe exact at its own frame and the curve smooth in between
        dist = np.abs(k[:, None] - frames[None, :])
        bump = 0.5 * (1 + np.cos(np.pi * np.clip(dist / radius, 0, 1)))
        idw = bump / (dist ** 2 + 1e-6)
        target = (idw * vals).sum(axis=1) / np.maximum(idw.sum(axis=1), 1e-30)
        weight = bump.max(axis=1)
        col = track.channels.index(name)
        values[:, col] = (1 - weight) * values[:, col] + weight * target
    return ControlTrack(fps=track.fps, values=values.astype(np.float32), channels=track.channels,
                        visemes=track.visemes, energy=track.energy)
