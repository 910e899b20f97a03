"""Invert a photo into W+ and reconstruct it: align -> E_I (e4e or pSp) and/or projection -> G -> paste-back.

This is the identity step of the paper's neural engine (w_I of eq. 1) and the pivot of PTI: the FFHQ crop
at 256² feeds the encoder, the crop at the generator's resolution (1024² for FFHQ config-f) is the
projection target, and the generated crop is pasted back into the full-resolution photo.

The encoder choice ``"auto"`` (the default of ``talkstudio invert``, ``tune`` and ``render --engine neural``)
uses e4e when it is installed, else pSp, else optimisation-based projection alone (PTI's projector, in W),
and says which in a :class:`~studio.core.events.Notice` (:func:`resolve_encoder`).

A code can be saved with :func:`save_latent` (``invert --latent``: ``w_plus`` and, when projection produced
them, the noise maps ``noise.0`` ... ``noise.{N-1}``) and rendered again with :func:`load_latent` +
:func:`render_latent`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from studio.core.errors import ConfigError
from studio.core.events import CancelToken, Job, Notice, ProgressMonitor
from studio.engine.eval.metrics import psnr
from studio.engine.face.align import Alignment, ffhq_alignment
from studio.engine.face.paste import face_mask, paste_back
from studio.engine.neural.perceptual import build_lpips
from studio.engine.neural.project import ProjectionConfig, ProjectionResult, project
from studio.engine.face.identity import load_identity
from studio.engine.settings import ENCODER_CHOICES
from studio.models import store

GENERATOR = "stylegan2-ffhq-config-f"
ENCODERS = {"e4e": "e4e-ffhq-encode", "psp": "psp-ffhq-encode"}
ENCODER_SIZE = 256
LPIPS_BACKBONE = "lpips-alexnet"
#: projection steps (in W, from the mean latent) when projection alone inverts the face: PTI's projector
PROJECTION_ONLY_STEPS = 450


@dataclass(frozen=True)
class EncoderChoice:
    """What an ``encoder`` option resolved to (:func:`resolve_encoder`).

    Attributes:
        encoder: "e4e", "psp", or None for optimisation-based projection alone.
        requested: the option as given ("auto", "e4e", "psp" or "none").
        message: for "auto", one line saying what is used (and that e4e is faster when it is not
            installed); "" otherwise.
    """

    encoder: str | None
    requested: str
    message: str = ""

    @property
    def label(self) -> str:
        """"e4e", "psp" or "projection"."""
        return self.encoder or "projection"

    def notice(self) -> Notice | None:
        """The message as a note for the user (None when there is nothing to say)."""
        return Notice(self.message, level="note") if self.message else None


def resolve_encoder(encoder: str | None, *, installed: Collection[str] | None = None,
                    projection_steps: int = 0) -> EncoderChoice:
    """Resolve an ``encoder`` option against the model store.

    Args:
        encoder: "auto", "e4e", "psp", "none" or None (= "none").
        installed: store names of the installed models (default: :func:`studio.models.store.installed_names`;
            only read for "auto").
        projection_steps: the projection steps that would run without an encoder (for the message; 0 =
            :data:`PROJECTION_ONLY_STEPS`).

    Returns:
        :class:`EncoderChoice`. "auto" gives e4e when ``e4e-ffhq-encode`` is installed, else pSp when
        ``psp-ffhq-encode`` is, else None (projection alone); explicit choices are returned as they are
        (whether they are installed is checked by :func:`studio.models.store.require` later).

    Raises:
        ConfigError: an unknown value.
    """
    requested = "none" if encoder is None else encoder
    if requested not in ENCODER_CHOICES:
        raise ConfigError(f"unknown encoder {encoder!r}", f"use one of: {', '.join(ENCODER_CHOICES)}")
    if requested == "none":
        return EncoderChoice(None, requested)
    if requested != "auto":
        return EncoderChoice(requested, requested)
    have = set(store.installed_names() if installed is None else installed)
    if ENCODERS["e4e"] in have:
        return EncoderChoice("e4e", requested, "encoder auto: using the e4e encoder (e4e_ffhq_encode.pt)")
    if ENCODERS["psp"] in have:
        return EncoderChoice("psp", requested, "encoder auto: e4e is not installed, using the pSp encoder "
                                               "(psp_ffhq_encode.pt); e4e is the default (its codes stay closer to "
                                               "W and edit better): import e4e_ffhq_encode.pt to use it")
    steps = projection_steps if projection_steps > 0 else PROJECTION_ONLY_STEPS
    return EncoderChoice(None, requested, f"encoder auto: no image encoder is installed, so the face is inverted by "
                                          f"optimisation-based projection ({steps} steps in W, from the mean face; "
                                          f"minutes on a CPU); installing the e4e encoder is much faster: "
                                          f"`talkstudio models import e4e_ffhq_encode.pt`")


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


class NeuralModels:
    """The networks an inversion uses, loaded once and shared by every step that needs them (inversion,
    PTI, the neural engine): G, the image encoder E_I (optional) and the LPIPS network (built on first use).

    Args:
        generator: G (rosinality layout). generator_sha256: its checkpoint's sha256 (what codes belong to).
        encoder: "e4e", "psp" or None (projection alone); encoder_module / latent_avg: E_I and its w_avg.
        device: where they run.
    """

    def __init__(self, generator: torch.nn.Module, generator_sha256: str, *, encoder: str | None = None,
                 encoder_module: torch.nn.Module | None = None, latent_avg: torch.Tensor | None = None,
                 device: torch.device) -> None:
        self.generator = generator
        self.generator_sha256 = generator_sha256
        self.encoder = encoder
        self.encoder_module = encoder_module
        self.latent_avg = latent_avg
        self.device = device
        self._lpips: torch.nn.Module | None = None

    @classmethod
    def load(cls, encoder: str | None, *, device: torch.device, generator=None,
             generator_sha256: str | None = None) -> "NeuralModels":
        """Load G (unless given) and E_I ("e4e", "psp"; None: none) from the model store.

        Raises:
            ModelError: a checkpoint is missing or corrupt (named).
        """
        if generator is None:
            loaded = store.load(GENERATOR, device=device)
            generator, generator_sha256 = loaded.module, loaded.source_sha256
        enc = avg = None
        if encoder is not None:
            e = store.load(ENCODERS[encoder], device=device)
            enc = e.module
            avg = e.extras.get("latent_avg")
            avg = None if avg is None else avg.to(device)
        return cls(generator, str(generator_sha256 or ""), encoder=encoder, encoder_module=enc, latent_avg=avg,
                   device=device)

    @property
    def lpips(self) -> torch.nn.Module:
        """LPIPS (AlexNet, PTI's choice), built on first use. Raises ModelError when its backbone is missing."""
        if self._lpips is None:
            self._lpips = build_lpips("alex", device=self.device)
        return self._lpips


@dataclass(frozen=True)
class AlignedInversion:
    """The result of :func:`invert_aligned`.

    Attributes:
        w_plus: (1, n_latent, style_dim) float32 code. noises: per-layer noise maps of the projection (empty
            when E_I alone produced the code). method: what produced it ("e4e", "e4e + 100 projection steps
            (w+)", "projection (w)").
    """

    w_plus: torch.Tensor
    noises: list[torch.Tensor]
    method: str


def invert_aligned(models: NeuralModels, image: np.ndarray, alignment: Alignment, *, steps: int,
                   cancel: CancelToken | None = None, monitor: ProgressMonitor | None = None
                   ) -> Job[AlignedInversion]:
    """The one inversion of a face: E_I on the 256² FFHQ crop, then projection refining its code.

    Seed paper section 3.2.1 (w_I from a pSp/e4e encoder); projection as PTI (danielroich/PTI
    ``projectors/w_projector.py``): LPIPS + noise regularisation, in W+ from E_I's code, or in W from
    w_avg when there is no encoder.

    Args:
        models: G, E_I (``models.encoder`` None: projection alone) and LPIPS.
        image: (H, W, 3) uint8 RGB photo or video frame. alignment: its FFHQ alignment at G's size.
        steps: projection steps after E_I (0 = E_I alone); without E_I, the projection's steps
            (0 = :data:`PROJECTION_ONLY_STEPS`).

    Yields Progress (stage "invert", then the projection's "project"); returns :class:`AlignedInversion`.

    Raises:
        ModelError: LPIPS is needed and missing. Cancelled.
    """
    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    dev = models.device
    w = None
    method = "projection (w)"
    if models.encoder_module is not None:
        yield monitor.event("invert", 0, 1, f"encoding the face with {models.encoder}")
        small = to_tensor(alignment.resized(ENCODER_SIZE).crop(image), dev)
        with torch.no_grad():
            w = models.encoder_module.encode(small, latent_avg=models.latent_avg)
        method = str(models.encoder)
    else:
        yield monitor.event("invert", 0, 1, "inverting the face by projection (no image encoder)")
    noises: list[torch.Tensor] = []
    if steps > 0 or w is None:
        space = "w+" if w is not None else "w"
        config = ProjectionConfig(steps=steps if steps > 0 else PROJECTION_ONLY_STEPS, space=space)
        target = to_tensor(alignment.crop(image), dev)
        result: ProjectionResult = yield from project(models.generator, target, models.lpips, config=config,
                                                      init=w, cancel=cancel, monitor=monitor.sub(0.0, 0.95))
        w, noises = result.w_plus, result.noises
        method = f"{method} + {config.steps} projection steps ({space})" if space == "w+" else f"projection ({space})"
    yield monitor.event("invert", 1, 1, "face inverted")
    return AlignedInversion(w_plus=w.detach().float(), noises=noises, method=method)


def required_models(encoder: str | None, steps: int) -> tuple[str, ...]:
    """Store names an inversion with this encoder ("auto", "e4e", "psp", "none" or None) and projection
    steps needs: the generator, the LPIPS backbone (the projection's loss and the reported quality) and the
    encoder ("auto": the one :func:`resolve_encoder` picks, none when projection alone is used)."""
    names = [GENERATOR, LPIPS_BACKBONE]
    choice = resolve_encoder(encoder)
    if choice.encoder is not None:
        names.append(ENCODERS[choice.encoder])
    return tuple(names)


def invert_photo(image: Path, *, encoder: str | None = "auto", steps: int = 100, face_index: int = 0,
                 device: str | torch.device | None = None, models: NeuralModels | None = None,
                 cancel: CancelToken | None = None, monitor: ProgressMonitor | None = None) -> Job[Inversion]:
    """Invert the face of a photo.

    Args:
        image: the photo. encoder: "auto" (e4e if installed, else pSp, else projection alone; a Notice
            says which), "e4e", "psp", or "none"/None (projection alone, in W from the mean latent;
            :data:`PROJECTION_ONLY_STEPS` steps when ``steps`` is 0). steps: projection steps refining the
            encoder's W+ (0 = encoder only), or the projection's steps without an encoder.
        face_index: which face (0 = largest). device: default CUDA when present, else CPU.
        models: networks already loaded with this encoder (PTI passes its own, so nothing loads twice);
            default: loaded here.

    Yields Progress and a Notice for "auto"; returns the :class:`Inversion`.

    Raises:
        ConfigError: unknown encoder. ModelError: a needed checkpoint is not in the model store (named:
            the generator and the LPIPS backbone always, the encoder when one is used). ImageError / FaceError.
    """
    choice = resolve_encoder(encoder, projection_steps=steps)
    encoder = choice.encoder
    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    store.require(*required_models(encoder or "none", steps), feature="photo inversion")
    if choice.notice() is not None:
        yield choice.notice()
    load = monitor.sub(0.0, 0.1)
    yield load.event("load", 0, 2, "loading the generator")
    if models is None or models.encoder != encoder:
        models = NeuralModels.load(encoder, device=dev, generator=None if models is None else models.generator,
                                   generator_sha256=None if models is None else models.generator_sha256)
    g = models.generator
    identity = load_identity(image, face_index=face_index)
    align = ffhq_alignment(identity.face.points, size=g.size)
    target = align.crop(identity.image)
    target_t = to_tensor(target, models.device)
    yield load.event("load", 2, 2, "models ready")
    inv = yield from invert_aligned(models, identity.image, align, steps=steps, cancel=cancel,
                                    monitor=monitor.sub(0.1, 0.95))
    init, noises, method = inv.w_plus, inv.noises, inv.method
    lpips_model = models.lpips
    with torch.no_grad():
        recon = g(init, input_space="w+", noise=noises or None, precision="fp32")
        crop = to_image(recon)
        size = min(256, g.size)
        dist = float(lpips_model(torch.nn.functional.adaptive_avg_pool2d(recon, size),
                                 torch.nn.functional.adaptive_avg_pool2d(target_t, size)).mean())
    mask = face_mask(align, identity.face.points)
    composite = paste_back(identity.image, crop, align, mask)
    yield monitor.event("done", 1, 1, "inverted")
    return Inversion(w_plus=init.detach().cpu(), noises=[n.cpu() for n in noises], crop=crop, target=target,
                     composite=composite, alignment=align, lpips=dist, psnr=psnr(crop, target), method=method,
                     generator_sha256=models.generator_sha256)


# ------------------------------------------------------------------------------------------ latent files
#: header entry naming what a latent file is
LATENT_KIND = "talkstudio.latent"
NOISE_PREFIX = "noise."


@dataclass
class SavedLatent:
    """A code written by :func:`save_latent` (``talkstudio invert --latent``).

    Attributes:
        w_plus: (1, n_latent, style_dim) float32 W+ code.
        noises: the projection's per-layer noise maps, (1, 1, r, r) float32 each in the generator's layer
            order (``noise.0`` ... ``noise.{N-1}`` in the file; N = ``Generator.num_noise``, 17 at 1024²);
            empty when the code came from an encoder alone (then G renders with its own constant noise).
        generator_sha256: sha256 of the generator checkpoint the code belongs to ("" if unrecorded).
        method: what produced the code ("e4e + 100 projection steps (w+)", ...).
    """

    w_plus: torch.Tensor
    noises: list[torch.Tensor]
    generator_sha256: str
    method: str


def save_latent(path: str | Path, inversion: Inversion) -> Path:
    """Write an inversion's code as safetensors: ``w_plus`` (1, n_latent, style_dim) float32 and, when
    projection produced them, the optimised noise maps ``noise.0`` ... ``noise.{N-1}`` ((1, 1, r, r) float32,
    layer order); header: ``talkstudio.kind`` = ``talkstudio.latent``, ``generator_sha256``, ``method``,
    ``noises`` (their count). Written atomically.

    Raises:
        ModelError: the file cannot be written.
    """
    from studio.models.registry import save_safetensors

    tensors = {"w_plus": inversion.w_plus.detach().float().contiguous()}
    for j, n in enumerate(inversion.noises):
        tensors[f"{NOISE_PREFIX}{j}"] = n.detach().float().cpu().contiguous()
    return save_safetensors(path, tensors, metadata={"talkstudio.kind": LATENT_KIND,
                                                      "generator_sha256": inversion.generator_sha256,
                                                      "method": inversion.method,
                                                      "noises": str(len(inversion.noises))})


def load_latent(path: str | Path) -> SavedLatent:
    """Read a latent file of :func:`save_latent` (files written before noise maps were saved hold only
    ``w_plus``: then ``noises`` is empty).

    Raises:
        InputError: missing file. ModelError: unreadable file, no ``w_plus`` (1, L, C), or noise maps not
            numbered 0..N-1.
    """
    from safetensors import SafetensorError, safe_open

    from studio.core.errors import InputError, ModelError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"latent file not found: {path}", "write one with `talkstudio invert --latent FILE`")
    hint = "write it again with `talkstudio invert --latent FILE`"
    try:
        with safe_open(str(path), "pt") as fh:
            meta = dict(fh.metadata() or {})
            keys = set(fh.keys())
            if "w_plus" not in keys:
                raise ModelError(f"{path} holds no W+ code (no 'w_plus' tensor)", hint)
            w = fh.get_tensor("w_plus").float()
            noises = {int(k[len(NOISE_PREFIX):]): fh.get_tensor(k).float() for k in keys
                      if k.startswith(NOISE_PREFIX) and k[len(NOISE_PREFIX):].isdigit()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read latent file {path}: {exc}", hint) from exc
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3 or w.shape[0] != 1:
        raise ModelError(f"{path}: w_plus has shape {tuple(w.shape)}, expected (1, n_latent, style_dim)", hint)
    if sorted(noises) != list(range(len(noises))):
        raise ModelError(f"{path}: noise maps are not numbered noise.0 .. noise.{len(noises) - 1}", hint)
    return SavedLatent(w_plus=w, noises=[noises[j] for j in range(len(noises))],
                       generator_sha256=meta.get("generator_sha256", ""), method=meta.get("method", ""))


@torch.no_grad()
def render_latent(generator: torch.nn.Module, latent: SavedLatent, *, generator_sha256: str | None = None
                  ) -> torch.Tensor:
    """Render a saved code with its noise maps (the inversion's reconstruction, bit for bit in fp32 on the
    same device).

    Args:
        generator: the StyleGAN2 ``Generator`` the code belongs to. latent: :func:`load_latent`'s result.
        generator_sha256: the generator's checkpoint sha256; when given and the file records another one,
            the code is refused.

    Returns:
        (1, 3, size, size) float32 image in [-1, 1] on the generator's device.

    Raises:
        ModelError: the code was made for another generator, or its shape / noise maps do not fit it.
    """
    from studio.core.errors import ModelError

    if generator_sha256 and latent.generator_sha256 and generator_sha256 != latent.generator_sha256:
        raise ModelError(f"the code was made with another generator ({latent.generator_sha256[:12]}…, this one "
                         f"is {generator_sha256[:12]}…)", "invert the photo again with this generator")
    want = (generator.n_latent, generator.style_dim)
    if tuple(latent.w_plus.shape[1:]) != want:
        raise ModelError(f"the code has shape {tuple(latent.w_plus.shape)}, this generator takes (1, {want[0]}, "
                         f"{want[1]})", "invert the photo again with this generator")
    if latent.noises and [tuple(n.shape) for n in latent.noises] != [tuple(s) for s in generator.noise_shapes()]:
        raise ModelError(f"the code's {len(latent.noises)} noise maps do not fit this generator "
                         f"({generator.num_noise} expected)", "invert the photo again with this generator")
    dev = next(generator.parameters()).device
    return generator(latent.w_plus.to(dev), input_space="w+",
                     noise=[n.to(dev) for n in latent.noises] or None, precision="fp32")
