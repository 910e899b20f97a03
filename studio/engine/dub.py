"""Re-voicing a video identity: keep its frames, head motion and background, re-drive only the mouth.

A dub runs in three streaming passes over the source video (one frame in memory at a time, plus a
crossfade's worth of frames when looping):

1. **Track**: the face's 478 landmarks in every source frame (:class:`~studio.engine.face.detect.FaceTracker`),
   lightly smoothed over time (a [1, 2, 1] / 4 filter between consecutive detections).
2. **Speech**: the new speech is analysed into mouth controls at the video's own frame rate
   (:func:`~studio.engine.audio.visemes.analyze_speech`).
3. **Render**: for each output frame, a mouth-only lite rig is fitted to *that* frame's landmarks. Its
   ``close`` field (always applied) brings the source's own inner lips together along the frame's lip line,
   which neutralises the mouth motion of the original speech; the new speech's jaw/open/spread/press/teeth
   controls then open and shape it; the inside of the opened mouth is the person's own (a
   :class:`~studio.engine.lite.mouth.MouthAtlas` of the frames where their mouth is open, gathered while
   tracking), or a modelled one when the video never shows it open. The warped frame is composited over the source through a feathered
   lower-face mask (:func:`edit_mask`), so every pixel outside it is bit-identical to the source frame.

Length: the output has the speech's length. ``fit="loop"`` repeats a shorter video, crossfading its last
``CROSSFADE_S`` seconds into its first ones (frames and landmarks are blended alike); ``fit="trim"`` never
repeats: a longer video is cut at the speech's end and a longer speech is cut at the video's end.
Frames where no face is found are passed through unchanged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from studio.core.errors import ConfigError, FaceError, InputError
from studio.core.events import CancelToken, Job, Notice, ProgressMonitor, drive
from studio.core.tracks import ControlTrack
from studio.engine.audio.visemes import analyze_speech
from studio.engine.base import ANALYSIS_RATE, Done, output_marks, provenance
from studio.engine.face.detect import FaceLandmarks, FaceTracker
from studio.engine.face.identity import Identity, even_crop
from studio.engine.lite.engine import LiteEngine
from studio.engine.lite.mouth import MouthAtlas
from studio.engine.lite.rig import FaceRig
from studio.engine.settings import X264_PRESETS
from studio.media.audio import AudioClip, frame_count, load_audio
from studio.media.kinds import check_output_path, is_video
from studio.media.video import FrameEncoder, read_video_frames

VIDEO_FITS = ("loop", "trim")
CROSSFADE_S = 0.4  # seconds of crossfade between the end and the start of a looped video
MOUTH_CONTROLS = ("jaw", "open", "spread", "press", "teeth", "close")
MIN_ATLAS = 3  # open-mouth frames needed to show the person's own mouth interior


def is_video_identity(path: Path) -> bool:
    """True when ``path`` names a video (by its suffix): it is re-voiced rather than animated from a photo."""
    return is_video(path)


@dataclass(frozen=True)
class TrackedVideo:
    """Landmarks of the dubbed face in every source frame.

    Attributes:
        path: the source video. fps: its frame rate (frames/s). size: (width, height) of the frames
            after even-cropping, pixels. n_frames: N, frames decoded.
        points: (N, 478, 2) float32 landmarks in pixels (smoothed); depth: (N, 478) float32.
        found: (N,) bool, whether the face was found in that frame.
        atlas: the person's own mouth interiors from the frames where their mouth is open (may be empty).
    """

    path: Path
    fps: float
    size: tuple[int, int]
    n_frames: int
    points: np.ndarray
    depth: np.ndarray
    found: np.ndarray
    atlas: MouthAtlas | None = None


def track_video(path: Path, *, face_index: int = 0, cancel: CancelToken | None = None,
                monitor: ProgressMonitor | None = None) -> Job[TrackedVideo]:
    """Track the face through a video (streamed): yields Progress (stage "track"), returns the
    :class:`TrackedVideo`.

    Raises:
        InputError: unreadable video, no frames, or a frame rate ffmpeg cannot tell.
        FaceError: no face in more than half of the frames.
        Cancelled: when ``cancel`` fires.
    """
    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    meta, frames = read_video_frames(path)
    if not meta.fps or meta.fps <= 0:
        raise InputError(f"cannot tell the frame rate of {path}", "re-export the video as MP4 (H.264)")
    tracker = FaceTracker(face_index=face_index)
    atlas = MouthAtlas()
    points, depth, found = [], [], []
    total = max(meta.n_frames, 1)
    size = None
    with frames:
        for i, frame in enumerate(frames):
            cancel.raise_if_cancelled()
            frame = even_crop(frame)
            size = (frame.shape[1], frame.shape[0])
            face = tracker.update(frame)
            if face is not None and face.height < 48:
                face = None
            found.append(face is not None)
            if face is not None:
                atlas.add(frame, face.points)
            points.append(face.points if face is not None else np.zeros((478, 2), np.float32))
            depth.append(face.depth if face is not None else np.zeros(478, np.float32))
            if i % 5 == 0:
                yield monitor.event("track", min(i + 1, total), total, f"tracking the face, frame {i + 1}")
    n = len(found)
    if n == 0 or size is None:
        raise InputError(f"no video frames in {path}", "choose another video")
    found_arr = np.array(found)
    if found_arr.mean() < 0.5:
        raise FaceError(f"a face is visible in only {found_arr.sum()} of {n} frames of {path}",
                        "re-voice a video where the speaker's face is visible most of the time")
    pts = np.stack(points).astype(np.float32)
    dep = np.stack(depth).astype(np.float32)
    pts, dep = _smooth_tracks(pts, found_arr), _smooth_tracks(dep, found_arr)
    yield monitor.event("track", total, total, f"tracked {n} frames")
    return TrackedVideo(path=Path(path), fps=float(meta.fps), size=size, n_frames=n, points=pts, depth=dep,
                        found=found_arr, atlas=atlas.finish())


def _smooth_tracks(x: np.ndarray, found: np.ndarray) -> np.ndarray:
    """[1, 2, 1] / 4 temporal filter over (N, ...) tracks, only across consecutive found frames."""
    out = x.copy()
    for k in range(1, len(x) - 1):
        if found[k - 1] and found[k] and found[k + 1]:
            out[k] = 0.25 * x[k - 1] + 0.5 * x[k] + 0.25 * x[k + 1]
    return out


def frame_plan(n_source: int, n_out: int, *, crossfade: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which source frames make each output frame when a video of ``n_source`` frames fills ``n_out``.

    Output frame j shows source frame ``a[j]``, blended with source frame ``b[j]`` at weight ``w[j]``
    (``b[j] = -1`` and ``w[j] = 0`` when there is no blend). Without looping (``n_out <= n_source``)
    frame j is source frame j. Looping: pass k starts at output frame k * P with P = n_source - C
    (C = the crossfade length, at most a third of the video); its first C frames blend the previous
    pass's last C frames (``a``) into its own first ones (``b``, weight rising to 1).

    Returns:
        (a, b, w): int64, int64 and float32 arrays of shape (n_out,).
    """
    if n_source <= 0 or n_out < 0:
        raise ValueError(f"invalid frame counts {n_source}, {n_out}")
    a = np.arange(n_out, dtype=np.int64)
    b = np.full(n_out, -1, dtype=np.int64)
    w = np.zeros(n_out, dtype=np.float32)
    if n_out <= n_source:
        return a, b, w
    c = int(min(max(crossfade, 0), n_source // 3))
    period = n_source - c
    k, i = np.divmod(a, period)
    a[:] = i
    blend = (k >= 1) & (i < c)
    a[blend] = i[blend] + period
    b[blend] = i[blend]
    w[blend] = (i[blend] + 1) / (c + 1)
    return a, b, w


def edit_mask(rig: FaceRig, shape: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray]:
    """The feathered lower-face region a dub may change, for a rig fitted to one frame.

    It covers every place the lite rig's mouth and jaw fields move (from the nose base to below the
    chin, between the jaw angles) and fades to 0 where those fields do: 1 inside, smooth to 0 over the
    outer ~15 % of each side (sideways it ends 15 % beyond the jaw angles, where the jaw field is nearly 0).

    Args:
        rig: the frame's rig. shape: (height, width) of the frame.

    Returns:
        (box, mask): ``box`` is the (rows, cols) slice pair of the bounding box; ``mask`` is
        (h, w) float32 in [0, 1] for the pixels of that box (0 everywhere outside it).
    """
    h, w = shape
    jl, jr = rig.jaw_half
    top, bottom = 1.05 * rig.d_nose, 1.6 * rig.d_chin
    corners = np.array([rig.mouth_origin + a * rig.eu + b * rig.ev
                        for a in (-1.15 * jl, 1.15 * jr) for b in (-top, bottom)])
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return (slice(0, 0), slice(0, 0)), np.zeros((0, 0), np.float32)
    gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
    uv = rig.to_mouth(np.stack([gx, gy], axis=-1))
    u, v = uv[..., 0], uv[..., 1]
    half = np.where(u < 0, jl, jr)
    m_u = _ramp((1.15 * half - np.abs(u)) / (0.3 * half))
    m_top = _ramp((top + v) / (0.25 * rig.d_nose))
    m_bot = _ramp((bottom - v) / (0.3 * rig.d_chin))
    return (slice(y0, y1), slice(x0, x1)), (m_u * m_top * m_bot).astype(np.float32)


def _ramp(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class DubSettings:
    """Options of a video dub.

    Attributes:
        fit: "loop" (repeat a shorter video with a crossfade; output = speech length) or "trim" (never
            repeat: output = the shorter of video and speech).
        face_index: which face to re-voice (0 = largest). transcript: optional text of the speech.
        crf, preset: x264 quality and speed preset. mouth_offset_ms, mouth_intensity: as the render
            settings of the same names (the mouth later / livelier than analysed).
        content_credentials: sign a C2PA manifest into the video (as the render setting of that name).
    """

    fit: str = "loop"
    face_index: int = 0
    transcript: str | None = None
    crf: int = 18
    preset: str = "veryfast"
    mouth_offset_ms: float = 0.0
    mouth_intensity: float = 1.0
    content_credentials: bool = True

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an unknown fit or a negative face index."""
        if self.fit not in VIDEO_FITS:
            raise ConfigError(f"unknown video fit {self.fit!r}", f"choose one of: {', '.join(VIDEO_FITS)}")
        if self.face_index < 0:
            raise ConfigError(f"invalid face index {self.face_index}", "use 0 for the largest face")
        if self.preset not in X264_PRESETS:
            raise ConfigError(f"unknown x264 preset {self.preset!r}", f"use one of: {', '.join(X264_PRESETS)}")


class MouthDubber:
    """Re-drives the mouth of source frames with mouth controls: a client of the
    :class:`~studio.engine.base.Engine` interface that prepares one identity per frame (``prepare``) and
    renders it with that frame's mouth controls (``render``).

    Args:
        engine: a lite engine (its rig gives the edit mask). Default: mouth-only rigs
            (``head_rotation=False``: the video turns the head) that close the source's own lips before
            the new speech opens them (``rest_mouth="closed"``).
        clip: the speech (passed to the engine's ``prepare``).
    """

    def __init__(self, engine: LiteEngine | None = None, clip: AudioClip | None = None) -> None:
        self.engine = engine or LiteEngine(rest_mouth="closed", head_rotation=False)
        self.clip = clip
        self._out: np.ndarray | None = None

    def frame(self, src: np.ndarray, points: np.ndarray, depth: np.ndarray,
              controls: dict[str, float]) -> np.ndarray:
        """One dubbed frame.

        Args:
            src: (H, W, 3) uint8 RGB source frame (even size). points: (478, 2) float landmarks of the face
                in it, pixels; depth: (478,) relative depth. controls: mouth control values (see
                :data:`MOUTH_CONTROLS`; others are ignored).

        Returns:
            (H, W, 3) uint8 RGB: the source, with the lower face re-rendered inside :func:`edit_mask`;
            every pixel outside the mask equals ``src``.
        """
        face = FaceLandmarks(box=(0.0, 0.0, 0.0, 0.0), score=1.0, points=points, depth=depth)
        track = ControlTrack.from_channels(1.0, 1, {k: np.array([float(controls.get(k, 0.0))], np.float32)
                                                    for k in MOUTH_CONTROLS})
        prepared = drive(self.engine.prepare(Identity.of_frame(src, face), self.clip, track,
                                             monitor=ProgressMonitor(), cancel=CancelToken()))
        if self._out is None or self._out.shape[1:] != src.shape:
            self._out = np.empty((1,) + src.shape, np.uint8)
        warped = self.engine.render(prepared, track, [0], out=self._out)[0]
        out = src.copy()
        box, mask = edit_mask(prepared.rig, src.shape[:2])
        if mask.size:
            s = src[box].astype(np.float32)
            blend = s + (warped[box].astype(np.float32) - s) * mask[..., None]
            out[box] = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
        return out


def _source_frames(video: TrackedVideo, a: np.ndarray, b: np.ndarray, w: np.ndarray,
                   cancel: CancelToken) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, bool]]:
    """Stream (frame, points, depth, found) for each output frame of a :func:`frame_plan`.

    The video is decoded once per pass; in each pass the frames after the loop point are kept (a
    crossfade's worth) to blend into the next pass's first frames.
    """
    n_out = len(a)
    j = 0
    n = video.n_frames
    tail: dict[int, np.ndarray] = {}
    tail_from = int(a[b >= 0].min()) if (b >= 0).any() else n
    while j < n_out:
        j_pass = j
        _, frames = read_video_frames(video.path)
        with frames:
            new_tail: dict[int, np.ndarray] = {}
            for i, frame in enumerate(frames):
                if i >= n or j >= n_out:
                    break
                cancel.raise_if_cancelled()
                frame = even_crop(frame)
                if i >= tail_from:
                    new_tail[i] = frame
                if b[j] >= 0:
                    if b[j] != i:
                        continue  # only the tail frames of this pass (they blend into the next one)
                    k = int(a[j])
                    wt = float(w[j])
                    if k not in tail:
                        raise InputError(f"the video decoded differently on a second pass: {video.path}",
                                         "re-export the video as MP4 (H.264) and try again")
                    mixed = np.clip(tail[k] * (1 - wt) + frame * wt + 0.5, 0, 255).astype(np.uint8)
                    fa, fb = video.found[k], video.found[i]
                    if fa and fb:
                        pts = video.points[k] * (1 - wt) + video.points[i] * wt
                        dep = video.depth[k] * (1 - wt) + video.depth[i] * wt
                    else:
                        pts, dep = (video.points[k], video.depth[k]) if fa else (video.points[i], video.depth[i])
                    yield mixed, pts, dep, bool(fa or fb)
                    j += 1
                elif a[j] == i:
                    yield frame, video.points[i], video.depth[i], bool(video.found[i])
                    j += 1
            tail = new_tail
        if j < n_out and (j == j_pass or len(tail) < n - tail_from):
            raise InputError(f"the video stopped decoding early on a second pass: {video.path}",
                             "re-export the video as MP4 (H.264) and try again")


def dub_video(video: Path, audio: Path, output: Path, settings: DubSettings = DubSettings(), *,
              cancel: CancelToken | None = None,
              monitor: ProgressMonitor | None = None) -> Job[Done]:
    """Re-voice ``video`` with the speech in ``audio`` and write ``output`` (H.264 + AAC MP4).

    Yields Progress (stages "track", "speech", "render", fraction monotonic in [0, 1]) and Notices; returns
    :class:`~studio.engine.base.Done` (``size`` is the video's even-cropped (width, height), ``fps`` the
    video's frame rate, ``duration_s`` the output's length in seconds).

    Raises:
        ConfigError, OutputError (bad output path), InputError (unreadable video), AudioError, FaceError,
        Cancelled (nothing is left at ``output``).
    """
    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    t0 = time.perf_counter()
    settings.validate()
    output = check_output_path(output)
    clip = load_audio(audio, sample_rate=ANALYSIS_RATE)  # fail fast on a bad speech file
    tracked = yield from track_video(video, face_index=settings.face_index, cancel=cancel,
                                     monitor=monitor.sub(0.0, 0.35))
    t_track = time.perf_counter() - t0
    missing = int((~tracked.found).sum())
    if missing:
        yield Notice(f"no face in {missing} of {tracked.n_frames} frames of {video}: those frames are kept as they are")
    fps = tracked.fps
    n_speech = frame_count(clip.duration, fps)
    n_out = n_speech if settings.fit == "loop" else min(n_speech, tracked.n_frames)
    if n_out <= 0:
        raise InputError(f"the speech in {audio} is shorter than one video frame", "use a longer recording")
    if n_out < n_speech:
        yield Notice(f"the speech ({clip.duration:.2f} s) is longer than the video ({tracked.n_frames / fps:.2f} s): "
                     "it is cut at the video's end (use loop to repeat the video instead)")
        keep = min(clip.num_samples, round(n_out * clip.sample_rate / fps))
        clip = AudioClip(clip.samples[:keep], clip.sample_rate, clip.source)
    elif n_out > tracked.n_frames:
        yield Notice(f"the video ({tracked.n_frames / fps:.2f} s) is shorter than the speech ({clip.duration:.2f} s): "
                     "it loops with a crossfade")
    speech_mon = monitor.sub(0.35, 0.4)
    yield speech_mon.event("speech", 0, 1, "analysing the speech")
    mouth = analyze_speech(clip.samples, clip.sample_rate, fps=fps, n_frames=n_out,
                           transcript=settings.transcript, cancel=cancel).adjusted(
        offset_ms=settings.mouth_offset_ms, intensity=settings.mouth_intensity)
    yield speech_mon.event("speech", 1, 1, "speech analysed")
    t_speech = time.perf_counter() - t0 - t_track
    a, b, w = frame_plan(tracked.n_frames, n_out, crossfade=round(CROSSFADE_S * fps))
    controls = mouth.controls()
    own = tracked.atlas is not None and len(tracked.atlas) >= MIN_ATLAS
    if not own:
        yield Notice(f"the mouth is open in too few frames of {video} to show the person's own teeth: "
                     "a modelled mouth interior is used", level="note")
    dubber = MouthDubber(LiteEngine(rest_mouth="closed", head_rotation=False,
                                    mouth_atlas=tracked.atlas if own else None), clip=clip)
    render_mon = monitor.sub(0.4, 1.0)
    width, height = tracked.size
    t_render = 0.0
    step = max(1, n_out // 200)
    marks = output_marks("lite", [(video, "identity"), (clip.source, "speech")], sign=settings.content_credentials,
                         extra={"re_voiced": True}, size=(width, height))
    for note in marks.notices:
        yield Notice(note)
    with FrameEncoder(output, width=width, height=height, fps=fps, audio=clip, crf=settings.crf,
                      preset=settings.preset, metadata=provenance("lite"), watermark=marks.mark_id,
                      credentials=marks.credentials) as encoder:
        for j, (frame, pts, dep, found) in enumerate(_source_frames(tracked, a, b, w, cancel)):
            cancel.raise_if_cancelled()
            ts = time.perf_counter()
            if found:
                frame = dubber.frame(frame, pts, dep, dict(zip(MOUTH_CONTROLS, controls[j].tolist())))
            t_render += time.perf_counter() - ts
            encoder.write(frame)
            if j % step == 0 or j == n_out - 1:
                yield render_mon.event("render", j + 1, n_out, f"frame {j + 1}/{n_out}")
        if encoder.frames_written != n_out:
            raise InputError(f"the video gave {encoder.frames_written} frames instead of {n_out}: {video}",
                             "re-export the video as MP4 (H.264) and try again")
    return Done(output=encoder.path, n_frames=n_out, fps=fps, duration_s=n_out / fps, size=(width, height),
               timings={"track": t_track, "analyse": t_speech, "render": t_render,
                        "total": time.perf_counter() - t0}, mark_id=marks.mark_id, signed_by=marks.signed_by)
