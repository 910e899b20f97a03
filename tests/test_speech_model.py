"""The paper's speech-to-latent model: MFCC windows, E_A + D, PCA basis, direction discovery, stage-one training
(resumable, identical continuation) and the neural render, with tiny models on real sample media."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch

from conftest import pearson, sample
from jobutil import run_job
from studio.engine.audio.mfcc import MfccConfig, mfcc_windows, resample_trajectory
from studio.media.audio import load_audio, rms_envelope
from studio.models.latent_decoder import SpeechToLatent, parameter_report, pca_basis, sample_w_plus
from test_invert import MANIFEST, TINY_G, tiny_store, write_tiny_store  # noqa: F401  (fixture)

SPEECH = "audio/english_short_16k_mono.wav"
TINY_MODEL = dict(conv_channels=[8, 16], audio_dim=32, lstm_hidden=32, decoder_hidden=64, n_components=16)
AUDIO_ENTRY = """
[models.speech-to-latent]
file = "speech_to_latent.safetensors"
kind = "audio_model"
license = "test"
layout = "plain"
"""


# ---------------------------------------------------------------------------------------------- features
def test_mfcc_windows_are_12x28_per_frame_and_follow_the_speech_loudness():
    clip = load_audio(sample(SPEECH), sample_rate=16000)
    feats = mfcc_windows(clip.samples, clip.sample_rate)
    n = int(np.ceil(clip.duration * 25 - 1e-6))
    assert feats.shape == (n, 12, 28) and feats.dtype == np.float32 and np.isfinite(feats).all()
    # c0 (log energy) averaged over each window follows the loudness at that frame
    env = rms_envelope(clip.samples, clip.sample_rate, fps=25.0, n_frames=n)
    r = pearson(feats[:, 0].mean(axis=1), np.log(np.asarray(env) + 1e-6))
    assert r > 0.8, r


def test_mfcc_window_is_centred_on_its_frame():
    clip = load_audio(sample(SPEECH), sample_rate=16000)
    cfg = MfccConfig(normalize=False)
    shift = 640  # one 25 fps frame at 16 kHz
    a = mfcc_windows(clip.samples, 16000, 40, cfg)
    b = mfcc_windows(np.r_[np.zeros(shift, np.float32), clip.samples], 16000, 41, cfg)
    np.testing.assert_allclose(b[11:41], a[10:40], atol=1e-3)
    # another sample rate gives the same features (resampled to 16 kHz first)
    import soxr

    c = mfcc_windows(soxr.resample(clip.samples, 16000, 44100), 44100, 40, cfg)
    assert np.corrcoef(a[5:35].ravel(), c[5:35].ravel())[0, 1] > 0.99


def test_mfcc_rejects_empty_and_nan_audio():
    from studio.core.errors import AudioError

    with pytest.raises(AudioError, match="empty"):
        mfcc_windows(np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="NaN"):
        mfcc_windows(np.array([0.0, np.nan], np.float32), 16000)


def test_resample_trajectory_keeps_time():
    """Frame k covers [k/fps, (k+1)/fps): centres map onto centres, so the trajectory keeps its timing at any
    output rate (mapping frame starts onto frame starts left the mouth 10 ms early at 50 fps)."""
    x = np.arange(25, dtype=np.float32)[:, None]  # value = frame index at 25 fps: time (k + 0.5) / 25
    y = resample_trajectory(x, 25.0, 50.0, 49)
    t = (np.arange(49) + 0.5) / 50  # the centres of the 50 fps frames
    np.testing.assert_allclose(y[:, 0], np.clip(t * 25 - 0.5, 0, 24), atol=1e-6)
    same = resample_trajectory(x, 25.0, 25.0, 25)
    np.testing.assert_array_equal(same, x)


# ---------------------------------------------------------------------------------------------- model
def test_speech_to_latent_shapes_parameter_count_and_identity_start():
    model = SpeechToLatent()
    report = parameter_report(model)
    assert 25e6 < report["total"] < 35e6  # the paper's model has 29.68 M
    small = SpeechToLatent(n_latent=10, style_dim=64, **TINY_MODEL)
    mf, w = torch.randn(2, 7, 12, 28), torch.randn(2, 10, 64)
    out = small(mf, w)
    assert out.shape == (2, 7, 10, 64)
    torch.testing.assert_close(out, w[:, None].expand_as(out))  # D's last layer starts at zero: w̄ = w_I
    with pytest.raises(ValueError, match="12, 28"):
        small(torch.randn(1, 3, 13, 28), w[:1])


def test_pca_basis_is_orthonormal_and_sorted():
    torch.manual_seed(0)
    scales = torch.tensor([5.0, 3.0, 1.0] + [0.01] * 7)
    codes = (torch.randn(200, 10) * scales).reshape(200, 2, 5)
    basis, mean, explained = pca_basis(codes, 4)
    torch.testing.assert_close(basis @ basis.T, torch.eye(4), atol=1e-5, rtol=0)
    assert explained[0] > explained[1] > explained[2] > explained[3]
    assert abs(float(basis[0, 0])) > 0.99  # the largest-variance axis
    full, _, ex = pca_basis(codes[:3], 5)  # fewer codes than components: completed orthonormally
    torch.testing.assert_close(full @ full.T, torch.eye(5), atol=1e-5, rtol=0)
    assert float(ex[-1]) == 0.0


# ---------------------------------------------------------------------------------------------- directions
def _tiny_generator():
    from studio.models.stylegan2 import Generator

    torch.manual_seed(0)
    g = Generator(**TINY_G)
    with torch.no_grad():
        g.set_latent_avg(g.mean_latent(256, seed=0)[0])
    return g.eval()


def _image_measure(imgs: torch.Tensor) -> dict[str, np.ndarray]:
    """Stand-ins for the landmark measures on a tiny random generator: brightness of the lower third and
    red-minus-blue balance (the fitting and calibration do not depend on what is measured)."""
    x = imgs.float().numpy()
    return {"lip_gap": x[:, :, 2 * x.shape[2] // 3:].mean(axis=(1, 2, 3)),
            "mouth_width": (x[:, 0] - x[:, 2]).mean(axis=(1, 2))}


def test_direction_discovery_moves_the_measure_in_the_intended_sign(tmp_path, monkeypatch):
    from studio.core.errors import ModelError
    from studio.engine.neural.directions import discover_directions, load_directions, save_directions

    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path))
    g = _tiny_generator()
    sha = "ab" * 32
    result, _ = run_job(discover_directions(g, generator_sha256=sha, samples=48, measure=_image_measure, batch=16))
    assert set(result.directions) == {"open", "spread"}
    w = sample_w_plus(g, 8, seed=123)  # faces the fit never saw
    for name, key in (("open", "lip_gap"), ("spread", "mouth_width")):
        d = result.directions[name]
        assert d.layers == (2, 4)  # layers 4-7 of 18 scaled to the tiny generator's 10
        assert torch.count_nonzero(d.vector[: d.layers[0]]) == 0 and torch.count_nonzero(d.vector[d.layers[1]:]) == 0
        with torch.no_grad():
            up = _image_measure(g(w + d.vector, input_space="w+", noise_mode="const"))[key]
            down = _image_measure(g(w - d.vector, input_space="w+", noise_mode="const"))[key]
        assert (up > down).all(), (name, up - down)
    path = save_directions(result)
    back = load_directions(sha)
    torch.testing.assert_close(back.directions["open"].vector, result.directions["open"].vector)
    with pytest.raises(ModelError, match="another generator"):
        load_directions("cd" * 32, path=path)


# ---------------------------------------------------------------------------------------------- training
def _import_tiny(store_dir):
    from studio.models.store import import_model

    for name in ("stylegan2-ffhq-config-f.pt", "e4e_ffhq_encode.pt", "alexnet-owt-7be5be79.pth"):
        import_model(store_dir / name)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """A model store with tiny G / e4e / AlexNet and a dataset prepared from two real talking videos (two
    speakers: GRID 3 s, VoxCeleb2 trimmed to 1.6 s), shared by the tests of this module."""
    import subprocess

    import imageio_ffmpeg

    from studio.engine.neural.train import PreparedDataset, prepare_dataset

    root = tmp_path_factory.mktemp("neural")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TALKSTUDIO_DATA_DIR", str(root / "data"))
        mp.setenv("TALKSTUDIO_MANIFEST", str(root / "manifest.toml"))
        write_tiny_store(root, MANIFEST + AUDIO_ENTRY)
        _import_tiny(root)
        videos = root / "videos"
        videos.mkdir()
        shutil.copy(sample("video/grid_bbaf2n.mpg"), videos / "grid_bbaf2n.mpg")
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(sample("video/voxceleb2_00086.mp4")),
                        "-t", "1.6", str(videos / "vox_00086.mp4")], check=True)
        ds, _ = run_job(prepare_dataset(videos, root / "dataset", held_out_fraction=0.5, device="cpu"))
        assert isinstance(ds, PreparedDataset)
        yield ds, root


@pytest.fixture
def neural_env(tiny_dataset, monkeypatch):
    """The module's store and dataset, with the env vars pointing at them for one test."""
    ds, root = tiny_dataset
    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("TALKSTUDIO_MANIFEST", str(root / "manifest.toml"))
    return ds


def test_prepare_aligns_inverts_and_splits_speakers_and_resumes(neural_env):
    from studio.engine.neural.train import load_dataset, prepare_dataset

    ds = neural_env
    assert ds.videos == 2 and not ds.failed
    assert len(ds.train_speakers) == 1 and len(ds.held_out_speakers) == 1
    index, train, val = load_dataset(ds.path)
    grid = next(s for s in train + val if s.speaker == "grid")
    assert grid.w.shape[1:] == (10, 64) and grid.mfcc.shape[1:] == (12, 28)
    assert abs(grid.w.shape[0] - 75) <= 1  # 3 s at 25 fps
    assert grid.valid.mean() > 0.95
    # the mouth landmarks in the 256² aligned crop open and close with the speech
    gap = grid.mouth[:, 18, 1] - grid.mouth[:, 14, 1]  # iBUG 66 (lower inner) - 62 (upper inner)
    assert gap.max() - gap.min() > 3.0
    # a second run finds both videos done and does nothing
    again, _ = run_job(prepare_dataset(ds.path.parent / "videos", ds.path, held_out_fraction=0.5, device="cpu"))
    assert again.skipped == 2 and again.videos == 0


def _read_losses(path):
    with open(path) as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]


def test_training_loss_falls_and_a_resumed_run_continues_identically(neural_env, tmp_path):
    from studio.core.events import Notice
    from studio.engine.neural.train import TrainConfig, TrainResult, train_audio

    cfg = dict(batch=4, seq_len=15, lpips_net="alex", lpips_frames=1, lpips_size=64, n_pca_samples=256,
               checkpoint_every=20, val_every=40, model=TINY_MODEL, lr=1e-3)
    whole = tmp_path / "whole" / "model.safetensors"
    whole.parent.mkdir()
    res, _ = run_job(train_audio(neural_env.path, whole, config=TrainConfig(steps=40, **cfg), device="cpu"))
    assert isinstance(res, TrainResult) and res.steps == 40
    losses = [v for _, v in _read_losses(whole.parent / "model.train" / "loss.csv")]
    assert len(losses) == 40
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10]), (losses[:10], losses[-10:])
    assert np.isfinite(res.val_latent)

    split = tmp_path / "split" / "model.safetensors"
    split.parent.mkdir()
    first, _ = run_job(train_audio(neural_env.path, split, config=TrainConfig(steps=20, **cfg), device="cpu"))
    assert first.steps == 20
    _, events = run_job(train_audio(neural_env.path, split, config=TrainConfig(steps=40, **cfg), device="cpu"))
    assert any(isinstance(e, Notice) and e.level == "note" and "resuming from step 20" in e.message for e in events)
    assert _read_losses(split.parent / "model.train" / "loss.csv") == \
        _read_losses(whole.parent / "model.train" / "loss.csv")
    from safetensors.torch import load_file

    a, b = load_file(whole), load_file(split)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_neural_render_with_the_trained_model_and_with_directions_writes_a_synced_mp4(neural_env, tmp_path,
                                                                                      capsys):
    from studio.cli import main
    from studio.engine.neural.directions import discover_directions, save_directions
    from studio.engine.neural.train import TrainConfig, train_audio
    from studio.media.image import load_image
    from studio.media.video import probe_media, read_video_frames
    from studio.models.store import load_weights

    model = tmp_path / "speech_to_latent.safetensors"
    run_job(train_audio(neural_env.path, model, config=TrainConfig(
        steps=20, batch=4, seq_len=15, lambda_lpips=0.0, n_pca_samples=256, checkpoint_every=20, val_every=20,
        model=TINY_MODEL), device="cpu"))
    photo = sample("images/taylor_256px.jpg")
    audio = sample(SPEECH)
    # without directions for this generator the engine would discover them with the landmark detector, which
    # finds no face on a random tiny generator: store a set discovered with image measures instead
    sha = load_weights("stylegan2-ffhq-config-f").source_sha256
    from studio.models.store import load as load_model

    g = load_model("stylegan2-ffhq-config-f").module
    save_directions(run_job(discover_directions(g, generator_sha256=sha, samples=32, measure=_image_measure,
                                                batch=16))[0])
    assert main(["models", "import", str(model)]) == 0
    capsys.readouterr()
    out = tmp_path / "neural.mp4"
    assert main(["render", "--engine", "neural", "--image", str(photo), "--audio", str(audio), "--output", str(out),
                 "--mouth", "audio-model", "--fps", "30", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "speech-to-latent model" in err
    info = probe_media(out)
    clip = load_audio(audio)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert abs(info.duration - clip.duration) <= 1 / 30 + 0.05
    # outside the pasted face the photo is untouched
    meta, frames = read_video_frames(out)
    with frames:
        first = next(iter(frames))
    src = load_image(photo)[: first.shape[0], : first.shape[1]]
    corner = (slice(0, 40), slice(0, 40))
    assert np.abs(first[corner].astype(int) - src[corner].astype(int)).mean() < 6  # H.264 at CRF 18

    # with a PTI person file: its tuned generator and pivot, the mouth from the discovered directions
    from studio.engine.neural.pti import tune_person

    person = tmp_path / "person.safetensors"
    run_job(tune_person(image=photo, output=person, encoder="e4e", steps=2, projection_steps=0))
    out2 = tmp_path / "directions.mp4"
    assert main(["render", "--engine", "neural", "--image", str(photo), "--audio", str(audio), "--output",
                 str(out2), "--mouth", "directions", "--person", str(person), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "discovered mouth directions" in err and "PTI person's pivot" in err
    assert abs(probe_media(out2).duration - clip.duration) <= 1 / 25 + 0.05


def test_neural_render_names_a_missing_audio_model(tiny_store, tmp_path, capsys):  # noqa: F811
    from studio.cli import main

    (tiny_store / "manifest.toml").write_text(MANIFEST + AUDIO_ENTRY)
    _import_tiny(tiny_store)
    rc = main(["render", "--engine", "neural", "--mouth", "audio-model", "--image",
               str(sample("images/taylor_256px.jpg")), "--audio", str(sample(SPEECH)), "--output",
               str(tmp_path / "x.mp4")])
    err = capsys.readouterr().err
    assert rc == 2 and "speech_to_latent.safetensors" in err and not (tmp_path / "x.mp4").exists()


def test_studio_shows_the_neural_w_plus_trajectory(neural_env, tmp_path, monkeypatch, qtbot):
    from studio.engine.neural.directions import discover_directions, save_directions
    from studio.gui import commands
    from studio.models.store import load as load_model
    from test_gui import _close, _new_window, drop_file, settle, wait_until

    for name in ("CONFIG", "CACHE"):
        monkeypatch.setenv(f"TALKSTUDIO_{name}_DIR", str(tmp_path / name.lower()))
    loaded = load_model("stylegan2-ffhq-config-f")
    def measure(imgs):  # plus a smile stand-in: a control that moves the codes with or without the speech model
        x = imgs.float().numpy()
        return {**_image_measure(imgs), "smile": x[:, 1].mean(axis=(1, 2))}

    save_directions(run_job(discover_directions(loaded.module, generator_sha256=loaded.source_sha256, samples=32,
                                                measure=measure, batch=16))[0])
    w = _new_window()
    try:
        assert drop_file(w.identity.view, sample("images/taylor_256px.jpg"))
        assert drop_file(w.timeline.plots.viewport(), sample(SPEECH))
        wait_until(lambda: w.session is not None)
        assert not w.trajectory.latent_plot.isVisible()  # lite: control channels only
        w.model.push(commands.set_value(w.model, "engine", "neural", "neural"))
        wait_until(lambda: w.session is not None and w.trajectory.latents is not None, 120_000)
        settle(w)
        h, norms = w.trajectory.latents
        n = w.session.n_frames
        assert h.shape == (n, 3) and norms.shape == (n, 10)
        assert w.trajectory.latent_plot.isVisible() and "neural" in w.trajectory.info.text()
        # the speech moves the codes over time: the middle (mouth) layers 2-3 of 10 change from frame to frame
        assert norms[:, 2:4].std(axis=0).min() > 0 and np.abs(h).max() > 0
        assert w.trajectory.projection.shape == (n, 2)
        # a keyframe (a smile mid-clip) re-derives the codes in a worker: the view follows the edit
        k = n // 2
        before = norms.copy()
        w.set_keyframe("smile", k / w.controller.controls.fps, 1.0)
        wait_until(lambda: w.trajectory.latents is not None and not np.array_equal(w.trajectory.latents[1], before))
        after = w.trajectory.latents[1]
        assert np.abs(after[k] - before[k]).max() > 0
        assert w.trajectory.projection.shape == (n, 2)
    finally:
        _close(w)


def test_landmark_measures_of_real_faces():
    """The measures the directions are fitted to, on real frames of a talking video: the lip gap follows the
    mouth opening, a mirrored face turns the other way, and a frame without a face gives NaN."""
    from studio.engine.eval.metrics import lip_gap
    from studio.engine.face.detect import detect_faces
    from studio.engine.neural.directions import landmark_measure
    from studio.media.video import read_video_frames

    meta, frames = read_video_frames(sample("video/grid_bbaf2n.mpg"))
    with frames:
        clip = [f for k, f in enumerate(frames) if k % 3 == 0]
    gaps = [lip_gap(detect_faces(f)[0].points) for f in clip]
    shut, wide = clip[int(np.argmin(gaps))], clip[int(np.argmax(gaps))]
    size = 256

    def tensor(rgb):
        import cv2

        x = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(x).permute(2, 0, 1).float() / 127.5 - 1

    batch = torch.stack([tensor(shut), tensor(wide), tensor(shut[:, ::-1].copy()), torch.zeros(3, size, size)])
    m = landmark_measure(batch)
    assert m["lip_gap"][1] > m["lip_gap"][0] + 0.05  # inter-ocular units
    assert np.isfinite([m[k][:3] for k in m]).all() and all(np.isnan(m[k][3]) for k in m)
    assert m["yaw"][0] == 0.0 and abs(m["mouth_width"][2] - m["mouth_width"][0]) < 0.05
    assert abs(m["smile"][2] - m["smile"][0]) < 0.05  # mirroring keeps the expression
