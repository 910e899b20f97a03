"""Optimisation-based inversion (PTI's projector) on a real face with a tiny generator; LPIPS backbone
loading through the model store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import load_rgb
from jobutil import run_job
from studio.core.errors import ModelError
from studio.engine.face.align import ffhq_alignment
from studio.engine.face.detect import detect_faces
from studio.engine.neural.perceptual import build_lpips
from studio.engine.neural.project import ProjectionConfig, ProjectionResult, project
from studio.models.stylegan2 import Generator


def _target(size: int) -> torch.Tensor:
    img = load_rgb("images/woman_brown_hair_624px.jpg")
    crop = ffhq_alignment(detect_faces(img)[0].points, size=size).crop(img)
    return torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1.0


@pytest.mark.parametrize("space", ["w", "w+"])
def test_projection_lowers_lpips_and_l2(space):
    torch.manual_seed(0)
    g = Generator(size=64, style_dim=64, n_mlp=2, channel_multiplier=1, channel_max=64)
    lp = build_lpips("vgg", random_backbone=True)
    cfg = ProjectionConfig(steps=80, lr=0.05, space=space, mean_latent_samples=512)
    result, _ = run_job(project(g, _target(64), lp, config=cfg))
    assert isinstance(result, ProjectionResult)
    assert result.w_plus.shape == (1, g.n_latent, 64)
    lp_hist, l2_hist = np.array(result.lpips), np.array(result.l2)
    assert len(lp_hist) == len(l2_hist) == 80
    # both losses fall monotonically: every 10-step window mean is strictly below the one before (single
    # steps are noisy: the projector adds decaying exploration noise to w). Measured on this face, W+:
    # LPIPS 0.222 0.165 0.148 0.121 0.099 0.087 0.079 0.075, L2 1.05 0.38 0.23 0.17 0.13 0.10 0.088 0.081;
    # W: LPIPS 0.240 ... 0.110 (smallest fall 0.003), L2 1.16 ... 0.163
    lp_windows, l2_windows = lp_hist.reshape(-1, 10).mean(axis=1), l2_hist.reshape(-1, 10).mean(axis=1)
    assert np.all(np.diff(lp_windows) < 0), lp_windows
    assert np.all(np.diff(l2_windows) < 0), l2_windows
    # and clearly lower at the end
    assert lp_windows[-1] < 0.6 * lp_windows[0] and l2_windows[-1] < 0.2 * l2_windows[0]
    # the projected code reproduces its image deterministically with the optimised noise
    with torch.no_grad():
        a = g(result.w_plus, noise=result.noises)
        b = g(result.w_plus, noise=result.noises)
    assert torch.equal(a, b)


def test_lpips_backbone_comes_from_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path))
    with pytest.raises(ModelError) as err:
        build_lpips("alex")
    assert "alexnet-owt-7be5be79.pth" in str(err.value.message) + str(err.value.hint)
    # a torchvision-layout AlexNet file imported into the store is mapped into LPIPS's slices (a random
    # one here, so the test manifest drops the published hash and prefix that the real file must match)
    import torchvision

    from conftest import REPO
    from studio.models import store

    text = (REPO / "model_store" / "manifest.toml").read_text()
    published = store.load_manifest(REPO / "model_store" / "manifest.toml")["lpips-alexnet"].sha256
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(text.replace('sha256_prefix = "7be5be79"', 'sha256_prefix = ""')
                        .replace(f'sha256 = "{published}"', 'sha256 = ""'))
    monkeypatch.setenv("TALKSTUDIO_MANIFEST", str(manifest))

    alex = torchvision.models.alexnet(weights=None)
    src = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(alex.state_dict(), src)
    store.import_model(src, name="lpips-alexnet")
    lp = build_lpips("alex")
    assert torch.equal(lp.net.slice1[0].weight, alex.features[0].weight)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert float(lp(x, x).sum()) == pytest.approx(0.0, abs=1e-6)
    assert float(lp(x, -x).sum()) > 0
