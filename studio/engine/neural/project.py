"""Optimisation-based inversion into W / W+ (the projector PTI uses, after NVlabs' StyleGAN2 projector).

Minimise LPIPS(G(w, n), x) + l2_weight * MSE + noise_weight * R(n) over the latent w (and the noise maps n,
when the generator exposes them), starting from the mean latent (or an encoder's output), with Adam, a
learning-rate ramp-up/cosine ramp-down and a decaying latent-noise exploration term; R is the multi-scale
noise autocorrelation regulariser (Karras et al. 2020, appendix). Defaults: PTI's W projection, 450 steps
at lr 5e-3 (Roich et al. 2021).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from studio.core.errors import ConfigError
from studio.core.events import CancelToken, Job, ProgressMonitor


@dataclass(frozen=True)
class ProjectionConfig:
    """Projection hyper-parameters (PTI's defaults for W)."""

    steps: int = 450
    lr: float = 5e-3
    space: str = "w"  # "w" (one code broadcast to all layers, PTI) or "w+" (one per layer)
    l2_weight: float = 1.0
    noise_weight: float = 1e5
    initial_noise_factor: float = 0.05
    noise_ramp_length: float = 0.75
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    lpips_size: int = 256  # images are area-downsampled to this before LPIPS, as in the NVlabs projector
    mean_latent_samples: int = 10000

    def validate(self) -> None:
        if self.space not in ("w", "w+"):
            raise ConfigError(f"unknown latent space {self.space!r}", "use 'w' or 'w+'")
        if self.steps < 1 or self.lr <= 0:
            raise ConfigError(f"invalid projection steps/lr {self.steps}/{self.lr}", "use steps >= 1 and lr > 0")


@dataclass
class ProjectionResult:
    """The projected code and the loss history.

    Attributes:
        w_plus: (1, n_latent, style_dim) float32 W+ code (a W projection is broadcast to all layers).
        noises: the optimised per-layer noise maps, (1, 1, r, r) each (pass as ``noise=`` to the generator).
        lpips, l2: per-step values of the two image losses (for monitoring).
    """

    w_plus: torch.Tensor
    noises: list[torch.Tensor] = field(default_factory=list)
    lpips: list[float] = field(default_factory=list)
    l2: list[float] = field(default_factory=list)


def noise_regularization(noises: list[torch.Tensor]) -> torch.Tensor:
    """Multi-scale autocorrelation penalty that keeps noise maps white (NVlabs projector)."""
    loss = 0.0
    for n in noises:
        n = n[None, None] if n.ndim == 2 else n
        while True:
            loss = loss + (n * torch.roll(n, shifts=1, dims=3)).mean() ** 2
            loss = loss + (n * torch.roll(n, shifts=1, dims=2)).mean() ** 2
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return loss


def _resize_for_lpips(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] > size:
        return F.adaptive_avg_pool2d(x, (size, size))
    return x


def project(generator: torch.nn.Module, target: torch.Tensor, lpips_model: torch.nn.Module, *,
            config: ProjectionConfig = ProjectionConfig(), init: torch.Tensor | None = None,
            latent_avg: torch.Tensor | None = None, cancel: CancelToken | None = None,
            monitor: ProgressMonitor | None = None, seed: int = 0) -> Job[ProjectionResult]:
    """Invert ``target`` into the generator's latent space.

    Args:
        generator: a StyleGAN2 ``Generator`` (``forward(latents, input_space=..., noise_mode="const")``).
        target: (1, 3, S, S) float in [-1, 1] at the generator's resolution (the FFHQ-aligned face).
        lpips_model: an LPIPS module taking two (N, 3, H, W) images in [-1, 1].
        config: hyper-parameters. init: (1, n_latent, C) or (1, C) starting code (e.g. from an encoder);
            default the mean latent (``latent_avg`` if given, else the mean of mapped random z).
        cancel: checked every step. monitor: progress range. seed: exploration-noise seed.

    Yields Progress every few steps; returns the :class:`ProjectionResult`.

    Raises:
        ConfigError: bad config or a target of the wrong size.
    """
    config.validate()
    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    device = target.device
    size = getattr(generator, "size", target.shape[-1])
    if target.ndim != 4 or target.shape[0] != 1 or target.shape[1] != 3 or target.shape[-1] != size:
        raise ConfigError(f"projection target must be (1, 3, {size}, {size}), got {tuple(target.shape)}",
                          "align the face to the generator's resolution first")
    generator.eval().requires_grad_(False)
    n_latent = generator.n_latent
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        if latent_avg is not None:
            mean_w = latent_avg.reshape(1, -1).to(device)
            w_std = 1.0
        else:
            z = torch.randn(config.mean_latent_samples, generator.style_dim, generator=gen).to(device)
            ws = generator.mapping(z)
            mean_w = ws.mean(0, keepdim=True)
            w_std = float(((ws - mean_w) ** 2).sum() / config.mean_latent_samples) ** 0.5
    start = mean_w if init is None else init.to(device).float()  # (1, C) or (1, n_latent, C)
    if config.space == "w":
        w = start if start.ndim == 2 else start.mean(1)
    else:
        w = start[:, None, :].repeat(1, n_latent, 1) if start.ndim == 2 else start
    w = w.detach().clone().requires_grad_(True)
    noises = [torch.randn((1, *shape[1:]), generator=gen).to(device).requires_grad_(True)
              for shape in generator.noise_shapes()]
    optimiser = torch.optim.Adam([w, *noises], betas=(0.9, 0.999), lr=config.lr)
    target_small = _resize_for_lpips(target, config.lpips_size)
    result = ProjectionResult(w_plus=torch.empty(0))
    for step in range(config.steps):
        cancel.raise_if_cancelled()
        t = step / config.steps
        noise_strength = w_std * config.initial_noise_factor * max(0.0, 1.0 - t / config.noise_ramp_length) ** 2
        lr_ramp = min(1.0, (1.0 - t) / config.lr_rampdown_length)
        lr_ramp = 0.5 - 0.5 * math.cos(lr_ramp * math.pi)
        if config.lr_rampup_length > 0:
            lr_ramp *= min(1.0, t / config.lr_rampup_length)
        for group in optimiser.param_groups:
            group["lr"] = config.lr * lr_ramp
        latent = w + torch.randn(w.shape, generator=gen).to(device) * noise_strength
        image = generator(latent, input_space=config.space, noise=noises, precision="fp32")
        dist = lpips_model(_resize_for_lpips(image, config.lpips_size), target_small).mean()
        mse = F.mse_loss(image, target)
        loss = dist + config.l2_weight * mse + config.noise_weight * noise_regularization(noises)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        with torch.no_grad():  # keep the noise maps zero-mean, unit-variance
            for n in noises:
                n -= n.mean()
                n *= n.square().mean().rsqrt()
        result.lpips.append(float(dist.detach()))
        result.l2.append(float(mse.detach()))
        if step % 5 == 0 or step == config.steps - 1:
            yield monitor.event("project", step + 1, config.steps,
                                f"step {step + 1}/{config.steps}: LPIPS {result.lpips[-1]:.3f}")
    final = w.detach()
    result.w_plus = (final[:, None, :].repeat(1, n_latent, 1) if config.space == "w" else final).float()
    result.noises = [n.detach().clone() for n in noises]
    return result
