"""Pivotal Tuning Inversion (Roich et al. 2021): the identity stage two of the neural engine.

Stage one inverts the face into a *pivot* code (W or W+, e4e and/or projection, see
:mod:`studio.engine.neural.invert`). Stage two freezes the pivot(s) and fine-tunes the generator's synthesis
weights so that ``G(pivot_i)`` reproduces ``target_i`` (LPIPS + L2, Adam lr 3e-4, early stop at LPIPS 0.06),
optionally with PTI's locality regulariser that keeps the tuned generator close to the original one around
the pivots. The result -- "a person" -- is stored as one safetensors file holding only the changed
parameters and the pivots, bound to the sha256 of the base checkpoint.

Person file (``schema_version`` 1), one ``.safetensors`` written atomically:

* header: ``talkstudio.kind = "pti-person"``, ``talkstudio.person_schema_version``, ``base_sha256``
  (the upstream generator file the delta applies to), ``steps``, ``lpips``, ``l2``, ``delta_encoding``,
  ``n_pivots``;
* tensors ``delta.<param>`` for every parameter the tuning changed, and ``pivot.<i>`` ``(1, n_latent, C)``.

Delta encoding (``delta_encoding = "values"``): the ``delta.<param>`` entries hold the *tuned values* of the
changed parameters, not differences. ``base + (tuned - base)`` is not always ``tuned`` in floating point
(rounding of the subtraction), so differences could not guarantee a bit-for-bit round trip; values do
(applying is a copy). Unchanged parameters (the mapping network, the constant noise buffers, anything the
optimiser left untouched) are never stored, so a person file is at most the synthesis network's size and
useless without the base checkpoint.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from studio.core.errors import ConfigError, FaceError, ModelError, OutputError
from studio.media.kinds import check_output_path
from studio.core.events import CancelToken, Job, ProgressMonitor

SCHEMA_VERSION = 1
KIND = "pti-person"
META_KIND = "talkstudio.kind"
META_SCHEMA = "talkstudio.person_schema_version"
DELTA_PREFIX = "delta."
PIVOT_PREFIX = "pivot."
PREVIEW_SUFFIX = ".preview.png"
LPIPS_SIZE = 256


@dataclass(frozen=True)
class TuneConfig:
    """PTI hyper-parameters (Roich et al. 2021 defaults).

    Attributes:
        steps: maximum tuning steps (one pivot per step, cycling through the pivots).
        lr: Adam learning rate on the synthesis weights.
        lpips_threshold: stop when the mean LPIPS over the pivots is at or below this.
        l2_weight / lpips_weight: weights of the reconstruction losses.
        locality_weight: weight of PTI's locality regulariser as a whole (0 = off; 1 = PTI's
            ``use_locality_regularization``): a code moved from the pivot towards a random mapped latent by
            ``locality_alpha`` (L2 distance over the whole (n_latent, C) W+ code) must render the same with the
            tuned and the original generator.
        locality_l2_weight / locality_lpips_weight: weights of the regulariser's L2 (MSE) and LPIPS terms,
            PTI's ``regulizer_l2_lambda`` / ``regulizer_lpips_lambda`` (0.1 each, ``configs/hyperparameters.py``).
        locality_alpha: PTI's ``regulizer_alpha`` (30). locality_truncation: psi of the random latents (0.5).
            One random latent per step (PTI's ``latent_ball_num_of_samples = 1``).
        frames: frames sampled from a video (one pivot each). projection_steps: projection steps per pivot.
    """

    steps: int = 350
    lr: float = 3e-4
    lpips_threshold: float = 0.06
    l2_weight: float = 1.0
    lpips_weight: float = 1.0
    locality_weight: float = 0.0
    locality_l2_weight: float = 0.1
    locality_lpips_weight: float = 0.1
    locality_alpha: float = 30.0
    locality_truncation: float = 0.5
    frames: int = 16
    projection_steps: int = 450

    def validate(self) -> None:
        if self.steps < 1 or not self.lr > 0:
            raise ConfigError(f"invalid tuning steps/lr {self.steps}/{self.lr}", "use steps >= 1 and lr > 0")
        if self.frames < 1:
            raise ConfigError(f"invalid number of video frames {self.frames}", "use frames >= 1")
        if (self.projection_steps < 0 or self.locality_weight < 0 or self.locality_l2_weight < 0
                or self.locality_lpips_weight < 0):
            raise ConfigError("projection steps and locality weights must be >= 0", "check the tuning options")


@dataclass
class TuneResult:
    """The tuned generator and how the tuning went.

    Attributes:
        generator: the tuned copy (eval mode, no grad); the input generator is left untouched.
        steps: tuning steps run. stopped_early: the LPIPS threshold was reached before ``config.steps``.
        initial_lpips / initial_l2: mean over the pivots with the original weights; final_*: after tuning.
        history: per step ``{"pivot": i, "lpips": ..., "l2": ...}`` (the pivot trained at that step).
    """

    generator: torch.nn.Module
    steps: int
    initial_lpips: float
    initial_l2: float
    final_lpips: float
    final_l2: float
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)


def _small(x: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(x, LPIPS_SIZE) if x.shape[-1] > LPIPS_SIZE else x


def _render(g: torch.nn.Module, w: torch.Tensor) -> torch.Tensor:
    return g(w, input_space="w+", noise_mode="const", precision="fp32")


@torch.no_grad()
def evaluate(generator: torch.nn.Module, targets: Sequence[torch.Tensor], pivots: Sequence[torch.Tensor],
             lpips_model: torch.nn.Module) -> tuple[float, float]:
    """Mean LPIPS (at <= 256²) and mean squared error over the pivots, in fp32."""
    dev = next(generator.parameters()).device
    lp, l2 = [], []
    for w, t in zip(pivots, targets):
        img = _render(generator, w.to(dev).float())
        t = t.to(dev).float()
        lp.append(float(lpips_model(_small(img), _small(t)).mean()))
        l2.append(float(F.mse_loss(img, t)))
    return float(np.mean(lp)), float(np.mean(l2))


def _trainable(g: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The synthesis weights (everything but the mapping network ``style``): W+ pivots bypass the mapping."""
    params = []
    for name, p in g.named_parameters():
        train = not name.startswith("style.")
        p.requires_grad_(train)
        if train:
            params.append(p)
    return params


def _morphed(pivot: torch.Tensor, w_random: torch.Tensor, alpha: float) -> torch.Tensor:
    """PTI's ``Space_Regulizer.get_morphed_w_code`` (danielroich/PTI, ``criteria/localitly_regulizer.py``).

    ``result = pivot + alpha * (w_random - pivot) / ||w_random - pivot||_2`` with ONE L2 norm over the whole
    code (upstream's ``torch.norm(interpolation_direction, p=2)``), not one per W+ layer: the result lies
    exactly ``alpha`` from the pivot in the L2 norm of the flattened (1, n_latent, C) code.

    Args:
        pivot: (1, n_latent, C) W+ pivot. w_random: (1, n_latent, C) code to move towards. alpha: distance.

    Returns:
        (1, n_latent, C) morphed code.
    """
    direction = w_random - pivot
    norm = torch.norm(direction, p=2).clamp_min(1e-8)
    return pivot + alpha * direction / norm


def tune(generator: torch.nn.Module, targets: Sequence[torch.Tensor], pivots: Sequence[torch.Tensor],
         lpips_model: torch.nn.Module, *, config: TuneConfig = TuneConfig(), base_sha256: str = "",
         cancel: CancelToken | None = None, monitor: ProgressMonitor | None = None,
         seed: int = 0) -> Job[TuneResult]:
    """Pivotal tuning of a copy of ``generator``.

    Args:
        generator: StyleGAN2 ``Generator`` (untouched: a deep copy is tuned).
        targets: (1, 3, S, S) images in [-1, 1] at the generator's resolution (FFHQ-aligned faces).
        pivots: (1, n_latent, C) W+ codes, one per target (frozen).
        lpips_model: LPIPS module (two (N, 3, H, W) images in [-1, 1] -> (N, 1, 1, 1)).
        config: hyper-parameters. base_sha256: informational (the checkpoint the pivots belong to).
        cancel: checked every step. monitor: progress range. seed: locality sampling seed.

    Yields Progress every step; returns the :class:`TuneResult`.

    Raises:
        ConfigError: no pivots, a count mismatch or wrong shapes. Cancelled.
    """
    config.validate()
    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    if not pivots or len(pivots) != len(targets):
        raise ConfigError(f"tuning needs one target per pivot, got {len(targets)} targets and {len(pivots)} pivots",
                          "invert the face(s) first")
    size, n_latent, dim = generator.size, generator.n_latent, generator.style_dim
    for w, t in zip(pivots, targets):
        if tuple(w.shape) != (1, n_latent, dim) or tuple(t.shape) != (1, 3, size, size):
            raise ConfigError(f"pivot {tuple(w.shape)} / target {tuple(t.shape)} do not fit the generator "
                              f"((1, {n_latent}, {dim}) / (1, 3, {size}, {size}))", "invert with this generator")
    dev = next(generator.parameters()).device
    pivots = [w.detach().to(dev).float() for w in pivots]
    targets = [t.detach().to(dev).float() for t in targets]
    targets_small = [_small(t) for t in targets]
    yield monitor.event("tune", 0, config.steps, "measuring the pivots")
    initial_lpips, initial_l2 = evaluate(generator, targets, pivots, lpips_model)

    original = generator.eval().requires_grad_(False)
    tuned = copy.deepcopy(generator).train()
    params = _trainable(tuned)
    optimiser = torch.optim.Adam(params, lr=config.lr, betas=(0.9, 0.999))
    amp = dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    rng = torch.Generator(device="cpu").manual_seed(seed)
    latest = [math.inf] * len(pivots)
    history: list[dict] = []
    steps_run, stopped = 0, False
    for step in range(config.steps):
        cancel.raise_if_cancelled()
        i = step % len(pivots)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            img = _render(tuned, pivots[i]).float()
            dist = lpips_model(_small(img), targets_small[i]).mean()
            mse = F.mse_loss(img, targets[i])
            loss = config.lpips_weight * dist + config.l2_weight * mse
            if config.locality_weight > 0:
                with torch.no_grad():
                    z = torch.randn(1, dim, generator=rng).to(dev)
                    w_rand = original.mapping(z)
                    avg = original.latent_avg if original.latent_avg is not None else original.mean_latent(
                        1000, seed=seed)
                    w_rand = original.truncate(w_rand, config.locality_truncation, avg.reshape(1, -1))
                    w_loc = _morphed(pivots[i], w_rand[:, None, :].expand(-1, n_latent, -1), config.locality_alpha)
                    ref = _render(original, w_loc).float()
                new = _render(tuned, w_loc).float()
                loc = (config.locality_l2_weight * F.mse_loss(new, ref)
                       + config.locality_lpips_weight * lpips_model(_small(new), _small(ref)).mean())
                loss = loss + config.locality_weight * loc
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()
        steps_run = step + 1
        latest[i] = float(dist.detach())
        history.append({"pivot": i, "lpips": latest[i], "l2": float(mse.detach())})
        mean_lp = float(np.mean(latest))
        yield monitor.event("tune", steps_run, config.steps,
                            f"step {steps_run}/{config.steps}: LPIPS {latest[i]:.3f}")
        if mean_lp <= config.lpips_threshold:
            stopped = steps_run < config.steps
            break
    cancel.raise_if_cancelled()
    tuned.eval().requires_grad_(False)
    final_lpips, final_l2 = evaluate(tuned, targets, pivots, lpips_model)
    yield monitor.event("tune", config.steps, config.steps, f"tuned in {steps_run} steps: LPIPS {final_lpips:.3f}")
    return TuneResult(generator=tuned, steps=steps_run, initial_lpips=initial_lpips, initial_l2=initial_l2,
                      final_lpips=final_lpips, final_l2=final_l2, stopped_early=stopped, history=history)


# ---------------------------------------------------------------------------------------------- delta files
def make_delta(base: torch.nn.Module, tuned: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters/buffers that differ between ``base`` and ``tuned``, as their tuned VALUES (CPU).

    Values rather than differences make :func:`apply_delta` bit-exact (see the module docstring);
    unchanged entries are left out.
    """
    base_state = base.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in tuned.state_dict().items():
        ref = base_state.get(key)
        if ref is None or ref.shape != value.shape or ref.dtype != value.dtype:
            raise ModelError(f"tuned generator has {key!r} that the base does not have in this shape",
                             "make the delta against the generator that was tuned")
        if not torch.equal(ref.detach().cpu(), value.detach().cpu()):
            out[key] = value.detach().cpu().clone().contiguous()
    return out


def apply_delta(base: torch.nn.Module, delta: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """A copy of ``base`` with the entries of ``delta`` (tuned values) copied in (bit-exact)."""
    state = base.state_dict()
    for key, value in delta.items():
        if key not in state or tuple(state[key].shape) != tuple(value.shape):
            raise ModelError(f"person delta entry {key!r} {tuple(value.shape)} does not fit this generator",
                             "the person was tuned on a different generator architecture")
    tuned = copy.deepcopy(base)
    tuned_state = tuned.state_dict()
    with torch.no_grad():
        for key, value in delta.items():
            tuned_state[key].copy_(value.to(device=tuned_state[key].device, dtype=tuned_state[key].dtype))
    return tuned.eval().requires_grad_(False)


def preview_path(path: str | Path) -> Path:
    """``PERSON.safetensors`` -> ``PERSON.preview.png`` beside it."""
    path = Path(path)
    return path.with_name(path.stem + PREVIEW_SUFFIX)


def save_person(path: str | Path, delta: Mapping[str, torch.Tensor], *, pivots: Sequence[torch.Tensor],
                base_sha256: str, steps: int, final_lpips: float, final_l2: float,
                preview_png_bytes: bytes | None = None, extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Write a person file and its preview PNG; see the module docstring for the format.

    The person file appears first, then the preview, and both appear whole or not at all: the preview's bytes
    are staged (written and fsynced under a temporary name) before the person file is written atomically,
    and the staged preview is renamed into place only after that. A failure at any step (full disk, Ctrl-C)
    leaves neither a new preview nor a partial person file; an earlier person and preview at the same path are
    kept unless the person file itself was replaced (then a failure to place the preview removes the new
    person file too, so no person is left without its preview).

    Raises:
        OutputError: the folder is missing or not writable, or the disk is full. ConfigError: no pivots.
    """
    from studio.models import registry

    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"output folder does not exist: {path.parent}", "create it first")
    if not pivots:
        raise ConfigError("a person needs at least one pivot", "invert the face first")
    tensors = {DELTA_PREFIX + k: v.detach().cpu().contiguous() for k, v in delta.items()}
    for i, w in enumerate(pivots):
        tensors[f"{PIVOT_PREFIX}{i}"] = w.detach().cpu().float().contiguous()
    meta = {str(k): str(v) for k, v in (extra_metadata or {}).items()}
    meta.update({META_KIND: KIND, META_SCHEMA: str(SCHEMA_VERSION), "schema_version": str(SCHEMA_VERSION),
                 "base_sha256": base_sha256, "steps": str(int(steps)), "lpips": repr(float(final_lpips)),
                 "l2": repr(float(final_l2)), "delta_encoding": "values", "n_pivots": str(len(pivots))})
    preview = preview_path(path)
    staged_preview: Path | None = None
    person_written = False
    writing = preview
    try:
        if preview_png_bytes is not None:
            staged_preview = registry.stage_path(preview)
            with open(staged_preview, "wb") as fh:
                fh.write(preview_png_bytes)
                fh.flush()
                os.fsync(fh.fileno())
        writing = path
        registry.save_safetensors(path, tensors, metadata=meta)  # atomic: the whole file or the old one
        person_written, writing = True, preview
        if staged_preview is not None:
            os.replace(staged_preview, preview)
            staged_preview = None
    except BaseException as exc:
        if person_written:
            path.unlink(missing_ok=True)
        if isinstance(exc, ModelError):
            raise OutputError(exc.message, exc.hint) from exc
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {writing}: {exc.strerror or exc}",
                              "check free disk space and permissions") from exc
        raise
    finally:
        registry.discard(staged_preview)
    return path


def read_person(path: str | Path) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], dict[str, str]]:
    """(delta, pivots, metadata) of a person file, checking its kind and schema version.

    Raises:
        ModelError: missing/unreadable file, not a person file, or a newer schema.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"person file not found: {path}", "tune a person first with `talkstudio tune`")
    try:
        with safe_open(str(path), "pt") as fh:
            meta = dict(fh.metadata() or {})
            if meta.get(META_KIND) != KIND:
                raise ModelError(f"{path} is not a person file (no PTI delta inside)",
                                 "give a .safetensors file written by `talkstudio tune`")
            try:
                version = int(meta.get(META_SCHEMA, ""))
            except ValueError:
                raise ModelError(f"{path}: unreadable person schema version {meta.get(META_SCHEMA)!r}",
                                 "tune the person again") from None
            if version > SCHEMA_VERSION:
                raise ModelError(f"{path} uses person format version {version}; this version of the studio "
                                 f"reads up to {SCHEMA_VERSION}", "update Talking Head Studio")
            if meta.get("delta_encoding", "values") != "values":
                raise ModelError(f"{path}: unknown delta encoding {meta.get('delta_encoding')!r}",
                                 "update Talking Head Studio or tune the person again")
            delta, pivots = {}, {}
            for key in fh.keys():
                if key.startswith(DELTA_PREFIX):
                    delta[key[len(DELTA_PREFIX):]] = fh.get_tensor(key)
                elif key.startswith(PIVOT_PREFIX):
                    pivots[int(key[len(PIVOT_PREFIX):])] = fh.get_tensor(key)
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read person file {path}: {exc}", "tune the person again") from exc
    if not pivots or sorted(pivots) != list(range(len(pivots))):
        raise ModelError(f"{path}: pivots missing or not numbered 0..n-1", "tune the person again")
    return delta, [pivots[i] for i in range(len(pivots))], meta


def load_person(path: str | Path, base_generator: torch.nn.Module, base_sha256: str
                ) -> tuple[torch.nn.Module, list[torch.Tensor], dict[str, str]]:
    """Rebuild a tuned generator from a person file and the base generator it was tuned from.

    Args:
        path: the person file. base_generator: the base (left untouched). base_sha256: sha256 of the base's
            upstream checkpoint (``LoadedModel.source_sha256``).

    Returns:
        (tuned generator on the base's device, pivots (1, n_latent, C) each, metadata).

    Raises:
        ModelError: not a person file, a newer schema, a different base checkpoint, or entries that do not fit.
    """
    delta, pivots, meta = read_person(path)
    if meta.get("base_sha256") != base_sha256:
        raise ModelError(f"{Path(path).name} was tuned on another generator checkpoint "
                         f"(sha256 {str(meta.get('base_sha256'))[:12]}…, installed {base_sha256[:12]}…)",
                         "import the generator it was tuned on, or tune the person again with `talkstudio tune`")
    tuned = apply_delta(base_generator, delta)
    shape = (1, base_generator.n_latent, base_generator.style_dim)
    if any(tuple(w.shape) != shape for w in pivots):
        raise ModelError(f"{path}: pivots do not fit this generator (expected {shape})", "tune the person again")
    dev = next(base_generator.parameters()).device
    return tuned, [w.to(dev) for w in pivots], meta


# ---------------------------------------------------------------------------------------------- end to end
@dataclass
class PersonResult:
    """What :func:`tune_person` wrote: the file, its preview, and the tuning figures."""

    path: Path
    preview: Path
    pivots: int
    steps: int
    initial_lpips: float
    final_lpips: float
    initial_l2: float
    final_l2: float
    base_sha256: str
    changed_params: int


def _png(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:  # pragma: no cover
        raise OutputError("cannot encode the preview PNG", "")
    return buf.tobytes()


def _frame_indices(n_frames: int, count: int) -> list[int]:
    if n_frames <= 0:
        return list(range(count))
    return sorted({int(round(v)) for v in np.linspace(0, n_frames - 1, min(count, n_frames))})


def _video_targets(video: Path, frames: int, face_index: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(frame index, frame, landmarks) for ``frames`` frames spread over the clip that show a face."""
    from studio.engine.face.detect import FaceTracker
    from studio.media.video import read_video_frames

    meta, it = read_video_frames(video)
    wanted = set(_frame_indices(meta.n_frames, frames))
    last = max(wanted)
    found = []
    with it:
        for k, frame in enumerate(it):
            if k > last:
                break
            if k in wanted:
                face = FaceTracker(face_index=face_index).update(frame)
                if face is not None:
                    found.append((k, frame, face.points))
    if not found:
        raise FaceError(f"no face found in the sampled frames of {video}", "use a video where the face is visible")
    return found


def tune_person(image: Path | None = None, video: Path | None = None, output: Path | None = None, *,
                encoder: str | None = "auto", steps: int = 350, frames: int = 16, projection_steps: int = 450,
                config: TuneConfig | None = None, face_index: int = 0, device: str | torch.device | None = None,
                cancel: CancelToken | None = None, monitor: ProgressMonitor | None = None
                ) -> Job[PersonResult]:
    """Invert a photo (or ``frames`` frames of a video), tune the generator on the pivot(s), save the person.

    Args:
        image / video: exactly one source. output: the person ``.safetensors`` (its preview goes beside it).
        encoder: "auto" (e4e if installed, else pSp, else projection alone; a Notice says which), "e4e",
            "psp", or "none"/None (projection alone). steps: max tuning steps. frames: video frames.
        projection_steps: projection steps per pivot (after the encoder, or alone from the mean latent).
        config: further tuning options (its steps/frames/projection_steps are overridden by the arguments).

    Yields Progress and a Notice for encoder "auto"; returns the :class:`PersonResult`. Nothing is written
    unless the whole job completes.

    Raises:
        ConfigError / OutputError (checked before any work), ModelError (missing checkpoints, named),
        ImageError / InputError / FaceError, Cancelled.
    """

    return (yield from _tune_person(image, video, output, encoder=encoder, steps=steps, frames=frames,
                                    projection_steps=projection_steps, config=config, face_index=face_index,
                                    device=device, cancel=cancel, monitor=monitor))


def _tune_person(image, video, output, *, encoder, steps, frames, projection_steps, config, face_index, device,
                 cancel, monitor) -> Job[PersonResult]:
    from studio.engine.face.align import ffhq_alignment
    from studio.engine.neural.invert import (NeuralModels, invert_aligned, invert_photo, required_models,
                                             resolve_encoder, to_image, to_tensor)
    from studio.models import store
    if (image is None) == (video is None):
        raise ConfigError("give either a photo or a video to tune on", "use --image or --video")
    if output is None:
        raise ConfigError("no output file given", "name the person file .safetensors")
    output = check_output_path(output, (".safetensors",), what="person file")
    choice = resolve_encoder(encoder, projection_steps=projection_steps)
    encoder = choice.encoder
    config = config or TuneConfig()
    config = TuneConfig(**{**config.__dict__, "steps": steps, "frames": frames, "projection_steps": projection_steps})
    config.validate()
    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    store.require(*required_models(encoder or "none", projection_steps), feature="person tuning (PTI)")
    if choice.notice() is not None:
        yield choice.notice()

    yield monitor.event("load", 0, 1, "loading the generator")
    models = NeuralModels.load(encoder, device=dev)  # G, E_I and LPIPS: loaded once for inversion and tuning
    g = models.generator
    lpips_model = models.lpips
    targets: list[torch.Tensor] = []
    pivots: list[torch.Tensor] = []
    invert_part = monitor.sub(0.0, 0.5)
    if image is not None:
        proj = projection_steps if (projection_steps > 0 or encoder is None) else 0
        inv = yield from invert_photo(Path(image), encoder=encoder, steps=proj, face_index=face_index, device=dev,
                                      models=models, cancel=cancel, monitor=invert_part)
        targets.append(to_tensor(inv.target, dev))
        pivots.append(inv.w_plus.to(dev))
    else:
        yield invert_part.event("frames", 0, 1, f"finding the face in {frames} frames")
        found = _video_targets(Path(video), frames, face_index)
        for j, (_k, frame, points) in enumerate(found):
            cancel.raise_if_cancelled()
            part = invert_part.sub(j / len(found), (j + 1) / len(found))
            align = ffhq_alignment(points, size=g.size)
            inv = yield from invert_aligned(models, frame, align, steps=projection_steps, cancel=cancel,
                                            monitor=part)
            targets.append(to_tensor(align.crop(frame), dev))
            pivots.append(inv.w_plus.detach().float())

    result = yield from tune(g, targets, pivots, lpips_model, config=config, base_sha256=models.generator_sha256,
                             cancel=cancel, monitor=monitor.sub(0.5, 0.97))
    cancel.raise_if_cancelled()
    delta = make_delta(g, result.generator)
    with torch.no_grad():
        recon = to_image(_render(result.generator, pivots[0]))
    preview = np.concatenate([to_image(targets[0]), recon], axis=1)
    yield monitor.event("save", 0, 1, f"writing {output.name}")
    cancel.raise_if_cancelled()
    save_person(output, delta, pivots=pivots, base_sha256=models.generator_sha256, steps=result.steps,
                final_lpips=result.final_lpips, final_l2=result.final_l2, preview_png_bytes=_png(preview),
                extra_metadata={"source": Path(image or video).name, "encoder": encoder or "none",
                                "initial_lpips": repr(result.initial_lpips), "initial_l2": repr(result.initial_l2)})
    yield monitor.event("done", 1, 1, "person saved")
    return PersonResult(path=output, preview=preview_path(output), pivots=len(pivots), steps=result.steps,
                        initial_lpips=result.initial_lpips, final_lpips=result.final_lpips,
                        initial_l2=result.initial_l2, final_l2=result.final_l2, base_sha256=models.generator_sha256,
                        changed_params=len(delta))


__all__ = ["PersonResult", "TuneConfig", "TuneResult", "apply_delta", "evaluate", "load_person", "make_delta",
           "preview_path", "read_person", "save_person", "tune", "tune_person"]
