"""The render pipeline: photo + speech -> control track -> frames -> MP4, as long jobs.

:func:`prepare` loads the identity and speech, analyses the speech, builds the control track and
prepares the engine (looked up by name in :data:`ENGINES`); it returns a :class:`Session`, which renders
any frame on demand (the studio's preview) and exports the whole clip or a range. :func:`render` is both,
for the CLI and batch. Both are generators of :class:`~studio.core.events.Progress` and
:class:`~studio.core.events.Notice` that *return* their result (``session = yield from prepare(...)`` or
:func:`~studio.core.events.drive`). Frames stream to the encoder one batch at a time (memory does not
grow with the audio's length), and the output appears only when it is complete: a cancel (CancelToken
or Ctrl-C) or any error leaves no file behind.

Timing: frame k shows the audio in [k/fps, (k+1)/fps) (see ``shared/DESIGN.md``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from studio.core.errors import ConfigError
from studio.core.events import CancelToken, Job, Notice, ProgressMonitor
from studio.core.tracks import ControlTrack
from studio.engine.audio.visemes import MouthTrack, analyze_speech
from studio.engine.base import ANALYSIS_RATE, Done, Engine, output_marks, provenance
from studio.engine.face.identity import Identity, load_identity
from studio.engine.lite.engine import LiteEngine
from studio.engine.settings import ENGINE_NAMES, RenderSettings
from studio.engine.sources.controls import source_channels
from studio.media.audio import AudioClip, frame_count, is_silent, load_audio, peak_window_dbfs, wav_truncation
from studio.media.kinds import check_output_path
from studio.media.video import FrameEncoder

#: below this share of the speech aligned to its transcript, the transcript is said not to match it
TRANSCRIPT_MATCH = 0.6

def _neural_engine_class():
    from studio.engine.neural.engine import NeuralEngine  # torch: imported only when asked for

    return NeuralEngine


#: engine name -> a function returning its class: the one place that knows the engines. Each class has
#: ``check(engine_settings)`` (raise for bad options or missing models, before any work) and
#: ``load(engine_settings, *, monitor, cancel)`` (a Job returning the engine, see engine/base.py).
ENGINES: dict[str, Callable[[], type]] = {"lite": lambda: LiteEngine, "neural": _neural_engine_class}
assert tuple(ENGINES) == ENGINE_NAMES


def _engine_class(settings: RenderSettings) -> type:
    if settings.engine.name not in ENGINES:
        raise ConfigError(f"unknown engine {settings.engine.name!r}", f"choose one of: {', '.join(ENGINES)}")
    return ENGINES[settings.engine.name]()


def check_settings(settings: RenderSettings) -> None:
    """Everything that can be checked before any work: the settings' values and source files
    (:meth:`RenderSettings.validate`), then the engine's options and models (its ``check``).

    Raises:
        ConfigError, InputError, ModelError (naming every missing model file).
    """
    settings.validate()
    _engine_class(settings).check(settings.engine)


def load_engine(settings: RenderSettings, *, monitor: ProgressMonitor | None = None,
                cancel: CancelToken | None = None) -> Job[Engine]:
    """The engine ``settings.engine.name`` with its models loaded (a long job for the neural engine).

    Raises:
        ConfigError: an unknown engine. ModelError: its models are missing or corrupt.
    """
    return (yield from _engine_class(settings).load(settings.engine, monitor=monitor, cancel=cancel))


@dataclass(frozen=True)
class RenderRequest:
    """What to render: an identity photo and a speech file into an output video path.

    ``identity``: the photo already loaded and analysed (:func:`load_identity` of ``image`` with the settings'
    face index), e.g. shared by the jobs of a cluster batch; None loads it here. ``threads``: the video
    encoder's threads (None: all cores; a cluster task gets the CPUs it was scheduled with).
    """

    image: Path
    audio: Path
    output: Path
    settings: RenderSettings = field(default_factory=RenderSettings)
    identity: Identity | None = None
    threads: int | None = None


def build_controls(mouth: MouthTrack, settings: RenderSettings, *, cancel: CancelToken | None = None) -> ControlTrack:
    """Combine the speech-driven mouth track with head pose, emotion and blinks.

    Args:
        mouth: from :func:`~studio.engine.audio.visemes.analyze_speech`.
        settings: pose / emotion / blink choices, seed and fps; the mouth's offset and intensity.
        cancel: polled while source videos are analysed.

    Returns:
        The per-frame :class:`ControlTrack` every engine consumes.
    """
    n = mouth.n_frames
    mouth = mouth.adjusted(offset_ms=settings.mouth_offset_ms, intensity=settings.mouth_intensity)
    channels: dict[str, np.ndarray] = {
        "jaw": mouth.jaw, "open": mouth.open, "spread": mouth.spread, "press": mouth.press, "teeth": mouth.teeth,
        "close": mouth.close,
    }
    for name, arr in source_channels(n, mouth.fps, settings.sources, energy=mouth.energy, cancel=cancel).items():
        channels[name] = channels[name] + arr if name in channels else arr
    return ControlTrack.from_channels(mouth.fps, n, channels, visemes=mouth.visemes, energy=mouth.energy)


class Session:
    """An identity and a speech track analysed into controls, with the engine prepared.

    It renders any frame on demand (the studio's preview) and exports the whole clip or a range. The
    engine's prepared state is immutable and shared by the sessions :meth:`with_controls` makes; each
    session renders into its own buffer, so sessions may render in different threads at once (the preview
    and an export). One session is not thread-safe: one renderer per session.

    Args:
        identity: from :func:`~studio.engine.face.identity.load_identity`; audio: the speech (mono float32);
        mouth: its speech analysis; controls: the per-frame control track; settings: the render settings;
        engine: the engine (an :class:`~studio.engine.base.Engine`); prepared: its prepared state.
    """

    def __init__(self, identity: Identity, audio: AudioClip, mouth: MouthTrack, controls: ControlTrack,
                 settings: RenderSettings, *, engine: Engine, prepared) -> None:
        self.identity = identity
        self.audio = audio
        self.mouth = mouth
        self.controls = controls
        self.settings = settings
        self.engine = engine
        self.prepared = prepared
        self._summary: tuple[np.ndarray, np.ndarray] | None = None
        self._summary_done = False
        # this session's own frames: a batch of the engine's size, and which frame each row holds
        h, w = identity.image.shape[:2]
        self._buffer = np.zeros((max(1, int(engine.batch_size)), h, w, 3), np.uint8)
        self._rows: dict[int, int] = {}

    @property
    def has_latents(self) -> bool:
        """True when the engine renders from W+ codes (neural), so :meth:`latent_summary` has data."""
        return self.latent_summary() is not None

    def latent_summary(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The engine's :meth:`~studio.engine.base.Engine.latent_summary` of this session's control track
        (computed once; None for engines without latent codes)."""
        if not self._summary_done:
            self._summary = self.engine.latent_summary(self.prepared, self.controls)
            self._summary_done = True
        return self._summary

    def _frame(self, k: int) -> np.ndarray:
        """Frame k as a view into this session's buffer (valid until the buffer's row is rendered again).
        Engines that render batches render the next ``batch_size`` frames at once."""
        row = self._rows.get(k)
        if row is None:
            stop = min(self.n_frames, k + len(self._buffer))
            frames = list(range(k, stop))
            self._rows = {}  # the buffer is being overwritten: nothing in it is valid if render fails
            self.engine.render(self.prepared, self.controls, frames, out=self._buffer[:len(frames)])
            self._rows = {j: i for i, j in enumerate(frames)}
            row = 0
        return self._buffer[row]

    @property
    def n_frames(self) -> int:
        return self.controls.n_frames

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the video in pixels."""
        h, w = self.identity.image.shape[:2]
        return w, h

    def with_controls(self, controls: ControlTrack) -> "Session":
        """A new session on the same identity, speech and prepared engine driven by ``controls`` (e.g. with
        keyframe overrides). It has its own frame buffer, so it may render in another thread than this one.

        Raises:
            ValueError: ``controls`` has another number of frames or fps.
        """
        if controls.n_frames != self.n_frames or controls.fps != self.controls.fps:
            raise ValueError("the control track must keep the number of frames and the fps")
        return Session(self.identity, self.audio, self.mouth, controls, self.settings, engine=self.engine,
                       prepared=self.prepared)

    def render_frame(self, k: int) -> np.ndarray:
        """Frame k as a new (H, W, 3) uint8 RGB array. Raises IndexError outside 0..n_frames-1."""
        if not 0 <= k < self.n_frames:
            raise IndexError(f"frame {k} out of range 0..{self.n_frames - 1}")
        return self._frame(k).copy()

    def export(self, output: Path, *, frame_range: tuple[int, int] | None = None,
               size: tuple[int, int] | None = None, codec: str = "libx264", crf: int | None = None,
               threads: int | None = None, content_credentials: bool | None = None,
               cancel: CancelToken | None = None, monitor: ProgressMonitor | None = None,
               t0: float | None = None) -> Job["Done"]:
        """Encode frames [start, stop) (default all) with the matching audio to ``output``.

        Args:
            output: the video to write (.mp4/.m4v/.mov). frame_range: [start, stop) frame indices.
            size: (width, height), both even, to scale the frames to (default: the photo's own size).
            codec: "libx264" or "h264_nvenc"; crf: quality (default: the settings'); threads: encoder
                threads (default: all cores; the studio leaves one to its UI).
            content_credentials: sign a C2PA manifest (default: the settings'). The invisible watermark is
                always embedded.

        Yields Progress (stage "render") and Notices; returns :class:`Done` (with the watermark id and the
        signer). Cancelling or an error leaves no file (see :class:`FrameEncoder`).

        Raises:
            ConfigError / OutputError: bad output path or frame range. Cancelled.
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
        encode = self.settings.encode
        settings = self.settings
        marks = output_marks(self.engine.name, [
            (self.identity.path, "identity"), (self.audio.source, "speech"), (settings.pose_video, "pose"),
            (settings.sources.emotion_source, "expression"), (settings.engine.person, "person")],
            sign=encode.content_credentials if content_credentials is None else bool(content_credentials),
            size=(w, h))
        for note in marks.notices:
            yield Notice(note)
        with FrameEncoder(output, width=w, height=h, fps=fps, audio=audio,
                          crf=encode.crf if crf is None else crf, preset=encode.preset,
                          metadata=provenance(self.engine.name), codec=codec, threads=threads,
                          watermark=marks.mark_id, credentials=marks.credentials) as encoder:
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
        return Done(output=encoder.path, n_frames=n, fps=fps, duration_s=audio.duration, size=(w, h),
                    timings={"render": t_render, "total": time.perf_counter() - t0}, mark_id=marks.mark_id,
                    signed_by=marks.signed_by)


def prepare(image: Path, audio: Path, settings: RenderSettings, *, cancel: CancelToken | None = None,
            monitor: ProgressMonitor | None = None, identity: Identity | None = None) -> Job[Session]:
    """Load the photo and speech, analyse the speech, build the control track and prepare the engine.

    ``identity``: ``image`` already loaded (:func:`load_identity` with the settings' face index), or None.

    Yields Progress (stages "load", then the engine's) and Notices; returns the :class:`Session`.

    Raises:
        ConfigError, ImageError, AudioError, FaceError, ModelError, Cancelled.
    """
    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    check_settings(settings)
    load = monitor.sub(0.0, 0.4)
    yield load.event("load", 0, 3, "reading the photo")
    if identity is None:
        identity = load_identity(image, face_index=settings.face_index)
    for note in identity.notices():
        yield Notice(note)
    yield load.event("load", 1, 3, "reading the speech")
    clip = load_audio(audio, sample_rate=ANALYSIS_RATE)
    cut = wav_truncation(audio)
    if cut is not None:
        yield Notice(f"the speech file {Path(audio).name} is cut short: its header announces {cut[0]:.1f} s, only "
                     f"{cut[1]:.1f} s are there; the video covers those")
    if is_silent(clip):
        yield Notice(f"the audio is silent (loudest 50 ms at {peak_window_dbfs(clip):.0f} dBFS): "
                     "the mouth stays closed, the face only blinks and moves")
    cancel.raise_if_cancelled()
    yield load.event("load", 2, 3, "analysing the speech")
    fps = float(settings.fps)
    mouth = analyze_speech(clip.samples, clip.sample_rate, fps=fps, n_frames=frame_count(clip.duration, fps),
                           transcript=settings.transcript, cancel=cancel)
    if mouth.aligned_fraction is not None and mouth.aligned_fraction < TRANSCRIPT_MATCH:
        yield Notice(f"the transcript does not seem to match the speech: only {mouth.aligned_fraction:.0%} of it "
                     "could be aligned to the words; the rest of the mouth follows the sound instead. Check the "
                     "transcript, or leave it out")
    controls = build_controls(mouth, settings, cancel=cancel)
    yield load.event("load", 3, 3, "speech analysed")
    engine = yield from load_engine(settings, monitor=monitor.sub(0.4, 0.8), cancel=cancel)
    prepared = yield from engine.prepare(identity, clip, controls, monitor=monitor.sub(0.8, 1.0), cancel=cancel)
    session = Session(identity, clip, mouth, controls, settings, engine=engine, prepared=prepared)
    session.latent_summary()  # here, off the studio's UI thread
    return session


def render(request: RenderRequest, *, cancel: CancelToken | None = None) -> Job[Done]:
    """Render a talking-head video: :func:`prepare` then :meth:`Session.export`.

    Args:
        request: photo, speech and output paths plus settings.
        cancel: polled between frames; when cancelled, raises :class:`~studio.core.errors.Cancelled`
            and leaves no output file.

    Yields Progress events (fraction monotonic in [0, 1]) and Notices; returns :class:`Done`.

    Raises:
        StudioError subclasses with a user-facing message: ImageError, AudioError, FaceError,
        ConfigError, OutputError, ModelError, Cancelled.
    """
    cancel = cancel or CancelToken()
    check_settings(request.settings)
    check_output_path(request.output)  # fail before any heavy work
    t0 = time.perf_counter()
    monitor = ProgressMonitor()
    session = yield from prepare(request.image, request.audio, request.settings, cancel=cancel,
                                 monitor=monitor.sub(0.0, 0.15), identity=request.identity)
    return (yield from session.export(request.output, cancel=cancel, monitor=monitor.sub(0.15, 1.0), t0=t0,
                                      threads=request.threads))
