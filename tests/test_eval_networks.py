"""Issue 6: LSE-C / LSE-D (SyncNet v2) and FID (Inception-v3) in `talkstudio eval`.

Random-weight checkpoints of the *full* upstream layouts are built on the fly, saved as upstream does
(syncnet_v2.model: a plain state dict from torch.save, without BatchNorm's num_batches_tracked as in the
2017 file; pt_inception-...pth: a plain state dict), imported through `talkstudio models import` / the
store, and the harness is run on a real sample video.
"""

from __future__ import annotations

import json
import math
import re
import subprocess

import numpy as np
import pytest
import torch

from conftest import sample
from studio.cli import main
from studio.core.errors import ModelError
from studio.engine.eval.fid import fid_from_features, frechet_distance, statistics
from studio.engine.eval.lse import (LipStream, face_box, mel_filterbank, mfcc, n_windows, sync_score,
                                    syncnet_crop)
from studio.models import registry, store
from studio.models.inception import FIDInceptionV3
from studio.models.syncnet import SyncNetV2

# --------------------------------------------------------------------------------------------
# Upstream layouts (joonson/syncnet_python SyncNetModel.py class S; mseitzer/pytorch-fid inception.py)
# --------------------------------------------------------------------------------------------


def _conv(prefix: str, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": shape, f"{prefix}.bias": (shape[0],)}


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")}


#: every key and shape of syncnet_v2.model (BatchNorm's num_batches_tracked aside)
SYNCNET_KEYS: dict[str, tuple[int, ...]] = {
    **_conv("netcnnaud.0", (64, 1, 3, 3)), **_bn("netcnnaud.1", 64),
    **_conv("netcnnaud.4", (192, 64, 3, 3)), **_bn("netcnnaud.5", 192),
    **_conv("netcnnaud.8", (384, 192, 3, 3)), **_bn("netcnnaud.9", 384),
    **_conv("netcnnaud.11", (256, 384, 3, 3)), **_bn("netcnnaud.12", 256),
    **_conv("netcnnaud.14", (256, 256, 3, 3)), **_bn("netcnnaud.15", 256),
    **_conv("netcnnaud.18", (512, 256, 5, 4)), **_bn("netcnnaud.19", 512),
    **_conv("netfcaud.0", (512, 512)), **_bn("netfcaud.1", 512), **_conv("netfcaud.3", (1024, 512)),
    **_conv("netfclip.0", (512, 512)), **_bn("netfclip.1", 512), **_conv("netfclip.3", (1024, 512)),
    **_conv("netcnnlip.0", (96, 3, 5, 7, 7)), **_bn("netcnnlip.1", 96),
    **_conv("netcnnlip.4", (256, 96, 1, 5, 5)), **_bn("netcnnlip.5", 256),
    **_conv("netcnnlip.8", (256, 256, 1, 3, 3)), **_bn("netcnnlip.9", 256),
    **_conv("netcnnlip.11", (256, 256, 1, 3, 3)), **_bn("netcnnlip.12", 256),
    **_conv("netcnnlip.14", (256, 256, 1, 3, 3)), **_bn("netcnnlip.15", 256),
    **_conv("netcnnlip.18", (512, 256, 1, 6, 6)), **_bn("netcnnlip.19", 512),
}

#: every BasicConv2d of the FID Inception (conv without bias + BatchNorm): name -> conv weight shape
INCEPTION_CONVS: list[tuple[str, tuple[int, ...]]] = [
    ("Conv2d_1a_3x3", (32, 3, 3, 3)),
    ("Conv2d_2a_3x3", (32, 32, 3, 3)),
    ("Conv2d_2b_3x3", (64, 32, 3, 3)),
    ("Conv2d_3b_1x1", (80, 64, 1, 1)),
    ("Conv2d_4a_3x3", (192, 80, 3, 3)),
    ("Mixed_5b.branch1x1", (64, 192, 1, 1)),
    ("Mixed_5b.branch5x5_1", (48, 192, 1, 1)),
    ("Mixed_5b.branch5x5_2", (64, 48, 5, 5)),
    ("Mixed_5b.branch3x3dbl_1", (64, 192, 1, 1)),
    ("Mixed_5b.branch3x3dbl_2", (96, 64, 3, 3)),
    ("Mixed_5b.branch3x3dbl_3", (96, 96, 3, 3)),
    ("Mixed_5b.branch_pool", (32, 192, 1, 1)),
    ("Mixed_5c.branch1x1", (64, 256, 1, 1)),
    ("Mixed_5c.branch5x5_1", (48, 256, 1, 1)),
    ("Mixed_5c.branch5x5_2", (64, 48, 5, 5)),
    ("Mixed_5c.branch3x3dbl_1", (64, 256, 1, 1)),
    ("Mixed_5c.branch3x3dbl_2", (96, 64, 3, 3)),
    ("Mixed_5c.branch3x3dbl_3", (96, 96, 3, 3)),
    ("Mixed_5c.branch_pool", (64, 256, 1, 1)),
    ("Mixed_5d.branch1x1", (64, 288, 1, 1)),
    ("Mixed_5d.branch5x5_1", (48, 288, 1, 1)),
    ("Mixed_5d.branch5x5_2", (64, 48, 5, 5)),
    ("Mixed_5d.branch3x3dbl_1", (64, 288, 1, 1)),
    ("Mixed_5d.branch3x3dbl_2", (96, 64, 3, 3)),
    ("Mixed_5d.branch3x3dbl_3", (96, 96, 3, 3)),
    ("Mixed_5d.branch_pool", (64, 288, 1, 1)),
    ("Mixed_6a.branch3x3", (384, 288, 3, 3)),
    ("Mixed_6a.branch3x3dbl_1", (64, 288, 1, 1)),
    ("Mixed_6a.branch3x3dbl_2", (96, 64, 3, 3)),
    ("Mixed_6a.branch3x3dbl_3", (96, 96, 3, 3)),
    ("Mixed_6b.branch1x1", (192, 768, 1, 1)),
    ("Mixed_6b.branch7x7_1", (128, 768, 1, 1)),
    ("Mixed_6b.branch7x7_2", (128, 128, 1, 7)),
    ("Mixed_6b.branch7x7_3", (192, 128, 7, 1)),
    ("Mixed_6b.branch7x7dbl_1", (128, 768, 1, 1)),
    ("Mixed_6b.branch7x7dbl_2", (128, 128, 7, 1)),
    ("Mixed_6b.branch7x7dbl_3", (128, 128, 1, 7)),
    ("Mixed_6b.branch7x7dbl_4", (128, 128, 7, 1)),
    ("Mixed_6b.branch7x7dbl_5", (192, 128, 1, 7)),
    ("Mixed_6b.branch_pool", (192, 768, 1, 1)),
    ("Mixed_6c.branch1x1", (192, 768, 1, 1)),
    ("Mixed_6c.branch7x7_1", (160, 768, 1, 1)),
    ("Mixed_6c.branch7x7_2", (160, 160, 1, 7)),
    ("Mixed_6c.branch7x7_3", (192, 160, 7, 1)),
    ("Mixed_6c.branch7x7dbl_1", (160, 768, 1, 1)),
    ("Mixed_6c.branch7x7dbl_2", (160, 160, 7, 1)),
    ("Mixed_6c.branch7x7dbl_3", (160, 160, 1, 7)),
    ("Mixed_6c.branch7x7dbl_4", (160, 160, 7, 1)),
    ("Mixed_6c.branch7x7dbl_5", (192, 160, 1, 7)),
    ("Mixed_6c.branch_pool", (192, 768, 1, 1)),
    ("Mixed_6d.branch1x1", (192, 768, 1, 1)),
    ("Mixed_6d.branch7x7_1", (160, 768, 1, 1)),
    ("Mixed_6d.branch7x7_2", (160, 160, 1, 7)),
    ("Mixed_6d.branch7x7_3", (192, 160, 7, 1)),
    ("Mixed_6d.branch7x7dbl_1", (160, 768, 1, 1)),
    ("Mixed_6d.branch7x7dbl_2", (160, 160, 7, 1)),
    ("Mixed_6d.branch7x7dbl_3", (160, 160, 1, 7)),
    ("Mixed_6d.branch7x7dbl_4", (160, 160, 7, 1)),
    ("Mixed_6d.branch7x7dbl_5", (192, 160, 1, 7)),
    ("Mixed_6d.branch_pool", (192, 768, 1, 1)),
    ("Mixed_6e.branch1x1", (192, 768, 1, 1)),
    ("Mixed_6e.branch7x7_1", (192, 768, 1, 1)),
    ("Mixed_6e.branch7x7_2", (192, 192, 1, 7)),
    ("Mixed_6e.branch7x7_3", (192, 192, 7, 1)),
    ("Mixed_6e.branch7x7dbl_1", (192, 768, 1, 1)),
    ("Mixed_6e.branch7x7dbl_2", (192, 192, 7, 1)),
    ("Mixed_6e.branch7x7dbl_3", (192, 192, 1, 7)),
    ("Mixed_6e.branch7x7dbl_4", (192, 192, 7, 1)),
    ("Mixed_6e.branch7x7dbl_5", (192, 192, 1, 7)),
    ("Mixed_6e.branch_pool", (192, 768, 1, 1)),
    ("Mixed_7a.branch3x3_1", (192, 768, 1, 1)),
    ("Mixed_7a.branch3x3_2", (320, 192, 3, 3)),
    ("Mixed_7a.branch7x7x3_1", (192, 768, 1, 1)),
    ("Mixed_7a.branch7x7x3_2", (192, 192, 1, 7)),
    ("Mixed_7a.branch7x7x3_3", (192, 192, 7, 1)),
    ("Mixed_7a.branch7x7x3_4", (192, 192, 3, 3)),
    ("Mixed_7b.branch1x1", (320, 1280, 1, 1)),
    ("Mixed_7b.branch3x3_1", (384, 1280, 1, 1)),
    ("Mixed_7b.branch3x3_2a", (384, 384, 1, 3)),
    ("Mixed_7b.branch3x3_2b", (384, 384, 3, 1)),
    ("Mixed_7b.branch3x3dbl_1", (448, 1280, 1, 1)),
    ("Mixed_7b.branch3x3dbl_2", (384, 448, 3, 3)),
    ("Mixed_7b.branch3x3dbl_3a", (384, 384, 1, 3)),
    ("Mixed_7b.branch3x3dbl_3b", (384, 384, 3, 1)),
    ("Mixed_7b.branch_pool", (192, 1280, 1, 1)),
    ("Mixed_7c.branch1x1", (320, 2048, 1, 1)),
    ("Mixed_7c.branch3x3_1", (384, 2048, 1, 1)),
    ("Mixed_7c.branch3x3_2a", (384, 384, 1, 3)),
    ("Mixed_7c.branch3x3_2b", (384, 384, 3, 1)),
    ("Mixed_7c.branch3x3dbl_1", (448, 2048, 1, 1)),
    ("Mixed_7c.branch3x3dbl_2", (384, 448, 3, 3)),
    ("Mixed_7c.branch3x3dbl_3a", (384, 384, 1, 3)),
    ("Mixed_7c.branch3x3dbl_3b", (384, 384, 3, 1)),
    ("Mixed_7c.branch_pool", (192, 2048, 1, 1)),
]


def inception_keys() -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {}
    for name, shape in INCEPTION_CONVS:
        keys[f"{name}.conv.weight"] = shape
        keys.update(_bn(f"{name}.bn", shape[0]))
    keys.update(_conv("fc", (1008, 2048)))
    return keys


def _without_counters(state):
    return {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}


def test_syncnet_module_has_the_upstream_layout():
    net = SyncNetV2()
    assert _without_counters(net.state_dict()) == SYNCNET_KEYS
    assert len(SYNCNET_KEYS) == 88
    # the manifest's signature agrees, and the manifest builds this module
    entry = store.load_manifest(store.DEFAULT_MANIFEST)["syncnet-v2"]
    assert entry.architecture.target == "studio.models.syncnet:SyncNetV2"
    assert all(SYNCNET_KEYS[k] == v for k, v in entry.signature.items())
    net.eval()
    with torch.no_grad():
        assert net.forward_aud(torch.randn(2, 1, 13, 20)).shape == (2, 1024)
        assert net.forward_lip(torch.rand(2, 3, 5, 224, 224) * 255).shape == (2, 1024)
    with pytest.raises(ValueError, match=r"\(N, 1, 13, 20\)"):
        net.forward_aud(torch.randn(1, 1, 13, 21))


def test_fid_inception_has_the_upstream_layout_and_pytorch_fid_pooling():
    import torchvision.models.inception as tv

    keys = inception_keys()
    assert len(INCEPTION_CONVS) == 94 and len(keys) == 94 * 5 + 2
    net = FIDInceptionV3()
    assert _without_counters(net.state_dict()) == keys
    # the same names/shapes as torchvision's Inception3(num_classes=1008, aux_logits=False), which
    # pytorch-fid loads the released file into
    ref = tv.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    assert _without_counters(ref.state_dict()) == keys
    entry = store.load_manifest(store.DEFAULT_MANIFEST)["inception-fid"]
    assert entry.architecture.target == "studio.models.inception:FIDInceptionV3"
    assert all(keys[k] == v for k, v in entry.signature.items())
    # pytorch-fid's patches: avg pools exclude the padding (A, C, E_1), E_2 max-pools; check one block
    # against torchvision's unpatched InceptionA with count_include_pad=False pooling written here
    torch.manual_seed(0)
    block, tvblock = net.Mixed_5b.eval(), tv.InceptionA(192, pool_features=32).eval()
    tvblock.load_state_dict(block.state_dict())
    x = torch.rand(1, 192, 9, 9)
    with torch.no_grad():
        pooled = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        expect = torch.cat([tvblock.branch1x1(x), tvblock.branch5x5_2(tvblock.branch5x5_1(x)),
                            tvblock.branch3x3dbl_3(tvblock.branch3x3dbl_2(tvblock.branch3x3dbl_1(x))),
                            tvblock.branch_pool(pooled)], 1)
        assert torch.allclose(block(x), expect, atol=1e-6)
        assert not torch.allclose(block(x), tvblock(x), atol=1e-6)  # torchvision counts the padding
        e2 = net.Mixed_7c.eval()
        y = torch.rand(1, 2048, 4, 4)
        mp = e2.branch_pool(torch.nn.functional.max_pool2d(y, 3, 1, 1))
        assert torch.allclose(e2(y)[:, -192:], mp, atol=1e-6)
        feats = net.eval()(torch.rand(2, 3, 64, 80))  # any size: resized to 299 inside
    assert feats.shape == (2, 2048) and (feats >= 0).all()


# --------------------------------------------------------------------------------------------
# FID
# --------------------------------------------------------------------------------------------


def test_frechet_distance_matches_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 6))
    mu, sigma = statistics(a)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    # diagonal Gaussians: |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expect = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expect, rel=1e-10)
    assert expect == pytest.approx(7.25 + 4 + 1)
    # a rotated pair (same rotation on both): FID is rotation invariant
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    assert frechet_distance(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2, q @ np.diag(s2) @ q.T) == pytest.approx(expect)
    # a singular covariance (one repeated image) still gives the analytic value
    assert frechet_distance(mu1, np.diag(s1), mu2, np.zeros((3, 3))) == pytest.approx(
        np.sum((mu1 - mu2) ** 2) + s1.sum(), rel=1e-6)
    assert math.isnan(fid_from_features(a[:1], a))
    with pytest.raises(ValueError):
        frechet_distance(mu1, np.diag(s1), mu2[:2], np.diag(s2[:2]))


# --------------------------------------------------------------------------------------------
# LSE
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("true_offset", [0, 3, -5])
def test_lse_offset_search_finds_a_known_offset(true_offset):
    rng = np.random.default_rng(3)
    w, d = 60, 32
    aud = rng.normal(size=(w, d)).astype(np.float32)
    lip = rng.normal(size=(w, d)).astype(np.float32)
    for t in range(w):  # lip window t shows the sound of window t - offset (the video lags by `offset`)
        if 0 <= t - true_offset < w:
            lip[t] = aud[t - true_offset] + 0.05 * rng.normal(size=d)
    s = sync_score(lip, aud)
    assert s.offset == true_offset
    assert s.curve.shape == (31,) and s.windows == w
    assert s.lse_d == pytest.approx(s.curve.min()) and s.lse_c == pytest.approx(np.median(s.curve) - s.curve.min())
    assert s.lse_d < 1.0 < s.lse_c  # in sync at that offset: close, and far from the typical distance
    # unrelated embeddings: no confident minimum
    assert sync_score(rng.normal(size=(w, d)), aud).lse_c < 0.5 * s.lse_c
    assert math.isnan(sync_score(lip[:0], aud[:0]).lse_d)


def test_mfcc_follows_python_speech_features_defaults():
    sr = 16000
    t = np.arange(int(0.73 * sr)) / sr
    x = 8000 * np.sin(2 * np.pi * 440 * t) + 100 * np.sin(2 * np.pi * 3000 * t)
    c = mfcc(x, sr)
    n = 1 + math.ceil((len(x) - 400) / 160)  # 25 ms frames every 10 ms, the last zero-padded
    assert c.shape == (n, 13)
    # column 0 = natural log of the frame energy (power spectrum of the pre-emphasised frame, nfft 512)
    pre = np.append(x[0], x[1:] - 0.97 * x[:-1])
    frame = pre[160 * 5: 160 * 5 + 400]
    assert c[5, 0] == pytest.approx(np.log(np.sum(np.abs(np.fft.rfft(frame, 512)) ** 2) / 512))
    # the other columns: orthonormal DCT-II of the log mel energies, liftered by 1 + 11 sin(pi n / 22)
    from scipy.fft import dct

    power = np.abs(np.fft.rfft(frame, 512)) ** 2 / 512
    logmel = np.log(power @ mel_filterbank().T)
    lift = 1 + 11 * np.sin(np.pi * np.arange(13) / 22)
    assert np.allclose(c[5, 1:], (dct(logmel, type=2, norm="ortho")[:13] * lift)[1:])
    fb = mel_filterbank()
    assert fb.shape == (26, 257) and fb.max() == pytest.approx(1.0) and (fb >= 0).all()
    # 26 filters from 0 to 8 kHz on the mel scale: the 440 Hz tone peaks in a low filter
    assert np.argmax(power @ fb.T) < 6
    assert n_windows(100, 16000 * 4) == 95 and n_windows(100, 16000) == 20  # min(frames, samples/640) - 5


def test_syncnet_crop_geometry_and_lip_stream_resampling():
    rgb = np.zeros((300, 400, 3), np.uint8)
    rgb[:, :, 0] = 200  # red
    crop = syncnet_crop(rgb, (150.0, 100.0, 250.0, 200.0))
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    assert crop[112, 112, 2] == 200 and crop[112, 112, 0] == 0  # BGR
    # a face at the top-left corner: grey 110 padding where the crop leaves the frame
    corner = syncnet_crop(rgb, (0.0, 0.0, 60.0, 60.0))
    assert tuple(corner[0, 0]) == (110, 110, 110) and corner[200, 200, 2] == 200
    pts = np.zeros((478, 2))
    pts[:468] = [[10, 20]] * 468
    pts[5], pts[6] = [30, 50], [5, 70]
    pts[470] = [1000, 1000]  # irises are ignored
    assert face_box(pts) == (5.0, 20.0, 30.0, 70.0)

    class Net(torch.nn.Module):
        embed_dim = 2

        def forward_lip(self, x):  # (B, 3, 5, H, W) -> the 5 frame ids
            return x[:, 0, :, 0, 0]

    # 50 fps in: every second frame is kept at 25 fps
    stream = LipStream(Net(), fps=50.0, batch=3)
    for k in range(20):
        stream.push(np.full((224, 224, 3), k, np.uint8))
    assert stream.frames_25 == 10
    emb = stream.embeddings()
    assert emb.shape == (6, 5)
    assert emb[0].tolist() == [0, 2, 4, 6, 8] and emb[-1].tolist() == [10, 12, 14, 16, 18]
    # 30 fps in: frame j at 25 fps shows source frame floor(j * 30 / 25)
    stream = LipStream(Net(), fps=30.0)
    for k in range(12):
        stream.push(np.full((224, 224, 3), k, np.uint8))
    assert stream.embeddings()[0].tolist() == [0, 1, 2, 3, 4] and stream.frames_25 == 10
    assert stream.embeddings()[-1].tolist() == [6, 7, 8, 9, 10]


# --------------------------------------------------------------------------------------------
# Store + harness end to end
# --------------------------------------------------------------------------------------------


def _random_state(module: torch.nn.Module, seed: int, *inputs) -> dict[str, torch.Tensor]:
    """Random weights whose BatchNorm statistics are calibrated on ``inputs`` (callables of the module
    run in train mode), so that the eval-mode features still depend on the input."""
    torch.manual_seed(seed)
    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.momentum = None  # running statistics = the average over the calibration batches
        m.reset_running_stats()
    module.train()
    with torch.no_grad():
        for run in inputs:
            run(module)
    module.eval()
    for m in bns:
        m.momentum = 0.1
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.fixture
def network_store(tmp_path, monkeypatch):
    """A tmp model store with random SyncNet v2 and FID Inception checkpoints imported."""
    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path / "data"))
    # the shipped manifest, without the published hash of the real Inception file (ours is random)
    text = store.DEFAULT_MANIFEST.read_text(encoding="utf-8")
    head, rest = text.split("[models.inception-fid]", 1)
    table, tail = rest.split("[models.inception-fid.signature]", 1)
    table = re.sub(r'(?m)^sha256 = ".*"$', 'sha256 = ""', table)
    table = re.sub(r'(?m)^sha256_prefix = ".*"$', 'sha256_prefix = ""', table)
    table = re.sub(r"(?m)^bytes = \d+$", "bytes = 0", table)
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(head + "[models.inception-fid]" + table + "[models.inception-fid.signature]" + tail)
    monkeypatch.setenv(store.MANIFEST_ENV, str(manifest))
    store._VERIFIED.clear()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    sync = _random_state(SyncNetV2(), 1, lambda n: n.forward_aud(torch.randn(16, 1, 13, 20) * 20),
                         lambda n: n.forward_lip(torch.rand(2, 3, 5, 224, 224) * 255))
    sync = {k: v for k, v in sync.items() if not k.endswith("num_batches_tracked")}  # as the 2017 file
    torch.save(sync, downloads / "syncnet_v2.model")
    torch.save(_random_state(FIDInceptionV3(), 2, lambda n: n(torch.rand(4, 3, 128, 128))),
               downloads / "pt_inception-2015-12-05-6726825d.pth")
    return downloads, sync


def test_checkpoints_import_through_the_store_and_mismatches_are_named(network_store, capsys):
    downloads, sync = network_store
    assert main(["models", "import", str(downloads / "syncnet_v2.model")]) == 0
    assert "as syncnet-v2" in capsys.readouterr().out
    status = store.import_model(downloads / "pt_inception-2015-12-05-6726825d.pth")
    assert status.name == "inception-fid" and status.installed
    loaded = store.load_weights("syncnet-v2")
    net = registry.build_module(store.load_manifest()["syncnet-v2"].architecture, loaded.state)
    assert isinstance(net, SyncNetV2) and torch.equal(net.netfclip[3].weight, sync["netfclip.3.weight"])
    assert isinstance(store.load("inception-fid").module, FIDInceptionV3)
    # a wrong shape or a missing key is named
    bad = dict(sync)
    bad["netcnnlip.18.weight"] = torch.zeros(512, 256, 1, 5, 5)
    del bad["netfcaud.3.bias"]
    torch.save(bad, downloads / "broken.model")
    with pytest.raises(ModelError, match=r"netfcaud.3.bias.*netcnnlip.18.weight: expected \(512, 256, 1, 6, 6\)"):
        store.import_model(downloads / "broken.model", name="syncnet-v2")


def _trimmed(tmp_path, seconds: float = 2.0):
    import imageio_ffmpeg

    out = tmp_path / "clip.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(sample("video/grid_bbaf2n.mpg")),
                    "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-c:a", "aac",
                    str(out)], check=True)
    return out


@pytest.mark.slow
def test_harness_reports_lse_and_fid_with_installed_networks(network_store, tmp_path, capsys):
    downloads, _ = network_store
    for f in ("syncnet_v2.model", "pt_inception-2015-12-05-6726825d.pth"):
        assert main(["models", "import", str(downloads / f)]) == 0
    video = _trimmed(tmp_path)
    report = tmp_path / "rep"
    assert main(["eval", str(video), "--report", str(report), "--quiet", "--max-seconds", "1.6"]) == 0
    out = capsys.readouterr().out
    assert "unavailable" not in out and "| clip.mp4 | real |" in out
    text = (report / "report.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert data["unavailable"] == {}
    video_result = data["videos"][0]
    assert video_result["no_face"] == {"real": 0, "lite": 0}
    for who in ("real", "static", "lite"):
        m = video_result["metrics"][who]
        assert isinstance(m["lse_c"], float) and isinstance(m["lse_d"], float), (who, m)
        assert m["lse_d"] > 0 and m["lse_c"] >= 0 and -15 <= m["lse_offset"] <= 15
    for who in ("static", "lite"):  # calibrated random features differ between real and generated crops
        assert isinstance(video_result["metrics"][who]["fid"], float) and video_result["metrics"][who]["fid"] > 0
        assert isinstance(data["mean"][who]["fid"], float) and data["mean"][who]["fid"] > 0
    assert (report / "results").glob("*.fid.npz")
    assert data["mean"]["real"]["lse_d"] == pytest.approx(video_result["metrics"]["real"]["lse_d"])
    # the static baseline shows one face: its lip embedding is constant
    assert video_result["metrics"]["static"]["lse_c"] != video_result["metrics"]["lite"]["lse_c"]


def test_harness_lists_missing_networks_and_neural_models(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path / "data"))
    from studio.engine.eval.harness import optional_metrics

    missing = optional_metrics()
    assert set(missing) == {"LSE-C/LSE-D", "FID"}
    assert "install syncnet_v2.model with `talkstudio models import" in missing["LSE-C/LSE-D"]
    assert "install pt_inception-2015-12-05-6726825d.pth" in missing["FID"]
    video = sample("video/grid_bbaf2n.mpg")
    # --engine neural is accepted and names exactly the missing files, as `talkstudio render` does
    assert main(["eval", str(video), "--engine", "neural", "--report", str(tmp_path / "r"), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "the neural engine needs" in err and "stylegan2-ffhq-config-f.pt" in err
    assert main(["render", "--engine", "neural", "--image", str(sample("images/taylor_256px.jpg")),
                 "--audio", str(video), "--output", str(tmp_path / "o.mp4"), "--quiet"]) != 0
    assert capsys.readouterr().err.split(" — ")[0] in err


def test_cache_key_changes_with_the_file_settings_and_engine(tmp_path):
    from studio.engine.eval.harness import cache_key

    video = tmp_path / "v.mp4"
    video.write_bytes(b"x" * 10)
    base = dict(engine="lite", identity_frame=0, pose="still", blink="off", max_seconds=60.0, networks={})
    k = cache_key(video, **base)
    assert k == cache_key(video, **base)
    assert k != cache_key(video, **{**base, "engine": "neural"})
    assert k != cache_key(video, **{**base, "max_seconds": 2.0})
    assert k != cache_key(video, **{**base, "networks": {"syncnet-v2": [1, 2]}})
    other = tmp_path / "sub"
    other.mkdir()
    (other / "v.mp4").write_bytes(b"x" * 10)  # same stem, another file
    assert k != cache_key(other / "v.mp4", **base)
    video.write_bytes(b"y" * 11)
    assert k != cache_key(video, **base)
