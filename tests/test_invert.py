"""`talkstudio invert` end to end with tiny checkpoints of the public layouts, imported through the store."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torchvision

from conftest import load_rgb, sample
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
    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path))
    rc = main(["invert", "--image", str(sample("images/taylor_256px.jpg")), "--output", str(tmp_path / "r.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "stylegan2-ffhq-config-f.pt" in err and "alexnet-owt-7be5be79.pth" in err
    assert "e4e_ffhq_encode.pt" in err and "talkstudio models import" in err
    assert not (tmp_path / "r.png").exists()


def test_invert_with_tiny_models_writes_the_photo_with_a_generated_face(tiny_store, capsys):
    for name in ("stylegan2-ffhq-config-f.pt", "e4e_ffhq_encode.pt", "alexnet-owt-7be5be79.pth"):
        assert main(["models", "import", str(tiny_store / name)]) == 0
    photo = sample("images/woman_brown_hair_624px.jpg")
    out, latent = tiny_store / "recon.png", tiny_store / "w.safetensors"
    assert main(["invert", "--image", str(photo), "--output", str(out), "--latent", str(latent),
                 "--steps", "5", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "LPIPS" in printed and "PSNR" in printed
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


def test_render_with_the_neural_engine_names_the_missing_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path))
    rc = main(["render", "--engine", "neural", "--image", str(sample("images/taylor_256px.jpg")),
               "--audio", str(sample("audio/english_short_16k_mono.wav")), "--output", str(tmp_path / "v.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "stylegan2-ffhq-config-f.pt" in err[0] and "e4e_ffhq_encode.pt" in err[0]
    assert not (tmp_path / "v.mp4").exists()
