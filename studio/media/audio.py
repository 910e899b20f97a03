"""Speech audio: loading any common audio (or video) file as mono float32, plus frame-level timing.

PCM files that libsndfile reads (WAV, FLAC, OGG/Vorbis/Opus, AIFF, MP3 ...) are read with
soundfile; everything else (M4A/AAC, the soundtrack of MP4/MOV/MKV/WebM/MPG videos ...) is decoded
by the bundled ffmpeg through a pipe. Both paths then mix down to mono and resample with soxr, so a
file gives the same samples whichever decoder read it.

Frame timing convention used across the studio: at ``fps`` frames per second, video frame ``k``
shows the audio interval ``[k / fps, (k + 1) / fps)``, i.e. samples
``floor(k * sr / fps) .. floor((k + 1) * sr / fps) - 1`` (computed exactly, so there is no drift).
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from studio.core.errors import AudioError, OutputError
from studio.media._common import check_input_file, ffmpeg_reason, fps_fraction, run_ffmpeg

#: Clips shorter than this (seconds) are treated as empty.
MIN_DURATION_S = 0.04

#: Window (seconds) over which :func:`is_silent` measures loudness.
SILENCE_WINDOW_S = 0.05


_FORMATS_HINT = "use a WAV, FLAC, OGG, MP3 or M4A recording, or a video file with a soundtrack"

# Sun/NeXT AU header (big-endian): magic, data offset, data size, encoding, sample rate, channels.
_AU_HEADER = struct.Struct(">4sIIIII")
_AU_FLOAT32 = 6

# A real picture stream in ffmpeg's input listing (cover art is tagged "(attached pic)").
_INPUT_FORMAT_RE = re.compile(r"^Input #0, (.+?), from '", re.MULTILINE)
_VIDEO_STREAM_RE = re.compile(r"^\s+Stream #0:\d+.*: Video: (?!.*\(attached pic\))", re.MULTILINE)


@dataclass(frozen=True)
class AudioClip:
    """A mono audio signal.

    Attributes:
        samples: (N,) float32 mono samples, nominally in [-1, 1] (converted on construction).
        sample_rate: samples per second (Hz), > 0.
        source: the file it was loaded from, if any.
    """

    samples: np.ndarray
    sample_rate: int
    source: Path | None = None

    def __post_init__(self) -> None:
        samples = np.ascontiguousarray(self.samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"AudioClip samples must be 1-D (mono), got shape {samples.shape}")
        if int(self.sample_rate) != self.sample_rate or self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {self.sample_rate!r}")
        object.__setattr__(self, "samples", samples)
        object.__setattr__(self, "sample_rate", int(self.sample_rate))

    @property
    def num_samples(self) -> int:
        """Number of samples N."""
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds (``num_samples / sample_rate``)."""
        return self.num_samples / self.sample_rate


def load_audio(path: str | os.PathLike[str], *, sample_rate: int = 16000) -> AudioClip:
    """Load speech from an audio file, or from the soundtrack of a video file.

    Integer PCM of any width (8/16/24/32-bit) and float files are supported. Multi-channel audio is
    mixed down to mono (the mean of the channels; ffmpeg-decoded surround uses ffmpeg's downmix),
    then resampled with soxr (high quality) to ``sample_rate``. Values are clipped to [-1, 1] and
    NaN/inf replaced by 0. Silence is *not* an error here (see :func:`is_silent`).

    Args:
        path: audio file (WAV, FLAC, OGG, MP3, M4A/AAC ...) or video file (MP4, MOV, MKV, WebM, MPG ...).
        sample_rate: output rate in Hz (> 0).

    Returns:
        AudioClip with (N,) float32 samples in [-1, 1] at ``sample_rate``, ``source`` = the path.

    Raises:
        AudioError: the file is missing, a folder, unreadable or 0 bytes; it cannot be decoded;
            it is a video without an audio track; or it holds less than 0.04 s of audio.
        ValueError: ``sample_rate`` is not a positive integer.
    """
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    path = check_input_file(path, kind="audio", error=AudioError)
    decoded = _read_soundfile(path)
    if decoded is None:
        decoded = _decode_ffmpeg(path)
    data, native_rate = decoded
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if mono.shape[0] < MIN_DURATION_S * native_rate:
        raise AudioError(
            f"audio file is empty ({mono.shape[0] / native_rate:.2f} s of audio): {path}",
            "choose a recording that contains speech",
        )
    # in place where possible: a long recording is not copied four times over
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    del data
    np.nan_to_num(mono, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    if native_rate != int(sample_rate):
        mono = resample(mono, native_rate, int(sample_rate))
    np.clip(mono, -1.0, 1.0, out=mono)
    return AudioClip(mono, int(sample_rate), path)


def _read_soundfile(path: Path) -> tuple[np.ndarray, int] | None:
    """(frames, channels) float32 and rate via libsndfile, or None if it cannot read the file."""
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None  # not a format libsndfile knows (or a broken one): let ffmpeg try
    return data, int(rate)


def _decode_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream with ffmpeg into (frames, 1) float32 at its native rate.

    The output is a Sun AU stream (self-describing header, float32 big-endian samples) so that
    the native rate is known without a separate probe; mono downmix is done by ffmpeg.
    """
    # Log level "info" so that stderr lists the input streams (to tell "video without sound"
    # from "not media at all"); -nostats keeps it short.
    args = ["-nostats", "-v", "info", "-i", str(path), "-vn", "-sn", "-dn", "-map", "0:a:0", "-ac", "1",
            "-c:a", "pcm_f32be", "-f", "au", "-"]  # fmt: skip
    proc = run_ffmpeg(args)
    stderr = proc.stderr.decode("utf-8", errors="replace")
    if proc.returncode != 0 or len(proc.stdout) < _AU_HEADER.size:
        raise _decode_error(path, stderr)
    magic, offset, _size, encoding, rate, channels = _AU_HEADER.unpack_from(proc.stdout)
    if magic != b".snd" or encoding != _AU_FLOAT32 or channels != 1 or rate <= 0:  # pragma: no cover
        raise AudioError(f"unexpected output from ffmpeg while decoding {path}", "report this as a bug")
    payload = memoryview(proc.stdout)[offset:]
    n = len(payload) // 4
    samples = np.frombuffer(payload[: n * 4], dtype=">f4").astype(np.float32)
    return samples.reshape(-1, 1), int(rate)


def _decode_error(path: Path, stderr: str) -> AudioError:
    """The AudioError that explains why ffmpeg produced no audio for ``path``."""
    if "matches no streams" not in stderr:
        reason = ffmpeg_reason(stderr)
        detail = f" (ffmpeg: {reason})" if reason else ""
        return AudioError(f"cannot decode audio: {path}{detail}", _FORMATS_HINT)
    fmt = _INPUT_FORMAT_RE.search(stderr)
    if fmt and (fmt.group(1) == "image2" or fmt.group(1).endswith("_pipe")):
        return AudioError(f"not an audio file (it is an image): {path}", _FORMATS_HINT)
    if _VIDEO_STREAM_RE.search(stderr):
        return AudioError(
            f"video file has no audio track: {path}",
            "choose a video with sound, or a separate speech recording",
        )
    return AudioError(f"not an audio file (no audio stream found): {path}", _FORMATS_HINT)


def resample(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono signal with soxr ("HQ" quality).

    Args:
        samples: (N,) float array.
        sr_in: input rate in Hz (> 0).
        sr_out: output rate in Hz (> 0).

    Returns:
        (M,) float32, M ~= N * sr_out / sr_in; a float32 copy of ``samples`` if the rates are equal.
        Values are not clipped (band-limiting can overshoot slightly).
    """
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"resample expects a 1-D signal, got shape {x.shape}")
    if sr_in == sr_out or x.size == 0:
        return x.copy()
    return np.asarray(soxr.resample(x, sr_in, sr_out, quality="HQ"), dtype=np.float32)


def write_wav(path: str | os.PathLike[str], clip: AudioClip, *, subtype: str = "PCM_16") -> Path:
    """Write a clip as a mono WAV file.

    Args:
        path: destination file (overwritten if it exists).
        clip: the audio; samples outside [-1, 1] are clipped.
        subtype: soundfile subtype, "PCM_16" (default) or e.g. "FLOAT" for lossless float32.

    Returns:
        The path written.

    Raises:
        OutputError: the folder does not exist or the file cannot be written.
    """
    path = Path(path)
    try:
        sf.write(path, np.clip(clip.samples, -1.0, 1.0), clip.sample_rate, subtype=subtype, format="WAV")
    except (sf.LibsndfileError, OSError) as exc:
        raise OutputError(
            f"cannot write audio file: {path} ({exc})", "check that the folder exists and is writable"
        ) from exc
    return path


def wav_truncation(path: str | os.PathLike[str]) -> tuple[float, float] | None:
    """For a WAV file whose data was cut short (a copy or download that stopped), the seconds its header
    announces and the seconds actually present; None for a complete WAV or any other kind of file.

    libsndfile reads such a file without complaint (what is there), so the studio warns about it instead of
    rendering a video of half the speech in silence. Reads only the RIFF chunk headers (a few bytes).
    """
    import struct

    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = os.fstat(fh.fileno()).st_size
            byte_rate = 0
            for _ in range(64):  # chunks before "data": fmt, LIST, fact, ...
                hdr = fh.read(8)
                if len(hdr) < 8:
                    return None
                cid, n = hdr[:4], struct.unpack("<I", hdr[4:])[0]
                if cid == b"fmt ":
                    fmt = fh.read(min(n, 16))
                    if len(fmt) == 16:
                        byte_rate = struct.unpack("<I", fmt[8:12])[0]
                    fh.seek(n - len(fmt) + (n & 1), 1)
                elif cid == b"data":
                    present = size - fh.tell()
                    # 0 and sizes near 2**31 or 2**32 are the placeholders of a stream whose length was unknown
                    # (arecord to stdout, ffmpeg to a pipe); a gap under 10 ms is padding, not lost speech
                    if byte_rate <= 0 or n == 0 or n >= 0x7FFF0000 or n - present < 0.01 * byte_rate:
                        return None
                    return n / byte_rate, max(present, 0) / byte_rate
                else:
                    fh.seek(n + (n & 1), 1)
    except (OSError, struct.error):
        return None
    return None


def frame_count(duration_s: float, fps: float) -> int:
    """Number of video frames needed to cover ``duration_s`` seconds of audio at ``fps``.

    Frame ``k`` shows audio ``[k / fps, (k + 1) / fps)``, so this is ``ceil(duration * fps)``
    (with a 1e-6 tolerance so that e.g. exactly 2.0 s at 25 fps gives 50, not 51). Returns 0 for
    a non-positive duration.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return max(0, math.ceil(duration_s * fps - 1e-6))


def frame_sample_bounds(sample_rate: int, fps: float, n_frames: int) -> np.ndarray:
    """Sample index where each frame's audio starts: ``floor(k * sample_rate / fps)``, k = 0..n_frames.

    Computed in exact integer arithmetic on the rational frame rate (29.97 -> 30000/1001), so
    there is no cumulative drift over long clips.

    Returns:
        (n_frames + 1,) int64, non-decreasing; frame k covers samples ``[b[k], b[k + 1])``.
    """
    if fps <= 0 or sample_rate <= 0 or n_frames < 0:
        raise ValueError(f"invalid timing: sample_rate={sample_rate} fps={fps} n_frames={n_frames}")
    rate = fps_fraction(fps)
    k = np.arange(n_frames + 1, dtype=np.int64)
    return (k * (int(sample_rate) * rate.denominator)) // rate.numerator


def rms_envelope(samples: np.ndarray, sample_rate: int, *, fps: float, n_frames: int) -> np.ndarray:
    """Per-video-frame RMS loudness.

    Args:
        samples: (N,) float mono signal (nominally [-1, 1]).
        sample_rate: Hz.
        fps: video frame rate (> 0), e.g. 25 or 29.97.
        n_frames: number of frames wanted (see :func:`frame_count`); audio past the end of
            ``samples`` counts as silence (zero padding), extra audio is ignored.

    Returns:
        (n_frames,) float32, frame k = RMS of samples ``[floor(k*sr/fps), floor((k+1)*sr/fps))``,
        in [0, 1] for input in [-1, 1].
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"rms_envelope expects a 1-D signal, got shape {x.shape}")
    bounds = frame_sample_bounds(sample_rate, fps, n_frames)
    energy = np.concatenate(([0.0], np.cumsum(x * x)))  # energy[i] = sum of squares of x[:i]
    clipped = np.minimum(bounds, x.shape[0])
    sums = np.diff(energy[clipped])
    lengths = np.maximum(np.diff(bounds), 1)
    return np.sqrt(np.maximum(sums, 0.0) / lengths).astype(np.float32)


def peak_window_dbfs(clip: AudioClip, *, window_s: float = SILENCE_WINDOW_S) -> float:
    """Loudness of the loudest ``window_s`` stretch of the clip, in dBFS (RMS; full-scale = 0 dB).

    Windows slide sample by sample; a clip shorter than the window is measured as a whole.
    Returns ``-inf`` for an empty or all-zero clip.
    """
    x = clip.samples
    if x.size == 0:
        return -math.inf
    width = max(1, min(x.size, round(window_s * clip.sample_rate)))
    # the running sum of squares in float64, a block at a time (memory stays flat for any length of audio); the
    # sum carries over in the same order as one np.cumsum, so the result is the same to the bit
    block = max(1 << 20, 4 * width)
    best = 0.0
    tail = np.zeros(1)  # the last `width` running sums so far (from the sum before the first sample, 0)
    for start in range(0, x.size, block):
        seg = x[start:start + block].astype(np.float64)
        sums = np.concatenate((tail, np.cumsum(np.concatenate((tail[-1:], seg * seg)))[1:]))
        if sums.size > width:
            best = max(best, float(np.max(sums[width:] - sums[:-width])))
        tail = sums[-width:]
    peak_mean_square = best / width
    return 10.0 * math.log10(peak_mean_square) if peak_mean_square > 0 else -math.inf


def is_silent(clip: AudioClip, *, threshold_dbfs: float = -45.0) -> bool:
    """True when even the loudest 50 ms of the clip is quieter than ``threshold_dbfs`` (RMS dBFS).

    Used to refuse renders from an all-silent recording (muted microphone, wrong track).
    """
    return peak_window_dbfs(clip) < threshold_dbfs
