"""Per-frame control tracks: what every engine consumes and the trajectory viewer shows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Control channels, with units:
#: jaw, open, press, teeth in [0, 1]; spread in [-1, 1] (-1 rounded, +1 spread);
#: blink_l / blink_r in [0, 1] (1 = closed; image-left / image-right eye);
#: yaw, pitch, roll in degrees; tx, ty as fractions of the face height; scale relative (0.01 = +1 %).
CHANNELS = ("jaw", "open", "spread", "press", "teeth", "blink_l", "blink_r",
            "yaw", "pitch", "roll", "tx", "ty", "scale")


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
