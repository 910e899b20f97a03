"""MFCC windows of the speech-to-latent model, one 0.2 s window centred on each video frame's interval.

Seed paper (Alghamdi et al., ACM MM 2022), section 4.1: "The input to the audio encoder E_A is an audio
segment of length 0.2 seconds which corresponds to a window of five frames [at 25 fps] ... Each audio
segment is a window of size 12 x 28, where the columns represent MFCC features for each time step."

Timing convention (the project's, ``DESIGN.md``; the lite engine's :mod:`studio.engine.audio.visemes` uses
the same): frame f shows the audio interval [f/fps, (f+1)/fps), so its features describe the middle of that
interval, t_f = (f + 0.5) / fps (at 25 fps: 20 ms after the frame's start). Centring on f/fps instead would
make the mouth lead the sound by half a frame.

Our realisation of the paper's description (the paper gives no further parameters):

* speech resampled to 16 kHz mono;
* frame f (at 25 fps, interval [f/25, (f+1)/25) s, centre t_f = (f + 0.5)/25 s) gets the window
  [t_f - 0.1, t_f + 0.1) s, split into 28 steps of 0.2/28 s = 7.14 ms; step i is centred at
  t_f - 0.1 + (i + 0.5) * 0.2/28 s (steps 13 and 14 straddle t_f at -+3.57 ms);
* each step: a 25 ms (400-sample) Hann-windowed frame around its centre (zeros outside the clip), 512-point
  power spectrum, 40 mel bands over 0-8000 Hz (librosa's Slaney filterbank), natural log, DCT-II
  (orthonormal, scipy), coefficients 0..11 (c0 carries the loudness, which drives mouth opening);
* cepstral mean and variance normalisation per coefficient over the utterance, so a microphone's colour
  and level do not shift the features.

The features are always computed on the 25 fps grid; another output frame rate resamples the predicted
trajectory (:func:`resample_trajectory`), not the features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio.core.errors import AudioError

FEATURE_FPS = 25.0  # frames per second of the feature grid (the paper's video rate)
SAMPLE_RATE = 16000  # Hz
WINDOW_S = 0.2  # seconds of speech per video frame (5 frames at 25 fps)
N_STEPS = 28  # MFCC time steps per window
N_MFCC = 12  # coefficients per step
N_MELS = 40
N_FFT = 512
FRAME_LEN = 400  # samples (25 ms) per analysis frame


#: where frame f's window is centred: "interval" = the middle of its interval, (f + 0.5)/fps (the studio's
#: timing convention); "start" = f/fps, what models and datasets made before that convention used (their
#: stored config has no ``window_centre``: :meth:`MfccConfig.from_dict` reads them as "start")
WINDOW_CENTRES = ("interval", "start")


@dataclass(frozen=True)
class MfccConfig:
    """The feature parameters (stored with a trained model so inference computes the same features)."""

    sample_rate: int = SAMPLE_RATE
    fps: float = FEATURE_FPS
    window_s: float = WINDOW_S
    n_steps: int = N_STEPS
    n_mfcc: int = N_MFCC
    n_mels: int = N_MELS
    n_fft: int = N_FFT
    frame_len: int = FRAME_LEN
    normalize: bool = True
    window_centre: str = "interval"

    def to_dict(self) -> dict[str, float | int | bool | str]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> "MfccConfig":
        """The config stored with a model or dataset; unknown keys are ignored, and a config stored before
        ``window_centre`` existed is read as "start" (the features it was made with)."""
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        known.setdefault("window_centre", "start")
        if known["window_centre"] not in WINDOW_CENTRES:
            raise ValueError(f"unknown MFCC window centre {known['window_centre']!r}")
        return cls(**known)


def _mel_basis(cfg: MfccConfig) -> np.ndarray:
    import librosa.filters  # only the filterbank: pure numpy, no numba JIT

    return librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=0.0,
                               fmax=cfg.sample_rate / 2).astype(np.float32)


def mfcc_windows(samples: np.ndarray, sample_rate: int, n_frames: int | None = None,
                 config: MfccConfig | None = None) -> np.ndarray:
    """MFCC windows centred on the middle of each 25 fps video frame's interval.

    Args:
        samples: (N,) float mono speech in [-1, 1] (any rate; resampled to the config's rate with soxr).
        sample_rate: its rate in Hz.
        n_frames: number of 25 fps frames (default: ceil(duration * 25), at least 1).
        config: feature parameters (default: the paper's 12 x 28 per 0.2 s).

    Returns:
        (n_frames, n_mfcc, n_steps) float32 array (12 x 28 per frame by default); frame f shows
        [f/fps, (f+1)/fps) and its window covers [(f + 0.5)/fps - window_s/2, (f + 0.5)/fps + window_s/2)
        seconds (step i centred at (f + 0.5)/fps - window_s/2 + (i + 0.5) * window_s/n_steps).

    Raises:
        AudioError: empty audio, or a non-finite sample.
    """
    from scipy.fft import dct

    cfg = config or MfccConfig()
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if x.size == 0:
        raise AudioError("the audio is empty", "give a speech recording of at least a fraction of a second")
    if not np.all(np.isfinite(x)):
        raise AudioError("the audio contains NaN or infinite samples", "re-export the recording as 16-bit WAV")
    if sample_rate != cfg.sample_rate:
        import soxr

        x = soxr.resample(x, sample_rate, cfg.sample_rate).astype(np.float32)
    duration = x.size / cfg.sample_rate
    if n_frames is None:
        n_frames = max(1, int(np.ceil(duration * cfg.fps - 1e-6)))
    step_s = cfg.window_s / cfg.n_steps
    # centre of every step of every window, in seconds then samples; frame f's window is centred on the middle
    # of its interval [f/fps, (f+1)/fps)
    mid = (np.arange(n_frames)[:, None] + (0.5 if cfg.window_centre == "interval" else 0.0)) / cfg.fps
    t = mid - cfg.window_s / 2 + (np.arange(cfg.n_steps)[None] + 0.5) * step_s
    centres = np.rint(t * cfg.sample_rate).astype(np.int64)  # (F, S)
    half = cfg.frame_len // 2
    pad = half + 1
    lo = centres.min() - half
    hi = centres.max() + half
    left = max(0, -lo) + pad
    right = max(0, hi - x.size) + pad
    xp = np.concatenate([np.zeros(left, np.float32), x, np.zeros(right, np.float32)])
    idx = (centres.reshape(-1, 1) - half + left) + np.arange(cfg.frame_len)[None]  # (F*S, L)
    frames = xp[idx] * np.hanning(cfg.frame_len + 2)[1:-1].astype(np.float32)
    power = np.abs(np.fft.rfft(frames, n=cfg.n_fft, axis=1)) ** 2  # (F*S, n_fft/2+1)
    mel = power.astype(np.float32) @ _mel_basis(cfg).T
    logmel = np.log(mel + 1e-10)
    cep = dct(logmel, type=2, axis=1, norm="ortho")[:, : cfg.n_mfcc].astype(np.float32)  # (F*S, C)
    if cfg.normalize:
        cep = (cep - cep.mean(axis=0)) / (cep.std(axis=0) + 1e-5)
    return np.ascontiguousarray(cep.reshape(n_frames, cfg.n_steps, cfg.n_mfcc).transpose(0, 2, 1))


def resample_trajectory(values: np.ndarray, src_fps: float, dst_fps: float, n_out: int) -> np.ndarray:
    """Linearly resample a per-frame trajectory from ``src_fps`` to ``dst_fps``.

    Args:
        values: (T, ...) array sampled at src_fps: value k describes frame k's interval
            [k/src_fps, (k+1)/src_fps), i.e. the time (k + 0.5)/src_fps (the studio's one timing convention,
            as :func:`mfcc_windows` and the lite engine's viseme track).
        n_out: number of output frames at dst_fps (clamped at the ends).

    Centres are mapped onto centres: output j, the interval around (j + 0.5)/dst_fps, reads source position
    (j + 0.5) * src_fps / dst_fps - 0.5, so a trajectory keeps its timing at any output frame rate.

    Returns:
        (n_out, ...) array of the same dtype.
    """
    values = np.asarray(values)
    if values.shape[0] == 0:
        raise ValueError("empty trajectory")
    pos = (np.arange(n_out) + 0.5) * (src_fps / dst_fps) - 0.5
    pos = np.clip(pos, 0, values.shape[0] - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, values.shape[0] - 1)
    a = (pos - i0).reshape((-1,) + (1,) * (values.ndim - 1))
    return ((1 - a) * values[i0] + a * values[i1]).astype(values.dtype)


__all__ = ["FEATURE_FPS", "MfccConfig", "mfcc_windows", "resample_trajectory"]
