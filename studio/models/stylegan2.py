"""StyleGAN2 generator (Karras et al., CVPR 2020) in the rosinality/stylegan2-pytorch weight layout.

The module tree (and therefore ``state_dict()`` keys, shapes and order) is identical to
rosinality's ``model.Generator`` so the public ``stylegan2-ffhq-config-f.pt`` ``g_ema`` dict loads
with ``strict=True``::

    style.{1..n_mlp}.weight/bias            mapping MLP (style.0 is PixelNorm, no weights)
    input.input                             (1, 512, 4, 4) learned constant
    conv1.conv.weight                       (1, Cout, Cin, 3, 3) modulated conv, + .modulation.weight/bias
    conv1.noise.weight, conv1.activate.bias noise strength (1,), bias of the fused leaky ReLU
    to_rgb1.bias, to_rgb1.conv.*            1x1 modulated conv to RGB, no demodulation
    convs.{2i}.conv.blur.kernel             (4, 4) FIR [1,3,3,1] x 4 of each upsampling conv
    to_rgbs.{i}.upsample.kernel             (4, 4) FIR of the RGB skip upsampler
    noises.noise_{j}                        (1, 1, r, r) fixed noise buffers

``latent_avg`` (the W mean, stored at the *top level* of the checkpoint, not in ``g_ema``) is a
non-persistent buffer: set it with :meth:`Generator.set_latent_avg` after loading.

Equalised learning rate: weights are stored N(0, 1) / lr_mul and multiplied at run time by
``lr_mul / sqrt(fan_in)``; biases by ``lr_mul``. Activations are ``leaky_relu(., 0.2) * sqrt(2)``.

Fast path: on CUDA, when autograd is off (rendering), layers at resolution >= ``fp16_min_res``
(default 128, i.e. the top 4 of a 1024 generator) run in float16 and all activations use
``channels_last``; styles, demodulation and the RGB skip stay in float32 (see
:mod:`studio.models.ops`). Force a mode with ``precision=`` ("fp32", "fp16", "bf16").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from studio.models.ops import (
    assert_shape,
    bias_leaky_relu,
    make_blur_kernel,
    modulated_conv2d,
    pixel_norm,
    upfirdn2d,
)

__all__ = ["Generator", "EqualLinear", "ModulatedConv2d", "StyledConv", "ToRGB", "channel_table"]

BLUR_TAPS = (1, 3, 3, 1)
INPUT_SPACES = ("w+", "w", "z")
NOISE_MODES = ("const", "random", "none")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def channel_table(channel_multiplier: int = 2, channel_max: int = 512) -> dict[int, int]:
    """Feature channels per resolution (rosinality ``Generator.channels``), capped at ``channel_max``."""
    cm = channel_multiplier
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm,
             256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}
    return {res: min(ch, channel_max) for res, ch in table.items()}


class PixelNorm(nn.Module):
    """Row-wise normalisation to unit mean square (first layer of the mapping network)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(x)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (keys ``weight`` (out, in), ``bias`` (out,)).

    ``y = x @ (W * lr_mul / sqrt(in)).T + b * lr_mul``; with ``activation="fused_lrelu"`` the bias is
    added before ``leaky_relu(0.2) * sqrt(2)``.
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: str | None = None) -> None:
        super().__init__()
        if activation not in (None, "fused_lrelu"):
            raise ValueError(f"EqualLinear activation: expected None or 'fused_lrelu', got {activation!r}")
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return bias_leaky_relu(nn.functional.linear(x, self.weight * self.scale), bias)
        return nn.functional.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        return (f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, "
                f"activation={self.activation}")


class FusedLeakyReLU(nn.Module):
    """Per-channel bias + leaky ReLU(0.2) * sqrt(2) (key ``bias`` (C,))."""

    def __init__(self, channel: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, x: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
        return bias_leaky_relu(x, self.bias, inplace=inplace)


class Blur(nn.Module):
    """FIR filter with padding (key ``kernel``: (4, 4) buffer, gain ``upsample_factor**2`` included)."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel(taps, gain=upsample_factor ** 2))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """x2 FIR upsampler of the RGB skip path (key ``kernel``: (4, 4) buffer, gain 4 included)."""

    def __init__(self, taps: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_blur_kernel(taps, gain=factor ** 2))
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Modulated convolution: keys ``weight`` (1, Cout, Cin, k, k), [``blur.kernel``], ``modulation.*``.

    ``forward(x (N, Cin, H, W), w (N, style_dim)) -> (N, Cout, H or 2H, W or 2W)``.
    The modulation is an :class:`EqualLinear` with bias initialised to 1.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: Sequence[float] = BLUR_TAPS) -> None:
        super().__init__()
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.kernel_size = kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1.0 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.modulation(w)
        return modulated_conv2d(
            x, self.weight[0] * self.scale, styles, demodulate=self.demodulate,
            upsample=self.upsample, blur_kernel=self.blur.kernel if self.upsample else None,
            blur_pad=self.blur.pad if self.upsample else (0, 0), padding=self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channel}, {self.out_channel}, {self.kernel_size}, "
                f"upsample={self.upsample}, demodulate={self.demodulate}")


class NoiseInjection(nn.Module):
    """``x + weight * noise`` with a scalar learned strength (key ``weight`` (1,))."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None, *, inplace: bool = False) -> torch.Tensor:
        if noise is None:
            return x
        scaled = self.weight.to(x.dtype) * noise.to(x.dtype)
        if inplace and not (torch.is_grad_enabled() and x.requires_grad) and scaled.shape[0] <= x.shape[0]:
            return x.add_(scaled)
        return x + scaled


class ConstantInput(nn.Module):
    """Learned 4x4 constant (key ``input`` (1, C, 4, 4)), repeated over the batch."""

    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv -> noise -> bias + leaky ReLU (keys ``conv.*``, ``noise.weight``, ``activate.bias``)."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[float] = BLUR_TAPS,
                 demodulate: bool = True) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim,
                                    demodulate=demodulate, upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        # the conv output is a fresh tensor: noise, bias and activation may update it in place
        return self.activate(self.noise(self.conv(x, w), noise, inplace=True), inplace=True)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) + bias, plus the upsampled previous RGB skip.

    Keys ``bias`` (1, 3, 1, 1), [``upsample.kernel``], ``conv.*``. The skip is accumulated in the
    parameter dtype (float32) whatever the activation dtype.
    """

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = BLUR_TAPS) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, w).to(self.bias.dtype) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class Generator(nn.Module):
    """StyleGAN2 generator, rosinality layout (config-f FFHQ: ``Generator()`` = 1024, 512, 8, 2).

    Args:
        size: output resolution, a power of two >= 8 (1024 for FFHQ config-f).
        style_dim: dimension of Z and W (512).
        n_mlp: number of mapping layers (8).
        channel_multiplier: 2 for config-f (channels at 64..1024 scale with it).
        lr_mlp: learning-rate multiplier of the mapping network (0.01).
        channel_max: keyword-only cap on feature channels (512 = upstream, the only value public
            checkpoints use); smaller values build cheap generators of the same layout for tests.

    Attributes:
        n_latent: number of W+ layers, ``2*log2(size) - 2`` (18 at 1024).
        num_noise: number of noise inputs, ``2*log2(size) - 3`` (17 at 1024).
        latent_avg: non-persistent ``(style_dim,)`` buffer or ``None`` (set from the checkpoint).
        precision: default for :meth:`forward`'s ``precision`` ("auto").
        fp16_min_res: with fp16/bf16, layers at this resolution and above use low precision.
        channels_last: ``None`` = channels_last on CUDA only; ``True``/``False`` to force.

    ``forward(latents, input_space=..., truncation=..., noise_mode=...) -> (N, 3, size, size)``
    float32 images, roughly in [-1, 1] (not clamped). Gradients flow to the latents.
    """

    def __init__(self, size: int = 1024, style_dim: int = 512, n_mlp: int = 8,
                 channel_multiplier: int = 2, lr_mlp: float = 0.01, *, channel_max: int = 512) -> None:
        super().__init__()
        log_size = int(round(math.log2(size))) if size > 0 else 0
        if size < 8 or 2 ** log_size != size or size > 1024:
            raise ValueError(f"Generator size: expected a power of two in [8, 1024], got {size}")
        if style_dim < 1 or n_mlp < 1 or channel_multiplier < 1 or channel_max < 1:
            raise ValueError(f"Generator: style_dim, n_mlp, channel_multiplier and channel_max must be >= 1, "
                             f"got {style_dim}, {n_mlp}, {channel_multiplier}, {channel_max}")
        self.size = size
        self.style_dim = style_dim
        self.n_mlp = n_mlp
        self.channel_multiplier = channel_multiplier
        self.lr_mlp = lr_mlp
        self.log_size = log_size
        self.channel_max = channel_max
        self.channels = channel_table(channel_multiplier, channel_max)

        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)])

        ch = self.channels
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        self.num_noise = (log_size - 2) * 2 + 1
        for j in range(self.num_noise):
            res = 2 ** ((j + 5) // 2)
            self.noises.register_buffer(f"noise_{j}", torch.randn(1, 1, res, res))
        in_ch = ch[4]
        for i in range(3, log_size + 1):
            out_ch = ch[2 ** i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch

        self.register_buffer("latent_avg", None, persistent=False)
        self.precision = "auto"
        self.fp16_min_res = 128
        self.channels_last: bool | None = None

    # ------------------------------------------------------------------ properties / helpers
    @property
    def n_latent(self) -> int:
        """Number of W+ layers: ``2*log2(size) - 2`` (18 at 1024)."""
        return self.log_size * 2 - 2

    @property
    def device(self) -> torch.device:
        return self.input.input.device

    @property
    def dtype(self) -> torch.dtype:
        return self.input.input.dtype

    def set_latent_avg(self, latent_avg: torch.Tensor | None) -> None:
        """Store the average W (checkpoint's top-level ``latent_avg``, shape (style_dim,) or (1, style_dim))."""
        if latent_avg is None:
            self.latent_avg = None
            return
        la = torch.as_tensor(latent_avg)
        if la.ndim == 2 and la.shape[0] == 1:
            la = la[0]
        assert_shape(la, (self.style_dim,), "latent_avg")
        self.latent_avg = la.detach().to(device=self.device, dtype=self.dtype).clone()

    def noise_shapes(self) -> list[tuple[int, int, int, int]]:
        """Shapes ``(1, 1, r, r)`` of the ``num_noise`` noise inputs, in layer order."""
        return [tuple(getattr(self.noises, f"noise_{j}").shape) for j in range(self.num_noise)]

    # ------------------------------------------------------------------ mapping / truncation
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """Z ``(N, style_dim)`` (standard normal) -> W ``(N, style_dim)`` through PixelNorm + the MLP."""
        assert_shape(z, (None, self.style_dim), "z")
        return self.style(z.to(self.dtype))

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, *, seed: int | None = None, chunk: int = 1024) -> torch.Tensor:
        """Mean of ``mapping(z)`` over ``n`` random z: ``(1, style_dim)`` (rosinality ``mean_latent``)."""
        if n < 1:
            raise ValueError(f"mean_latent: n must be >= 1, got {n}")
        gen = torch.Generator(device=self.device)
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(seed)
        total = torch.zeros(1, self.style_dim, dtype=torch.float64, device=self.device)
        done = 0
        while done < n:
            m = min(chunk, n - done)
            z = torch.randn(m, self.style_dim, generator=gen, device=self.device, dtype=self.dtype)
            total += self.style(z).to(torch.float64).sum(0, keepdim=True)
            done += m
        return (total / n).to(self.dtype)

    @staticmethod
    def truncate(w: torch.Tensor, truncation: float, latent_avg: torch.Tensor) -> torch.Tensor:
        """Truncation trick: ``latent_avg + truncation * (w - latent_avg)``.

        ``w``: ``(N, D)`` or ``(N, L, D)``; ``latent_avg``: ``(D,)``, ``(1, D)``, ``(L, D)`` or
        ``(1, L, D)`` (broadcast). ``truncation=1`` returns ``w`` unchanged, ``0`` the average.
        """
        if latent_avg is None:
            raise ValueError("truncation < 1 needs a truncation_latent (or Generator.latent_avg): "
                             "load the checkpoint's latent_avg or use Generator.mean_latent()")
        if w.ndim not in (2, 3):
            raise ValueError(f"truncate: expected w of shape (N, D) or (N, L, D), got {tuple(w.shape)}")
        la = latent_avg.to(device=w.device, dtype=w.dtype)
        try:
            ok = la.ndim <= w.ndim and torch.broadcast_shapes(la.shape, w.shape) == w.shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"truncate: latent_avg of shape {tuple(la.shape)} does not broadcast "
                             f"to w of shape {tuple(w.shape)}")
        if truncation == 1:
            return w
        return la + truncation * (w - la)

    def to_wplus(self, latents: torch.Tensor, *, input_space: str = "w+", truncation: float = 1.0,
                 truncation_latent: torch.Tensor | None = None) -> torch.Tensor:
        """Any input space -> truncated W+ ``(N, n_latent, style_dim)`` in the parameter dtype.

        ``"z"``: ``(N, style_dim)`` through :meth:`mapping`; ``"w"``: ``(N, style_dim)`` broadcast
        to every layer; ``"w+"``: ``(N, n_latent, style_dim)``.
        """
        if input_space not in INPUT_SPACES:
            raise ValueError(f"input_space: expected one of {INPUT_SPACES}, got {input_space!r}")
        if not isinstance(latents, torch.Tensor) or not latents.is_floating_point():
            raise ValueError(f"latents: expected a float tensor, got "
                             f"{getattr(latents, 'dtype', type(latents).__name__)}")
        if latents.device != self.device:
            raise ValueError(f"latents are on {latents.device} but the generator is on {self.device}")
        if input_space == "w+":
            assert_shape(latents, (None, self.n_latent, self.style_dim), "latents (w+)")
            w = latents.to(self.dtype)
        else:
            assert_shape(latents, (None, self.style_dim), f"latents ({input_space})")
            w = self.mapping(latents) if input_space == "z" else latents.to(self.dtype)
        if truncation != 1:
            avg = truncation_latent if truncation_latent is not None else self.latent_avg
            w = self.truncate(w, truncation, avg)
        if w.ndim == 2:
            w = w.unsqueeze(1).expand(-1, self.n_latent, -1)
        return w

    @staticmethod
    def style_mix(w1: torch.Tensor, w2: torch.Tensor, inject_index: int, n_latent: int) -> torch.Tensor:
        """W+ ``(N, n_latent, D)`` taking layers ``< inject_index`` from ``w1`` and the rest from ``w2``
        (both ``(N, D)``), as rosinality's two-style ``forward`` does."""
        if not 0 <= inject_index <= n_latent:
            raise ValueError(f"inject_index: expected 0..{n_latent}, got {inject_index}")
        if w1.shape != w2.shape or w1.ndim != 2:
            raise ValueError(f"style_mix: expected two (N, D) tensors, "
                             f"got {tuple(w1.shape)} and {tuple(w2.shape)}")
        return torch.cat([w1.unsqueeze(1).expand(-1, inject_index, -1),
                          w2.unsqueeze(1).expand(-1, n_latent - inject_index, -1)], dim=1)

    # ------------------------------------------------------------------ synthesis
    def _plan(self, device: torch.device, precision: str | None) -> tuple[torch.dtype | None, bool]:
        precision = precision or self.precision
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
        if precision == "auto":
            precision = "fp16" if device.type == "cuda" and not torch.is_grad_enabled() else "fp32"
        low = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
        if low is not None and self.dtype == torch.float64:
            low = None
        cl = self.channels_last if self.channels_last is not None else device.type == "cuda"
        return low, bool(cl)

    def _noises(self, batch: int, noise_mode: str, noise: Sequence[torch.Tensor] | None) -> list:
        shapes = self.noise_shapes()
        if noise is not None:
            if len(noise) != self.num_noise:
                raise ValueError(f"noise: expected a list of {self.num_noise} tensors, got {len(noise)}")
            out = []
            for j, (t, shp) in enumerate(zip(noise, shapes)):
                if t is not None and (t.ndim != 4 or t.shape[0] not in (1, batch)
                                      or tuple(t.shape[1:]) != shp[1:]):
                    raise ValueError(f"noise[{j}]: expected shape (1 or {batch}, 1, {shp[2]}, {shp[3]}), "
                                     f"got {tuple(t.shape)}")
                out.append(t)
            return out
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode: expected one of {NOISE_MODES}, got {noise_mode!r}")
        if noise_mode == "none":
            return [None] * self.num_noise
        if noise_mode == "const":
            return [getattr(self.noises, f"noise_{j}") for j in range(self.num_noise)]
        return [torch.randn(batch, 1, s[2], s[3], device=self.device, dtype=self.dtype) for s in shapes]

    def synthesis(self, wplus: torch.Tensor, *, noise_mode: str = "const",
                  noise: Sequence[torch.Tensor] | None = None, precision: str | None = None) -> torch.Tensor:
        """W+ ``(N, n_latent, style_dim)`` -> images ``(N, 3, size, size)`` (float32, or float64 for a
        float64 module). Layer ``l`` of W+ modulates, in order: conv1, to_rgb1, then per resolution
        (upsampling conv, conv, to_rgb) -- rosinality's indexing."""
        assert_shape(wplus, (None, self.n_latent, self.style_dim), "wplus")
        w = wplus.to(self.dtype)
        n = w.shape[0]
        low, cl = self._plan(w.device, precision)
        fmt = torch.channels_last if cl else torch.contiguous_format
        noises = self._noises(n, noise_mode, noise)

        def act_dtype(res: int) -> torch.dtype:
            return low if (low is not None and res >= self.fp16_min_res) else self.dtype

        x = self.input(n).to(act_dtype(4)).contiguous(memory_format=fmt)
        x = self.conv1(x, w[:, 0], noise=noises[0])
        skip = self.to_rgb1(x, w[:, 1])
        li = 1
        for k, to_rgb in enumerate(self.to_rgbs):
            res = 2 ** (k + 3)
            x = x.to(act_dtype(res))
            x = self.convs[2 * k](x, w[:, li], noise=noises[li])
            x = self.convs[2 * k + 1](x, w[:, li + 1], noise=noises[li + 1])
            skip = to_rgb(x, w[:, li + 2], skip)
            li += 2
        out_dtype = torch.float64 if self.dtype == torch.float64 else torch.float32
        return skip.to(out_dtype).contiguous()

    def forward(self, latents: torch.Tensor, *, input_space: str = "w+", truncation: float = 1.0,
                truncation_latent: torch.Tensor | None = None, noise_mode: str = "const",
                noise: Sequence[torch.Tensor] | None = None, precision: str | None = None) -> torch.Tensor:
        """Render images.

        Args:
            latents: ``(N, n_latent, style_dim)`` for ``"w+"``, ``(N, style_dim)`` for ``"w"``/``"z"``;
                float, on the generator's device.
            input_space: ``"w+"`` (default), ``"w"`` (one W for all layers) or ``"z"`` (mapped).
            truncation: ``psi``; ``< 1`` moves W towards ``truncation_latent`` (default ``latent_avg``).
            noise_mode: ``"const"`` (the stored ``noises.*`` buffers: deterministic), ``"random"``
                (fresh N(0,1) per call), ``"none"`` (no noise injected).
            noise: optional explicit list of ``num_noise`` tensors ``(1 or N, 1, r, r)`` (overrides
                ``noise_mode``; ``None`` entries inject nothing).
            precision: ``"auto"`` (fp16 on CUDA when autograd is off, else fp32), ``"fp32"``,
                ``"fp16"``, ``"bf16"``; ``None`` uses :attr:`precision`.

        Returns:
            ``(N, 3, size, size)`` float32 RGB, roughly in [-1, 1] (not clamped).
        """
        w = self.to_wplus(latents, input_space=input_space, truncation=truncation,
                          truncation_latent=truncation_latent)
        return self.synthesis(w, noise_mode=noise_mode, noise=noise, precision=precision)
