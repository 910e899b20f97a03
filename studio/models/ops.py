"""Low-level StyleGAN2 operations in pure PyTorch (CPU and CUDA, any float dtype).

These carry the *semantics* of the fused CUDA ops of StyleGAN2 (Karras et al., "Analyzing and
Improving the Image Quality of StyleGAN", CVPR 2020) as laid out in rosinality/stylegan2-pytorch
(``op/upfirdn2d.py``, ``op/fused_act.py``, ``model.py``), written with stock torch kernels:

- :func:`upfirdn2d`: upsample by zero insertion, pad (negative pads crop), FIR filter (a true
  convolution, i.e. the kernel is flipped), downsample by striding. Upsampling runs as a grouped
  ``conv_transpose2d`` (no zero-filled intermediate), the rest as a grouped ``conv2d``.
- :func:`bias_leaky_relu`: ``leaky_relu(x + bias, 0.2) * sqrt(2)`` (rosinality ``fused_leaky_relu``).
- :func:`modulated_conv2d`: style-modulated convolution with optional demodulation, computed in the
  "non-fused" form ``conv(x * s, W) * d`` which is exactly ``conv(x, W * s * d)`` per sample but runs
  as one ordinary (batched, cuDNN-friendly) convolution instead of a grouped one.

Low precision: when the activations ``x`` are float16/bfloat16, styles, demodulation coefficients
and weights are computed in the parameter dtype (float32) and only cast for the convolution; with
demodulation the weights and styles are first rescaled by their max-norm (the StyleGAN2-ADA trick,
exact in real arithmetic because demodulation cancels any per-sample / per-output-channel scale)
so nothing overflows float16.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "LOW_PRECISION",
    "assert_shape",
    "bias_leaky_relu",
    "make_blur_kernel",
    "modulated_conv2d",
    "pixel_norm",
    "upfirdn2d",
]

#: activation dtypes treated as "low precision" by :func:`modulated_conv2d`.
LOW_PRECISION = (torch.float16, torch.bfloat16)

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def assert_shape(tensor: torch.Tensor, expected: Sequence[int | None], name: str = "tensor") -> None:
    """Raise ``ValueError`` unless ``tensor.shape`` matches ``expected`` (``None`` = any size).

    The message names the tensor and gives expected vs. got, e.g.
    ``latents: expected shape (N, 18, 512), got (2, 17, 512)``.
    """
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
    shape = tuple(tensor.shape)
    want = "(" + ", ".join("N" if (i == 0 and e is None) else ("*" if e is None else str(e))
                           for i, e in enumerate(expected)) + ("," if len(expected) == 1 else "") + ")"
    if len(shape) != len(expected) or any(e is not None and int(e) != s for e, s in zip(expected, shape)):
        raise ValueError(f"{name}: expected shape {want}, got {shape}")


def make_blur_kernel(taps: Sequence[float] = (1, 3, 3, 1), gain: float = 1.0) -> torch.Tensor:
    """2-D FIR kernel (float32, shape ``(len(taps), len(taps))``) = outer(taps, taps) / sum * gain.

    ``gain = factor**2`` for upsampling keeps the mean intensity (rosinality ``make_kernel``).
    """
    k = torch.as_tensor(list(taps), dtype=torch.float32)
    if k.ndim != 1 or k.numel() < 1:
        raise ValueError(f"blur taps: expected a non-empty 1-D sequence, got {list(taps)!r}")
    k2 = k[None, :] * k[:, None]
    return k2 / k2.sum() * gain


def _pad4(pad: int | Sequence[int]) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1) from an int, a (p0, p1) pair applied to both axes, or 4 values."""
    if isinstance(pad, int):
        return pad, pad, pad, pad
    pad = [int(p) for p in pad]
    if len(pad) == 2:
        return pad[0], pad[1], pad[0], pad[1]
    if len(pad) == 4:
        return pad[0], pad[1], pad[2], pad[3]
    raise ValueError(f"pad: expected an int, 2 or 4 values, got {pad!r}")


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, *, up: int = 1, down: int = 1,
              pad: int | Sequence[int] = 0) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images (rosinality ``upfirdn2d``).

    Args:
        x: ``(N, C, H, W)`` float tensor (any float dtype, any memory format).
        kernel: ``(kh, kw)`` FIR filter; applied as a true convolution (flipped), gain included.
        up: integer upsampling factor (zero insertion: sample ``i`` lands at ``i*up``).
        down: integer downsampling factor (keep every ``down``-th output sample).
        pad: ``p`` or ``(p0, p1)`` for both axes or ``(x0, x1, y0, y1)``; applied after upsampling,
            negative values crop.

    Returns:
        ``(N, C, (H*up + y0 + y1 - kh) // down + 1, (W*up + x0 + x1 - kw) // down + 1)``, dtype of ``x``.
    """
    assert_shape(x, (None, None, None, None), "upfirdn2d input")
    if kernel.ndim != 2:
        raise ValueError(f"upfirdn2d kernel: expected shape (kh, kw), got {tuple(kernel.shape)}")
    if up < 1 or down < 1:
        raise ValueError(f"upfirdn2d: up and down must be >= 1, got up={up}, down={down}")
    px0, px1, py0, py1 = _pad4(pad)
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    k = kernel.to(device=x.device, dtype=x.dtype)
    if up == 1:
        x = F.pad(x, [px0, px1, py0, py1])
        weight = torch.flip(k, [0, 1])[None, None].repeat(c, 1, 1, 1)
        return F.conv2d(x, weight, stride=down, groups=c)
    # conv_transpose2d(x, k, stride=up)[m] = sum_i x[i] k[m - i*up]; the zero-inserted, padded,
    # flipped-kernel convolution equals it shifted by (kh-1-p0) and cut to length H*up + p0 + p1 - kh + 1.
    weight = k[None, None].repeat(c, 1, 1, 1)
    y = F.conv_transpose2d(x, weight, stride=up, groups=c)
    y = F.pad(y, [px0 - (kw - 1), px1 + up - kw, py0 - (kh - 1), py1 + up - kh])
    if down > 1:
        y = y[:, :, ::down, ::down]
    return y


def bias_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, *,
                    negative_slope: float = LRELU_SLOPE, gain: float = LRELU_GAIN,
                    inplace: bool = False) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * gain`` with ``bias`` along dim 1 (rosinality ``fused_leaky_relu``).

    ``x``: ``(N, C, ...)``; ``bias``: ``(C,)`` (cast to ``x``'s dtype); output like ``x``.
    ``inplace=True`` may overwrite ``x`` (only when autograd is not recording it): pass it for
    fresh intermediates only.
    """
    if bias is not None:
        if bias.ndim != 1 or x.ndim < 2 or bias.shape[0] != x.shape[1]:
            raise ValueError(f"bias_leaky_relu: bias of shape {tuple(bias.shape)} does not match "
                             f"input channels of shape {tuple(x.shape)}")
        b = bias.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
        x = x.add_(b) if inplace and _may_write(x) else x + b
    if inplace and _may_write(x):
        return F.leaky_relu_(x, negative_slope).mul_(gain)
    return F.leaky_relu(x, negative_slope) * gain


def _may_write(x: torch.Tensor) -> bool:
    """In-place updates of a fresh intermediate are safe when autograd is not recording it."""
    return not (torch.is_grad_enabled() and x.requires_grad)


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise each row of ``(N, D)`` to unit mean square: ``x / sqrt(mean(x**2) + eps)``."""
    return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + eps)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *,
                     demodulate: bool = True, upsample: bool = False,
                     blur_kernel: torch.Tensor | None = None, blur_pad: tuple[int, int] = (1, 1),
                     padding: int = 0, eps: float = 1e-8) -> torch.Tensor:
    """Style-modulated convolution (StyleGAN2 Eq. 1-3), per-sample styles, optional x2 upsampling.

    Args:
        x: ``(N, Cin, H, W)`` activations, any float dtype / memory format (sets the compute dtype).
        weight: ``(Cout, Cin, k, k)`` equalised-lr weight, *already multiplied by its scale*
            ``1/sqrt(Cin*k*k)``; parameter dtype (float32 or float64).
        styles: ``(N, Cin)`` modulation coefficients ``s``, parameter dtype.
        demodulate: divide every output channel by ``sqrt(sum_{i,k} (W[o,i,k] s[n,i])^2 + eps)``.
        upsample: x2 transposed convolution (stride 2, no padding) followed by the FIR
            ``blur_kernel`` with ``blur_pad`` (rosinality ``ModulatedConv2d(upsample=True)``).
        padding: zero padding of the plain (non-upsampling) convolution.

    Returns:
        ``(N, Cout, H', W')`` in ``x``'s dtype; ``H' = H`` (padding k//2) or ``2H`` (upsample).

    With ``N == 1`` the styles and demodulation are folded into the weights (one convolution, no
    extra passes over the activations); otherwise ``conv(x * s, W) * d`` (one batched convolution).
    """
    n, cin = x.shape[0], x.shape[1]
    assert_shape(weight, (None, cin, None, None), "modulated_conv2d weight")
    assert_shape(styles, (n, cin), "modulated_conv2d styles")
    act_dtype = x.dtype
    w = weight
    s = styles
    fold = n == 1  # one sample: fold s and d into the weights (no passes over the activations)
    if demodulate and not fold and act_dtype in LOW_PRECISION and w.dtype not in LOW_PRECISION:
        # Exact under demodulation: rescale per output channel and per sample so |W|,|s| <= 1 (ADA).
        fan_in = w[0].numel()
        w = w * (1.0 / math.sqrt(fan_in) / w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-30))
        s = s / s.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
    dcoefs = None
    if demodulate:
        dcoefs = torch.rsqrt(torch.mm(s * s, w.square().sum(dim=(2, 3)).t()) + eps)  # (N, Cout)
    if fold:
        w = w * s.reshape(1, cin, 1, 1)
        if dcoefs is not None:
            w = w * dcoefs.reshape(-1, 1, 1, 1)
            dcoefs = None
    else:
        x = x * s.to(act_dtype).reshape(n, cin, 1, 1)
    wc = w.to(act_dtype)
    if upsample:
        if blur_kernel is None:
            raise ValueError("modulated_conv2d: upsample=True needs a blur_kernel")
        x = F.conv_transpose2d(x, wc.transpose(0, 1), stride=2)
        x = upfirdn2d(x, blur_kernel, pad=blur_pad)
    else:
        x = F.conv2d(x, wc, padding=padding)
    if dcoefs is not None:
        d = dcoefs.to(act_dtype).reshape(n, -1, 1, 1)
        x = x.mul_(d) if _may_write(x) else x * d
    return x
