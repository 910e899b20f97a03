"""Image -> W+ encoders: pSp ``GradualStyleEncoder`` and e4e ``Encoder4Editing`` (IR-SE50 backbone).

References: Richardson et al., "Encoding in Style: a StyleGAN Encoder for Image-to-Image
Translation" (pSp, CVPR 2021; eladrich/pixel2style2pixel ``models/encoders/psp_encoders.py``,
``helpers.py``) and Tov et al., "Designing an Encoder for StyleGAN Image Manipulation" (e4e,
SIGGRAPH 2021; omertov/encoder4editing). The module trees reproduce the upstream ``state_dict``
layout, so the ``encoder.*`` entries of ``psp_ffhq_encode.pt`` / ``e4e_ffhq_encode.pt`` (prefix
stripped) load with ``strict=True``::

    input_layer.{0: conv 3x3, 1: BatchNorm, 2: PReLU}
    body.{u}.shortcut_layer.{0: conv 1x1, 1: BatchNorm}     (units whose width changes; else MaxPool)
    body.{u}.res_layer.{0: BN, 1: conv, 2: PReLU, 3: conv (stride), 4: BN, 5: SE(fc1, fc2)}
    styles.{i}.convs.{0,2,4,..}.weight/bias, styles.{i}.linear.weight/bias   (GradualStyleBlock)
    latlayer1 (256 -> 512, 1x1), latlayer2 (128 -> 512, 1x1)

Both encoders take aligned faces ``(N, 3, H, W)`` in [-1, 1] (256x256 for the public weights; any
16 <= H, W <= 256 works) and return ``(N, n_styles, 512)`` codes, which the public checkpoints
train as offsets from ``latent_avg`` (``start_from_latent_avg``): use :meth:`encode` with the
checkpoint's ``latent_avg`` to get absolute W+.

Feature taps: upstream reads the FPN features after body units 6, 20 and 23, i.e. the ends of
stages 2, 3 and 4 of IR-SE50; here they are taken at the stage ends for any ``blocks`` layout
(identical for 50 layers; upstream's fixed indices would not fit the 100/152-layer bodies).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from studio.models.ops import assert_shape
from studio.models.stylegan2 import EqualLinear

__all__ = ["GradualStyleEncoder", "Encoder4Editing", "Stage", "get_blocks"]

COARSE_IND = 3
MIDDLE_IND = 7
MIN_SIDE, MAX_SIDE = 16, 256


class Stage(NamedTuple):
    """One backbone stage: ``num_units`` IR(-SE) units, the first with stride 2 (``in_channel -> depth``)."""

    in_channel: int
    depth: int
    num_units: int


def get_blocks(num_layers: int) -> list[Stage]:
    """The four IR-ResNet stages of ArcFace-style backbones with 50, 100 or 152 layers (pSp ``get_blocks``)."""
    units = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
    if num_layers not in units:
        raise ValueError(f"num_layers: expected one of 50, 100, 152, got {num_layers}")
    u = units[num_layers]
    return [Stage(64, 64, u[0]), Stage(64, 128, u[1]), Stage(128, 256, u[2]), Stage(256, 512, u[3])]


class SEModule(nn.Module):
    """Squeeze-and-excitation gate (keys ``fc1.weight`` (C/r, C, 1, 1), ``fc2.weight`` (C, C/r, 1, 1))."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIR(nn.Module):
    """Improved-residual unit (ArcFace IR / IR-SE): ``res_layer(x) + shortcut_layer(x)``.

    The shortcut is ``MaxPool2d(1, stride)`` (pure subsampling, no weights) when the width does not
    change, else a strided 1x1 conv + BatchNorm. ``se=True`` appends an SE gate (IR-SE).
    """

    def __init__(self, in_channel: int, depth: int, stride: int, se: bool = True) -> None:
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, (1, 1), stride, bias=False), nn.BatchNorm2d(depth))
        layers = [
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class GradualStyleBlock(nn.Module):
    """log2(spatial) stride-2 3x3 convs with LeakyReLU(0.01), then an :class:`EqualLinear`.

    ``(N, in_c, h, w) -> (N, out_c)``; needs ``h, w <= spatial`` so the map ends at 1x1.
    """

    def __init__(self, in_c: int, out_c: int, spatial: int) -> None:
        super().__init__()
        self.out_c = out_c
        self.spatial = spatial
        num_pools = int(round(math.log2(spatial)))
        mods: list[nn.Module] = [nn.Conv2d(in_c, out_c, kernel_size=3, stride=2, padding=1), nn.LeakyReLU()]
        for _ in range(num_pools - 1):
            mods += [nn.Conv2d(out_c, out_c, kernel_size=3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*mods)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        if x.shape[-2:] != (1, 1):
            raise ValueError(f"GradualStyleBlock: feature map ends at {tuple(x.shape[-2:])}, expected (1, 1): "
                             f"the encoder input is larger than {MAX_SIDE}x{MAX_SIDE}")
        return self.linear(x.flatten(1))


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FPN merge: bilinearly resize ``x`` (align_corners=True) to ``y``'s size and add ``y``."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class _FPNStyleBackbone(nn.Module):
    """Shared IR(-SE) body + FPN + per-layer :class:`GradualStyleBlock` heads (pSp/e4e layout).

    Submodule registration order (input_layer, body, styles, latlayer1, latlayer2) fixes the
    ``state_dict`` key order to upstream's.
    """

    def __init__(self, num_layers: int, mode: str, n_styles: int, input_nc: int,
                 blocks: Sequence[Sequence[int]] | None, style_dim: int) -> None:
        super().__init__()
        if mode not in ("ir", "ir_se"):
            raise ValueError(f"mode: expected 'ir' or 'ir_se', got {mode!r}")
        if n_styles < 1:
            raise ValueError(f"n_styles: expected >= 1, got {n_styles}")
        stages = get_blocks(num_layers) if blocks is None else [Stage(*map(int, b)) for b in blocks]
        if len(stages) != 4 or any(s.num_units < 1 for s in stages):
            raise ValueError(f"blocks: expected 4 stages of (in_channel, depth, num_units >= 1), got {blocks!r}")
        for a, b in zip(stages, stages[1:]):
            if b.in_channel != a.depth:
                raise ValueError(f"blocks: stage input {b.in_channel} does not follow previous depth {a.depth}")
        if mode == "ir_se" and min(s.depth for s in stages) < 16:
            raise ValueError("blocks: IR-SE stages need depth >= 16 (SE reduction 16)")
        self.stages = stages
        self.mode = mode
        self.n_styles = n_styles
        self.style_count = n_styles
        self.style_dim = style_dim
        self.input_nc = input_nc
        self.coarse_ind = COARSE_IND
        self.middle_ind = MIDDLE_IND
        c1_ch, c2_ch, c3_ch = stages[1].depth, stages[2].depth, stages[3].depth
        self.input_layer = nn.Sequential(
            nn.Conv2d(input_nc, stages[0].in_channel, (3, 3), 1, 1, bias=False),
            nn.BatchNorm2d(stages[0].in_channel), nn.PReLU(stages[0].in_channel))
        units = []
        ends = []
        for st in stages:
            for u in range(st.num_units):
                units.append(BottleneckIR(st.in_channel if u == 0 else st.depth, st.depth,
                                          2 if u == 0 else 1, se=(mode == "ir_se")))
            ends.append(len(units) - 1)
        self.body = nn.Sequential(*units)
        self._taps = (ends[1], ends[2], ends[3])  # c1, c2, c3 (6, 20, 23 for IR-SE50)
        self.styles = nn.ModuleList()
        for i in range(n_styles):
            spatial = 16 if i < COARSE_IND else (32 if i < MIDDLE_IND else 64)
            self.styles.append(GradualStyleBlock(c3_ch, style_dim, spatial))
        self.latlayer1 = nn.Conv2d(c2_ch, c3_ch, kernel_size=1, stride=1, padding=0)
        self.latlayer2 = nn.Conv2d(c1_ch, c3_ch, kernel_size=1, stride=1, padding=0)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        assert_shape(x, (None, self.input_nc, None, None), "encoder images")
        h, w = x.shape[-2:]
        if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
            raise ValueError(f"encoder images: expected {MIN_SIDE}..{MAX_SIDE} pixels per side "
                             f"(256x256 for the public weights), got {h}x{w}")
        x = self.input_layer(x.to(self.input_layer[0].weight.dtype))
        feats = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self._taps:
                feats.append(x)
        return feats[0], feats[1], feats[2]

    def encode(self, images: torch.Tensor, latent_avg: torch.Tensor | None = None) -> torch.Tensor:
        """Absolute W+ ``(N, n_styles, style_dim)``: ``forward(images) + latent_avg`` (pSp/e4e with
        ``start_from_latent_avg``).

        ``images``: ``(N, input_nc, H, W)`` float in [-1, 1] (checked loosely: |x| <= 1.5).
        ``latent_avg``: ``(D,)``, ``(1, D)``, ``(n_styles, D)`` or ``(1, n_styles, D)``; ``None``
        returns the raw codes.
        """
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            raise ValueError(f"encoder images: expected a float tensor, got "
                             f"{getattr(images, 'dtype', type(images).__name__)}")
        if images.numel() and float(images.detach().abs().amax()) > 1.5:
            raise ValueError(f"encoder images: expected values in [-1, 1], got max |x| = "
                             f"{float(images.detach().abs().amax()):.3g} (convert uint8 with x/127.5 - 1)")
        codes = self(images)
        if latent_avg is None:
            return codes
        la = latent_avg.to(device=codes.device, dtype=codes.dtype)
        if la.ndim == 3 and la.shape[0] == 1:
            la = la[0]
        if la.ndim == 2 and la.shape[0] == 1:
            la = la[0]
        if not (la.shape == (self.style_dim,) or la.shape == (self.n_styles, self.style_dim)):
            raise ValueError(f"latent_avg: expected shape ({self.style_dim},) or "
                             f"({self.n_styles}, {self.style_dim}), got {tuple(latent_avg.shape)}")
        return codes + la


class GradualStyleEncoder(_FPNStyleBackbone):
    """pSp encoder: every W+ layer from its own head on the coarse (c3), middle (c3+c2) or fine
    (+c1) FPN level.

    Args:
        num_layers: IR backbone depth (50, 100, 152); ignored when ``blocks`` is given.
        mode: ``"ir_se"`` (public weights) or ``"ir"``.
        n_styles: number of W+ layers produced (18 for a 1024 generator).
        input_nc: input channels (3).
        blocks: optional 4 stages ``(in_channel, depth, num_units)`` to build a smaller encoder of
            the same layout family (tests); the FPN width is the last stage's depth.
        style_dim: width of each code (512).

    ``forward(images (N, input_nc, H, W) in [-1, 1]) -> (N, n_styles, style_dim)`` raw codes.
    """

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", n_styles: int = 18, input_nc: int = 3,
                 *, blocks: Sequence[Sequence[int]] | None = None, style_dim: int = 512) -> None:
        super().__init__(num_layers, mode, n_styles, input_nc, blocks, style_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self._features(images)
        latents = [self.styles[j](c3) for j in range(min(COARSE_IND, self.n_styles))]
        if self.n_styles > COARSE_IND:
            p2 = _upsample_add(c3, self.latlayer1(c2))
            latents += [self.styles[j](p2) for j in range(COARSE_IND, min(MIDDLE_IND, self.n_styles))]
            if self.n_styles > MIDDLE_IND:
                p1 = _upsample_add(p2, self.latlayer2(c1))
                latents += [self.styles[j](p1) for j in range(MIDDLE_IND, self.n_styles)]
        return torch.stack(latents, dim=1)


class Encoder4Editing(_FPNStyleBackbone):
    """e4e encoder: one base code ``w0`` (head 0 on c3) repeated to all layers, plus per-layer
    deltas from heads 1..n_styles-1 (coarse/middle/fine FPN levels as in pSp).

    Same arguments as :class:`GradualStyleEncoder` (e4e has ``input_nc`` fixed to 3).
    ``progressive_stage``: number of delta layers applied (``n_styles`` = all, upstream's
    ``ProgressiveStage.Inference``; 0 = W only).

    ``forward(images (N, 3, H, W) in [-1, 1]) -> (N, n_styles, style_dim)`` raw codes.
    """

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", n_styles: int = 18,
                 *, blocks: Sequence[Sequence[int]] | None = None, style_dim: int = 512) -> None:
        super().__init__(num_layers, mode, n_styles, 3, blocks, style_dim)
        self.progressive_stage = n_styles

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self._features(images)
        w0 = self.styles[0](c3)
        codes = [w0]
        features = c3
        p2 = None
        last = min(self.progressive_stage + 1, self.n_styles)
        for i in range(1, self.n_styles):
            if i >= last:
                codes.append(w0)
                continue
            if i == COARSE_IND:
                p2 = _upsample_add(c3, self.latlayer1(c2))
                features = p2
            elif i == MIDDLE_IND:
                features = _upsample_add(p2, self.latlayer2(c1))
            codes.append(w0 + self.styles[i](features))
        return torch.stack(codes, dim=1)
