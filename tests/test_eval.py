"""Issue 6: metrics against reference values, and the harness end to end on a real talking video."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import load_rgb, sample
from jobutil import run_job

from studio.cli import main
from studio.engine.eval.harness import EvalReport, run_eval
from studio.engine.eval.metrics import (
    articulation,
    lip_gap,
    lmd,
    mouth_points,
    pearson,
    psnr,
    ssim,
)
from studio.engine.face.align import ffhq_alignment
from studio.engine.face import topology as T
from studio.engine.face.detect import detect_faces


def test_identical_frames_are_perfect():
    img = load_rgb("images/taylor_256px.jpg")
    assert psnr(img, img) == float("inf")
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-9)
    pts = np.random.default_rng(0).uniform(0, 256, (20, 2))
    assert lmd(pts, pts) == 0.0


def test_metric_reference_values():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + 10, 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(float) - b) ** 2)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / mse))
    # SSIM falls with noise and is symmetric
    noisy = np.clip(a + rng.normal(0, 30, a.shape), 0, 255).astype(np.uint8)
    assert 0 < ssim(a, noisy) < ssim(a, b) < 1
    assert ssim(a, noisy) == pytest.approx(ssim(noisy, a))
    # LMD ignores a common translation, and a known per-point offset gives exactly its length
    pts = rng.uniform(0, 256, (20, 2))
    assert lmd(pts, pts + [7.0, -3.0]) == pytest.approx(0.0, abs=1e-9)
    moved = pts.copy()
    moved[:10, 1] += 4.0
    moved[10:, 1] -= 4.0  # mouth opens by 8 px: after centring every point is 4 px off
    assert lmd(pts, moved) == pytest.approx(4.0)
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) == 0.0


def test_ffhq_alignment_is_consistent_across_resolution():
    img = load_rgb("images/woman_brown_hair_624px.jpg")
    face = detect_faces(img)[0]
    a = ffhq_alignment(face.points, size=256)
    m = a.to_crop(mouth_points(face.points))
    # eyes land just above the centre (FFHQ: centre = eye_avg + 0.1 * eye_to_mouth, ~0.47 * size)
    eyes = a.to_crop(face.points[[33, 263]])
    assert abs(eyes[:, 1].mean() / 256 - 0.47) < 0.03
    assert abs(m[:, 0].mean() / 256 - 0.5) < 0.05
    assert np.allclose(a.resized(1024).to_crop(face.points[:5]) / 4, a.to_crop(face.points[:5]), atol=0.5)
    assert a.crop(img).shape == (256, 256, 3)


def test_harness_runs_end_to_end_and_resumes(tmp_path, capsys):
    video = sample("video/grid_bbaf2n.mpg")
    report = tmp_path / "rep"
    assert main(["eval", str(video), "--report", str(report), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| grid_bbaf2n.mpg | lite |" in out and "LSE-C/LSE-D: unavailable" in out
    data = json.loads((report / "report.json").read_text())
    lite, static = data["mean"]["lite"], data["mean"]["static"]
    assert lite["lmd"] < static["lmd"], (lite, static)
    assert lite["lip_gap_r"] > static["lip_gap_r"] + 0.2
    assert 15 < lite["psnr"] < 45 and 0.5 < lite["ssim"] <= 1
    for key in ("gap_err_ratio", "closure_recall", "open_range"):  # the articulation measures, per video too
        assert lite[key] is not None and data["videos"][0]["metrics"]["lite"][key] is not None, key
    assert data["mean"]["pooled"]["lite"]["lip_gap_r"] == pytest.approx(lite["lip_gap_r"], abs=1e-6)
    assert "closure recall" in out and "**pooled**" in out
    assert (report / "grid_bbaf2n_lmd.png").stat().st_size > 5000
    assert (report / "grid_bbaf2n_lipgap.png").exists()
    # a second run reuses the finished video instead of rendering it again
    result, events = run_job(run_eval([video], report))
    assert any("reusing" in e.message for e in events)
    assert isinstance(result, EvalReport)


def test_articulation_measures_on_known_tracks():
    real = np.array([0.02, 0.02, 0.3, 0.4, 0.3, 0.02, 0.02, 0.02, 0.2, 0.3])
    static = np.full(10, 0.15)
    same = articulation(real, real, static)
    assert same == {"gap_err_ratio": 0.0, "closure_recall": 1.0, "open_range": 1.0}
    # a mouth that never closes: no closure recalled; one opening half as wide: range 0.5
    never = articulation(real, np.maximum(real, 0.1), static)
    assert never["closure_recall"] == 0.0 and never["gap_err_ratio"] > 0
    assert articulation(real, real * 0.5, static)["open_range"] == pytest.approx(0.5)
    # a closure two frames late still counts, three frames late does not (frames 0-1 and 5-7 are closed)
    late2 = np.roll(real, 2)
    assert articulation(real, late2, static)["closure_recall"] == 1.0
    real3 = np.array([0.02] + [0.3] * 9)
    assert articulation(real3, np.roll(real3, 3), static)["closure_recall"] == 0.0
    # the static baseline's own error ratio is 1 by definition; frame indices keep the timing across gaps
    assert articulation(real, static, static)["gap_err_ratio"] == pytest.approx(1.0)
    gappy = articulation(real[:3], np.array([0.3, 0.3, 0.02]), static[:3], frames=np.array([0, 1, 9]))
    assert gappy["closure_recall"] == 0.0
    with pytest.raises(ValueError):
        articulation(real, real[:5], static)


def test_lite_beats_the_static_baseline_on_real_videos(tmp_path):
    # the two sample videos whose mouth moves with their own soundtrack at lag 0. The other two cannot be
    # won frame by frame by any audio-driven method: the 700 px clip's real lip gap follows its audio
    # ~0.6 s early (best lag -18 frames against the audio RMS, the audio energy and the lite opening alike,
    # r ~0.4, but r = -0.13 at lag 0), and the HDTF speaker's lip gap is set by her smiles and laughs
    # (wide open in a pause, nearly closed while talking): r <= 0.26 with the audio at every lag within
    # 0.8 s, and the best lag moves from -20 to +7 frames between measures and halves of the clip.
    videos = [sample("video/voxceleb2_00086.mp4"), sample("video/grid_bbaf2n.mpg")]
    report, _ = run_job(run_eval(videos, tmp_path, max_seconds=4.0))
    for r in report.results:
        lite, static = r.metrics["lite"], r.metrics["static"]
        assert lite["lmd"] < static["lmd"], (r.video, lite, static)
        assert lite["lip_gap_r"] > 0.25, (r.video, lite)


def _ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM from its definition (Wang et al. 2004), written independently of studio's cv2 version: a
    normalised 11x11 Gaussian window (sigma 1.5), weighted population moments, K1 0.01, K2 0.03, L 255,
    'valid' filtering (scipy.signal.convolve2d), mean over positions and RGB channels."""
    from scipy.signal import convolve2d

    r = np.arange(11) - 5
    g = np.exp(-(r ** 2) / (2 * 1.5 ** 2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for ch in range(a.shape[2]):
        x, y = a[:, :, ch].astype(np.float64), b[:, :, ch].astype(np.float64)
        f = lambda z: convolve2d(z, w, mode="valid")
        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
        values.append(np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))))
    return float(np.mean(values))


def test_ssim_matches_an_independent_reference():
    # deterministic inputs from formulas (no RNG, stable across numpy versions): a smooth pattern with
    # texture, and a shifted, contrast-reduced, quantised copy of it
    yy, xx = np.mgrid[0:48, 0:40].astype(np.float64)
    chans = [127 + 100 * np.sin(xx / (3 + c)) * np.cos(yy / (5 - c)) + 20 * ((xx + 2 * yy + c) % 7 - 3)
             for c in range(3)]
    a = np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)
    b = np.clip(0.8 * np.roll(a.astype(np.float64), 1, axis=1) + 30, 0, 255).astype(np.uint8)
    ref = _ssim_reference(a, b)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-9)
    assert ref == pytest.approx(0.450755, abs=1e-6)  # pinned value of the definition on these inputs
    img = load_rgb("images/taylor_256px.jpg")
    blurred = np.clip(img.astype(np.float64) * 0.9 + 12, 0, 255).astype(np.uint8)
    assert ssim(img, blurred) == pytest.approx(_ssim_reference(img, blurred), abs=1e-9)


def test_frames_without_a_face_are_counted_and_json_has_no_nan(tmp_path, monkeypatch):
    from studio.engine.eval import harness

    class Flaky(harness.FaceTracker):
        """Loses the face on every third frame it sees."""

        def __init__(self, **kw):
            super().__init__(**kw)
            self.seen = 0

        def update(self, rgb):
            self.seen += 1
            face = super().update(rgb)
            return None if self.seen % 3 == 0 else face

    monkeypatch.setattr(harness, "FaceTracker", Flaky)
    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path / "data"))  # no SyncNet / Inception installed
    report, _ = run_job(run_eval([sample("video/grid_bbaf2n.mpg")], tmp_path / "rep", max_seconds=1.0))
    r = report.results[0]
    assert r.no_face == {"real": r.frames // 3, "lite": r.frames // 3}
    assert f"| {r.frames // 3}/{r.frames // 3} |" in report.markdown.read_text()
    text = report.json.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert data["videos"][0]["metrics"]["lite"]["lse_c"] is None  # not computed: null, and listed as such
    assert set(data["unavailable"]) == {"LSE-C/LSE-D", "FID"}
    assert len(r.series["lmd_lite"]) == len(r.series["t_lmd"]) < r.frames


@pytest.mark.slow
def test_lite_articulates_like_the_in_sync_speakers():
    """The sample videos whose own lip gap follows their audio at lag 0 or 1 (the harness's A/V check): four
    GRID clips and a VoxCeleb2 interview. Re-synthesised from frame 0 and their soundtrack, the lite mouth must
    beat a still photo on LMD on each, and pooled over them close where the speakers close and open as far
    as they do.

    Pooled closure recall / gap err/static / open range / lip-gap r: first wave 0.54 / 0.83 / - / 0.39 (GRID
    clips only); rest closure in pauses 0.76 / 0.71 / 1.0 / 0.47; now (the acoustic opening model as half the
    opening drive, lips closed as the speaking rest, the dental interior) 0.84 / 0.57 / 0.89 / 0.57. The opening
    model was fitted on these videos among others; on videos it never saw (benchmarks/articulation.py
    --leave-one-out, nine videos pooled) 0.81 / 0.63 / 0.85 / 0.55. Issue 16's goal for r, 0.65, is not
    reached."""
    from studio.core.events import drive
    from studio.engine.eval.harness import evaluate_video

    real, lite, static, frames = [], [], [], []
    offset = 0
    for name in ("grid_lbbc2a.mpg", "grid_pwij3p.mpg", "grid_sbwe5n.mpg", "grid_swwp2s.mpg", "voxceleb2_00086.mp4"):
        r = drive(evaluate_video(sample(f"video/{name}"), engine="lite"))
        m, s = r.metrics, r.series
        assert abs(m["reference"]["av_lag_frames"]) <= 1, (name, m["reference"])
        assert m["lite"]["lmd"] < m["static"]["lmd"], (name, m["lite"]["lmd"], m["static"]["lmd"])
        real += s["gap_real"]
        lite += s["gap_lite"]
        static += s["gap_static"]
        frames += [k + offset for k in s["t_gap"]]
        offset += max(s["t_gap"]) + 100
    real, lite, static = np.asarray(real), np.asarray(lite), np.asarray(static)
    pooled = articulation(real, lite, static, np.asarray(frames))
    assert pooled["closure_recall"] >= 0.8, pooled
    assert pooled["gap_err_ratio"] <= 0.70, pooled
    assert 0.8 <= pooled["open_range"] <= 1.25, pooled
    assert pearson(real, lite) >= 0.55


def test_inner_mouth_measures_see_colour_and_flatness():
    """mouth ΔE / texture: a real open mouth against itself is 0 / 1; painted over with its mean colour it has
    no texture left, and a colour shift shows as ΔE."""
    import cv2

    from studio.engine.eval.metrics import OPEN_GAP, interior_difference, interior_stats
    from studio.engine.face.detect import FaceTracker
    from studio.media.video import read_video_frames

    meta, frames = read_video_frames(sample("video/grid_pwij3p.mpg"))
    tracker = FaceTracker()
    with frames:
        for rgb in frames:
            face = tracker.update(rgb)
            if face is not None and lip_gap(face.points) > OPEN_GAP:
                break
        else:
            pytest.fail("no open-mouth frame")
    real = interior_stats(rgb, face.points)
    assert real is not None
    same = interior_difference([real], [real])
    assert same["mouth_de"] == 0.0 and same["mouth_texture"] == 1.0
    inner = np.concatenate([face.points[list(T.LIPS_UPPER_INNER)], face.points[list(T.LIPS_LOWER_INNER)][::-1]])
    flat = rgb.copy()
    mask = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(inner).astype(np.int32)], 1)
    flat[mask.astype(bool)] = rgb[mask.astype(bool)].mean(axis=0).astype(np.uint8)
    painted = interior_difference([real], [interior_stats(flat, face.points)])
    assert painted["mouth_texture"] < 0.35 and painted["mouth_de"] > 3.0
    shifted = np.clip(rgb.astype(int) + (0, 0, 40), 0, 255).astype(np.uint8)
    assert interior_difference([real], [interior_stats(shifted, face.points)])["mouth_de"] > 10.0


@pytest.mark.slow
@pytest.mark.parametrize("name,max_de,max_texture", [("grid_pwij3p.mpg", 16.0, 1.6), ("woman_700px_30fps.mp4", 12.0, 1.6),
                                                     ("voxceleb2_00086.mp4", 26.0, 2.0)])
def test_lite_mouth_interior_looks_like_the_speakers(name, max_de, max_texture):
    """In frames where both mouths are open, the lite interior's teeth colour is near the real one's and it has
    about the real interior's detail (before the dental model and the photo-matched blur: ΔE 15.7 / 8.6 / 37.4,
    texture 3.9 / 2.1 / 3.4; after: 14.5 / 7.8 / 20.6, 1.20 / 1.09 / 1.61)."""
    from studio.core.events import drive
    from studio.engine.eval.harness import evaluate_video

    m = drive(evaluate_video(sample(f"video/{name}"), engine="lite")).metrics["lite"]
    assert m["mouth_frames"] >= 10, m
    assert m["mouth_de"] < max_de, m
    assert 0.6 <= m["mouth_texture"] <= max_texture, m
