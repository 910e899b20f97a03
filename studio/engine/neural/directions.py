"""Edit directions in W+ found from the generator itself, measured with the landmark detector.

The neural engine needs to open the mouth, spread or round the lips, blink, smile, raise the brows and
turn the head without a trained speech-to-latent model. Following InterFaceGAN (Shen et al., CVPR 2020:
a linear boundary in the latent space per attribute) we sample latents through the mapping network,
render them, measure each attribute on the rendered faces with the 478-point landmark detector, and fit a
ridge regression of the attribute on w; the regression's weight vector is the direction. It is applied
only on the W+ layers that carry the attribute (pose on the coarse layers 0-3, as StyleTalker and SPEAK
argue for coarse-layer pose; mouth and expression on the middle layers 4-7; eyes on 4-9), so identity and
texture, carried by the fine layers, stay put.

Each direction is then calibrated by rendering: a step along it is measured again, the sign is fixed so
that + raises the measure, and the step per control unit is set so that control 1.0 spans the natural
range of the attribute over the sampled faces (the 5th-95th percentile), or one degree for head pose.
Directions are stored in the model store keyed to the generator's sha256.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from studio.core.errors import ModelError
from studio.core.events import CancelToken, Job, ProgressMonitor

#: A measurement function: (N, 3, S, S) float images in [-1, 1] -> {measure name: (N,) float array}
#: (NaN where a face could not be measured).
Measure = Callable[[torch.Tensor], dict[str, np.ndarray]]


@dataclass(frozen=True)
class DirectionSpec:
    """What a direction edits.

    Attributes:
        name: the direction's name. measure: the key of the measurement it is fitted to.
        layers: (start, stop) W+ layers for an 18-layer (1024²) generator; scaled for other sizes.
        unit: "range" (control 1.0 = the measure's 5th-95th percentile range over the samples) or
            "value" (control 1.0 = one unit of the measure, e.g. one degree).
    """

    name: str
    measure: str
    layers: tuple[int, int]
    unit: str = "range"


#: The directions the engine uses: mouth (jaw opening, lip width, rounding), eyes, expression, pose.
SPECS: tuple[DirectionSpec, ...] = (
    DirectionSpec("open", "lip_gap", (4, 8)),
    DirectionSpec("spread", "mouth_width", (4, 8)),
    DirectionSpec("round", "lip_round", (4, 8)),
    DirectionSpec("eyes", "eye_open", (4, 10)),
    DirectionSpec("smile", "smile", (4, 8)),
    DirectionSpec("brow", "brow", (4, 8)),
    DirectionSpec("yaw", "yaw", (0, 4), unit="value"),
    DirectionSpec("pitch", "pitch", (0, 4), unit="value"),
)


def scaled_layers(layers: tuple[int, int], n_latent: int) -> tuple[int, int]:
    """Map a layer range of the 18-layer generator to one with ``n_latent`` layers (same resolutions)."""
    if n_latent == 18:
        return layers
    a = int(round(layers[0] * n_latent / 18))
    b = max(a + 1, int(round(layers[1] * n_latent / 18)))
    return a, min(b, n_latent)


@dataclass
class Direction:
    """One calibrated direction.

    Attributes:
        name: see :data:`SPECS`. vector: (n_latent, style_dim) float32 W+ step for control 1.0 (zero
            outside its layers). layers: the (start, stop) layers used. gain: change of the measure per
            control unit after calibration (the sampled 5-95 % range, or 1 for per-unit measures such as
            degrees; its sign was fixed by the validation render). r2: fit quality (coefficient of determination on
            held-out samples). samples: how many faces were measured.
    """

    name: str
    vector: torch.Tensor
    layers: tuple[int, int]
    gain: float
    r2: float
    samples: int


@dataclass
class DirectionSet:
    """The directions of one generator (keyed by its sha256)."""

    generator_sha256: str
    directions: dict[str, Direction] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.directions

    def offset(self, controls: Mapping[str, np.ndarray | float]) -> torch.Tensor:
        """Sum of control * vector over the given controls.

        Args:
            controls: direction name -> value (float) or (T,) values.

        Returns:
            (n_latent, style_dim) or (T, n_latent, style_dim) float32 offset in W+.
        """
        any_vec = next(iter(self.directions.values())).vector
        out = None
        for name, value in controls.items():
            if name not in self.directions:
                continue
            v = torch.as_tensor(np.asarray(value, dtype=np.float32))
            term = v.reshape(v.shape + (1, 1)) * self.directions[name].vector
            out = term if out is None else out + term
        return out if out is not None else torch.zeros_like(any_vec)


# ---------------------------------------------------------------------------------------------- measuring
def landmark_measure(images: torch.Tensor) -> dict[str, np.ndarray]:
    """Face measures of generated images with the 478-point landmark detector.

    Args:
        images: (N, 3, S, S) float in [-1, 1].

    Returns:
        name -> (N,) float64 (NaN where no face was found): lip_gap, mouth_width, lip_round (outer lip
        height / width), eye_open (eye aspect ratio), smile, brow (in inter-ocular distances, see
        :func:`studio.engine.sources.emotion.expression_measures`), yaw and pitch (degrees, relative to
        the first measurable face).
    """
    from studio.engine.face import topology as T
    from studio.engine.face.detect import detect_faces
    from studio.engine.sources.emotion import expression_measures
    from studio.engine.sources.pose import PoseEstimator

    keys = ("lip_gap", "mouth_width", "lip_round", "eye_open", "smile", "brow", "yaw", "pitch")
    out = {k: np.full(images.shape[0], np.nan) for k in keys}
    arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    estimator = None
    for i, img in enumerate(arr):
        if img.shape[0] > 512:
            import cv2

            img = cv2.resize(img, (512, 512), interpolation=cv2.INTER_AREA)
        faces = detect_faces(np.ascontiguousarray(img))
        if not faces:
            continue
        face = faces[0]
        p = face.points.astype(np.float64)
        ex = expression_measures(p)
        left = p[list(T.EYE_IMAGE_LEFT["upper"]) + list(T.EYE_IMAGE_LEFT["lower"])].mean(axis=0)
        right = p[list(T.EYE_IMAGE_RIGHT["upper"]) + list(T.EYE_IMAGE_RIGHT["lower"])].mean(axis=0)
        iod = float(np.linalg.norm(right - left))
        width = T.mouth_width(p)
        height = float(np.linalg.norm(p[0] - p[17]))  # outer upper lip top to outer lower lip bottom
        out["lip_gap"][i] = T.inner_lip_gap(p) / iod
        out["mouth_width"][i] = width / iod
        out["lip_round"][i] = height / max(width, 1e-6)
        out["eye_open"][i] = ex["eyes"]
        out["smile"][i] = ex["smile"]
        out["brow"][i] = ex["brow"]
        if estimator is None:
            estimator = PoseEstimator(face, img.shape[:2])
        pose = estimator(face)
        out["yaw"][i], out["pitch"][i] = pose[0], pose[1]
    return out


# ---------------------------------------------------------------------------------------------- fitting
def _ridge_direction(w: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Unit vector of the ridge regression of y on w ((N, D) centred, (N,) centred)."""
    n, d = w.shape
    if n < d:  # dual form: w^T (w w^T + a I)^-1 y
        coef = w.T @ np.linalg.solve(w @ w.T + alpha * np.eye(n), y)
    else:
        coef = np.linalg.solve(w.T @ w + alpha * np.eye(d), w.T @ y)
    norm = np.linalg.norm(coef)
    return coef / norm if norm > 0 else coef


def _r2(w: np.ndarray, y: np.ndarray, folds: int = 4, alpha: float = 1.0) -> float:
    """Cross-validated R² of ridge regression (how well the attribute is linear in w)."""
    n = len(y)
    if n < 2 * folds:
        return float("nan")
    idx = np.arange(n)
    pred = np.zeros(n)
    for f in range(folds):
        test = idx % folds == f
        wt, yt = w[~test], y[~test]
        mu_w, mu_y = wt.mean(0), yt.mean()
        wc = wt - mu_w
        coef = wc.T @ np.linalg.solve(wc @ wc.T + alpha * np.eye(len(wc)), yt - mu_y)
        pred[test] = (w[test] - mu_w) @ coef + mu_y
    ss = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / ss if ss > 0 else float("nan")


@torch.no_grad()
def _render(generator: torch.nn.Module, w_plus: torch.Tensor, batch: int) -> torch.Tensor:
    outs = []
    for i in range(0, w_plus.shape[0], batch):
        outs.append(generator(w_plus[i:i + batch], input_space="w+", noise_mode="const").float().cpu())
    return torch.cat(outs)


def discover_directions(generator: torch.nn.Module, *, generator_sha256: str, samples: int = 96,
                        specs: Sequence[DirectionSpec] = SPECS, measure: Measure | None = None,
                        truncation: float = 0.7, seed: int = 0, batch: int = 4, ridge: float = 1.0,
                        cancel: CancelToken | None = None, monitor: ProgressMonitor | None = None
                        ) -> Job[DirectionSet]:
    """Find and calibrate the :data:`SPECS` directions of a generator.

    Args:
        generator: :class:`studio.models.stylegan2.Generator` (with ``latent_avg`` for truncation).
        generator_sha256: the checkpoint's sha256 (the key the set is stored under).
        samples: latents rendered and measured (each costs one generator pass + one landmark fit).
        measure: images -> measures (default :func:`landmark_measure`; tests pass their own).
        truncation: psi toward w_avg for the samples (faces the detector can measure).
        ridge: L2 penalty of the regression, relative to the mean squared norm of the centred w.

    Yields Progress; returns the :class:`DirectionSet` (directions whose measure could not be fitted, e.g.
    fewer than 8 measurable faces, are left out).

    Raises:
        ModelError: no face could be measured on any sample (not a face generator).
        Cancelled.
    """
    from studio.models.latent_decoder import sample_w_plus

    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    measure = measure or landmark_measure
    dev = next(generator.parameters()).device
    n_latent = generator.n_latent
    w_all = sample_w_plus(generator, samples, truncation=truncation, seed=seed)  # (N, L, D)
    w = w_all[:, 0].double().numpy()
    part = monitor.sub(0.0, 0.7)
    values: dict[str, list[np.ndarray]] = {}
    for i in range(0, samples, batch):
        cancel.raise_if_cancelled()
        imgs = _render(generator, w_all[i:i + batch].to(dev), batch)
        for k, v in measure(imgs).items():
            values.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
        yield part.event("sample", min(i + batch, samples), samples, "rendering and measuring sample faces")
    measured = {k: np.concatenate(v) for k, v in values.items()}
    if not measured or all(np.isfinite(v).sum() == 0 for v in measured.values()):
        raise ModelError("no face could be measured on the generator's samples",
                         "direction discovery needs a face generator (e.g. StyleGAN2 FFHQ)")
    result = DirectionSet(generator_sha256)
    calib = monitor.sub(0.7, 1.0)
    usable = [s for s in specs if s.measure in measured and np.isfinite(measured[s.measure]).sum() >= 8]
    for j, spec in enumerate(usable):
        cancel.raise_if_cancelled()
        y_all = measured[spec.measure]
        ok = np.isfinite(y_all)
        wk, y = w[ok], y_all[ok]
        wc = wk - wk.mean(0)
        alpha = ridge * float((wc ** 2).sum(1).mean())
        unit_dir = _ridge_direction(wc, y - y.mean(), alpha)
        proj = wc @ unit_dir
        spread_w = float(np.percentile(proj, 95) - np.percentile(proj, 5)) or float(proj.std() * 3.3) or 1.0
        a, b = scaled_layers(spec.layers, n_latent)
        vec = torch.zeros(n_latent, w.shape[1])
        vec[a:b] = torch.from_numpy(unit_dir).float()
        # calibrate by rendering: +/- half the sampled spread around a few measurable samples
        base = w_all[np.flatnonzero(ok)[:min(6, int(ok.sum()))]]
        step = 0.5 * spread_w
        probe = torch.cat([base + step * vec, base - step * vec]).to(dev)
        m = measure(_render(generator, probe, batch))[spec.measure]
        hi, lo = m[: len(base)], m[len(base):]
        good = np.isfinite(hi) & np.isfinite(lo)
        yield calib.event("calibrate", j + 1, len(usable), f"calibrating '{spec.name}'")
        if good.sum() == 0:
            continue
        gain_per_w = float(np.mean(hi[good] - lo[good])) / (2 * step)  # measure per unit along unit_dir
        if not np.isfinite(gain_per_w) or gain_per_w == 0:
            continue
        if spec.unit == "value":
            per_control = 1.0 / gain_per_w  # W units per one unit of the measure (e.g. one degree)
        else:
            y_range = float(np.percentile(y, 95) - np.percentile(y, 5)) or float(y.std() * 3.3)
            per_control = y_range / gain_per_w
        direction = vec * per_control  # the sign of gain flips it so + raises the measure
        result.directions[spec.name] = Direction(
            name=spec.name, vector=direction, layers=(a, b),
            gain=float(gain_per_w * per_control), r2=_r2(wc, y), samples=int(ok.sum()))
    return result


# ---------------------------------------------------------------------------------------------- storage
def directions_path(generator_sha256: str) -> Path:
    """Where the directions of the generator with this sha256 live in the model store."""
    from studio.core.paths import model_dir

    return model_dir() / "directions" / f"{generator_sha256[:16]}.safetensors"


def save_directions(directions: DirectionSet, path: Path | None = None) -> Path:
    """Write a :class:`DirectionSet` as safetensors (atomically). Returns the path."""
    from studio.models.registry import save_safetensors

    path = Path(path or directions_path(directions.generator_sha256))
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"{d.name}": d.vector for d in directions.directions.values()}
    info = {d.name: {"layers": list(d.layers), "gain": d.gain, "r2": d.r2, "samples": d.samples}
            for d in directions.directions.values()}
    save_safetensors(path, tensors, extras={"directions": info},
                     metadata={"talkstudio.generator_sha256": directions.generator_sha256})
    return path


def load_directions(generator_sha256: str, path: Path | None = None) -> DirectionSet | None:
    """The stored directions of this generator, or None when none were discovered yet.

    Raises:
        ModelError: the file is corrupt or belongs to another generator.
    """
    from studio.models.registry import read_checkpoint

    path = Path(path or directions_path(generator_sha256))
    if not path.is_file():
        return None
    ckpt = read_checkpoint(path)
    owner = ckpt.metadata.get("talkstudio.generator_sha256", "")
    if owner != generator_sha256:
        raise ModelError(f"{path.name} holds the directions of another generator ({owner[:12]}…)",
                         "delete it; the directions are discovered again on the next neural render")
    state, extras = ckpt.extract("plain")
    info = extras.get("directions", {})
    out = DirectionSet(generator_sha256)
    for name, vec in state.items():
        meta = info.get(name, {})
        out.directions[name] = Direction(name, vec.float(), tuple(meta.get("layers", (0, vec.shape[0]))),
                                         float(meta.get("gain", float("nan"))), float(meta.get("r2", float("nan"))),
                                         int(meta.get("samples", 0)))
    return out


__all__ = ["SPECS", "Direction", "DirectionSet", "DirectionSpec", "Measure", "directions_path",
           "discover_directions", "landmark_measure", "load_directions", "save_directions", "scaled_layers"]
