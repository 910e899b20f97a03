"""MFCC windows follow the project's timing convention: frame k shows audio [k/fps, (k+1)/fps), so its 0.2 s
window is centred on the middle of that interval, (k + 0.5) / fps -- not on its start k / fps (half a frame
early, which made the neural mouth lead the sound by 20 ms at 25 fps)."""

from __future__ import annotations

import numpy as np
import pytest

from studio.engine.audio.mfcc import MfccConfig, mfcc_windows

RATE = 16000
FPS = 25.0


def _click_at(t: float, duration: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = (1e-4 * rng.standard_normal(int(duration * RATE))).astype(np.float32)  # a quiet noise floor
    x[round(t * RATE)] = 0.9
    return x


@pytest.mark.parametrize("normalize", [False, True])
def test_click_in_the_middle_of_frame_k_peaks_in_frame_k_centre_steps(normalize):
    k = 10
    cfg = MfccConfig(normalize=normalize)
    feats = mfcc_windows(_click_at((k + 0.5) / FPS), RATE, 25, cfg)  # (25, 12, 28)
    c0 = feats[:, 0, :]  # (frames, steps): log energy
    mid = cfg.n_steps // 2  # steps mid-1 and mid straddle the window centre (+-3.6 ms)
    # in frame k the click is at the window's centre: the loudest steps are the two central ones ...
    assert int(np.argmax(c0[k])) in (mid - 1, mid), np.argmax(c0[k])
    span = float(c0[k].max() - c0[k].min())  # click peak over the noise floor
    assert abs(c0[k, mid - 1] - c0[k, mid]) < 0.01 * span
    # ... and frame k's c0 profile is symmetric about the centre, up to the noise floor (old centring: peak at
    # step 16 of frame k and 10/11 of frame k+1, i.e. between the frames)
    np.testing.assert_allclose(c0[k], c0[k, ::-1], rtol=0, atol=0.03 * span)
    # the central steps of no other frame see the click: frame k is the one centred on it
    centre = c0[:, mid - 1 : mid + 1].mean(axis=1)
    assert int(np.argmax(centre)) == k
    others = np.delete(centre, k)
    assert centre[k] - others.max() > 1.0, (centre[k], others.max())


def test_window_of_frame_k_spans_the_middle_of_its_interval_plus_minus_0_1_s():
    """A click at the window's edges: (k + 0.5)/fps - 0.1 s lands in frame k's first step, +0.1 s - 1 step in
    its last step."""
    k = 12
    cfg = MfccConfig(normalize=False)
    step = cfg.window_s / cfg.n_steps
    first = mfcc_windows(_click_at((k + 0.5) / FPS - 0.1 + 0.5 * step), RATE, 25, cfg)[k, 0]
    last = mfcc_windows(_click_at((k + 0.5) / FPS + 0.1 - 0.5 * step), RATE, 25, cfg)[k, 0]
    assert int(np.argmax(first)) == 0 and int(np.argmax(last)) == cfg.n_steps - 1
