"""Automatic blinks and idle head motion: natural rates, seeded, frame-rate independent."""

from __future__ import annotations

import numpy as np
import pytest

from studio.engine.sources.idle import blink_track, idle_head_motion


def _blinks(track: np.ndarray, fps: float) -> list[tuple[int, int]]:
    closed = track > 0.5
    edges = np.flatnonzero(np.diff(closed.astype(int)))
    starts = [e + 1 for e in edges if not closed[e]]
    return [(s, int(np.argmax(~closed[s:])) if (~closed[s:]).any() else len(closed) - s) for s in starts]


@pytest.mark.parametrize("fps", [25.0, 29.97, 60.0])
def test_blink_rate_and_duration_are_natural(fps):
    n = int(600 * fps)  # ten minutes
    track = blink_track(n, fps, seed=7)
    assert track.dtype == np.float32 and track.min() >= 0 and track.max() <= 1
    rises = np.flatnonzero((track[1:] > 0.05) & (track[:-1] <= 0.05))
    per_min = len(rises) / 10.0
    assert 13 <= per_min <= 22, per_min
    # every blink reaches (nearly) full closure and lasts 100-400 ms in total
    lengths = []
    for r in rises:
        end = r + 1 + int(np.argmax(track[r + 1:] <= 0.05))
        lengths.append((end - r - 1) / fps)  # frames r+1 .. end-1 show the blink
        assert track[r:end + 1].max() > 0.9
    # measured on frame intervals: a blink touches up to one extra frame at each end
    assert 0.1 - 1 / fps <= np.min(lengths) and np.max(lengths) <= 0.4 + 2 / fps


def test_blinks_are_seeded():
    a = blink_track(1500, 25.0, seed=1)
    assert np.array_equal(a, blink_track(1500, 25.0, seed=1))
    assert not np.array_equal(a, blink_track(1500, 25.0, seed=2))


def test_idle_motion_is_subtle_smooth_and_nods_on_stress():
    fps, n = 25.0, 2500
    still = idle_head_motion(n, fps, seed=3)
    for name, limit in (("yaw", 6.0), ("pitch", 4.0), ("roll", 3.0)):
        v = still[name]
        assert 0.2 < np.abs(v).max() < limit
        assert np.abs(np.diff(v)).max() < 0.5  # degrees per frame: no jumps
    energy = np.zeros(n, np.float32)
    energy[[200, 700, 1200]] = 1.0  # three sharp stresses
    nod = idle_head_motion(n, fps, seed=3, energy=energy)
    extra = nod["pitch"] - still["pitch"]
    assert extra[205:215].max() > 1.0 and np.abs(extra[:195]).max() < 1e-6
    assert np.allclose(idle_head_motion(n, fps, seed=3, intensity=0.0)["yaw"], 0)
