"""`talkstudio invert` end to end with tiny checkpoints of the public layouts, imported through the store."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torchvision

from conftest import load_rgb, sample
from jobutil import run_job
from studio.cli import main
from studio.engine.face.detect import detect_faces
from studio.models.encoders import Encoder4Editing
from studio.models.stylegan2 import Generator

TINY_G = dict(size=64, style_dim=64, n_mlp=2, channel_multiplier=1, channel_max=64)
TINY_E = dict(n_styles=10, blocks=[[64, 16, 1], [16, 32, 1], [32, 48, 1], [48, 64, 1]], style_dim=64)

MANIFEST = f"""
schema_version = 1

[models.stylegan2-ffhq-config-f]
file = "stylegan2-ffhq-config-f.pt"
kind = "generator"
license = "test"
layout = "rosinality"
state_key = "g_ema"
extra = ["latent_avg"]
architecture = {{ class = "studio.models.stylegan2:Generator", kwargs = {{ size = 64, style_dim = 64, n_mlp = 2, channel_multiplier = 1, channel_max = 64 }} }}

[models.e4e-ffhq-encode]
file = "e4e_ffhq_encode.pt"
kind = "encoder"
license = "test"
layout = "psp"
state_key = "state_dict"
prefix = "encoder."
extra = ["latent_avg", "opts"]
architecture = {{ class = "studio.models.encoders:Encoder4Editing", kwargs = {{ n_styles = 10, style_dim = 64, blocks = {TINY_E["blocks"]} }} }}
match_opts = {{ encoder_type = "Encoder4Editing" }}

[models.lpips-alexnet]
file = "alexnet-owt-7be5be79.pth"
kind = "lpips_backbone"
license = "test"
layout = "plain"
architecture = {{ class = "torchvision.models.alexnet:AlexNet", kwargs = {{}} }}
"""


@pytest.fixture
def tiny_store(tmp_path, monkeypatch):
    """A model store holding tiny generator / e4e / AlexNet files in the upstream layouts."""
    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TALKSTUDIO_MANIFEST", str(tmp_path / "manifest.toml"))
    return write_tiny_store(tmp_path)


def write_tiny_store(tmp_path, manifest: str = MANIFEST):
    """Write the tiny manifest and checkpoints into ``tmp_path`` (the caller points the env vars at it)."""
    (tmp_path / "manifest.toml").write_text(manifest)
    torch.manual_seed(0)
    g = Generator(**TINY_G)
    with torch.no_grad():
        avg = g.mean_latent(256, seed=0)
    torch.save({"g_ema": g.state_dict(), "latent_avg": avg[0]}, tmp_path / "stylegan2-ffhq-config-f.pt")
    e = Encoder4Editing(**TINY_E)
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in e.state_dict().items()}, "latent_avg": avg.repeat(10, 1),
                "opts": {"encoder_type": "Encoder4Editing", "start_from_latent_avg": True}},
               tmp_path / "e4e_ffhq_encode.pt")
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), tmp_path / "alexnet-owt-7be5be79.pth")
    return tmp_path


def test_invert_reports_missing_models_by_name(tmp_path, monkeypatch, capsys):
    """Encoder "auto" (the default) needs no encoder (projection stands in), but the generator and the LPIPS
    backbone are still required and named; an explicit --encoder e4e still requires e4e."""
    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path))
    rc = main(["invert", "--image", str(sample("images/taylor_256px.jpg")), "--output", str(tmp_path / "r.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "stylegan2-ffhq-config-f.pt" in err and "alexnet-owt-7be5be79.pth" in err
    assert "needs 2 model files" in err and "e4e_ffhq_encode.pt" not in err and "talkstudio models import" in err
    assert not (tmp_path / "r.png").exists()
    rc = main(["invert", "--image", str(sample("images/taylor_256px.jpg")), "--output", str(tmp_path / "r.png"),
               "--encoder", "e4e"])
    err = capsys.readouterr().err
    assert rc == 2 and "needs 3 model files" in err and "e4e_ffhq_encode.pt" in err
    assert not (tmp_path / "r.png").exists()


def test_auto_encoder_prefers_e4e_then_psp_then_projection():
    from studio.core.errors import ConfigError
    from studio.engine.neural.invert import resolve_encoder

    both = resolve_encoder("auto", installed={"e4e-ffhq-encode", "psp-ffhq-encode"})
    assert both.encoder == "e4e" and "e4e" in both.message
    psp = resolve_encoder("auto", installed={"psp-ffhq-encode", "stylegan2-ffhq-config-f"})
    assert psp.encoder == "psp" and "pSp" in psp.message and "e4e_ffhq_encode.pt" in psp.message
    none = resolve_encoder("auto", installed={"stylegan2-ffhq-config-f", "lpips-alexnet"}, projection_steps=30)
    assert none.encoder is None and none.label == "projection"
    assert "projection (30 steps in W" in none.message and "e4e" in none.message and "faster" in none.message
    assert none.notice().level == "note"
    # explicit choices are kept (and say nothing); None and "none" are projection alone
    assert resolve_encoder("psp", installed=set()).encoder == "psp" and resolve_encoder("psp").message == ""
    assert resolve_encoder(None).encoder is None and resolve_encoder("none").encoder is None
    with pytest.raises(ConfigError, match="unknown encoder"):
        resolve_encoder("restyle")


def test_invert_without_an_encoder_projects_and_saves_code_and_noise(tiny_store, capsys):
    """Only the generator and the LPIPS backbone installed: "auto" projects (and says so); the latent file
    holds w_plus and the optimised noise maps, and rendering it again gives the reconstruction exactly."""
    from safetensors import safe_open

    from studio.engine.neural.invert import Inversion, invert_photo, load_latent, render_latent, save_latent, to_image
    from studio.models import store

    for name in ("stylegan2-ffhq-config-f.pt", "alexnet-owt-7be5be79.pth"):
        assert main(["models", "import", str(tiny_store / name)]) == 0
    capsys.readouterr()
    photo = sample("images/woman_brown_hair_624px.jpg")
    out, latent = tiny_store / "recon.png", tiny_store / "w.safetensors"
    assert main(["invert", "--image", str(photo), "--output", str(out), "--latent", str(latent),
                 "--steps", "3", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "note: encoder auto: no image encoder is installed" in captured.err
    assert "e4e_ffhq_encode.pt" in captured.err and "faster" in captured.err
    assert "projection (w)" in captured.out and out.exists()
    n_noise = Generator(**TINY_G).num_noise
    with safe_open(str(latent), "pt") as f:
        keys = set(f.keys())
        assert keys == {"w_plus"} | {f"noise.{j}" for j in range(n_noise)}
        assert f.metadata()["noises"] == str(n_noise) and f.metadata()["method"] == "projection (w)"
    saved = load_latent(latent)
    assert saved.w_plus.shape == (1, 10, 64) and len(saved.noises) == n_noise
    assert torch.equal(saved.w_plus[0, 0], saved.w_plus[0, -1])  # a W projection: one code on every layer

    # re-rendering from the file reproduces the inversion's crop, noise maps included
    inv, _ = run_job(invert_photo(photo, steps=3))
    assert isinstance(inv, Inversion) and len(inv.noises) == n_noise
    save_latent(tiny_store / "w2.safetensors", inv)
    again = load_latent(tiny_store / "w2.safetensors")
    g = store.load("stylegan2-ffhq-config-f")
    assert np.array_equal(to_image(render_latent(g.module, again, generator_sha256=g.source_sha256)), inv.crop)
    # the tiny random G has zero noise strengths (StyleGAN2's initialisation); with non-zero ones, as in a
    # trained G, the saved maps are what is rendered (not G's own constant noise)
    with torch.no_grad():
        for name, param in g.module.named_parameters():
            if name.endswith("noise.weight"):
                param.fill_(0.5)
    with_maps = to_image(render_latent(g.module, again))
    assert np.array_equal(with_maps, to_image(render_latent(g.module, load_latent(tiny_store / "w2.safetensors"))))
    assert not np.array_equal(with_maps, to_image(render_latent(g.module, type(again)(again.w_plus, [], "", ""))))
    from studio.core.errors import ModelError

    with pytest.raises(ModelError, match="another generator"):
        render_latent(g.module, again, generator_sha256="0" * 64)


def test_invert_with_tiny_models_writes_the_photo_with_a_generated_face(tiny_store, capsys):
    for name in ("stylegan2-ffhq-config-f.pt", "e4e_ffhq_encode.pt", "alexnet-owt-7be5be79.pth"):
        assert main(["models", "import", str(tiny_store / name)]) == 0
    photo = sample("images/woman_brown_hair_624px.jpg")
    out, latent = tiny_store / "recon.png", tiny_store / "w.safetensors"
    assert main(["invert", "--image", str(photo), "--output", str(out), "--latent", str(latent),
                 "--steps", "5", "--quiet"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "LPIPS" in printed and "PSNR" in printed and "e4e + 5 projection steps (w+)" in printed
    assert "note: encoder auto: using the e4e encoder" in captured.err
    recon = cv2.imread(str(out))[:, :, ::-1]
    original = load_rgb("images/woman_brown_hair_624px.jpg")
    assert recon.shape == original.shape
    face = detect_faces(original)[0]
    changed = np.abs(recon.astype(int) - original).max(axis=2) > 0
    x0, y0, x1, y1 = face.box
    w = x1 - x0
    assert changed[int(y0):int(y1), int(x0):int(x1)].mean() > 0.3  # the face was replaced...
    assert not changed[:, : max(0, int(x0 - 0.5 * w))].any()  # ...and the rest of the photo was not
    from safetensors import safe_open

    with safe_open(str(latent), "pt") as f:
        assert tuple(f.get_tensor("w_plus").shape) == (1, 10, 64)
        assert len(f.metadata()["generator_sha256"]) == 64
        assert {f"noise.{j}" for j in range(Generator(**TINY_G).num_noise)} <= set(f.keys())


def test_render_with_the_neural_engine_names_the_missing_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path))
    rc = main(["render", "--engine", "neural", "--image", str(sample("images/taylor_256px.jpg")),
               "--audio", str(sample("audio/english_short_16k_mono.wav")), "--output", str(tmp_path / "v.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    # encoder "auto" with no encoder installed inverts by projection: the generator and the LPIPS backbone
    # are named, and the hint says that importing e4e is the faster alternative
    assert "stylegan2-ffhq-config-f.pt" in err[0] and "alexnet-owt-7be5be79.pth" in err[0]
    assert "importing the e4e encoder (e4e_ffhq_encode.pt) instead is faster" in err[0]
    assert not (tmp_path / "v.mp4").exists()
    rc = main(["render", "--engine", "neural", "--encoder", "psp", "--image", str(sample("images/taylor_256px.jpg")),
               "--audio", str(sample("audio/english_short_16k_mono.wav")), "--output", str(tmp_path / "v.mp4")])
    err = capsys.readouterr().err
    assert rc == 2 and "psp_ffhq_encode.pt" in err and "alexnet" not in err


def test_neural_engine_auto_encoder_projects_the_identity_without_an_encoder(tiny_store):
    """render --engine neural with only the generator and LPIPS backbone: w_I comes from projection in W."""
    from studio.core.tracks import ControlTrack
    from studio.engine.face.identity import load_identity
    from studio.engine.neural.engine import NeuralEngine, NeuralIdentity, NeuralOptions
    from studio.models import store

    options = NeuralOptions(projection_steps=3, discover_samples=8)
    for name in ("stylegan2-ffhq-config-f.pt", "alexnet-owt-7be5be79.pth"):
        store.import_model(tiny_store / name)
    assert options.required_models() == ["stylegan2-ffhq-config-f", "lpips-alexnet"]
    options.validate()
    note = options.encoder_choice().notice()
    assert note is not None and "projection (3 steps in W" in note.message
    g = store.load("stylegan2-ffhq-config-f")
    engine = NeuralEngine(g.module, g.source_sha256, None, options=options)
    identity = load_identity(sample("images/woman_brown_hair_624px.jpg"))
    state, _ = run_job(engine.prepare(identity, None, ControlTrack.from_channels(25.0, 1, {})))
    assert isinstance(state, NeuralIdentity) and state.w_identity.shape == (10, 64)
    assert torch.equal(state.w_identity[0], state.w_identity[-1])  # W projection: the same code on every layer
    avg = g.module.latent_avg.reshape(-1)
    assert not torch.allclose(state.w_identity[0], avg)  # moved away from the mean face
    store.import_model(tiny_store / "e4e_ffhq_encode.pt")
    assert options.required_models() == ["stylegan2-ffhq-config-f", "e4e-ffhq-encode", "lpips-alexnet"]
    assert options.encoder_choice().encoder == "e4e"
