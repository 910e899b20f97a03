"""Issue 5: head pose, emotion and blinks from source videos and presets, measured on real output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import pearson, sample
from studio.cli import main
from studio.core.events import CancelToken
from studio.engine.face import topology as T
from studio.engine.face.detect import FaceTracker
from studio.core.events import drive
from studio.engine.pipeline import prepare
from studio.engine.settings import RenderSettings
from studio.engine.sources.emotion import expression_measures
from studio.engine.sources.pose import pose_from_faces, resample_track, track_video
from studio.media.audio import load_audio, rms_envelope


def _session(image: str, audio: Path, **settings):
    return drive(prepare(sample(image), audio, RenderSettings().with_values(**settings), cancel=CancelToken()))


def _trim(src: Path, dst: Path, seconds: float) -> Path:
    clip = load_audio(src)
    sf.write(dst, clip.samples[: int(seconds * clip.sample_rate)], clip.sample_rate)
    return dst


def test_pose_from_a_video_is_transferred(tmp_path):
    video = sample("video/hdtf_katie_hill.mp4")
    out = tmp_path / "pose.mp4"
    assert main(["render", "--image", str(sample("images/woman_brown_hair_624px.jpg")), "--audio", str(video),
                 "--pose-source", str(video), "--blink", "off", "--output", str(out), "--quiet"]) == 0
    faces, fps, size = track_video(video)
    src = pose_from_faces(faces, size, fps)
    faces, fps2, size2 = track_video(out)
    got = pose_from_faces(faces, size2, fps2)
    n = min(len(src), len(got))
    dominant = int(np.argmax(src[:n, :3].std(axis=0)))
    r = [pearson(src[:n, i], got[:n, i]) for i in range(3)]
    assert r[dominant] >= 0.7, f"yaw/pitch/roll correlations {np.round(r, 2)}"
    # the output moves about as much as the source on the dominant axis (the warp is not a token wiggle)
    assert got[:n, dominant].std() > 0.3 * src[:n, dominant].std()


def test_short_pose_source_loops_with_a_crossfade():
    src = np.linspace(0, 10, 50)[:, None]  # 2 s at 25 fps, a ramp that would jump at every seam
    out = resample_track(src, 25.0, 250, 25.0, crossfade_s=0.5)[:, 0]
    assert len(out) == 250
    assert np.abs(np.diff(out)).max() < 1.0  # no jump back from 10 to 0: the seam is blended
    assert out.min() >= 0 and out.max() <= 10


def _ear_and_expression(frames) -> tuple[np.ndarray, list[dict[str, float]]]:
    tracker = FaceTracker()
    ears, exprs = [], []
    for frame in frames:
        face = tracker.update(frame)
        assert face is not None
        ears.append(np.mean([T.eye_aspect_ratio(face.points, e) for e in (T.EYE_IMAGE_LEFT, T.EYE_IMAGE_RIGHT)]))
        exprs.append(expression_measures(face.points))
    return np.array(ears), exprs


def test_automatic_blinks_have_a_natural_rate(tmp_path):
    speech = sample("audio/english_60s_16k_mono.wav")
    audio = _trim(speech, tmp_path / "30s.wav", 30.0)
    session = _session("images/woman_dark_hair_474px.png", audio, pose="still", seed=11)
    ears, _ = _ear_and_expression(session.render_frame(k) for k in range(session.n_frames))
    open_level = np.median(ears)
    closed = ears < 0.6 * open_level
    blinks = int(np.sum(closed[1:] & ~closed[:-1]) + closed[0])
    # 15-20 per minute is natural; over 30 s that is 7-10, and a seeded Poisson-like process varies
    assert 5 <= blinks <= 13, f"{blinks} blinks in 30 s"


@pytest.fixture(scope="module")
def emotion_renders(tmp_path_factory):
    audio = _trim(sample("audio/english_radio_16k_stereo.wav"), tmp_path_factory.mktemp("emo") / "a.wav", 4.0)
    clip = load_audio(audio)
    results = {}
    for name in ("neutral", "happy", "sad", "angry", "surprised"):
        s = _session("images/woman_brown_hair_624px.jpg", audio, pose="still", blink="off", emotion=name,
                     emotion_intensity=1.0)
        frames = [s.render_frame(k) for k in range(s.n_frames)]
        ears, exprs = _ear_and_expression(frames)
        tracker = FaceTracker()
        gaps = []
        for f in frames:
            p = tracker.update(f).points
            gaps.append(T.inner_lip_gap(p) / T.mouth_width(p))
        rms = rms_envelope(clip.samples, clip.sample_rate, fps=25.0, n_frames=len(gaps))
        med = {k: float(np.median([e[k] for e in exprs])) for k in exprs[0]}
        results[name] = (med, pearson(np.array(gaps), rms))
    return results


@pytest.mark.parametrize("name,expect", [
    ("happy", {"smile": +1}),
    ("sad", {"smile": -1, "brow_inner": +1}),
    ("angry", {"brow": -1, "brow_inner": -1}),
    ("surprised", {"brow": +1, "eyes": +1}),
])
def test_emotion_presets_move_the_landmarks_and_keep_lip_sync(emotion_renders, name, expect):
    neutral, _ = emotion_renders["neutral"]
    got, sync = emotion_renders[name]
    for measure, sign in expect.items():
        delta = got[measure] - neutral[measure]
        assert sign * delta > 0.005, f"{name}: {measure} moved by {delta:+.4f}"
    assert sync > 0.3, f"{name}: lip sync r = {sync:.2f}"


def test_cli_source_options_and_their_errors(tmp_path, capsys):
    img = str(sample("images/taylor_256px.jpg"))
    audio = str(_trim(sample("audio/english_short_16k_mono.wav"), tmp_path / "a.wav", 1.0))
    out = tmp_path / "o.mp4"
    ok = main(["render", "--image", img, "--audio", audio, "--output", str(out), "--pose-source", "nod",
               "--pose-intensity", "0.5", "--emotion", "sad:0.4", "--emotion-source", img, "--quiet"])
    assert ok == 0 and out.exists()
    cases = [
        (["--pose-source", str(tmp_path / "missing.mp4")], "pose source not found"),
        (["--emotion", "bored"], "unknown emotion"),
        (["--emotion", "happy:2"], "emotion intensity"),
        (["--blink", "source"], "needs a source video"),
        (["--pose-intensity", "9"], "pose intensity"),
    ]
    for extra, expect in cases:
        rc = main(["render", "--image", img, "--audio", audio, "--output", str(tmp_path / "x.mp4"), *extra,
                   "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and expect in err, (extra, err)
        assert not (tmp_path / "x.mp4").exists()
