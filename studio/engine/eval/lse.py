"""LSE-C / LSE-D: lip-sync error from SyncNet embeddings (Prajwal et al., "A lip sync expert is all you
need", ACM MM 2020, section 4.1), computed as joonson/syncnet_python's SyncNetInstance.evaluate does.

Facts carried over from upstream (our own code):

* audio: the soundtrack as 16 kHz mono 16-bit PCM (int16 sample values), 13 MFCCs at 100 Hz
  (python_speech_features.mfcc defaults: 25 ms rectangular frames every 10 ms, pre-emphasis 0.97,
  512-point FFT, 26 mel filters from 0 Hz to 8 kHz, orthonormal DCT-II, lifter 22, c0 replaced by the
  log frame energy);
* video: 25 fps face crops (box side 2.8x half the larger detector-box side, centre shifted down; padded
  with grey 110; resized to 224x224), BGR, 0..255;
* window t pairs video frames t..t+4 with MFCC frames 4t..4t+19 (0.2 s); there are
  ``min(frames, floor(samples / 640)) - 5`` windows;
* distance curve: for each offset in -15..+15 frames, the mean over windows of the Euclidean distance
  between the lip embedding of window t and the audio embedding of window t - offset (zero vectors
  outside the clip, as upstream pads); ``LSE-D`` = its minimum, ``LSE-C`` = its median minus its
  minimum, ``offset`` = the offset at the minimum (positive: the video lags the audio).

Differences from upstream, stated in the report: python_speech_features is not a dependency, so
:func:`mfcc` re-implements its defaults with numpy/scipy (the test checks the frame count, the filter
bank and the liftering against their definitions); the face boxes come from the MediaPipe landmarks
(extent of the 468 mesh points) instead of S3FD, and are not median-filtered over the track; a video
that is not 25 fps is resampled to 25 fps by nearest earlier frame (upstream re-encodes with ffmpeg -r 25).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy.fft import dct

from studio.models.syncnet import LIP_FRAMES, LIP_SIZE, MFCC_FRAMES, SyncNetV2

SAMPLE_RATE = 16000
SYNC_FPS = 25.0
VSHIFT = 15
CROP_SCALE = 0.4
PAD_VALUE = 110


# --------------------------------------------------------------------------------------------
# MFCC (python_speech_features 0.6 defaults)
# --------------------------------------------------------------------------------------------


def _hz2mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel2hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(nfilt: int = 26, nfft: int = 512, sample_rate: int = SAMPLE_RATE, low_hz: float = 0.0,
                   high_hz: float | None = None) -> np.ndarray:
    """Triangular mel filters as python_speech_features builds them: ``(nfilt, nfft // 2 + 1)`` float64.

    Filter edges are ``floor((nfft + 1) * mel2hz(m) / sample_rate)`` for ``nfilt + 2`` mel points evenly
    spaced between ``low_hz`` and ``high_hz`` (default: Nyquist); each filter rises linearly from 0 at its
    left edge to 1 at its centre bin and falls back towards 0 at its right edge (the right edge bin is 0).
    """
    high_hz = sample_rate / 2 if high_hz is None else high_hz
    mels = np.linspace(_hz2mel(low_hz), _hz2mel(high_hz), nfilt + 2)
    edges = np.floor((nfft + 1) * _mel2hz(mels) / sample_rate)
    bank = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        left, centre, right = edges[j], edges[j + 1], edges[j + 2]
        for i in range(int(left), int(centre)):
            bank[j, i] = (i - left) / (centre - left)
        for i in range(int(centre), int(right)):
            bank[j, i] = (right - i) / (right - centre)
    return bank


def mfcc(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, *, numcep: int = 13, winlen: float = 0.025,
         winstep: float = 0.01, nfilt: int = 26, nfft: int = 512, preemph: float = 0.97,
         ceplifter: int = 22) -> np.ndarray:
    """MFCCs with python_speech_features.mfcc's defaults (what syncnet_python feeds SyncNet).

    Args:
        samples: ``(N,)`` mono samples at ``sample_rate``, on the int16 scale (-32768..32767) as upstream
            reads them with scipy.io.wavfile (the scale shifts c0, the log energy).
        sample_rate: Hz (16000 for SyncNet).

    Returns:
        ``(frames, numcep)`` float64, frames = ``1 + ceil((N - 400) / 160)`` at 16 kHz (one frame per 10 ms;
        the last is zero-padded). Column 0 is the log frame energy (natural log of the summed power spectrum).
    """
    sig = np.asarray(samples, dtype=np.float64).reshape(-1)
    if sig.size == 0:
        return np.zeros((0, numcep))
    sig = np.append(sig[0], sig[1:] - preemph * sig[:-1])
    flen = int(math.floor(winlen * sample_rate + 0.5))   # round half up, as upstream
    fstep = int(math.floor(winstep * sample_rate + 0.5))
    n = 1 if sig.size <= flen else 1 + int(math.ceil((sig.size - flen) / fstep))
    padded = np.concatenate([sig, np.zeros((n - 1) * fstep + flen - sig.size)])
    idx = np.arange(flen)[None, :] + fstep * np.arange(n)[:, None]
    frames = padded[idx]  # rectangular window (upstream's default winfunc)
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    eps = np.finfo(float).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    feat = power @ mel_filterbank(nfilt, nfft, sample_rate).T
    feat = np.where(feat == 0, eps, feat)
    cep = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :numcep]
    lift = 1.0 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter)
    cep = cep * lift
    cep[:, 0] = np.log(energy)
    return cep


def int16_scale(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] to int16 values (what ffmpeg's ``pcm_s16le`` + wavfile.read give), float64."""
    return np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32768.0), -32768, 32767)


# --------------------------------------------------------------------------------------------
# Face crops
# --------------------------------------------------------------------------------------------


def face_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` pixels: the extent of the 468 MediaPipe face-mesh points (the irises excluded)."""
    p = np.asarray(points, dtype=np.float64)[:468]
    return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())


def syncnet_crop(rgb: np.ndarray, box: tuple[float, float, float, float], *, crop_scale: float = CROP_SCALE
                 ) -> np.ndarray:
    """The face crop syncnet_python's run_pipeline makes, as SyncNet input.

    With ``bs`` = half the larger box side and ``cs = crop_scale``, rows ``cy - bs .. cy + bs(1 + 2cs)``
    and columns ``cx - bs(1 + cs) .. cx + bs(1 + cs)`` (a square of side 2.8 bs, reaching below the chin),
    grey (110) outside the frame, resized to 224x224 (bilinear).

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB frame.
        box: ``(x0, y0, x1, y1)`` face box in its pixels.

    Returns:
        ``(224, 224, 3)`` uint8, **BGR** (upstream reads frames with OpenCV).
    """
    x0, y0, x1, y1 = box
    bs = max(y1 - y0, x1 - x0) / 2.0
    cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
    bsi = int(bs * (1 + 2 * crop_scale))  # upstream pads the frame by this much, then indexes the padded frame
    r0 = int(cy + bsi - bs) - bsi
    r1 = int(cy + bsi + bs * (1 + 2 * crop_scale)) - bsi
    c0 = int(cx + bsi - bs * (1 + crop_scale)) - bsi
    c1 = int(cx + bsi + bs * (1 + crop_scale)) - bsi
    h, w = rgb.shape[:2]
    sub = rgb[max(r0, 0):max(min(r1, h), 0), max(c0, 0):max(min(c1, w), 0)]
    if sub.size == 0 or r1 <= r0 or c1 <= c0:
        return np.full((LIP_SIZE, LIP_SIZE, 3), PAD_VALUE, np.uint8)
    sub = cv2.copyMakeBorder(np.ascontiguousarray(sub), max(0, -r0), max(0, r1 - h), max(0, -c0), max(0, c1 - w),
                             cv2.BORDER_CONSTANT, value=(PAD_VALUE, PAD_VALUE, PAD_VALUE))
    out = cv2.resize(sub, (LIP_SIZE, LIP_SIZE), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(out[:, :, ::-1])


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


class LipStream:
    """Streams one video's face crops through SyncNet's lip network, in constant memory.

    Frames arrive at the video's ``fps`` and are resampled to 25 fps (output frame j shows source frame
    ``floor(j * fps / 25)``); every 5 consecutive 25 fps crops make one window. Windows are embedded in
    batches of ``batch``.

    Args:
        net: the SyncNet. fps: frame rate of the pushed frames. device: where to run it.
    """

    def __init__(self, net: SyncNetV2, *, fps: float, device: torch.device | str = "cpu", batch: int = 8) -> None:
        self.net, self.fps, self.device, self.batch = net, float(fps), torch.device(device), batch
        self._window: deque[np.ndarray] = deque(maxlen=LIP_FRAMES)
        self._pending: list[np.ndarray] = []
        self._out: list[np.ndarray] = []
        self._source = 0  # index of the next source frame
        self._next = 0  # index of the next 25 fps frame
        self.frames_25 = 0

    def push(self, crop_bgr: np.ndarray) -> None:
        """One source frame's ``(224, 224, 3)`` uint8 BGR crop (:func:`syncnet_crop`)."""
        k = self._source
        self._source += 1
        while math.floor(self._next * self.fps / SYNC_FPS + 1e-9) == k:
            self._next += 1
            self.frames_25 += 1
            self._window.append(crop_bgr)
            if len(self._window) == LIP_FRAMES:
                self._pending.append(np.stack(self._window, axis=0))  # (5, 224, 224, 3)
                if len(self._pending) >= self.batch:
                    self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        x = torch.from_numpy(np.stack(self._pending)).to(self.device, torch.float32)  # (B, 5, H, W, 3)
        x = x.permute(0, 4, 1, 2, 3).contiguous()  # (B, 3, 5, H, W)
        with torch.inference_mode():
            self._out.append(self.net.forward_lip(x).float().cpu().numpy())
        self._pending = []

    def embeddings(self) -> np.ndarray:
        """``(W, 1024)`` float32: one per window (W = 25 fps frames - 4)."""
        self._flush()
        return np.concatenate(self._out) if self._out else np.zeros((0, self.net.embed_dim), np.float32)


def audio_embeddings(net: SyncNetV2, samples_16k: np.ndarray, n_windows: int, *,
                     device: torch.device | str = "cpu", batch: int = 64) -> np.ndarray:
    """SyncNet audio embeddings of the first ``n_windows`` 0.2 s windows.

    Args:
        samples_16k: ``(N,)`` float samples in [-1, 1] at 16 kHz.
        n_windows: windows wanted; window t covers MFCC frames 4t..4t+19.

    Returns:
        ``(n_windows, 1024)`` float32.
    """
    cc = mfcc(int16_scale(samples_16k)).T.astype(np.float32)  # (13, T)
    need = 4 * (n_windows - 1) + MFCC_FRAMES if n_windows > 0 else 0
    if cc.shape[1] < need:
        cc = np.pad(cc, ((0, 0), (0, need - cc.shape[1])))
    out = []
    for start in range(0, n_windows, batch):
        idx = range(start, min(n_windows, start + batch))
        x = torch.from_numpy(np.stack([cc[:, 4 * t: 4 * t + MFCC_FRAMES] for t in idx]))[:, None].to(device)
        with torch.inference_mode():
            out.append(net.forward_aud(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.embed_dim), np.float32)


def n_windows(frames_25: int, n_samples_16k: int) -> int:
    """Windows syncnet_python evaluates: ``min(frames, floor(samples / 640)) - 5`` (>= 0)."""
    return max(0, min(frames_25, n_samples_16k // 640) - 5)


# --------------------------------------------------------------------------------------------
# Offset search
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncScore:
    """LSE of one clip.

    Attributes:
        lse_d: minimum of the mean-distance curve (lower = better sync), embedding units.
        lse_c: median minus minimum of that curve (higher = more confident sync).
        offset: offset in 25 fps frames at the minimum (positive: the video lags the audio), -vshift..vshift.
        curve: ``(2 * vshift + 1,)`` mean distance per candidate offset, index j <-> offset vshift - j.
        windows: number of 0.2 s windows used.
    """

    lse_d: float
    lse_c: float
    offset: int
    curve: np.ndarray
    windows: int


def sync_score(lip: np.ndarray, aud: np.ndarray, *, vshift: int = VSHIFT) -> SyncScore:
    """LSE-D / LSE-C / offset from per-window lip and audio embeddings (syncnet_python ``calc_pdist``).

    Args:
        lip: ``(W, D)`` lip embeddings, aud: ``(W, D)`` audio embeddings of the same windows (extra rows of
            the longer one are dropped).
        vshift: largest offset searched, in frames (15 as in Wav2Lip's evaluation).

    Returns:
        :class:`SyncScore`; NaNs when there are no windows.
    """
    w = min(len(lip), len(aud))
    if w == 0:
        return SyncScore(math.nan, math.nan, 0, np.full(2 * vshift + 1, np.nan), 0)
    f1 = torch.as_tensor(np.asarray(lip[:w]), dtype=torch.float32)
    f2 = torch.nn.functional.pad(torch.as_tensor(np.asarray(aud[:w]), dtype=torch.float32), (0, 0, vshift, vshift))
    win = 2 * vshift + 1
    # dists[t, j] = || lip_t - aud_{t + j - vshift} || (+1e-6 as torch's pairwise_distance)
    dists = torch.stack([torch.nn.functional.pairwise_distance(f1[t:t + 1].expand(win, -1), f2[t:t + win])
                         for t in range(w)])
    curve = dists.mean(dim=0)
    minval, minidx = torch.min(curve, 0)
    conf = torch.median(curve) - minval
    return SyncScore(float(minval), float(conf), int(vshift - int(minidx)), curve.numpy().astype(np.float64), w)
