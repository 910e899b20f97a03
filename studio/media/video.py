"""Video I/O with the bundled ffmpeg: streaming H.264/AAC encoder, probing, frame reading.

Nothing here holds a whole video in memory: :class:`FrameEncoder` pipes frames to ffmpeg as they
are produced and :func:`read_video_frames` yields them one at a time.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import io
import logging
import math
import os
import re
import secrets
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np

from studio.core.errors import ConfigError, InputError, OutputError
from studio.media._common import (
    check_input_file,
    ffmpeg_exe,
    ffmpeg_reason,
    fps_fraction,
    popen_kwargs,
    run_ffmpeg,
    stderr_tail,
)
from studio.media.audio import AudioClip
from studio.media.credentials import ContentCredentials
from studio.media.watermark import WatermarkEmbedder

#: libx264 speed presets, fastest first.
X264_PRESETS: tuple[str, ...] = (
    "ultrafast", "superfast", "veryfast", "faster", "fast",
    "medium", "slow", "slower", "veryslow", "placebo",
)  # fmt: skip

#: H.264 encoders FrameEncoder can drive: the CPU's libx264 and NVIDIA's NVENC.
H264_ENCODERS: tuple[str, ...] = ("libx264", "h264_nvenc")

#: Sample rates passed to the AAC encoder unchanged; other rates are resampled to 48 kHz.
_AAC_RATES = (44100, 48000)
_AAC_DEFAULT_RATE = 48000

#: Colour conversion for the encoder: BT.709 matrix, limited range, and the stream tagged to match
#: (untagged streams make players guess, and they guess differently for SD and HD sizes).
_BT709_FILTER = (
    "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,"
    "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv"
)

_MEDIA_HINT = "choose a video or audio file such as MP4, MOV, MKV, WebM, MPG, WAV, MP3 or M4A"
_VIDEO_HINT = "choose a video file such as MP4, MOV, MKV, WebM or MPG"
_STDERR_LINES = 64


# ----------------------------------------------------------------------------------------------
# Encoding


class FrameEncoder:
    """Stream RGB frames into an H.264 MP4 file, optionally with an AAC soundtrack.

    ffmpeg encodes to a hidden temporary file next to ``path`` (``.NAME.<pid>.<id>.partial.mp4``);
    :meth:`close` moves it onto ``path`` only once ffmpeg has finished successfully, so ``path``
    never holds a half-written video. Use it as a context manager: leaving the block normally
    closes (finishes) the file, leaving it with an exception (including KeyboardInterrupt)
    aborts: ffmpeg is killed and the temporary file deleted.

    Example::

        with FrameEncoder(out, width=512, height=512, fps=25, audio=clip, metadata=meta) as enc:
            for frame in frames:
                enc.write(frame)

    Args:
        path: the output ``.mp4`` file (replaced if it exists).
        width, height: frame size in pixels; both must be even (yuv420p), >= 2.
        fps: frames per second (> 0, at most 240); passed to ffmpeg as an exact rational
            (29.97 -> 30000/1001).
        audio: soundtrack, muxed as AAC 160 kb/s (mono; rates other than 44.1/48 kHz are
            resampled to 48 kHz). ``None`` for a silent video.
        crf: x264 constant rate factor, 0 (lossless) .. 51 (worst); 18 is visually lossless.
        preset: x264 speed preset, one of :data:`X264_PRESETS`.
        metadata: container tags written as ``-metadata key=value`` (custom keys are kept thanks
            to ``-movflags use_metadata_tags``), e.g. ``{"comment": ..., "synthetic": "true"}``.
        threads: encoder threads (None: ffmpeg's default, all cores).
        codec: H.264 encoder, one of :data:`H264_ENCODERS`: "libx264" (CPU, default) or "h264_nvenc"
            (NVIDIA GPU; ``crf`` becomes its constant-quality ``-cq`` and ``preset`` is mapped to
            NVENC's p1..p7); see :func:`available_h264_encoders`.
        watermark: a 32-bit mark id to embed invisibly in every frame (:mod:`studio.media.watermark`;
            the frames passed to :meth:`write` are not modified), or None.
        credentials: Content Credentials to sign into the file (:mod:`studio.media.credentials`), or
            None. Signing happens on the finished temporary file, before it is moved onto ``path``:
            ``path`` never holds an unsigned video.

    Raises:
        ConfigError: odd or non-positive size, bad fps, crf, preset, threads, codec or metadata key.
        OutputError: ``path`` is a folder, its folder does not exist or is not writable, or the
            disk is full.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        fps: float,
        audio: AudioClip | None = None,
        crf: int = 18,
        preset: str = "veryfast",
        metadata: Mapping[str, object] | None = None,
        threads: int | None = None,
        codec: str = "libx264",
        watermark: int | None = None,
        credentials: ContentCredentials | None = None,
    ) -> None:
        _check_encoder_options(width, height, fps, crf, preset, threads)
        if codec not in H264_ENCODERS:
            raise ConfigError(f"unknown H.264 encoder {codec!r}", f"use one of {', '.join(H264_ENCODERS)}")
        tags = _check_metadata(metadata)
        self.path = Path(path).expanduser().absolute()
        self.width = int(width)
        self.height = int(height)
        self.fps = float(fps)
        self.frames_written = 0
        self._frame_shape = (self.height, self.width, 3)
        self._mark = None if watermark is None else WatermarkEmbedder(self.width, self.height, int(watermark))
        self._marked = np.empty(self._frame_shape, np.uint8) if self._mark is not None else None
        self._credentials = credentials
        self.mark_id = None if watermark is None else int(watermark)
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._wav: Path | None = None
        self._extra_temps: list[Path] = []  # the signed copy while it is being written
        self._closed = True  # until ffmpeg runs: nothing for abort()/__del__ to clean up
        remove_stale_temp_files(self.path.parent)
        self._partial: Path | None = _reserve_partial_file(self.path)
        self._locks: list[int] = []
        try:
            self._locks = [fd for fd in (_lock(self._partial),) if fd is not None]
            if audio is not None:
                self._wav = _temp_wav(audio)
                self._locks += [fd for fd in (_lock(self._wav),) if fd is not None]
            cmd = _encoder_command(
                self._partial, self.width, self.height, self.fps,
                self._wav, int(crf), preset, tags, threads, codec,
            )  # fmt: skip
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                **popen_kwargs(),
            )
        except BaseException:
            self._discard()
            raise
        # The thread must not reference self, or an encoder dropped unclosed would never be freed.
        self._reader = threading.Thread(
            target=_drain_lines, args=(self._proc.stderr, self._stderr), name="ffmpeg-log", daemon=True
        )
        self._reader.start()
        self._closed = False

    # -- context manager -------------------------------------------------------------------------

    def __enter__(self) -> FrameEncoder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- public API ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` or :meth:`abort` has run."""
        return self._closed

    def write(self, frame: np.ndarray) -> None:
        """Append one frame.

        Args:
            frame: (height, width, 3) uint8 RGB array (any strides; never modified: with a watermark it is
                copied into the encoder's own buffer and marked there, else copied only if not contiguous).

        Raises:
            ValueError: wrong type, shape or dtype, or the encoder is already closed.
            OutputError: ffmpeg stopped (disk full, output removed, ...); the partial file is
                deleted and the message carries ffmpeg's last error lines.
        """
        if self._closed:
            raise ValueError(f"cannot write to a closed FrameEncoder ({self.path})")
        if not isinstance(frame, np.ndarray):
            raise ValueError(f"frame must be a numpy array, got {type(frame).__name__}")
        if frame.shape != self._frame_shape:
            expected = self._frame_shape
            raise ValueError(f"frame has shape {frame.shape}, expected {expected} (height, width, RGB)")
        if frame.dtype != np.uint8:
            raise ValueError(f"frame has dtype {frame.dtype}, expected uint8 (0..255)")
        if self._mark is not None:
            np.copyto(self._marked, frame)
            data = self._mark.apply(self._marked)
        else:
            data = np.ascontiguousarray(frame)
        try:
            self._proc.stdin.write(memoryview(data).cast("B"))  # type: ignore[union-attr]
        except OSError as exc:  # BrokenPipeError on POSIX, EINVAL on Windows: ffmpeg has exited
            self._fail(exc)
        self.frames_written += 1

    def close(self) -> Path:
        """Finish encoding, wait for ffmpeg and move the result onto ``path``.

        Calling it again after success is a no-op.

        Returns:
            The output path.

        Raises:
            OutputError: no frame was written, ffmpeg failed, or the file could not be moved into
                place; nothing is left behind in the output folder.
        """
        if self._closed:
            return self.path
        try:
            if self.frames_written == 0:
                raise OutputError(f"no video frames were produced for {self.path}", "nothing was saved")
            try:
                self._proc.stdin.close()  # type: ignore[union-attr]
            except OSError as exc:
                self._fail(exc)
            if self._proc.wait() != 0:  # type: ignore[union-attr]
                self._fail(None)
            self._join_reader()
            if self._credentials is not None:
                self._sign()
            try:
                os.replace(self._partial, self.path)  # type: ignore[arg-type]
            except OSError as exc:
                raise OutputError(
                    f"cannot move the finished video into place: {self.path} ({exc.strerror or exc})",
                    "check that the file is not open in another program and the folder is writable",
                ) from exc
            self._partial = None
        except BaseException:
            self.abort()
            raise
        self._discard()
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and delete the partial output. Safe to call at any time, more than once."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass  # the pipe is broken: that's what we want
            proc.wait()
        self._join_reader()
        self._discard()

    def __del__(self) -> None:
        # Last resort for an encoder dropped without close()/abort(): never leave ffmpeg running
        # or a partial file behind.
        if not getattr(self, "_closed", True):
            message = f"FrameEncoder for {self.path} was never closed; discarding it"
            warnings.warn(message, ResourceWarning, stacklevel=2)
            try:
                self.abort()
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    # -- internals -------------------------------------------------------------------------------

    def _sign(self) -> None:
        """Sign the finished temporary file into a second temporary file, which then takes its place (both are
        deleted by :meth:`_discard` if anything goes wrong, Ctrl-C included)."""
        signed = _reserve_partial_file(self.path)
        self._extra_temps.append(signed)
        lock = _lock(signed)
        if lock is not None:
            self._locks.append(lock)
        self._credentials.sign(self._partial, signed, title=self.path.name)  # type: ignore[union-attr, arg-type]
        unsigned, self._partial = self._partial, signed
        self._extra_temps.remove(signed)
        unsigned.unlink(missing_ok=True)  # type: ignore[union-attr]

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5.0)

    def _fail(self, cause: BaseException | None) -> None:
        """ffmpeg has died or failed: wait for it, then raise an OutputError describing why."""
        proc = self._proc
        try:
            proc.wait(timeout=10.0)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            proc.kill()  # type: ignore[union-attr]
        self._join_reader()
        log = "\n".join(self._stderr)
        if "No space left on device" in log:
            error = OutputError(
                f"disk full while writing {self.path}",
                "free some space on that drive or choose another output folder",
            )
        else:
            detail = stderr_tail(log, 3) or "no message"
            error = OutputError(
                f"video encoder (ffmpeg) failed while writing {self.path}: {detail}",
                "check free disk space and the output folder; if it keeps failing, report this message",
            )
        self.abort()
        raise error from cause

    def _discard(self) -> None:
        """Delete the temporary files, release their locks and mark the encoder closed."""
        for tmp in (self._partial, self._wav, *getattr(self, "_extra_temps", ())):
            if tmp is not None:
                try:
                    tmp.unlink(missing_ok=True)
                except OSError:
                    pass  # best effort: never mask the real error
        for fd in getattr(self, "_locks", ()):
            try:
                os.close(fd)
            except OSError:
                pass
        self._locks = []
        self._extra_temps = []
        self._partial = None
        self._wav = None
        self._closed = True


def ffmpeg_encoders() -> frozenset[str]:
    """Names of the video encoders the bundled ffmpeg lists (``ffmpeg -hide_banner -encoders``)."""
    try:
        text = run_ffmpeg(["-encoders"]).stdout.decode("utf-8", errors="replace")
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(_parse_encoders(text))


def _parse_encoders(text: str) -> list[str]:
    """Video encoder names from ``-encoders`` output: lines like `` V....D libx264   libx264 H.264 ...``."""
    _, _, table = text.partition("------")  # the legend (" V..... = Video") comes before the rule
    return [m.group(1) for m in re.finditer(r"^ V[A-Z.]{5} (\S+)", table, re.MULTILINE)]


def _cuda_available() -> bool:
    """True when the NVIDIA driver reports at least one CUDA device.

    Asks the driver library itself (``libcuda``: cuInit + cuDeviceGetCount) through ctypes, which takes
    milliseconds; importing torch to ask would hold the GIL for seconds.
    """
    import ctypes
    import ctypes.util

    names = [n for n in (ctypes.util.find_library("cuda"), "libcuda.so.1", "libcuda.so", "nvcuda.dll") if n]
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        try:
            return lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
        except (AttributeError, OSError):
            return False
    return False


def available_h264_encoders() -> tuple[str, ...]:
    """The H.264 encoders usable here, best first: "libx264" always (when ffmpeg has it), and
    "h264_nvenc" only when ffmpeg lists it AND a CUDA GPU is present."""
    listed = ffmpeg_encoders()
    out = [name for name in ("libx264",) if name in listed or not listed]
    if "h264_nvenc" in listed and _cuda_available():
        out.append("h264_nvenc")
    return tuple(out)


def _drain_lines(stream: io.BufferedReader, sink: collections.deque[str]) -> None:
    """Background thread: keep ffmpeg's stderr flowing into a bounded buffer of lines."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip()
        if line:
            sink.append(line[:500])
    stream.close()


def _check_encoder_options(
    width: int, height: int, fps: float, crf: int, preset: str, threads: int | None
) -> None:
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, (int, np.integer)) or value < 2:
            raise ConfigError(f"video {name} must be a whole number of pixels >= 2, got {value!r}")
        if value % 2:
            raise ConfigError(
                f"video {name} must be even for H.264 (yuv420p), got {value}",
                "round the frame size to even numbers",
            )
    is_number = isinstance(fps, (int, float, np.integer, np.floating))
    if not is_number or not math.isfinite(fps) or not 0 < fps <= 240:
        raise ConfigError(f"frame rate must be between 0 and 240 fps, got {fps!r}", "use e.g. 25 or 30")
    if not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
        raise ConfigError(
            f"crf must be an integer in 0..51, got {crf!r}",
            "18 is visually lossless, 23 is x264's default",
        )
    if preset not in X264_PRESETS:
        raise ConfigError(f"unknown x264 preset {preset!r}", f"use one of {', '.join(X264_PRESETS)}")
    if threads is not None and (not isinstance(threads, (int, np.integer)) or threads < 1):
        raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")


def _check_metadata(metadata: Mapping[str, object] | None) -> dict[str, str]:
    tags = {str(k): str(v) for k, v in (metadata or {}).items()}
    for key in tags:
        if not key or "=" in key or key != key.strip():
            raise ConfigError(f"invalid metadata key {key!r}", "use a plain word such as 'comment'")
    return tags


_PARTIAL_RE = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.partial\.mp4$")
_TEMP_WAV_RE = re.compile(r"^talkstudio-(\d+)-[^/]*\.wav$")


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files of encoders whose process is gone; returns what was deleted.

    A process killed outright (SIGKILL, a power cut) cannot clean up after itself. Each encoder's files carry
    its process id: the hidden ``.NAME.<pid>.<id>.partial.mp4`` in ``folder`` and the soundtrack
    ``talkstudio-<pid>-*.wav`` in the system temp folder; those of processes that no longer exist on this
    machine, and that no live writer holds locked (see :func:`_lock`: a folder may be shared with other
    machines or containers, where the pid means something else), are removed by the next encoder that starts.
    Files of live processes, and anything else, are left alone; errors are ignored (best effort).
    """
    from studio.core.termination import PID_MAX, pid_alive

    removed = []
    for where, pattern in ((Path(folder), _PARTIAL_RE), (Path(tempfile.gettempdir()), _TEMP_WAV_RE)):
        try:
            names = os.listdir(where)
        except OSError:
            continue
        for name in names:
            m = pattern.match(name)
            if m is None or len(m.group(1)) > 8 or not 0 < int(m.group(1)) <= PID_MAX:
                continue
            path = where / name
            try:
                if pid_alive(int(m.group(1))) or path.is_symlink() or not path.is_file() or _locked(path):
                    continue
                path.unlink()
                removed.append(path)
            except OSError:
                pass
    return removed


def _lock(path: Path) -> int | None:
    """Hold an exclusive advisory lock (``flock``) on ``path`` while its writer lives; returns the fd (close it
    to release; the kernel releases it when the process dies, even by SIGKILL). A pid means nothing on another
    machine or in another container sharing the folder: the lock tells :func:`remove_stale_temp_files` that the
    file is live there. None where locks are not available (Windows; the pid check alone applies)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _locked(path: Path) -> bool:
    """Whether another open file description holds the :func:`_lock` of ``path`` (its writer is alive)."""
    fd = _lock(path)
    if fd is None:
        try:
            import fcntl  # noqa: F401
        except ImportError:  # pragma: no cover
            return False
        return path.exists()  # could not take the lock: someone holds it (or the file is unreadable: keep it)
    os.close(fd)
    return False


def _reserve_partial_file(path: Path) -> Path:
    """Check the output location and create the (empty) temporary file ffmpeg will write.

    Creating it here is the real writability test (``os.access`` is meaningless for root and on
    some network drives); the file is created with mode 0666 & ~umask like any new file.
    """
    folder = path.parent
    if path.is_dir():
        raise OutputError(f"output path is a folder: {path}", "give a file name such as talk.mp4")
    if not folder.exists():
        raise OutputError(
            f"output folder does not exist: {folder}", "create the folder or choose another location"
        )
    if not folder.is_dir():
        raise OutputError(f"output folder is not a folder: {folder}", "choose another location")
    partial = folder / f".{path.name[:100]}.{os.getpid()}.{secrets.token_hex(4)}.partial.mp4"
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError(
                f"disk full: cannot write to {folder}", "free some space or choose another folder"
            ) from exc
        raise OutputError(
            f"output folder is not writable: {folder}",
            "choose a folder you can write to, such as your Videos or Documents folder",
        ) from exc
    return partial


#: seconds of soundtrack resampled and written at a time (memory stays flat for any length of speech)
_WAV_CHUNK_S = 10.0


def _temp_wav(audio: AudioClip) -> Path:
    """Write the soundtrack as a float WAV in the system temp folder (deleted by the encoder), resampled to
    48 kHz when its rate is not one AAC takes. Streamed in chunks (soxr's streaming resampler, HQ as
    :func:`~studio.media.audio.resample`), so no resampled copy of a long soundtrack is ever held in memory.

    Raises:
        OutputError: the temp folder is not writable or the disk is full.
    """
    import soundfile as sf
    import soxr

    rate = audio.sample_rate if audio.sample_rate in _AAC_RATES else _AAC_DEFAULT_RATE
    fd, name = tempfile.mkstemp(prefix=f"talkstudio-{os.getpid()}-", suffix=".wav")
    os.close(fd)
    try:
        stream = (None if rate == audio.sample_rate else
                  soxr.ResampleStream(audio.sample_rate, rate, 1, dtype="float32", quality="HQ"))
        step = max(1, int(_WAV_CHUNK_S * audio.sample_rate))
        x = audio.samples
        with sf.SoundFile(name, "w", samplerate=rate, channels=1, subtype="FLOAT", format="WAV") as out:
            for i in range(0, max(len(x), 1), step):
                chunk = np.asarray(x[i:i + step], dtype=np.float32)
                if stream is not None:
                    chunk = stream.resample_chunk(chunk, last=i + step >= len(x))
                out.write(np.clip(chunk, -1.0, 1.0))
        return Path(name)
    except (sf.LibsndfileError, OSError) as exc:
        Path(name).unlink(missing_ok=True)
        raise OutputError(f"cannot write the soundtrack's temporary file {name} ({exc})",
                          "free some space in the temp folder (TMPDIR) or point TMPDIR at another drive") from exc
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _encoder_command(
    output: Path,
    width: int,
    height: int,
    fps: float,
    wav: Path | None,
    crf: int,
    preset: str,
    metadata: dict[str, str],
    threads: int | None,
    codec: str = "libx264",
) -> list[str]:
    rate = fps_fraction(fps)
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
           "-r", f"{rate.numerator}/{rate.denominator}", "-i", "-"]  # fmt: skip
    if wav is not None:
        cmd += ["-i", str(wav)]
    cmd += ["-map", "0:v:0"]
    if wav is not None:
        cmd += ["-map", "1:a:0"]
    if codec == "h264_nvenc":
        nv_preset = f"p{min(7, 1 + X264_PRESETS.index(preset) * 7 // len(X264_PRESETS))}"
        cmd += ["-c:v", "h264_nvenc", "-preset", nv_preset, "-rc", "vbr", "-cq", str(crf), "-b:v", "0"]
    else:
        cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf)]
    cmd += ["-vf", _BT709_FILTER, "-pix_fmt", "yuv420p"]
    if threads is not None:
        cmd += ["-threads", str(int(threads))]
    if wav is not None:
        cmd += ["-c:a", "aac", "-b:a", "160k"]
    cmd += ["-movflags", "+faststart+use_metadata_tags"]
    for key, value in metadata.items():
        cmd += ["-metadata", f"{key}={value}"]
    cmd += ["-f", "mp4", str(output)]
    return cmd


# ----------------------------------------------------------------------------------------------
# Probing


@dataclass(frozen=True)
class MediaInfo:
    """What ``ffmpeg -i`` reports about a media file (first video and first audio stream).

    Attributes:
        path: the file.
        format_name: demuxer name(s), e.g. "mov,mp4,m4a,3gp,3g2,mj2" or "mpeg".
        duration: container duration in seconds (None if unknown).
        has_video: a video stream exists (cover art / attached pictures do not count).
        has_audio: an audio stream exists.
        video_codec, audio_codec: codec names, e.g. "h264", "aac".
        width, height: displayed frame size in pixels (after rotation metadata).
        fps: frame rate (frames/s, from "fps", else "tbr").
        pix_fmt: pixel format, e.g. "yuv420p".
        rotation: display rotation in degrees from the stream's display matrix (0 if none).
        audio_sample_rate: Hz; audio_channels: channel layout, e.g. "mono", "stereo", "5.1".
        metadata: container-level tags, lowercased keys (e.g. "comment", "encoder").
    """

    path: Path
    format_name: str | None = None
    duration: float | None = None
    has_video: bool = False
    has_audio: bool = False
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    pix_fmt: str | None = None
    rotation: float = 0.0
    audio_sample_rate: int | None = None
    audio_channels: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


_INPUT_RE = re.compile(r"^Input #0, (.*), from '")
_DURATION_RE = re.compile(r"^\s+Duration: (?:(\d+):(\d+):(\d+(?:\.\d+)?)|N/A)")
_STREAM_RE = re.compile(r"^\s+Stream #0:\d+(?:\[[^\]]*\])?(?:\([^)]*\))?: (\w+): (.*)$")
_META_ENTRY_RE = re.compile(r"^ {4}(\S.*?)\s*:(?: (.*))?$")
_META_CONTINUATION_RE = re.compile(r"^ {5,}: (.*)$")
_ROTATION_RE = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")
_TOP_LEVEL_COMMA_RE = re.compile(r",\s*(?![^()]*\))")


def probe_media(path: str | os.PathLike[str]) -> MediaInfo:
    """Describe a media file by parsing ``ffmpeg -hide_banner -i PATH`` (no ffprobe needed).

    Args:
        path: any file ffmpeg can open (video, audio or image).

    Returns:
        MediaInfo for the first video and first audio stream.

    Raises:
        InputError: the file is missing, a folder, unreadable, empty, or not a media file.
    """
    path = check_input_file(path, kind="media", error=InputError)
    text = run_ffmpeg(["-i", str(path)]).stderr.decode("utf-8", errors="replace")
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _INPUT_RE.match(line)), None)
    if start is None:
        reason = ffmpeg_reason(text)
        detail = f" ({reason})" if reason else ""
        raise InputError(f"not a media file ffmpeg can read: {path}{detail}", _MEDIA_HINT)
    format_name = _INPUT_RE.match(lines[start]).group(1)  # type: ignore[union-attr]
    info: dict[str, object] = {"format_name": format_name}
    body = lines[start + 1 :]
    info["metadata"] = _parse_global_metadata(body)
    for line in body:
        if (m := _DURATION_RE.match(line)) and m.group(1) is not None:
            info["duration"] = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
        elif m := _STREAM_RE.match(line):
            kind, desc = m.groups()
            if kind == "Video" and not info.get("has_video") and "(attached pic)" not in desc:
                info.update(_parse_video_stream(desc), has_video=True)
            elif kind == "Audio" and not info.get("has_audio"):
                info.update(_parse_audio_stream(desc), has_audio=True)
    rotation = next((float(m.group(1)) for m in map(_ROTATION_RE.search, body) if m), 0.0)
    if rotation % 180 == 90 and info.get("width"):
        info["width"], info["height"] = info["height"], info["width"]
    return MediaInfo(path=path, rotation=rotation, **info)  # type: ignore[arg-type]


def _parse_global_metadata(body: list[str]) -> dict[str, str]:
    """Container tags: the ``  Metadata:`` block (2-space indent) before the first stream/Duration."""
    tags: dict[str, str] = {}
    lines = iter(body)
    for line in lines:
        if line == "  Metadata:":
            break
        if line.lstrip().startswith(("Duration:", "Stream #")):
            return tags
    key = None
    for line in lines:
        if key is not None and (m := _META_CONTINUATION_RE.match(line)):
            tags[key] += "\n" + m.group(1)
        elif m := _META_ENTRY_RE.match(line):
            key = m.group(1).lower()
            tags[key] = m.group(2) or ""
        else:
            break
    return tags


def _split_fields(desc: str) -> list[str]:
    """Split a stream description at commas that are not inside parentheses."""
    return [part.strip() for part in _TOP_LEVEL_COMMA_RE.split(desc)]


def _parse_video_stream(desc: str) -> dict[str, object]:
    parts = _split_fields(desc)
    out: dict[str, object] = {"video_codec": parts[0].split()[0]}
    if len(parts) > 1 and (m := re.match(r"^([a-z][a-z0-9_]*)(?:\(|$)", parts[1])):
        out["pix_fmt"] = m.group(1)
    tbr = None
    for part in parts[1:]:
        if (m := re.match(r"^(\d+)x(\d+)\b", part)) and "width" not in out:
            out["width"], out["height"] = int(m.group(1)), int(m.group(2))
        elif m := re.match(r"^(\d+(?:\.\d+)?)(k?) (fps|tbr)\b", part):
            value = float(m.group(1)) * (1000 if m.group(2) else 1)
            if m.group(3) == "fps":
                out["fps"] = value
            else:
                tbr = value
    if "fps" not in out and tbr is not None:
        out["fps"] = tbr
    return out


def _parse_audio_stream(desc: str) -> dict[str, object]:
    parts = _split_fields(desc)
    out: dict[str, object] = {"audio_codec": parts[0].split()[0]}
    for i, part in enumerate(parts[1:], start=1):
        if m := re.match(r"^(\d+) Hz$", part):
            out["audio_sample_rate"] = int(m.group(1))
            if i + 1 < len(parts):
                out["audio_channels"] = parts[i + 1]
            break
    return out


def count_video_frames(path: str | os.PathLike[str]) -> int:
    """Count the frames of the first video stream by decoding it (exact, but takes a moment).

    Raises:
        InputError: the file is missing or unreadable, has no video track, or cannot be decoded.
    """
    path = check_input_file(path, kind="video", error=InputError)
    proc = run_ffmpeg(["-nostats", "-v", "error", "-i", str(path), "-map", "0:v:0",
                       "-f", "null", "-progress", "pipe:1", "-"])  # fmt: skip
    stderr = proc.stderr.decode("utf-8", errors="replace")
    if "matches no streams" in stderr:
        raise InputError(f"file has no video track: {path}", _VIDEO_HINT)
    counts = re.findall(rb"^frame=(\d+)", proc.stdout, flags=re.MULTILINE)
    if proc.returncode != 0 or not counts:
        reason = ffmpeg_reason(stderr) or "no output"
        raise InputError(f"cannot decode video: {path} (ffmpeg: {reason})", _VIDEO_HINT)
    return int(counts[-1])


# ----------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class VideoMeta:
    """Geometry and timing of a video being read.

    Attributes:
        width, height: size in pixels of the frames yielded (after ``size`` and rotation).
        fps: frame rate in frames/s (0.0 if ffmpeg could not tell).
        duration: container duration in seconds (0.0 if unknown).
        n_frames: estimated frame count, ``round(duration * fps)`` (use
            :func:`count_video_frames` for an exact count).
        source_size: (width, height) stored in the file, before scaling.
    """

    width: int
    height: int
    fps: float
    duration: float
    n_frames: int
    source_size: tuple[int, int]


class _SizeWarningFilter(logging.Filter):
    """Drops imageio-ffmpeg's "frame size for reading differs from the source" warning: with an
    explicit ``size`` that difference is what was asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("The frame size for reading")


@contextlib.contextmanager
def _quiet_resize_warning() -> Iterator[None]:
    logger = logging.getLogger("imageio_ffmpeg")
    quiet = _SizeWarningFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


class VideoFrames(Iterator[np.ndarray]):
    """Iterator over decoded frames, each (H, W, 3) uint8 RGB, writable and C-contiguous.

    Frames are decoded on demand (one in memory at a time). Stop early with :meth:`close`, or use
    the iterator as a context manager, to stop ffmpeg at once.
    """

    def __init__(self, source: Iterator[bytes], meta: VideoMeta, path: Path) -> None:
        self._source = source
        self._shape = (meta.height, meta.width, 3)
        self._path = path
        self.frames_read = 0

    def __iter__(self) -> VideoFrames:
        return self

    def __next__(self) -> np.ndarray:
        try:
            buf = next(self._source)
        except StopIteration:
            self.close()
            raise
        except RuntimeError as exc:
            self.close()
            raise InputError(
                f"video stopped decoding after {self.frames_read} frames: {self._path}",
                "the file may be truncated or damaged; re-export it",
            ) from exc
        self.frames_read += 1
        return np.frombuffer(buf, dtype=np.uint8).reshape(self._shape).copy()

    def close(self) -> None:
        """Stop decoding and end the ffmpeg process."""
        close = getattr(self._source, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_video_frames(
    path: str | os.PathLike[str], *, size: tuple[int, int] | None = None
) -> tuple[VideoMeta, VideoFrames]:
    """Open a video for streaming decode of its first video stream.

    Rotation metadata is applied by ffmpeg, so frames come out as players show them.

    Args:
        path: a video file (MP4, MOV, MKV, WebM, MPG, AVI ...).
        size: optional (width, height) in pixels to scale every frame to.

    Returns:
        (meta, frames): :class:`VideoMeta` and an iterator of (H, W, 3) uint8 RGB frames.

    Raises:
        InputError: the file is missing or unreadable, has no video track, or cannot be decoded
            (also raised by the iterator if decoding breaks off part-way).
        ValueError: ``size`` is not two positive ints.
    """
    import imageio_ffmpeg

    output_params = ["-map", "0:v:0", "-an", "-sn", "-dn"]
    if size is not None:
        w, h = size
        if not all(isinstance(v, (int, np.integer)) and v > 0 for v in (w, h)):
            raise ValueError(f"size must be (width, height) positive ints, got {size!r}")
        output_params += ["-vf", f"scale={int(w)}:{int(h)}"]
    info = probe_media(path)
    if not info.has_video:
        raise InputError(f"file has no video track: {info.path}", _VIDEO_HINT)
    source = imageio_ffmpeg.read_frames(str(info.path), pix_fmt="rgb24", output_params=output_params)
    try:
        with _quiet_resize_warning():
            header = next(source)
    except (OSError, RuntimeError, IndexError, ValueError, AttributeError, StopIteration) as exc:
        source.close()
        raise InputError(f"cannot decode video: {info.path}", _VIDEO_HINT) from exc
    fps = float(header.get("fps") or info.fps or 0.0)
    duration = float(header.get("duration") or info.duration or 0.0)
    width, height = header["size"]
    meta = VideoMeta(
        width=int(width),
        height=int(height),
        fps=fps,
        duration=duration,
        n_frames=round(duration * fps),
        source_size=tuple(header.get("source_size", (width, height))),  # type: ignore[arg-type]
    )
    return meta, VideoFrames(source, meta, info.path)


def mean_luma(path: str | os.PathLike[str], *, max_seconds: float = 20.0,
              max_side: int = 1280) -> tuple[np.ndarray, int]:
    """Average luma (BT.601 grey, as ffmpeg's ``gray`` format) of a video's first ``max_seconds``, with frames
    larger than ``max_side`` pixels scaled down first (area filter). The watermark search reads this.

    Returns:
        ((H, W) float32 mean luma in 0..255, number of frames averaged).

    Raises:
        InputError: missing or unreadable file, no video track, or no frame.
    """
    import imageio_ffmpeg

    info = probe_media(path)
    if not info.has_video:
        raise InputError(f"file has no video track: {info.path}", _VIDEO_HINT)
    scale = f"scale='if(gt(max(iw,ih),{max_side}),iw*{max_side}/max(iw,ih),iw)':-2:flags=area"
    params = ["-map", "0:v:0", "-an", "-sn", "-dn", "-t", f"{max_seconds:g}", "-vf", scale]
    source = imageio_ffmpeg.read_frames(str(info.path), pix_fmt="gray", bpp=1, output_params=params)
    try:
        with _quiet_resize_warning():
            header = next(source)
        w, h = header["size"]
        total = np.zeros((h, w), dtype=np.float64)
        n = 0
        for buf in source:
            total += np.frombuffer(buf, dtype=np.uint8).reshape(h, w)
            n += 1
    except (OSError, RuntimeError, IndexError, ValueError, StopIteration) as exc:
        raise InputError(f"cannot decode video: {info.path}", "the file may be damaged; try another copy") from exc
    finally:
        source.close()
    if n == 0:
        raise InputError(f"the video has no frames: {info.path}", "choose a video with at least one frame")
    return (total / n).astype(np.float32), n
