"""The render pipeline: photo + speech -> control track -> frames -> MP4, as a generator of events.

``render(request)`` yields :class:`~studio.core.progress.Progress`, :class:`Notice` and finally
:class:`Done`; the CLI turns them into a progress bar, the GUI into Qt signals. Frames are streamed to
the encoder one at a time (memory does not grow with the audio's length), and the output appears only
when it is complete: a cancel (CancelToken or Ctrl-C) or any error leaves no file behind.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from studio import __version__
from studio.core.errors import ConfigError, InputError, OutputError
from studio.core.progress import CancelToken, Progress, ProgressMonitor
from studio.core.tracks import ControlTrack
from studio.engine.audio.visemes import MouthTrack, analyze_speech
from studio.engine.face.detect import FaceLandmarks, detect_faces, select_face
from studio.engine.lite.engine import LiteEngine
from studio.media.audio import AudioClip, frame_count, is_silent, load_audio, peak_window_dbfs
from studio.media.image import load_image
from studio.media.video import FrameEncoder

ENGINES = ("lite", "neural")
OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov")
MIN_FPS, MAX_FPS = 1.0, 120.0
ANALYSIS_RATE = 16000  # Hz: speech analysis and the muxed soundtrack's source rate


POSE_PRESETS = ("still", "idle", "nod", "look-around")
EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised")
BLINK_MODES = ("auto", "off", "source")


@dataclass(frozen=True)
class RenderSettings:
    """Options of one render (all have the CLI's defaults).

    Attributes:
        engine: "lite" (the embedded engine) or "neural" (StyleGAN2 from the model store).
        fps: output frame rate in frames per second, 1..120.
        seed: random seed of blinks and idle head motion.
        face_index: which face to animate when the photo has several (0 = largest).
        transcript: optional text of the speech; enables forced alignment (more exact visemes).
        pose: head motion source: a preset from :data:`POSE_PRESETS` or the path of a video whose head
            motion (yaw, pitch, roll, translation, scale) is transferred.
        pose_intensity: scale of the head motion, 0..3 (0 = still, 1 = as the source/preset).
        emotion: expression preset from :data:`EMOTIONS`; emotion_intensity: its strength, 0..1.
        emotion_source: a photo or video whose expression (mouth corners, brows, eye openness) is
            transferred instead of a preset (its intensity is emotion_intensity).
        blink: "auto" (natural seeded blinks), "off", or "source" (the blinks of the pose or emotion video).
        crf: x264 constant rate factor (lower = better quality, bigger file).
        preset: x264 speed preset.
        person: neural engine: a PTI person file (``talkstudio tune``). encoder: neural engine's E_I:
            "auto" (e4e if installed, else pSp, else optimisation-based projection), "e4e", "psp" or
            "none". projection_steps: neural engine: optimisation steps refining E_I's code (without an
            encoder: the projection's steps, 0 = 450).
        mouth: neural engine: "auto", "audio-model" or "directions" (see
            :class:`studio.engine.neural.engine.NeuralOptions`).
    """

    engine: str = "lite"
    fps: float = 25.0
    seed: int = 0
    face_index: int = 0
    transcript: str | None = None
    pose: str = "idle"
    pose_intensity: float = 1.0
    emotion: str = "neutral"
    emotion_intensity: float = 0.7
    emotion_source: Path | None = None
    blink: str = "auto"
    crf: int = 18
    preset: str = "veryfast"
    person: Path | None = None
    encoder: str = "auto"
    projection_steps: int = 0
    mouth: str = "auto"

    def neural_options(self):
        """The :class:`~studio.engine.neural.engine.NeuralOptions` of these settings."""
        from studio.engine.neural.engine import NeuralOptions

        return NeuralOptions(encoder=self.encoder, projection_steps=self.projection_steps,
                             person=None if self.person is None else Path(self.person), mouth=self.mouth)

    @property
    def pose_video(self) -> Path | None:
        """The pose source video, or None for a preset."""
        return None if self.pose in POSE_PRESETS else Path(self.pose)

    def validate(self) -> None:
        """Raise :class:`ConfigError` (or InputError for a missing source file) naming the first invalid option."""
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}", f"choose one of: {', '.join(ENGINES)}")
        if not np.isfinite(self.fps) or not MIN_FPS <= self.fps <= MAX_FPS:
            raise ConfigError(f"invalid fps {self.fps!r}", f"use a frame rate between {MIN_FPS:g} and {MAX_FPS:g}")
        if self.face_index < 0:
            raise ConfigError(f"invalid face index {self.face_index}", "use 0 for the largest face, 1 for the next")
        if not 0.0 <= self.pose_intensity <= 3.0:
            raise ConfigError(f"invalid pose intensity {self.pose_intensity}", "use a value from 0 to 3")
        if self.emotion not in EMOTIONS:
            raise ConfigError(f"unknown emotion {self.emotion!r}", f"choose one of: {', '.join(EMOTIONS)}")
        if not 0.0 <= self.emotion_intensity <= 1.0:
            raise ConfigError(f"invalid emotion intensity {self.emotion_intensity}", "use a value from 0 to 1")
        if self.blink not in BLINK_MODES:
            raise ConfigError(f"unknown blink mode {self.blink!r}", f"choose one of: {', '.join(BLINK_MODES)}")
        if self.blink == "source" and self.pose_video is None and self.emotion_source is None:
            raise ConfigError("--blink source needs a source video",
                              "give a video with --pose-source or --emotion-source, or use --blink auto")
        for what, path in (("pose source", self.pose_video), ("emotion source", self.emotion_source)):
            if path is not None and not Path(path).is_file():
                raise InputError(f"{what} not found: {path}",
                                 f"give an existing video file, or a preset: {', '.join(POSE_PRESETS)}"
                                 if what == "pose source" else "give an existing photo or video file")
        if self.engine == "neural":
            self.neural_options().validate()  # names every missing model file


@dataclass(frozen=True)
class RenderRequest:
    """What to render: an identity photo and a speech file into an output video path."""

    image: Path
    audio: Path
    output: Path
    settings: RenderSettings = field(default_factory=RenderSettings)


@dataclass(frozen=True)
class Notice:
    """Something the user should know that does not stop the job.

    Attributes:
        message: the text. level: "warning" (something is off: several faces, silent audio, a skipped
            file) or "note" (information: which model drives the mouth, a resumed run).
    """

    message: str
    level: str = "warning"


@dataclass(frozen=True)
class Done:
    """The render finished and ``output`` is complete.

    Attributes:
        output: the written video. n_frames: frames rendered. fps: frame rate.
        duration_s: audio duration in seconds. size: (width, height) of the video in pixels.
        timings: seconds spent per stage ("analyse", "render", "encode_wait", "total").
    """

    output: Path
    n_frames: int
    fps: float
    duration_s: float
    size: tuple[int, int]
    timings: dict[str, float]


def check_output_path(path: Path) -> Path:
    """Validate the output path before any work is done.

    Raises:
        ConfigError: unsupported extension. OutputError: the path is a folder, or its folder is missing
            or not writable.
    """
    path = Path(path).expanduser().absolute()
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"unsupported output type {path.suffix or '(none)'!r} for {path}",
                          f"name the output with one of: {', '.join(OUTPUT_SUFFIXES)}")
    if path.is_dir():
        raise OutputError(f"the output path is a folder: {path}", "give a file name such as out/video.mp4")
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}", "create it first or choose another folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder is not writable: {folder}", "choose a folder you can write to")
    return path


def even_crop(image: np.ndarray) -> np.ndarray:
    """Crop one pixel row/column if needed so both sides are even (H.264 yuv420p needs even sizes)."""
    h, w = image.shape[:2]
    return image[: h - h % 2, : w - w % 2]


def build_controls(mouth: MouthTrack, settings: RenderSettings, *, cancel: CancelToken | None = None) -> ControlTrack:
    """Combine the speech-driven mouth track with head pose, emotion and blinks.

    Args:
        mouth: from :func:`~studio.engine.audio.visemes.analyze_speech`.
        settings: pose / emotion / blink choices, seed and fps.
        cancel: polled while source videos are analysed.

    Returns:
        The per-frame :class:`ControlTrack` every engine consumes.
    """
    from studio.engine.sources.controls import source_channels

    n = mouth.n_frames
    channels: dict[str, np.ndarray] = {
        "jaw": mouth.jaw, "open": mouth.open, "spread": mouth.spread, "press": mouth.press, "teeth": mouth.teeth,
    }
    for name, arr in source_channels(n, mouth.fps, settings, energy=mouth.energy, cancel=cancel).items():
        channels[name] = channels[name] + arr if name in channels else arr
    return ControlTrack.from_channels(mouth.fps, n, channels, visemes=mouth.visemes, energy=mouth.energy)


def provenance(engine: str) -> dict[str, str]:
    """Container metadata that marks the video as synthetic and names its generator."""
    generator = f"Talking Head Studio {__version__} ({engine} engine)"
    return {
        "synthetic": "true",
        "generator": generator,
        "comment": f"Synthetic video generated by {generator} from a still photo and speech audio; "
                   "not a recording of a real event.",
    }


@dataclass(frozen=True)
class Identity:
    """A photo ready to animate: the (even-cropped) image, every face found, and the chosen one."""

    path: Path
    image: np.ndarray  # (H, W, 3) uint8 RGB, H and W even
    faces: tuple[FaceLandmarks, ...]
    face: FaceLandmarks
    face_index: int


def load_identity(path: Path, *, face_index: int = 0) -> Identity:
    """Read a photo, find its faces and choose the subject.

    Raises:
        ImageError: unreadable photo. FaceError: no face, index out of range, face too small.
    """
    image = even_crop(load_image(path))
    faces = detect_faces(image)
    face = select_face(faces, face_index=face_index, source=str(path))
    return Identity(path=Path(path), image=image, faces=tuple(faces), face=face, face_index=face_index)


def identity_notices(identity: Identity) -> list[str]:
    """User-facing remarks about an identity photo (several faces)."""
    n = len(identity.faces)
    if n <= 1:
        return []
    which = "the largest" if identity.face_index == 0 else f"number {identity.face_index} by size"
    return [f"found {n} faces in {identity.path}; animating {which} (face index {identity.face_index}); "
            "--face-index picks another"]


@dataclass(frozen=True)
class Prepared:
    """The last event of :func:`prepare`: a session ready to render frames or export."""

    session: "Session"


class Session:
    """An identity and a speech track analysed into controls, with the engine prepared.

    It renders any frame on demand (the studio's preview) and exports the whole clip or a range.

    Args:
        identity: from :func:`load_identity`; audio: the speech (mono float32);
        mouth: its speech analysis; controls: the per-frame control track; settings: the render settings.
    """

    def __init__(self, identity: Identity, audio: AudioClip, mouth: MouthTrack, controls: ControlTrack,
                 settings: RenderSettings, *, engine=None, state=None) -> None:
        self.identity = identity
        self.audio = audio
        self.mouth = mouth
        self.controls = controls
        self.settings = settings
        # engine: a LiteEngine (default) or a loaded NeuralEngine with its prepared identity ``state``
        self.engine = engine or LiteEngine()
        self._ident = state if state is not None else self.engine.prepare(identity.image, identity.face)
        self._cache: dict[int, np.ndarray] = {}
        self._summary: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def has_latents(self) -> bool:
        """True when the engine renders from W+ codes (neural), so :meth:`latent_summary` has data."""
        return not isinstance(self.engine, LiteEngine)

    def latent_summary(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Neural engine: (h (T, 3) leading W+ coefficients, (T, n_latent) per-layer displacement norms) of
        this session's control track (see ``NeuralEngine.trajectory_summary``), computed once; None for lite."""
        if isinstance(self.engine, LiteEngine):
            return None
        if self._summary is None:
            self._summary = self.engine.trajectory_summary(self._ident, self.controls)
        return self._summary

    def _frame(self, k: int) -> np.ndarray:
        if isinstance(self.engine, LiteEngine):
            return self.engine.render(self._ident, self.controls.frame(k))
        return self.engine.render_at(self._ident, self.controls, k, self._cache)

    @property
    def n_frames(self) -> int:
        return self.controls.n_frames

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the video in pixels."""
        h, w = self.identity.image.shape[:2]
        return w, h

    def with_controls(self, controls: ControlTrack) -> "Session":
        """A new session on the same identity and speech driven by ``controls`` (e.g. with keyframe
        overrides). It has its own frame buffer, so it may render in another thread than this one."""
        if controls.n_frames != self.n_frames or controls.fps != self.controls.fps:
            raise ValueError("the control track must keep the number of frames and the fps")
        return Session(self.identity, self.audio, self.mouth, controls, self.settings, engine=self.engine,
                       state=self._ident)

    def render_frame(self, k: int) -> np.ndarray:
        """Frame k as a new (H, W, 3) uint8 RGB array. Not thread-safe: one renderer per session."""
        if not 0 <= k < self.n_frames:
            raise IndexError(f"frame {k} out of range 0..{self.n_frames - 1}")
        return self._frame(k).copy()

    def export(self, output: Path, *, frame_range: tuple[int, int] | None = None,
               size: tuple[int, int] | None = None, codec: str = "libx264", crf: int | None = None,
               threads: int | None = None, cancel: CancelToken | None = None,
               monitor: ProgressMonitor | None = None, t0: float | None = None) -> Iterator[Progress | Done]:
        """Encode frames [start, stop) (default all) with the matching audio to ``output``.

        Args:
            output: the video to write (.mp4/.m4v/.mov). frame_range: [start, stop) frame indices.
            size: (width, height), both even, to scale the frames to (default: the photo's own size).
            codec: "libx264" or "h264_nvenc"; crf: quality (default: the settings'); threads: encoder
                threads (default: all cores; the studio leaves one to its UI).

        Yields Progress (stage "render") then Done; cancelling or an error leaves no file (see
        :class:`FrameEncoder`).
        """
        cancel = cancel or CancelToken()
        monitor = monitor or ProgressMonitor()
        t0 = time.perf_counter() if t0 is None else t0
        output = check_output_path(output)
        start, stop = frame_range or (0, self.n_frames)
        if not 0 <= start < stop <= self.n_frames:
            raise ConfigError(f"invalid frame range {start}..{stop}", f"use a range inside 0..{self.n_frames}")
        fps = self.controls.fps
        audio = self.audio
        if (start, stop) != (0, self.n_frames):
            a = round(start * audio.sample_rate / fps)
            b = min(round(stop * audio.sample_rate / fps), audio.num_samples)
            audio = AudioClip(audio.samples[a:b], audio.sample_rate, audio.source)
        w, h = size or self.size
        resize = (w, h) != self.size
        n = stop - start
        t_render = 0.0
        with FrameEncoder(output, width=w, height=h, fps=fps, audio=audio,
                          crf=self.settings.crf if crf is None else crf, preset=self.settings.preset,
                          metadata=provenance(self.engine.name), codec=codec, threads=threads) as encoder:
            step = max(1, n // 200)
            for i, k in enumerate(range(start, stop)):
                cancel.raise_if_cancelled()
                ts = time.perf_counter()
                frame = self._frame(k)
                if resize:
                    frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
                t_render += time.perf_counter() - ts
                encoder.write(frame)
                if i % step == 0 or i == n - 1:
                    yield monitor.event("render", i + 1, n, f"frame {i + 1}/{n}")
        yield Done(output=encoder.path, n_frames=n, fps=fps, duration_s=audio.duration, size=(w, h),
                   timings={"render": t_render, "total": time.perf_counter() - t0})


def prepare(image: Path, audio: Path, settings: RenderSettings, *, cancel: CancelToken | None = None,
            monitor: ProgressMonitor | None = None) -> Iterator[Progress | Notice | Prepared]:
    """Load the photo and speech, analyse the speech and build the control track.

    Yields Progress and Notices, then one :class:`Prepared` carrying the :class:`Session`.

    Raises:
        ConfigError, ImageError, AudioError, FaceError, Cancelled.
    """
    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    settings.validate()
    load = monitor.sub(0.0, 0.4)
    yield load.event("load", 0, 3, "reading the photo")
    identity = load_identity(image, face_index=settings.face_index)
    for note in identity_notices(identity):
        yield Notice(note)
    yield load.event("load", 1, 3, "reading the speech")
    clip = load_audio(audio, sample_rate=ANALYSIS_RATE)
    if is_silent(clip):
        yield Notice(f"the audio is silent (loudest 50 ms at {peak_window_dbfs(clip):.0f} dBFS): "
                     "the mouth stays closed, the face only blinks and moves")
    cancel.raise_if_cancelled()
    yield load.event("load", 2, 3, "analysing the speech")
    fps = float(settings.fps)
    mouth = analyze_speech(clip.samples, clip.sample_rate, fps=fps, n_frames=frame_count(clip.duration, fps),
                           transcript=settings.transcript, cancel=cancel)
    controls = build_controls(mouth, settings, cancel=cancel)
    yield load.event("load", 3, 3, "speech analysed")
    engine = state = None
    if settings.engine == "neural":
        from studio.engine.neural.engine import NeuralEngine

        for ev in NeuralEngine.load(settings.neural_options(), cancel=cancel, monitor=monitor.sub(0.4, 0.8)):
            if isinstance(ev, (Notice, Progress)):
                yield ev
            else:
                engine = ev
        for ev in engine.prepare_identity(identity, clip, fps=fps, n_frames=controls.n_frames, cancel=cancel,
                                          monitor=monitor.sub(0.8, 1.0)):
            if isinstance(ev, Progress):
                yield ev
            else:
                state = ev
        for note in state.notes:
            yield Notice(f"neural engine: {note}", level="note")
        yield Notice(f"neural engine: the mouth follows {state.mouth_source}", level="note")
    session = Session(identity, clip, mouth, controls, settings, engine=engine, state=state)
    session.latent_summary()  # here, off the studio's UI thread
    yield Prepared(session)


def render(request: RenderRequest, *, cancel: CancelToken | None = None) -> Iterator[Progress | Notice | Done]:
    """Render a talking-head video: :func:`prepare` then :meth:`Session.export`.

    Args:
        request: photo, speech and output paths plus settings.
        cancel: polled between frames; when cancelled, raises :class:`~studio.core.errors.Cancelled`
            and leaves no output file.

    Yields:
        Progress events (fraction monotonic in [0, 1]), Notices, then one Done.

    Raises:
        StudioError subclasses with a user-facing message: ImageError, AudioError, FaceError,
        ConfigError, OutputError, Cancelled.
    """
    cancel = cancel or CancelToken()
    request.settings.validate()
    check_output_path(request.output)  # fail before any heavy work
    t0 = time.perf_counter()
    monitor = ProgressMonitor()
    session = None
    for ev in prepare(request.image, request.audio, request.settings, cancel=cancel, monitor=monitor.sub(0.0, 0.15)):
        if isinstance(ev, Prepared):
            session = ev.session
        else:
            yield ev
    assert session is not None
    yield from session.export(request.output, cancel=cancel, monitor=monitor.sub(0.15, 1.0), t0=t0)
