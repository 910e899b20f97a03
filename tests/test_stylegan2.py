"""StyleGAN2 generator and ops: upstream weight layout, upstream numerics, API, fast paths.

Upstream facts used as data here (not derived from our module):

- ``UPSTREAM_G_EMA_KEYS``: every ``state_dict`` key and shape of rosinality/stylegan2-pytorch
  ``model.Generator(1024, 512, 8, channel_multiplier=2)`` (= ``g_ema`` of stylegan2-ffhq-config-f.pt),
  in order, dumped by instantiating the upstream class itself (model.py at commit
  7e46e4754bf4e787053ee833d611ebfea5db1ddf, CUDA-extension loading stubbed, meta device).
- ``UPSTREAM_WPLUS`` / ``UPSTREAM_ZTRUNC``: outputs of that upstream ``Generator(16, 32, 2, 2)`` run in
  float64 on CPU (its pure-torch fallbacks) with the deterministic weights of :func:`det_weights`,
  ``randomize_noise=False`` (our ``noise_mode="const"``), sampled at ``[:, :, ::4, ::4]``.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch

from studio.models.ops import (
    assert_shape,
    bias_leaky_relu,
    make_blur_kernel,
    modulated_conv2d,
    upfirdn2d,
)
from studio.models.stylegan2 import Generator
from conftest import parse_keys

UPSTREAM_G_EMA_KEYS = """
style.1.weight (512, 512)
style.1.bias (512,)
style.2.weight (512, 512)
style.2.bias (512,)
style.3.weight (512, 512)
style.3.bias (512,)
style.4.weight (512, 512)
style.4.bias (512,)
style.5.weight (512, 512)
style.5.bias (512,)
style.6.weight (512, 512)
style.6.bias (512,)
style.7.weight (512, 512)
style.7.bias (512,)
style.8.weight (512, 512)
style.8.bias (512,)
input.input (1, 512, 4, 4)
conv1.conv.weight (1, 512, 512, 3, 3)
conv1.conv.modulation.weight (512, 512)
conv1.conv.modulation.bias (512,)
conv1.noise.weight (1,)
conv1.activate.bias (512,)
to_rgb1.bias (1, 3, 1, 1)
to_rgb1.conv.weight (1, 3, 512, 1, 1)
to_rgb1.conv.modulation.weight (512, 512)
to_rgb1.conv.modulation.bias (512,)
convs.0.conv.weight (1, 512, 512, 3, 3)
convs.0.conv.blur.kernel (4, 4)
convs.0.conv.modulation.weight (512, 512)
convs.0.conv.modulation.bias (512,)
convs.0.noise.weight (1,)
convs.0.activate.bias (512,)
convs.1.conv.weight (1, 512, 512, 3, 3)
convs.1.conv.modulation.weight (512, 512)
convs.1.conv.modulation.bias (512,)
convs.1.noise.weight (1,)
convs.1.activate.bias (512,)
convs.2.conv.weight (1, 512, 512, 3, 3)
convs.2.conv.blur.kernel (4, 4)
convs.2.conv.modulation.weight (512, 512)
convs.2.conv.modulation.bias (512,)
convs.2.noise.weight (1,)
convs.2.activate.bias (512,)
convs.3.conv.weight (1, 512, 512, 3, 3)
convs.3.conv.modulation.weight (512, 512)
convs.3.conv.modulation.bias (512,)
convs.3.noise.weight (1,)
convs.3.activate.bias (512,)
convs.4.conv.weight (1, 512, 512, 3, 3)
convs.4.conv.blur.kernel (4, 4)
convs.4.conv.modulation.weight (512, 512)
convs.4.conv.modulation.bias (512,)
convs.4.noise.weight (1,)
convs.4.activate.bias (512,)
convs.5.conv.weight (1, 512, 512, 3, 3)
convs.5.conv.modulation.weight (512, 512)
convs.5.conv.modulation.bias (512,)
convs.5.noise.weight (1,)
convs.5.activate.bias (512,)
convs.6.conv.weight (1, 512, 512, 3, 3)
convs.6.conv.blur.kernel (4, 4)
convs.6.conv.modulation.weight (512, 512)
convs.6.conv.modulation.bias (512,)
convs.6.noise.weight (1,)
convs.6.activate.bias (512,)
convs.7.conv.weight (1, 512, 512, 3, 3)
convs.7.conv.modulation.weight (512, 512)
convs.7.conv.modulation.bias (512,)
convs.7.noise.weight (1,)
convs.7.activate.bias (512,)
convs.8.conv.weight (1, 256, 512, 3, 3)
convs.8.conv.blur.kernel (4, 4)
convs.8.conv.modulation.weight (512, 512)
convs.8.conv.modulation.bias (512,)
convs.8.noise.weight (1,)
convs.8.activate.bias (256,)
convs.9.conv.weight (1, 256, 256, 3, 3)
convs.9.conv.modulation.weight (256, 512)
convs.9.conv.modulation.bias (256,)
convs.9.noise.weight (1,)
convs.9.activate.bias (256,)
convs.10.conv.weight (1, 128, 256, 3, 3)
convs.10.conv.blur.kernel (4, 4)
convs.10.conv.modulation.weight (256, 512)
convs.10.conv.modulation.bias (256,)
convs.10.noise.weight (1,)
convs.10.activate.bias (128,)
convs.11.conv.weight (1, 128, 128, 3, 3)
convs.11.conv.modulation.weight (128, 512)
convs.11.conv.modulation.bias (128,)
convs.11.noise.weight (1,)
convs.11.activate.bias (128,)
convs.12.conv.weight (1, 64, 128, 3, 3)
convs.12.conv.blur.kernel (4, 4)
convs.12.conv.modulation.weight (128, 512)
convs.12.conv.modulation.bias (128,)
convs.12.noise.weight (1,)
convs.12.activate.bias (64,)
convs.13.conv.weight (1, 64, 64, 3, 3)
convs.13.conv.modulation.weight (64, 512)
convs.13.conv.modulation.bias (64,)
convs.13.noise.weight (1,)
convs.13.activate.bias (64,)
convs.14.conv.weight (1, 32, 64, 3, 3)
convs.14.conv.blur.kernel (4, 4)
convs.14.conv.modulation.weight (64, 512)
convs.14.conv.modulation.bias (64,)
convs.14.noise.weight (1,)
convs.14.activate.bias (32,)
convs.15.conv.weight (1, 32, 32, 3, 3)
convs.15.conv.modulation.weight (32, 512)
convs.15.conv.modulation.bias (32,)
convs.15.noise.weight (1,)
convs.15.activate.bias (32,)
to_rgbs.0.bias (1, 3, 1, 1)
to_rgbs.0.upsample.kernel (4, 4)
to_rgbs.0.conv.weight (1, 3, 512, 1, 1)
to_rgbs.0.conv.modulation.weight (512, 512)
to_rgbs.0.conv.modulation.bias (512,)
to_rgbs.1.bias (1, 3, 1, 1)
to_rgbs.1.upsample.kernel (4, 4)
to_rgbs.1.conv.weight (1, 3, 512, 1, 1)
to_rgbs.1.conv.modulation.weight (512, 512)
to_rgbs.1.conv.modulation.bias (512,)
to_rgbs.2.bias (1, 3, 1, 1)
to_rgbs.2.upsample.kernel (4, 4)
to_rgbs.2.conv.weight (1, 3, 512, 1, 1)
to_rgbs.2.conv.modulation.weight (512, 512)
to_rgbs.2.conv.modulation.bias (512,)
to_rgbs.3.bias (1, 3, 1, 1)
to_rgbs.3.upsample.kernel (4, 4)
to_rgbs.3.conv.weight (1, 3, 512, 1, 1)
to_rgbs.3.conv.modulation.weight (512, 512)
to_rgbs.3.conv.modulation.bias (512,)
to_rgbs.4.bias (1, 3, 1, 1)
to_rgbs.4.upsample.kernel (4, 4)
to_rgbs.4.conv.weight (1, 3, 256, 1, 1)
to_rgbs.4.conv.modulation.weight (256, 512)
to_rgbs.4.conv.modulation.bias (256,)
to_rgbs.5.bias (1, 3, 1, 1)
to_rgbs.5.upsample.kernel (4, 4)
to_rgbs.5.conv.weight (1, 3, 128, 1, 1)
to_rgbs.5.conv.modulation.weight (128, 512)
to_rgbs.5.conv.modulation.bias (128,)
to_rgbs.6.bias (1, 3, 1, 1)
to_rgbs.6.upsample.kernel (4, 4)
to_rgbs.6.conv.weight (1, 3, 64, 1, 1)
to_rgbs.6.conv.modulation.weight (64, 512)
to_rgbs.6.conv.modulation.bias (64,)
to_rgbs.7.bias (1, 3, 1, 1)
to_rgbs.7.upsample.kernel (4, 4)
to_rgbs.7.conv.weight (1, 3, 32, 1, 1)
to_rgbs.7.conv.modulation.weight (32, 512)
to_rgbs.7.conv.modulation.bias (32,)
noises.noise_0 (1, 1, 4, 4)
noises.noise_1 (1, 1, 8, 8)
noises.noise_2 (1, 1, 8, 8)
noises.noise_3 (1, 1, 16, 16)
noises.noise_4 (1, 1, 16, 16)
noises.noise_5 (1, 1, 32, 32)
noises.noise_6 (1, 1, 32, 32)
noises.noise_7 (1, 1, 64, 64)
noises.noise_8 (1, 1, 64, 64)
noises.noise_9 (1, 1, 128, 128)
noises.noise_10 (1, 1, 128, 128)
noises.noise_11 (1, 1, 256, 256)
noises.noise_12 (1, 1, 256, 256)
noises.noise_13 (1, 1, 512, 512)
noises.noise_14 (1, 1, 512, 512)
noises.noise_15 (1, 1, 1024, 1024)
noises.noise_16 (1, 1, 1024, 1024)
"""

UPSTREAM_WPLUS = [
    0.1404427918, 0.210810968, -0.0002677159251, 0.3700871482, -0.04713272869, 1.360030675,
    0.1742000053, -0.4187807615, -1.371826812, -0.3371960842, -1.146033911, -0.2030123122,
    -1.174547735, -0.621354803, -0.7112310011, -0.575858939, -1.030194678, -0.3876511286,
    -0.2394833521, -1.009395295, -1.070208106, -1.760340533, -2.363128869, 0.6301799267,
    -1.068765113, -2.794576833, -2.562659905, -1.107521382, -1.325064537, -2.985532795,
    -1.541088362, -1.437753342, 0.04497574398, 0.7324101632, 0.3493775247, 1.007800709,
    -1.233790012, -0.6705364104, -1.317669443, -1.876598797, -1.914662968, -1.388527963,
    -1.467462548, -1.201762592, -1.366228298, -0.7754853931, -2.33883922, -0.5285324287,
    0.9286554761, 0.7573648547, 0.4187004653, -0.4652617259, 1.705181865, 1.747969016, 0.4906624408,
    0.2722035105, 1.04355661, 0.05306388719, 1.141678353, 0.8696681767, 0.58889736, 0.1818590882,
    1.480341035, 0.8978593889, -0.6867078326, -0.6054118795, -0.165272617, 0.1925713981,
    -0.9600695265, -1.220033079, -1.213435836, -0.5810266065, -1.627120226, 0.1855079483,
    1.047458545, 1.178143022, 0.383281908, -1.039024388, 0.121989994, -0.1462462975, 0.5528949881,
    0.8432367262, 0.7315532694, 1.142219878, -0.2823554634, 0.3288298606, -0.6605192029,
    0.02690721553, 0.1230007592, 0.5414737485, -0.8070671905, -1.453502031, -0.5513305514,
    -0.2966075231, -0.08009469375, 0.449378287,
]

UPSTREAM_ZTRUNC = [
    0.4227465266, -0.09299101559, -0.2697284257, 0.07899819594, 0.5103912696, -0.4051429658,
    -0.0115698815, 0.1448228274, 0.3163084834, 0.2319043704, 0.7761336942, 0.2990459422,
    -0.3037785889, 0.07421003118, 0.3153452358, 0.2155719364, -0.7255527902, -0.6827226695,
    -0.1866974344, -0.187576162, -2.228485268, -1.778615788, -0.83067193, -0.6328914695,
    -1.679695041, -2.11731705, -1.890542717, -1.038103593, -0.5917166507, -2.224518903,
    -1.794604889, -0.8746794204, 0.7974671647, 0.3120726416, -0.2438772394, 0.2717085262,
    -0.3285578363, -0.5708899943, -1.499309504, -2.07613122, -1.774900761, -2.063057421,
    -1.749829415, -1.773423375, -1.589115643, -0.7784680901, 0.136159029, -0.02990826415,
    -0.02704172329, -0.72189153, -0.1371503102, -0.4077946722, 0.5889218673, -0.5904034131,
    -1.019367634, -1.208736951, -0.2211717642, -0.3178226803, -0.8010769088, -1.248192759,
    -0.154931815, 0.1702448054, 1.146838497, -0.7847682168, -0.7031655134, -0.1681246548,
    0.01361578271, -0.7697550072, -1.346367838, -1.734506632, -0.4674420129, -1.037470315,
    -0.5465614875, -1.101898782, -1.733495676, -0.7772214285, 0.05408555615, -1.137988244,
    -0.6741959492, -1.131307871, 0.3624956768, -0.4480866078, -1.034460286, -0.4053619589,
    -0.3624441663, -1.453960659, -2.681689182, -2.661730273, -0.468690813, 0.0564213166,
    -0.194723276, -0.5020564163, -0.4890886683, -1.018754037, -0.6437617918, 0.4149774403,
]

BLUR = np.outer([1.0, 3, 3, 1], [1.0, 3, 3, 1]) / 64.0 * 4.0


def det_weights(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Deterministic float64 weights per key (NumPy PCG64 seeded by crc32(key)); same recipe as
    the script that produced the upstream reference numbers."""
    out = {}
    for key, shape in shapes.items():
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        shape = tuple(shape)
        if key.endswith(".kernel"):
            a = BLUR.copy()
        elif key.endswith("modulation.bias"):
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        elif key.endswith("bias") or key.endswith("noise.weight"):
            a = 0.1 * rng.standard_normal(shape)
        elif len(shape) <= 1:
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            a = rng.standard_normal(shape) * (100.0 if key.startswith("style.") else 1.0)
        out[key] = torch.from_numpy(np.asarray(a, dtype=np.float64).reshape(shape))
    return out


def normal(seed: int, shape) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape))


@pytest.fixture(scope="module")
def tiny() -> Generator:
    torch.manual_seed(0)
    g = Generator(64, 64, 2, 1, channel_max=64).eval()
    g.requires_grad_(False)
    with torch.no_grad():  # trained generators have non-zero noise strengths; init is 0
        for name, p in g.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.3)
    return g


# ---------------------------------------------------------------------------- upstream layout
def test_config_f_state_dict_matches_upstream_g_ema():
    with torch.device("meta"):
        g = Generator()
    ours = [(k, tuple(v.shape)) for k, v in g.state_dict().items()]
    expected = parse_keys(UPSTREAM_G_EMA_KEYS)
    assert len(expected) == 171
    missing = sorted(set(k for k, _ in expected) - set(k for k, _ in ours))
    extra = sorted(set(k for k, _ in ours) - set(k for k, _ in expected))
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    assert ours == expected  # same keys, shapes and order
    assert g.n_latent == 18 and g.num_noise == 17
    assert "latent_avg" not in g.state_dict()  # stored at the checkpoint's top level


def test_matches_upstream_numerics_float64():
    with torch.device("meta"):
        g = Generator(16, 32, 2, 2)
    g = g.to_empty(device="cpu").double()
    g.load_state_dict(det_weights({k: tuple(v.shape) for k, v in g.state_dict().items()}), strict=True)
    with torch.no_grad():
        a = g(normal(1, (2, 6, 32)), noise_mode="const")
        b = g(normal(2, (2, 32)), input_space="z", truncation=0.5, truncation_latent=normal(3, (1, 32)))
    np.testing.assert_allclose(a[:, :, ::4, ::4].flatten().numpy(), UPSTREAM_WPLUS, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(b[:, :, ::4, ::4].flatten().numpy(), UPSTREAM_ZTRUNC, rtol=1e-7, atol=1e-8)


# ---------------------------------------------------------------------------- generator API
def test_forward_w_wplus_z_shapes_and_range(tiny):
    w = torch.randn(2, 64)
    with torch.no_grad():
        img_w = tiny(w, input_space="w")
        img_wp = tiny(w[:, None].expand(-1, tiny.n_latent, -1), input_space="w+")
        img_z = tiny(torch.randn(3, 64), input_space="z")
    assert tiny.n_latent == 10
    assert img_w.shape == (2, 3, 64, 64) and img_z.shape == (3, 3, 64, 64)
    assert img_w.dtype == torch.float32
    assert torch.isfinite(img_z).all()
    # random weights: roughly unit scale, nowhere near blowing up
    assert 0.05 < float(img_z.std()) < 10 and float(img_z.abs().max()) < 50
    torch.testing.assert_close(img_w, img_wp)  # W is W+ with every layer equal


def test_shape_errors_name_expected_and_got(tiny):
    with pytest.raises(ValueError, match=r"expected shape \(N, 10, 64\), got \(2, 9, 64\)"):
        tiny(torch.zeros(2, 9, 64))
    with pytest.raises(ValueError, match=r"expected shape \(N, 64\), got \(2, 10, 64\)"):
        tiny(torch.zeros(2, 10, 64), input_space="w")
    with pytest.raises(ValueError, match="input_space"):
        tiny(torch.zeros(2, 64), input_space="s")
    with pytest.raises(ValueError, match="noise_mode"):
        tiny(torch.zeros(1, 10, 64), noise_mode="fresh")
    with pytest.raises(ValueError, match="float tensor"):
        tiny(torch.zeros(1, 10, 64, dtype=torch.long))
    with pytest.raises(ValueError, match="size"):
        Generator(100)


def test_noise_modes(tiny):
    w = torch.randn(1, tiny.n_latent, 64)
    with torch.no_grad():
        c1, c2 = tiny(w, noise_mode="const"), tiny(w, noise_mode="const")
        r1, r2 = tiny(w, noise_mode="random"), tiny(w, noise_mode="random")
        n1 = tiny(w, noise_mode="none")
        zeros = [torch.zeros(s) for s in tiny.noise_shapes()]
        n2 = tiny(w, noise=zeros)
        consts = [getattr(tiny.noises, f"noise_{j}") for j in range(tiny.num_noise)]
        c3 = tiny(w, noise=consts)
    assert torch.equal(c1, c2)  # deterministic
    assert not torch.equal(r1, r2)
    assert not torch.allclose(c1, n1)
    torch.testing.assert_close(n1, n2)
    torch.testing.assert_close(c1, c3)
    with pytest.raises(ValueError, match=r"noise\[0\]"):
        tiny(w, noise=[torch.zeros(1, 1, 5, 5)] + zeros[1:])


def test_noise_strength_initialised_to_zero():
    g = Generator(16, 16, 1, 1, channel_max=16)
    w = torch.randn(1, g.n_latent, 16)
    with torch.no_grad():  # random init: all noise strengths are 0 (as upstream)
        assert g.conv1.noise.weight.item() == 0.0
        assert torch.equal(g(w, noise_mode="none"), g(w, noise_mode="random"))


def test_truncation_towards_latent_avg(tiny):
    z = torch.randn(4, 64)
    avg = tiny.mean_latent(2000, seed=1)
    assert avg.shape == (1, 64)
    torch.testing.assert_close(avg, tiny.mean_latent(2000, seed=1))
    with torch.no_grad():
        w = tiny.mapping(z)
        img_avg = tiny(avg.expand(4, -1), input_space="w")
        img_t0 = tiny(z, input_space="z", truncation=0.0, truncation_latent=avg)
        img_t5 = tiny(z, input_space="z", truncation=0.5, truncation_latent=avg)
        img_t1 = tiny(z, input_space="z")
    torch.testing.assert_close(img_t0, img_avg, rtol=1e-4, atol=1e-5)
    d5 = (img_t5 - img_avg).abs().mean()
    d1 = (img_t1 - img_avg).abs().mean()
    assert d5 < d1
    wt = Generator.truncate(w, 0.5, avg[0])
    torch.testing.assert_close(wt - avg, 0.5 * (w - avg))
    # W+ truncation with a per-layer average
    wp = w[:, None].expand(-1, tiny.n_latent, -1)
    avg_plus = avg.expand(tiny.n_latent, -1)
    torch.testing.assert_close(Generator.truncate(wp, 0.5, avg_plus), wt[:, None].expand_as(wp))
    with pytest.raises(ValueError, match="does not broadcast"):
        Generator.truncate(wp, 0.5, torch.zeros(3, 64))


def test_truncation_uses_stored_latent_avg():
    g = Generator(16, 16, 1, 1, channel_max=32).eval()
    w = torch.randn(2, 16)
    with pytest.raises(ValueError, match="latent_avg"):
        g(w, input_space="w", truncation=0.7)
    avg = torch.randn(16)
    g.set_latent_avg(avg[None])  # (1, D) as some checkpoints store it
    assert g.latent_avg.shape == (16,)
    assert "latent_avg" not in g.state_dict()
    with torch.no_grad():
        a = g(w, input_space="w", truncation=0.7)
        b = g(w, input_space="w", truncation=0.7, truncation_latent=avg)
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"latent_avg: expected shape \(16,\)"):
        g.set_latent_avg(torch.zeros(18, 16))


def test_images_change_with_latent_and_style_mix(tiny):
    w1, w2 = torch.randn(1, 64), torch.randn(1, 64)
    with torch.no_grad():
        a, b = tiny(w1, input_space="w"), tiny(w2, input_space="w")
        mixed = tiny(Generator.style_mix(w1, w2, 4, tiny.n_latent))
    assert (a - b).abs().mean() > 1e-2
    assert not torch.allclose(mixed, a) and not torch.allclose(mixed, b)
    torch.testing.assert_close(tiny(Generator.style_mix(w1, w2, tiny.n_latent, tiny.n_latent)), a)


def test_gradients_flow_to_wplus(tiny):
    wp = torch.randn(2, tiny.n_latent, 64, requires_grad=True)
    img = tiny(wp)
    loss = (img - torch.zeros_like(img)).square().mean()
    loss.backward()
    assert wp.grad is not None and torch.isfinite(wp.grad).all()
    per_layer = wp.grad.abs().sum(dim=(0, 2))
    assert (per_layer > 0).all(), per_layer  # every W+ layer (convs and to_rgbs) is used


def test_single_sample_fold_path_matches_batched_path():
    """N == 1 folds styles/demodulation into the weights; N > 1 modulates the activations."""
    torch.manual_seed(2)
    g = Generator(32, 32, 2, 2, channel_max=32).double().eval()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.2)
    wp = torch.randn(3, g.n_latent, 32, dtype=torch.float64)
    with torch.no_grad():
        batched = g(wp)
        single = torch.cat([g(wp[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(single, batched, rtol=1e-10, atol=1e-10)


def test_gradients_batch_one_projection_and_pti():
    """Projection (grad to W+, batch 1) and PTI (grad to the weights) through the same code."""
    torch.manual_seed(3)
    g = Generator(32, 32, 2, 2, channel_max=32).eval()
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    wp = torch.randn(1, g.n_latent, 32, requires_grad=True)
    g.requires_grad_(False)
    (g(wp) - target).square().mean().backward()
    assert (wp.grad.abs().sum(dim=(0, 2)) > 0).all()
    g.requires_grad_(True)
    (g(wp.detach()) - target).square().mean().backward()
    assert g.convs[-1].conv.weight.grad is not None and g.convs[-1].conv.weight.grad.abs().sum() > 0
    assert g.conv1.noise.weight.grad is not None and g.to_rgbs[-1].bias.grad.abs().sum() > 0


def test_state_dict_round_trip_and_strict_load(tiny):
    g2 = Generator(64, 64, 2, 1, channel_max=64)
    g2.load_state_dict(tiny.state_dict(), strict=True)
    w = torch.randn(1, tiny.n_latent, 64)
    with torch.no_grad():
        torch.testing.assert_close(g2(w), tiny(w))
    with pytest.raises(RuntimeError):  # strict: a different layout is refused
        Generator(32, 64, 2, 1, channel_max=64).load_state_dict(tiny.state_dict(), strict=True)


# ---------------------------------------------------------------------------- fast-path semantics
def test_fast_path_semantics_on_cpu():
    """channels_last/fp32 and low-precision (bf16 here; fp16 on CUDA) against a float64 reference."""
    torch.manual_seed(1)
    g = Generator(64, 64, 2, 1, channel_max=64).eval()
    wp = torch.randn(2, g.n_latent, 64)
    with torch.no_grad():
        ref = g.double()(wp.double())
        g.float()
        g.channels_last = True
        cl32 = g(wp, precision="fp32")
        g.fp16_min_res = 8
        bf = g(wp, precision="bf16")
        f16 = g(wp, precision="fp16")  # the CUDA fast path's arithmetic (slow on CPU, tiny here)
        f16_one = g(wp[:1], precision="fp16")  # batch 1: styles folded into fp16 weights
        g.channels_last = False
        plain = g(wp, precision="fp32")
    std = float(ref.std())
    rms = lambda a: float((a.double() - ref).square().mean().sqrt())  # noqa: E731
    assert rms(cl32) < 1e-5 * std and rms(plain) < 1e-5 * std
    assert float((cl32.double() - ref).abs().max()) < 1e-4 * (1 + float(ref.abs().max()))
    # bf16 keeps 8 significant bits; fp16 (11 bits) is ~8x tighter, see the GPU test
    assert bf.dtype == torch.float32 and rms(bf) < 0.03 * std
    assert f16.dtype == torch.float32 and rms(f16) < 0.005 * std
    assert float((f16_one.double() - ref[:1]).square().mean().sqrt()) < 0.005 * std


def test_auto_precision_plan():
    g = Generator(16, 16, 1, 1, channel_max=16)
    cpu = torch.device("cpu")
    assert g._plan(cpu, None) == (None, False)
    cuda = torch.device("cuda")
    with torch.no_grad():
        assert g._plan(cuda, None) == (torch.float16, True)
    assert g._plan(cuda, None) == (None, True)  # autograd on (projection/PTI): fp32
    assert g._plan(cuda, "fp32") == (None, True)
    with pytest.raises(ValueError, match="precision"):
        g._plan(cpu, "int8")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_cuda_matches_fp32():
    """Tolerance: the fp16 render (top 4 resolutions in fp16, channels_last) differs from the fp32
    render by at most 0.5 % of the image std in RMS and 2 % of the image range at any pixel.
    (The same arithmetic on CPU at 1024, batch 2, random weights: 0.07 % and 0.09 %.)"""
    torch.manual_seed(0)
    g = Generator(1024).cuda().eval()
    w = g.mapping(torch.randn(4, 512, device="cuda"))
    with torch.no_grad():
        ref = g(w, input_space="w", precision="fp32")
        fast = g(w, input_space="w")  # auto: fp16 + channels_last under no_grad
    assert fast.dtype == torch.float32 and torch.isfinite(fast).all()
    err = (fast - ref).float()
    assert float(err.square().mean().sqrt()) <= 0.005 * float(ref.std())
    assert float(err.abs().max()) <= 0.02 * float(ref.max() - ref.min())
    with torch.no_grad():
        one = g(w[:1], input_space="w")  # batch 1 takes the folded-weight path
    assert float((one - ref[:1]).float().square().mean().sqrt()) <= 0.005 * float(ref.std())


# ---------------------------------------------------------------------------- ops
def upfirdn2d_numpy(x: np.ndarray, k: np.ndarray, up: int, down: int,
                    pad: tuple[int, int, int, int]) -> np.ndarray:
    """Direct definition: zero-insert, pad/crop, true 2-D convolution (flipped kernel), subsample."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = pad
    u = np.zeros((n, c, h * up, w * up))
    u[:, :, ::up, ::up] = x
    u = np.pad(u, ((0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))))
    u = u[:, :, max(-py0, 0):u.shape[2] - max(-py1, 0), max(-px0, 0):u.shape[3] - max(-px1, 0)]
    kh, kw = k.shape
    oh, ow = u.shape[2] - kh + 1, u.shape[3] - kw + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = np.einsum("ncij,ij->nc", u[:, :, i:i + kh, j:j + kw], k[::-1, ::-1])
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down,pad,kshape", [
    (1, 1, (1, 2, 1, 2), (4, 4)),
    (2, 1, (2, 1, 2, 1), (4, 4)),   # ToRGB skip upsampler
    (1, 1, (1, 1, 1, 1), (4, 4)),   # blur after the transposed conv
    (1, 2, (1, 1, 1, 1), (4, 4)),   # downsampler
    (2, 1, (0, 3, 1, 0), (3, 5)),   # asymmetric pads, non-square kernel
    (3, 2, (-1, 2, 0, 3), (4, 3)),  # negative pad crops, up and down together
    (2, 2, (4, 5, 4, 5), (2, 2)),   # pads beyond the kernel reach
])
def test_upfirdn2d_against_numpy(up, down, pad, kshape):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 7, 6))
    k = rng.standard_normal(kshape)  # asymmetric kernel: checks the flip
    ref = upfirdn2d_numpy(x, k, up, down, pad)
    out = upfirdn2d(torch.from_numpy(x), torch.from_numpy(k), up=up, down=down, pad=pad)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)
    x_cl = torch.from_numpy(x).float().contiguous(memory_format=torch.channels_last)
    out_cl = upfirdn2d(x_cl, torch.from_numpy(k).float(), up=up, down=down, pad=pad)
    np.testing.assert_allclose(out_cl.numpy(), ref, rtol=1e-4, atol=1e-4)


def test_blur_kernel_and_bias_act():
    k = make_blur_kernel((1, 3, 3, 1), gain=4)
    np.testing.assert_allclose(k.numpy(), BLUR, rtol=1e-6)
    x = torch.tensor([[[-1.0], [2.0]]])  # (1, 2, 1)
    out = bias_leaky_relu(x, torch.tensor([0.5, -3.0]))
    expected = [-0.5 * 0.2 * math.sqrt(2), -1.0 * 0.2 * math.sqrt(2)]
    np.testing.assert_allclose(out.flatten().numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError):
        bias_leaky_relu(x, torch.zeros(3))


@pytest.mark.parametrize("upsample", [False, True])
def test_modulated_conv_demodulation_gives_unit_std(upsample):
    torch.manual_seed(3)
    cin, cout, k = 128, 64, 3
    x = torch.randn(4, cin, 24, 24, dtype=torch.float64)
    weight = torch.randn(cout, cin, k, k, dtype=torch.float64) / math.sqrt(cin * k * k)
    styles = torch.exp(torch.randn(4, cin, dtype=torch.float64))  # very uneven styles
    blur = make_blur_kernel(gain=4).double()
    out = modulated_conv2d(x, weight, styles, demodulate=True, upsample=upsample, blur_kernel=blur, padding=1)
    assert out.shape == ((4, cout, 48, 48) if upsample else (4, cout, 24, 24))
    inner = out[:, :, 2:-2, 2:-2]
    per_channel = inner.std(dim=(0, 2, 3))
    if not upsample:  # unit variance per output channel (in expectation over the input)
        assert float((per_channel - 1).abs().max()) < 0.1
    else:  # x2 transposed conv + [1,3,3,1] blur (gain 4): a polyphase variance gain of about 0.6
        assert 0.4 < float(per_channel.mean()) < 0.8
    # demodulated output does not depend on the overall style scale of each sample
    scaled = modulated_conv2d(x, weight, styles * torch.tensor([[1.0], [10.0], [0.1], [3.0]], dtype=torch.float64),
                              demodulate=True, upsample=upsample, blur_kernel=blur, padding=1)
    torch.testing.assert_close(scaled, out, rtol=1e-5, atol=1e-5)  # up to eps=1e-8 in the rsqrt
    undemod = modulated_conv2d(x, weight, styles, demodulate=False, padding=1)
    assert float(undemod.std()) > 1.5  # styles ~ exp(N(0,1)) inflate the variance without demodulation


def test_modulated_conv_equals_per_sample_weights():
    torch.manual_seed(4)
    x = torch.randn(3, 8, 9, 9, dtype=torch.float64)
    weight = torch.randn(5, 8, 3, 3, dtype=torch.float64)
    styles = torch.randn(3, 8, dtype=torch.float64)
    out = modulated_conv2d(x, weight, styles, demodulate=True, padding=1)
    for n in range(3):
        wn = weight * styles[n].reshape(1, 8, 1, 1)
        wn = wn * torch.rsqrt(wn.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        ref = torch.nn.functional.conv2d(x[n:n + 1], wn, padding=1)
        torch.testing.assert_close(out[n:n + 1], ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_modulated_conv_low_precision_does_not_overflow(dtype):
    """Huge styles (1e4) overflow fp16 without the max-norm rescaling; with it the op matches fp64."""
    torch.manual_seed(5)
    x = torch.randn(2, 16, 8, 8)
    weight = torch.randn(16, 16, 3, 3) / 12.0
    styles = torch.randn(2, 16) * 1e4
    ref = modulated_conv2d(x.double(), weight.double(), styles.double(), demodulate=True, padding=1)
    out = modulated_conv2d(x.to(dtype), weight, styles, demodulate=True, padding=1)
    assert out.dtype == dtype and torch.isfinite(out).all()
    tol = 0.01 if dtype == torch.float16 else 0.05
    assert float((out.double() - ref).square().mean().sqrt()) < tol * float(ref.std())
    one = modulated_conv2d(x[:1].to(dtype), weight, styles[:1], demodulate=True, padding=1)  # folded weights
    assert torch.isfinite(one).all()
    assert float((one.double() - ref[:1]).square().mean().sqrt()) < tol * float(ref.std())


def test_assert_shape_message():
    with pytest.raises(ValueError, match=r"w: expected shape \(N, 18, 512\), got \(1, 512\)"):
        assert_shape(torch.zeros(1, 512), (None, 18, 512), "w")
    assert_shape(torch.zeros(3, 18, 512), (None, 18, 512), "w")
