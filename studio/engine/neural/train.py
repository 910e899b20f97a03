"""Stage-one training of the speech-to-latent model (seed paper, sections 3.2.1 and 4.1-4.2).

``prepare_dataset``: every talking video of a folder is resampled to 25 fps, each frame FFHQ-aligned and
inverted by E_I into W+ (w_t = E_I(x_t)), and the MFCC window of 0.2 s centred on each frame computed.
One safetensors shard per video is written atomically, and ``index.json`` lists the finished shards, so
an interrupted run resumes at the next video. Speakers (the video's sub-folder, or the file name up to the
first ``_`` or ``-``) are split into train and held-out sets, as the paper holds out whole speakers.

``train_audio``: E_A and D are trained with G and E_I fixed (paper eq. 4):

    L = 250 * L_latent + 1 * LPIPS_vgg(G(w̄_t), G(w_t)),

where L_latent (eq. 2) is taken as the mean squared error over the W+ elements of w_t - w̄_t and G(w_t) =
G(E_I(x_t)) is the inverted target (eq. 3). Each training target is the middle frame of a 5-frame window;
its identity code is a random frame of that window. Adam at lr 2e-4. Sampling at step k depends only on
(seed, k), and checkpoints hold the model, the optimiser and the step, so a resumed run continues exactly
as an uninterrupted one. Losses go to ``loss.csv`` and the validation (held-out speakers: latent MSE, and
LMD of the 20 mouth landmarks on G's renders when faces can be measured) to ``val.csv``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from studio.core.errors import ConfigError, InputError, ModelError, OutputError
from studio.core.events import CancelToken, Job, Notice, ProgressMonitor
from studio.core.fileio import atomic_write_text
from studio.media.kinds import VIDEO_SUFFIXES, check_output_path, is_video

INDEX = "index.json"
WINDOW = 5  # frames of one 0.2 s window at 25 fps
ARCH_TARGET = "studio.models.latent_decoder:SpeechToLatent"

#: model sizes: "paper" (~30.9 M parameters, beside the paper's 29.68 M) and "small" for CPU training
PRESETS: dict[str, dict] = {
    "paper": {},
    "small": dict(conv_channels=[32, 64, 128, 256], audio_dim=256, lstm_hidden=256, decoder_hidden=256,
                  n_components=128),
}


# ---------------------------------------------------------------------------------------------- dataset
def speaker_of(path: Path, root: Path) -> str:
    """The speaker of a video: its sub-folder under ``root``, else its file name up to the first _ or -."""
    rel = path.relative_to(root)
    if len(rel.parts) > 1:
        return rel.parts[0]
    return re.split(r"[_\-]", path.stem, maxsplit=1)[0] or path.stem


def held_out(speaker: str, fraction: float) -> bool:
    """Deterministic speaker split: a stable hash of the name decides, so re-runs agree."""
    h = int(hashlib.sha256(speaker.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < fraction


def _shard_name(path: Path, root: Path) -> str:
    rel = str(path.relative_to(root))
    return re.sub(r"[^A-Za-z0-9._-]+", "_", rel) + f".{hashlib.sha1(rel.encode()).hexdigest()[:8]}.safetensors"


def _read_index(folder: Path) -> dict:
    path = folder / INDEX
    if not path.is_file():
        return {"version": 1, "shards": {}}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise InputError(f"{path} is corrupt", "delete the dataset folder and prepare it again") from None


@dataclass
class PreparedDataset:
    """What :func:`prepare_dataset` wrote: the folder, its shards and figures."""

    path: Path
    videos: int
    skipped: int
    frames: int
    train_speakers: list[str]
    held_out_speakers: list[str]
    failed: dict[str, str] = field(default_factory=dict)


def prepare_dataset(videos: Path, output: Path, *, encoder: str = "e4e", fps: float = 25.0,
                    held_out_fraction: float = 0.2, device: str | torch.device | None = None,
                    cancel: CancelToken | None = None, monitor: ProgressMonitor | None = None
                    ) -> Job[PreparedDataset]:
    """Turn a folder of talking videos into training shards (resumable).

    Args:
        videos: folder searched recursively for videos (MP4, MOV, MKV, WebM, AVI, MPG).
        output: dataset folder (created). encoder: E_I ("e4e" or "psp").
        fps: the frame grid (25, as the paper). held_out_fraction: share of speakers held out (0..0.9).

    Yields Progress and Notices (a video without a usable face, ...); returns :class:`PreparedDataset`.
        Each shard holds ``w`` (T, n_latent, style_dim) float16 codes, ``mfcc`` (T, 12, 28) float32,
        ``mouth`` (T, 20, 2) float32 iBUG mouth landmarks in the 256² aligned crop, ``valid`` (T,) uint8.

    Raises:
        InputError: no videos. ModelError: the encoder or generator is not installed. Cancelled.
    """
    from studio.engine.audio.mfcc import MfccConfig, mfcc_windows
    from studio.engine.eval.metrics import mouth_points
    from studio.engine.face.align import ffhq_alignment
    from studio.engine.face.detect import FaceTracker
    from studio.engine.neural.invert import ENCODER_SIZE, ENCODERS, GENERATOR, to_tensor
    from studio.media.audio import load_audio
    from studio.media.video import read_video_frames
    from studio.models import store
    from studio.models.registry import save_safetensors

    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    videos, output = Path(videos), Path(output)
    if encoder not in ENCODERS:
        raise ConfigError(f"unknown encoder {encoder!r}", f"use one of: {', '.join(ENCODERS)}")
    if not 0.0 <= held_out_fraction <= 0.9:
        raise ConfigError(f"invalid held-out fraction {held_out_fraction}", "use a value from 0 to 0.9")
    if not videos.is_dir():
        raise InputError(f"not a folder: {videos}", "give the folder that holds the training videos")
    files = sorted(p for p in videos.rglob("*") if is_video(p) and p.is_file())
    if not files:
        raise InputError(f"no videos in {videos}", f"put talking-head videos ({', '.join(sorted(VIDEO_SUFFIXES))}) there")
    store.require(GENERATOR, ENCODERS[encoder], feature="training data preparation")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {output}: {exc.strerror or exc}", "choose a writable folder") from None
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sha = store.load_weights(GENERATOR).source_sha256
    index = _read_index(output)
    if index.get("generator_sha256", sha) != sha or index.get("encoder", encoder) != encoder:
        raise ConfigError(f"{output} was prepared with another generator or encoder",
                          "use a new dataset folder (codes of different generators do not mix)")
    cfg = MfccConfig(fps=fps)
    if "mfcc" in index and MfccConfig.from_dict(index["mfcc"]) != cfg:
        raise ConfigError(f"{output} was prepared with other MFCC features (an earlier version centred each "
                          "window on the start of its frame, half a frame early)",
                          "prepare into a new dataset folder (features of different settings do not mix)")
    index.update({"generator_sha256": sha, "encoder": encoder, "fps": fps, "mfcc": cfg.to_dict()})
    enc = store.load(ENCODERS[encoder], device=dev)
    avg = enc.extras.get("latent_avg")
    skipped = frames_total = 0
    failed: dict[str, str] = {}
    for vi, path in enumerate(files):
        cancel.raise_if_cancelled()
        name = _shard_name(path, videos)
        part = monitor.sub(vi / len(files), (vi + 1) / len(files))
        if name in index["shards"] and (output / name).is_file():
            skipped += 1
            frames_total += int(index["shards"][name]["frames"])
            yield part.event("prepare", 1, 1, f"{path.name}: done before")
            continue
        speaker = speaker_of(path, videos)
        try:
            clip = load_audio(path, sample_rate=cfg.sample_rate)
            meta, it = read_video_frames(path)
        except Exception as exc:  # a bad file is recorded, the others go on
            failed[str(path)] = getattr(exc, "message", str(exc))
            yield Notice(f"skipping {path.name}: {failed[str(path)]}")
            continue
        src_fps = meta.fps or fps
        n_out = max(1, int(math.floor(min(meta.duration or clip.duration, clip.duration) * fps)))
        wanted = np.minimum(np.round(np.arange(n_out) * src_fps / fps).astype(int), 10 ** 9)
        tracker = FaceTracker()
        w_rows: list[np.ndarray | None] = [None] * n_out
        mouth = np.zeros((n_out, 20, 2), np.float32)
        valid = np.zeros(n_out, np.uint8)
        j = 0
        with it:
            for k, frame in enumerate(it):
                if j >= n_out:
                    break
                while j < n_out and wanted[j] == k:
                    cancel.raise_if_cancelled()
                    face = tracker.update(frame)
                    if face is not None:
                        align = ffhq_alignment(face.points, size=ENCODER_SIZE)
                        x = to_tensor(align.crop(frame), dev)
                        with torch.no_grad():
                            w = enc.module.encode(x, latent_avg=None if avg is None else avg.to(dev))
                        w_rows[j] = w[0].float().cpu().numpy()
                        mouth[j] = align.to_crop(mouth_points(face.points))
                        valid[j] = 1
                    j += 1
                if k % 10 == 0:
                    yield part.event("prepare", j, n_out, f"{path.name}: frame {j}/{n_out}")
        if valid.sum() < WINDOW:
            failed[str(path)] = "fewer than 5 frames with a face"
            yield Notice(f"skipping {path.name}: {failed[str(path)]}")
            continue
        shape = next(r for r in w_rows if r is not None).shape
        codes = np.stack([r if r is not None else np.zeros(shape, np.float32) for r in w_rows]).astype(np.float16)
        feats = mfcc_windows(clip.samples, clip.sample_rate, n_out, cfg)
        save_safetensors(output / name, {"w": torch.from_numpy(codes), "mfcc": torch.from_numpy(feats),
                                         "mouth": torch.from_numpy(mouth), "valid": torch.from_numpy(valid)},
                         metadata={"talkstudio.video": str(path.relative_to(videos)), "talkstudio.speaker": speaker})
        index["shards"][name] = {"video": str(path.relative_to(videos)), "speaker": speaker, "frames": n_out,
                                 "valid": int(valid.sum()), "split": "val" if held_out(speaker, held_out_fraction)
                                 else "train"}
        atomic_write_text(output / INDEX, json.dumps(index, indent=1, sort_keys=True))
        frames_total += n_out
        yield part.event("prepare", 1, 1, f"{path.name}: {n_out} frames")
    if not index["shards"]:
        raise InputError(f"no usable video in {videos}", "the videos need a visible face and a soundtrack")
    _ensure_split(output, index)
    speakers = {s["speaker"]: s["split"] for s in index["shards"].values()}
    return PreparedDataset(path=output, videos=len(files) - len(failed) - skipped, skipped=skipped,
                           frames=frames_total, train_speakers=sorted(k for k, v in speakers.items() if v == "train"),
                           held_out_speakers=sorted(k for k, v in speakers.items() if v == "val"), failed=failed)


def _ensure_split(output: Path, index: dict) -> None:
    """Both splits non-empty when there are two or more speakers (the hash may put all on one side); a single
    speaker is all training data (validation then runs on it)."""
    speakers = sorted({s["speaker"] for s in index["shards"].values()})
    splits = {s["split"] for s in index["shards"].values()}
    if len(speakers) == 1 and splits != {"train"}:
        for s in index["shards"].values():
            s["split"] = "train"
        atomic_write_text(output / INDEX, json.dumps(index, indent=1, sort_keys=True))
        return
    if len(speakers) >= 2 and len(splits) == 1:
        moved = speakers[-1] if "train" in splits else speakers[0]
        for s in index["shards"].values():
            s["split"] = ("val" if s["speaker"] == moved else "train") if "train" in splits else \
                ("train" if s["speaker"] == moved else "val")
        atomic_write_text(output / INDEX, json.dumps(index, indent=1, sort_keys=True))


class LazyTensor:
    """A tensor of a safetensors shard read on demand (memory-mapped slices), so a dataset of hours of video
    (18 KB of codes per frame) is never loaded whole. Indexing returns float32 CPU tensors."""

    def __init__(self, path: Path, key: str) -> None:
        from safetensors import safe_open

        self.path, self.key = Path(path), key
        with safe_open(str(self.path), framework="pt") as f:
            self.shape = tuple(f.get_slice(key).get_shape())

    def __getitem__(self, index) -> torch.Tensor:
        from safetensors import safe_open

        idx = torch.as_tensor(np.asarray(index))
        if idx.dtype == torch.bool:
            idx = torch.nonzero(idx).flatten()
        scalar = idx.dim() == 0
        idx = idx.reshape(-1).long()
        if idx.numel() == 0:
            return torch.zeros((0,) + self.shape[1:])
        lo, hi = int(idx.min()), int(idx.max()) + 1
        with safe_open(str(self.path), framework="pt") as f:
            block = f.get_slice(self.key)[lo:hi].float()
        out = block[idx - lo]
        return out[0] if scalar else out

    def full(self) -> torch.Tensor:
        """The whole tensor (float32)."""
        return self[np.arange(self.shape[0])]


@dataclass
class Shard:
    """One prepared video: codes ``w`` (T, L, D) and ``mfcc`` (T, 12, 28) read lazily (:class:`LazyTensor`),
    mouth (T, 20, 2) landmarks and valid (T,) in memory."""

    name: str
    speaker: str
    w: LazyTensor
    mfcc: LazyTensor
    mouth: np.ndarray
    valid: np.ndarray

    @property
    def n_frames(self) -> int:
        return self.w.shape[0]


def load_dataset(folder: Path) -> tuple[dict, list[Shard], list[Shard]]:
    """(index, train shards, held-out shards) of a prepared dataset.

    Raises:
        InputError: not a prepared dataset. ModelError: a corrupt shard (named).
    """
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    index = _read_index(folder)
    if not index["shards"]:
        raise InputError(f"{folder} is not a prepared dataset (no {INDEX} with shards)",
                         "run `talkstudio train prepare VIDEOS_DIR --output DATASET` first")
    train, val = [], []
    for name, info in sorted(index["shards"].items()):
        path = folder / name
        try:
            with safe_open(str(path), framework="pt") as f:
                mouth, valid = f.get_tensor("mouth").numpy(), f.get_tensor("valid").numpy().astype(bool)
            shard = Shard(name, info["speaker"], LazyTensor(path, "w"), LazyTensor(path, "mfcc"), mouth, valid)
        except (OSError, SafetensorError, KeyError) as exc:
            raise ModelError(f"dataset shard {name} is unreadable ({exc})"[:300],
                             "delete it and its line in index.json, then run `train prepare` again") from None
        (val if info["split"] == "val" else train).append(shard)
    if not train:
        train, val = val, []
    return index, train, val


# ---------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainConfig:
    """Stage-one hyperparameters (paper section 4.2 where it gives them).

    Attributes:
        steps: total optimisation steps. batch: sequences per step. seq_len: frames per sequence (the LSTM's
        context). lr: Adam learning rate (2e-4). lambda_latent / lambda_lpips: eq. 4 weights (250 / 1).
        lpips_net: "vgg" (paper) or "alex". lpips_size: LPIPS resolution (renders are area-downsampled).
        lpips_frames: rendered frames per step for the LPIPS term (G at 1024² is the cost). n_pca_samples:
        mapped W+ samples for V. checkpoint_every / val_every: steps. seed: sampling seed.
        preset: "paper" or "small" (see :data:`PRESETS`); model: explicit constructor kwargs (override).
    """

    steps: int = 20000
    batch: int = 8
    seq_len: int = 25
    lr: float = 2e-4
    lambda_latent: float = 250.0
    lambda_lpips: float = 1.0
    lpips_net: str = "vgg"
    lpips_size: int = 256
    lpips_frames: int = 4
    n_pca_samples: int = 4096
    checkpoint_every: int = 500
    val_every: int = 500
    seed: int = 0
    preset: str = "paper"
    model: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.steps < 1 or self.batch < 1 or self.seq_len < WINDOW or self.checkpoint_every < 1:
            raise ConfigError("steps, batch and checkpoint interval must be >= 1 and the sequence >= 5 frames",
                              "check the training options")
        if self.lr <= 0 or self.lambda_latent < 0 or self.lambda_lpips < 0:
            raise ConfigError("the learning rate must be positive and the loss weights non-negative", "")
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown model preset {self.preset!r}", f"use one of: {', '.join(PRESETS)}")


@dataclass
class TrainResult:
    """The written model and its figures."""

    path: Path
    steps: int
    final_loss: float
    first_loss: float
    val_latent: float
    val_lmd: float
    parameters: dict
    checkpoint: Path


def _sample_batch(shards: list[Shard], cfg: TrainConfig, step: int, seq_len: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mfcc (B, S, 12, 28), identity codes (B, S, L, D), target codes (B, S, L, D), target has a face (B, S))
    for one step; depends only on (seed, step), so resumed runs draw the same batches."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    lengths = torch.tensor([s.w.shape[0] for s in shards], dtype=torch.float64)
    mf, ids, tg, ok = [], [], [], []
    for _ in range(cfg.batch):
        s = shards[int(torch.multinomial(lengths, 1, generator=gen))]
        t_len = s.w.shape[0]
        start = int(torch.randint(0, max(1, t_len - seq_len + 1), (1,), generator=gen))
        idx = torch.arange(start, start + seq_len).clamp(max=t_len - 1)
        jitter = torch.randint(-(WINDOW // 2), WINDOW // 2 + 1, (seq_len,), generator=gen)
        ident = (idx + jitter).clamp(0, t_len - 1)
        valid = torch.from_numpy(s.valid)
        ident = torch.where(valid[ident], ident, idx)  # never an identity frame without a face
        mf.append(s.mfcc[idx])
        ids.append(s.w[ident])
        tg.append(s.w[idx])
        ok.append(valid[idx])
    return torch.stack(mf), torch.stack(ids), torch.stack(tg), torch.stack(ok)


def _model_kwargs(cfg: TrainConfig, n_latent: int, style_dim: int) -> dict:
    kw = dict(PRESETS[cfg.preset])
    kw.update(cfg.model)
    kw.update(n_latent=n_latent, style_dim=style_dim)
    kw["n_components"] = int(min(kw.get("n_components", 512), n_latent * style_dim))
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}


def _save_checkpoint(path: Path, model, opt, step: int) -> None:
    from studio.models.registry import staged_file

    with staged_file(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": torch.tensor(step)}, tmp)


def _downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    return torch.nn.functional.adaptive_avg_pool2d(x, size) if x.shape[-1] > size else x


def train_audio(dataset: Path, output: Path, *, config: TrainConfig | None = None, resume: bool = True,
                device: str | torch.device | None = None, cancel: CancelToken | None = None,
                monitor: ProgressMonitor | None = None) -> Job[TrainResult]:
    """Train E_A + D on a prepared dataset (stage one) and write the model file.

    Args:
        dataset: from :func:`prepare_dataset`. output: the model ``.safetensors`` (import it into the store
            with ``talkstudio models import``); checkpoints and CSV logs go to ``<output stem>.train/``.
        config: hyperparameters. resume: continue from the checkpoint when one exists (same config).

    Yields:
        Progress and Notices; returns :class:`TrainResult`. The model file appears only at the end.

    Raises:
        InputError (dataset), ModelError (missing G / LPIPS backbone, a checkpoint of another model),
        ConfigError, Cancelled (the last checkpoint stays, so a later run resumes).
    """
    from studio.engine.audio.mfcc import MfccConfig
    from studio.engine.neural.invert import GENERATOR
    from studio.engine.neural.perceptual import build_lpips
    from studio.models import store
    from studio.models.latent_decoder import SpeechToLatent, parameter_report, pca_basis, sample_w_plus
    from studio.models.registry import Architecture, save_safetensors

    cfg = config or TrainConfig()
    cfg.validate()
    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    output = check_output_path(output, (".safetensors",), what="model file")
    work = output.parent / f"{output.stem}.train"
    work.mkdir(exist_ok=True)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    index, train, val = load_dataset(dataset)
    store.require(GENERATOR, *(["lpips-vgg16" if cfg.lpips_net == "vgg" else "lpips-alexnet"]
                               if cfg.lambda_lpips > 0 else []), feature="training the speech-to-latent model")
    gen_loaded = store.load(GENERATOR, device=dev)
    g, sha = gen_loaded.module, gen_loaded.source_sha256
    if index.get("generator_sha256") != sha:
        raise ModelError("the dataset's codes were made with another generator than the installed one",
                         "prepare the dataset again with the installed generator")
    for p in g.parameters():
        p.requires_grad_(False)
    n_latent, style_dim = train[0].w.shape[1:]
    seq_len = min(cfg.seq_len, min(s.w.shape[0] for s in train))
    if seq_len < WINDOW:
        raise InputError("the training videos are shorter than 5 frames", "use clips of at least 0.2 s")
    kwargs = _model_kwargs(cfg, n_latent, style_dim)
    torch.manual_seed(cfg.seed)
    model = SpeechToLatent(**kwargs).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    ckpt_path = work / "checkpoint.pt"
    step = 0
    if resume and ckpt_path.is_file():
        try:
            state = torch.load(ckpt_path, map_location=dev, weights_only=True)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            step = int(state["step"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ModelError(f"the checkpoint {ckpt_path} does not fit this model ({exc})"[:400],
                             f"use the same options as before, or delete {work} to start over") from None
        yield Notice(f"resuming from step {step} ({ckpt_path})", level="note")
    else:
        yield monitor.event("pca", 0, 1, "computing the PCA basis V")
        mapped = sample_w_plus(g, cfg.n_pca_samples, seed=cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        total = sum(int(s.valid.sum()) for s in train)
        picks = []
        for s in train:  # up to n_pca_samples inverted frames, spread over the videos by their length
            valid = np.flatnonzero(s.valid)
            k = min(len(valid), int(np.ceil(cfg.n_pca_samples * len(valid) / max(total, 1))))
            if k:
                picks.append(s.w[np.sort(rng.choice(valid, k, replace=False))])
        data = torch.cat(picks)[: cfg.n_pca_samples]
        basis, mean, _explained = pca_basis(torch.cat([mapped, data]), kwargs["n_components"])
        model.decoder.set_basis(basis.to(dev), mean.to(dev))
        for name in ("loss.csv", "val.csv"):
            (work / name).unlink(missing_ok=True)
    report = parameter_report(model)
    yield Notice(f"model: E_A {report['E_A'] / 1e6:.2f} M + D {report['D'] / 1e6:.2f} M = "
                 f"{report['total'] / 1e6:.2f} M parameters (paper: {report['paper_total'] / 1e6:.2f} M)", level="note")
    lpips_model = build_lpips(cfg.lpips_net, device=dev) if cfg.lambda_lpips > 0 else None
    loss_log = work / "loss.csv"
    val_log = work / "val.csv"
    first = last = float("nan")
    val_latent = val_lmd = float("nan")
    part = monitor.sub(0.02, 0.98)
    model.train()
    while step < cfg.steps:
        cancel.raise_if_cancelled()
        mf, ids, tg, ok = (t.to(dev) for t in _sample_batch(train, cfg, step, seq_len))
        w_bar = model(mf, ids)
        l_latent = ((w_bar - tg) ** 2)[ok].mean()  # frames without a face have no target
        loss = cfg.lambda_latent * l_latent
        l_lpips = torch.zeros((), device=dev)
        if lpips_model is not None:
            pick = torch.Generator().manual_seed(cfg.seed * 7919 + step)
            cand = torch.nonzero(ok.reshape(-1).cpu()).flatten()
            flat = cand[torch.randperm(len(cand), generator=pick)[: cfg.lpips_frames]].to(dev)
            wb = w_bar.reshape(-1, n_latent, style_dim)[flat]
            wt = tg.reshape(-1, n_latent, style_dim)[flat]
            fake = g(wb, input_space="w+", noise_mode="const", precision="fp32")
            with torch.no_grad():
                real = g(wt, input_space="w+", noise_mode="const", precision="fp32")
            l_lpips = lpips_model(_downsample(fake, cfg.lpips_size), _downsample(real, cfg.lpips_size)).mean()
            loss = loss + cfg.lambda_lpips * l_lpips
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        last = float(loss.detach())
        if first != first:
            first = last
        new = not loss_log.exists()
        with loss_log.open("a", newline="") as f:
            wr = csv.writer(f)
            if new:
                wr.writerow(["step", "loss", "latent_mse", "lpips"])
            wr.writerow([step, f"{last:.6g}", f"{float(l_latent.detach()):.6g}", f"{float(l_lpips.detach()):.6g}"])
        if step % cfg.val_every == 0 or step == cfg.steps:
            val_latent, val_lmd = evaluate(model, g, val or train, seq_len=seq_len, device=dev)
            model.train()
            new = not val_log.exists()
            with val_log.open("a", newline="") as f:
                wr = csv.writer(f)
                if new:
                    wr.writerow(["step", "latent_mse", "lmd"])
                wr.writerow([step, f"{val_latent:.6g}", f"{val_lmd:.6g}"])
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _save_checkpoint(ckpt_path, model, opt, step)
        yield part.event("train", step, cfg.steps, f"step {step}/{cfg.steps} loss {last:.4f}")
    model.eval()
    extras = {"generator_sha256": sha, "mfcc": index.get("mfcc", MfccConfig().to_dict()), "steps": step,
              "parameters": report, "dataset": Path(dataset).name, "opts": {"model": "speech-to-latent"},
              "val_latent_mse": val_latent, "val_lmd": val_lmd}
    save_safetensors(output, model.state_dict(), architecture=Architecture(ARCH_TARGET, kwargs), extras=extras,
                     metadata={"talkstudio.generator_sha256": sha})
    yield monitor.event("done", 1, 1, f"wrote {output.name}")
    return TrainResult(path=output, steps=step, final_loss=last, first_loss=first, val_latent=val_latent,
                       val_lmd=val_lmd, parameters=report, checkpoint=ckpt_path)


@torch.no_grad()
def evaluate(model, generator, shards: list[Shard], *, seq_len: int, device: torch.device,
             max_frames: int = 32) -> tuple[float, float]:
    """Held-out figures: (latent MSE over all frames, LMD in pixels at 256² over up to ``max_frames`` frames).

    The identity code of each clip is its first frame with a face; LMD compares the 20 mouth landmarks
    detected on G(w̄_t) with those of the real aligned frame (NaN when no face is found on the renders,
    e.g. with an untrained generator).
    """
    from studio.engine.eval.metrics import lmd, mouth_points
    from studio.engine.face.detect import detect_faces

    model.eval()
    errs, dists = [], []
    budget = max_frames
    for s in shards:
        first = int(np.flatnonzero(s.valid)[0]) if s.valid.any() else 0
        w_bar = model(s.mfcc.full()[None].to(device), s.w[first][None].to(device))[0]
        ok = torch.from_numpy(s.valid).to(device)
        errs.append(float(((w_bar - s.w.full().to(device)) ** 2)[ok].mean()))
        if budget <= 0:
            continue
        picks = np.flatnonzero(s.valid)[:: max(1, int(s.valid.sum()) // 8)][:budget]
        budget -= len(picks)
        imgs = generator(w_bar[torch.as_tensor(picks, device=device)], input_space="w+", noise_mode="const")
        imgs = torch.nn.functional.interpolate(imgs.float(), size=(256, 256), mode="area") \
            if imgs.shape[-1] != 256 else imgs.float()
        arr = ((imgs.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        for k, img in zip(picks, arr):
            faces = detect_faces(np.ascontiguousarray(img))
            if faces:
                dists.append(lmd(s.mouth[k], mouth_points(faces[0].points)))
    return (float(np.mean(errs)) if errs else float("nan")), (float(np.mean(dists)) if dists else float("nan"))


__all__ = ["PRESETS", "PreparedDataset", "Shard", "TrainConfig", "TrainResult", "evaluate", "held_out",
           "load_dataset", "prepare_dataset", "speaker_of", "train_audio"]
