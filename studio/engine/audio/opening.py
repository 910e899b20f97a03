"""Acoustic mouth opening: the lip gap a real speaker shows for a stretch of speech, read from its spectrum.

The loudness says *that* the mouth opens; the spectral envelope says *how far*: the first formant rises with
jaw opening and falls with closure, the second falls with lip rounding, and both shape the mel cepstrum. So a
small linear model from MFCC (plus the analysis's loudness) to the lip gap predicts opening for any
language, and without recognising a single phone (acoustic-to-articulatory inversion in its simplest,
regularised linear form; e.g. Yehia, Rubin & Vatikiotis-Bateson 1998, "Quantitative association of
vocal-tract and facial behavior", Speech Communication 26: linear maps from LSP/formant features to lip
and jaw motion explain most of the facial variance).

Model (fitted by ``benchmarks/fit_opening.py`` on real, in-sync talking videos; the fit, its data and its
leave-one-video-out figures are stored with the coefficients in ``opening_model.json``):

* features per 10 ms analysis step i (centred at (i + 0.5) * 10 ms, the grid of
  :mod:`studio.engine.audio.visemes`): 13 MFCC (c0..c12 of :func:`studio.engine.audio.mfcc.mfcc_windows`,
  25 ms Hann window, 40 mel bands, cepstral mean/variance normalised over the utterance's speech steps) and the
  opening loudness (level over the top 18 dB below the clip's speech level, 0 outside speech);
* context: those 14 values at steps i - 6, i - 3, i, i + 3, i + 6 (+-60 ms: the mouth anticipates and trails the
  sound; of +-40 / +-60 / +-80 / +-120 ms, +-60 gave the best leave-one-out r);
* output: ``gap = w . (f - mean) + bias`` in lip-gap units (inner-lip opening / mouth width, the measure
  of :func:`studio.engine.eval.metrics.lip_gap`), ridge-regularised (lambda in the JSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from studio.core.errors import ConfigError
from studio.engine.audio.mfcc import MfccConfig, mfcc_windows

STEP_S = 0.01  # seconds per analysis step (the visemes module's grid)
N_MFCC = 13
CONTEXT_STEPS: tuple[int, ...] = (-6, -3, 0, 3, 6)
FEATURE_CONFIG = MfccConfig(fps=1.0 / STEP_S, window_s=STEP_S, n_steps=1, n_mfcc=N_MFCC)
"""One 25 ms MFCC frame per 10 ms step, centred on the step's middle (``window_centre="interval"``)."""
N_FEATURES = (N_MFCC + 1) * len(CONTEXT_STEPS)
MODEL_FILE = "opening_model.json"
MAX_MODEL_BYTES = 1 << 20
CHUNK_STEPS = 3000  # 30 s of steps per MFCC chunk
MAX_COEFFICIENT = 10.0  # |weight| and |mean| bound of a valid model file


def step_features(x16: np.ndarray, loud: np.ndarray) -> np.ndarray:
    """The model's input for every 10 ms step.

    Args:
        x16: (N,) float speech at 16 kHz in [-1, 1] (the analysis's high-passed signal).
        loud: (S,) float opening loudness in [0, 1] per step (0 outside speech); S sets the number of steps.

    Returns:
        (S, :data:`N_FEATURES`) float64: for each context offset in :data:`CONTEXT_STEPS` (edge-padded), the 13
        MFCC (normalised to zero mean and unit variance over the *speech* steps, ``loud > 0``, so the amount of
        silence around the speech changes nothing) then the loudness. Computed in chunks of
        :data:`CHUNK_STEPS`, so memory does not grow with the length of the audio beyond the output itself.
    """
    n_steps = int(len(loud))
    if n_steps == 0:
        return np.zeros((0, N_FEATURES))
    x = np.asarray(x16, np.float32).reshape(-1)
    if x.size == 0:
        x = np.zeros(1, np.float32)
    hop = int(round(STEP_S * FEATURE_CONFIG.sample_rate))
    raw = FEATURE_CONFIG.__class__(**{**FEATURE_CONFIG.to_dict(), "normalize": False})
    cep = np.empty((n_steps, N_MFCC), np.float64)
    for s0 in range(0, n_steps, CHUNK_STEPS):
        s1 = min(s0 + CHUNK_STEPS, n_steps)
        lead = 1 if s0 > 0 else 0  # one step of real signal before the chunk, so its first window is whole
        seg = x[max(0, (s0 - lead) * hop): s1 * hop + 4 * hop]
        if seg.size == 0:
            seg = np.zeros(1, np.float32)
        part = mfcc_windows(seg, raw.sample_rate, n_frames=s1 - s0 + lead, config=raw)[:, :, 0]
        cep[s0:s1] = part[lead:]
    speech = np.asarray(loud) > 0
    ref = cep[speech] if speech.sum() >= 10 else cep
    cep = (cep - ref.mean(axis=0)) / (ref.std(axis=0) + 1e-5)
    base = np.concatenate([cep, np.asarray(loud, np.float64)[:, None]], axis=1)  # (S, 14)
    pad = max(abs(c) for c in CONTEXT_STEPS)
    padded = np.pad(base, ((pad, pad), (0, 0)), mode="edge")
    return np.concatenate([padded[pad + c: pad + c + n_steps] for c in CONTEXT_STEPS], axis=1)


@dataclass(frozen=True)
class OpeningModel:
    """A linear map from :func:`step_features` to the lip gap.

    Attributes:
        weights: (:data:`N_FEATURES`,) float64. mean: (:data:`N_FEATURES`,) feature means of the fit data.
        bias: the lip gap at the mean features. fit: how it was fitted (data, lambda, leave-one-out figures).
    """

    weights: np.ndarray
    mean: np.ndarray
    bias: float
    fit: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("weights", "mean"):
            a = getattr(self, name)
            if a.shape != (N_FEATURES,) or not np.all(np.isfinite(a)):
                raise ConfigError(f"opening model: {name} must be {N_FEATURES} finite numbers")
        if not np.isfinite(self.bias):
            raise ConfigError("opening model: bias must be finite")

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(S, N_FEATURES) features -> (S,) float64 predicted lip gap (not clipped; real gaps lie in ~[0, 0.5];
        non-finite features give 0)."""
        out = (np.asarray(features, np.float64) - self.mean) @ self.weights + self.bias
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": 1, "features": {"mfcc": N_MFCC, "loudness": 1, "context_steps": list(CONTEXT_STEPS),
                                           "step_s": STEP_S},
                "weights": [float(v) for v in self.weights], "mean": [float(v) for v in self.mean],
                "bias": float(self.bias), "fit": self.fit}

    @classmethod
    def from_dict(cls, data: Any) -> OpeningModel:
        """Parse :meth:`to_dict`'s form.

        Raises:
            ConfigError: not that form (wrong schema, feature layout, lengths or non-finite numbers).
        """
        if not isinstance(data, dict) or data.get("schema") != 1:
            raise ConfigError("opening model: not a schema-1 opening model")
        feats = data.get("features")
        if feats != {"mfcc": N_MFCC, "loudness": 1, "context_steps": list(CONTEXT_STEPS), "step_s": STEP_S}:
            raise ConfigError(f"opening model: made for other features ({feats!r})",
                              "refit it with benchmarks/fit_opening.py")
        def numbers(key: str) -> np.ndarray:
            values = data.get(key)
            if not (isinstance(values, list) and len(values) == N_FEATURES
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
                raise ConfigError(f"opening model: {key} must be a list of {N_FEATURES} numbers")
            arr = np.asarray(values, np.float64)
            if not (np.all(np.isfinite(arr)) and np.all(np.abs(arr) <= MAX_COEFFICIENT)):
                raise ConfigError(f"opening model: {key} must be finite numbers within +-{MAX_COEFFICIENT}")
            return arr

        w, m = numbers("weights"), numbers("mean")
        b = data.get("bias")
        if not (isinstance(b, (int, float)) and not isinstance(b, bool) and abs(b) <= 1.0):
            raise ConfigError("opening model: bias must be a number within +-1 (a lip gap)")
        b = float(b)
        fit = data.get("fit", {})
        return cls(weights=w, mean=m, bias=b, fit=fit if isinstance(fit, dict) else {})

    @classmethod
    def fit_ridge(cls, features: np.ndarray, gaps: np.ndarray, *, lam: float, fit: dict | None = None) -> OpeningModel:
        """Ridge regression of gaps (F,) on features (F, N_FEATURES); rows with a NaN gap are left out."""
        ok = np.isfinite(gaps)
        a, b = np.asarray(features, np.float64)[ok], np.asarray(gaps, np.float64)[ok]
        mean, bias = a.mean(axis=0), float(b.mean())
        ac = a - mean
        w = np.linalg.solve(ac.T @ ac + lam * np.eye(a.shape[1]), ac.T @ (b - bias))
        return cls(weights=w, mean=mean, bias=bias, fit=dict(fit or {}))


_DEFAULT: OpeningModel | None = None


def default_model() -> OpeningModel:
    """The shipped model (``studio/engine/audio/opening_model.json``), loaded once.

    Raises:
        ConfigError: the file is missing, too large or not a valid model (reinstall the package).
    """
    global _DEFAULT
    if _DEFAULT is None:
        ref = resources.files("studio.engine.audio").joinpath(MODEL_FILE)
        try:
            raw = ref.read_bytes()
        except OSError as exc:
            raise ConfigError(f"the opening model {MODEL_FILE} is missing ({exc})", "reinstall talkstudio") from None
        if len(raw) > MAX_MODEL_BYTES:
            raise ConfigError(f"the opening model {MODEL_FILE} is larger than {MAX_MODEL_BYTES} bytes",
                              "reinstall talkstudio")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"the opening model {MODEL_FILE} is not JSON ({exc})", "reinstall talkstudio") from None
        _DEFAULT = OpeningModel.from_dict(data)
    return _DEFAULT
