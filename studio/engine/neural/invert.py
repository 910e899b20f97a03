"""Invert a photo into W+ and reconstruct it: align -> E_I (e4e or pSp) and/or projection -> G -> paste-back.

This is the identity step of the paper's neural engine (w_I of eq. 1) and the pivot of PTI: the FFHQ crop
at 256² feeds the encoder, the crop at the generator's resolution (1024² for FFHQ config-f) is the
projection target, and the generated crop is pasted back into the full-resolution photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from studio.core.errors import ConfigError
from studio.core.progress import CancelToken, Progress, ProgressMonitor
from studio.engine.eval.metrics import psnr
from studio.engine.face.align import Alignment, ffhq_alignment
from studio.engine.face.paste import face_mask, paste_back
from studio.engine.neural.perceptual import build_lpips
from studio.engine.neural.project import ProjectionConfig, ProjectionResult, project
from studio.engine.pipeline import load_identity
from studio.models import store

GENERATOR = "stylegan2-ffhq-config-f"
ENCODERS = {"e4e": "e4e-ffhq-encode", "psp": "psp-ffhq-encode"}
ENCODER_SIZE = 256


@dataclass
class Inversion:
    """The result of :func:`invert_photo`.

    Attributes:
        w_plus: (1, n_latent, style_dim) float32 code of the face.
        noises: per-layer noise maps found by projection (empty when the encoder alone was used).
        crop: (S, S, 3) uint8 RGB generated face in the aligned frame; target: the photo's aligned crop.
        composite: (H, W, 3) uint8 RGB photo with the generated face pasted back.
        alignment: the photo -> crop transform. lpips / psnr: reconstruction quality on the aligned crops
            (LPIPS at 256², lower is better; PSNR in dB). method: what produced the code.
        generator_sha256: sha256 of the generator checkpoint the code belongs to.
    """

    w_plus: torch.Tensor
    noises: list[torch.Tensor]
    crop: np.ndarray
    target: np.ndarray
    composite: np.ndarray
    alignment: Alignment
    lpips: float
    psnr: float
    method: str
    generator_sha256: str


def to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def to_image(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [-1, 1] -> (H, W, 3) uint8."""
    return ((x[0].detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def required_models(encoder: str | None, steps: int) -> tuple[str, ...]:
    """Store names an inversion with this encoder ("e4e", "psp" or None) and projection steps needs."""
    names = [GENERATOR, "lpips-alexnet"]  # LPIPS: the projection's loss and the reported quality
    if encoder is not None:
        names.append(ENCODERS[encoder])
    return tuple(names)


def invert_photo(image: Path, *, encoder: str | None = "e4e", steps: int = 100, face_index: int = 0,
                 device: str | torch.device | None = None, cancel: CancelToken | None = None,
                 monitor: ProgressMonitor | None = None) -> Iterator[Progress | Inversion]:
    """Invert the face of a photo.

    Args:
        image: the photo. encoder: "e4e" or "psp" (or None: projection alone, PTI's 450 W steps when
            ``steps`` is 0). steps: projection steps refining the encoder's W+ (0 = encoder only).
        face_index: which face (0 = largest). device: default CUDA when present, else CPU.

    Yields:
        Progress, then the :class:`Inversion`.

    Raises:
        ModelError: a needed checkpoint is not in the model store (named). ImageError / FaceError.
    """
    if encoder is not None and encoder not in ENCODERS:
        raise ConfigError(f"unknown encoder {encoder!r}", "use e4e, psp or none")
    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    store.require(*required_models(encoder, steps), feature="photo inversion")
    load = monitor.sub(0.0, 0.1)
    yield load.event("load", 0, 2, "loading the generator")
    gen = store.load(GENERATOR, device=dev)
    g = gen.module
    identity = load_identity(image, face_index=face_index)
    align = ffhq_alignment(identity.face.points, size=g.size)
    target = align.crop(identity.image)
    target_t = to_tensor(target, dev)
    init, method = None, "projection (W)"
    if encoder is not None:
        yield load.event("load", 1, 2, f"encoding with {encoder}")
        enc = store.load(ENCODERS[encoder], device=dev)
        small = to_tensor(align.resized(ENCODER_SIZE).crop(identity.image), dev)
        latent_avg = enc.extras.get("latent_avg")
        with torch.no_grad():
            init = enc.module.encode(small, latent_avg=None if latent_avg is None else latent_avg.to(dev))
        method = encoder
    noises: list[torch.Tensor] = []
    lpips_model = build_lpips("alex", device=dev)
    if steps > 0 or encoder is None:
        space = "w+" if init is not None else "w"
        config = ProjectionConfig(steps=steps if steps > 0 else 450, space=space)
        for ev in project(g, target_t, lpips_model, config=config, init=init, cancel=cancel,
                          monitor=monitor.sub(0.1, 0.95)):
            if isinstance(ev, ProjectionResult):
                init, noises = ev.w_plus, ev.noises
            else:
                yield ev
        method = f"{method} + {config.steps} projection steps ({space})" if encoder else f"projection ({space})"
    with torch.no_grad():
        recon = g(init, input_space="w+", noise=noises or None, precision="fp32")
        crop = to_image(recon)
        size = min(256, g.size)
        dist = float(lpips_model(torch.nn.functional.adaptive_avg_pool2d(recon, size),
                                 torch.nn.functional.adaptive_avg_pool2d(target_t, size)).mean())
    mask = face_mask(align, identity.face.points)
    composite = paste_back(identity.image, crop, align, mask)
    yield monitor.event("done", 1, 1, "inverted")
    yield Inversion(w_plus=init.detach().cpu(), noises=[n.cpu() for n in noises], crop=crop, target=target,
                    composite=composite, alignment=align, lpips=dist, psnr=psnr(crop, target), method=method,
                    generator_sha256=gen.source_sha256)
