"""The studio's long jobs as generators (Progress events, then a result), run by GUI workers.

- :func:`prepare_project`: the document's identity + speech + sources -> an engine Session.
- :func:`controls_for`: the Session's control track with the document's keyframe overrides (cheap).
- :func:`export_video`: render frames [start, stop) at the chosen resolution and encode them with the
  chosen H.264 encoder; the file appears only when complete (FrameEncoder's atomic rename).
- :func:`source_thumbnail`: a small picture of a pose/emotion source (first frame of a video).
"""

from __future__ import annotations

import os

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from studio.app.identity import identity_image_path
from studio.media.kinds import is_video
from studio.app.project import CODECS, RESOLUTIONS, ExportSettings, ProjectState
from studio.core.errors import ConfigError, InputError
from studio.core.events import CancelToken, Job, ProgressMonitor
from studio.core.tracks import ControlTrack, apply_keyframes
from studio.engine.base import Done
from studio.engine.pipeline import Session, prepare
from studio.media.kinds import check_output_path
from studio.media.image import load_image
from studio.media.video import read_video_frames


def prepare_project(state: ProjectState, *, cancel: CancelToken | None = None,
                    monitor: ProgressMonitor | None = None) -> Job[Session]:
    """Run the engine's ``prepare`` on the document's identity, speech and settings.

    Yields Progress and Notices; returns the :class:`~studio.engine.pipeline.Session`.

    Raises:
        ConfigError: the document has no identity or no speech yet; the engine's errors otherwise.
    """
    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    if state.identity is None:
        raise ConfigError("no identity yet", "drop a photo or a short video on the Identity panel")
    if state.audio is None:
        raise ConfigError("no speech yet", "drop an audio or video file on the timeline")
    image = identity_image_path(state.identity, cancel=cancel)
    return (yield from prepare(image, state.audio, state.render_settings(), cancel=cancel, monitor=monitor))


def controls_for(base: ControlTrack, state: ProjectState) -> ControlTrack:
    """The control track with the document's keyframe overrides applied (base unchanged if none)."""
    keys = state.keyframes_in_frames(base.fps, base.n_frames)
    keys = {k: v for k, v in keys.items() if k in base.channels}
    return apply_keyframes(base, keys) if keys else base


def output_size(size: tuple[int, int], resolution: str) -> tuple[int, int]:
    """(width, height) of the exported video: the photo's size scaled down to the resolution's
    height (never up), both even."""
    if resolution not in RESOLUTIONS:
        raise ConfigError(f"unknown resolution {resolution!r}", f"use one of {', '.join(RESOLUTIONS)}")
    w, h = size
    limit = RESOLUTIONS[resolution]
    if limit is not None and h > limit:
        w, h = w * limit / h, limit
    return max(2, int(w) // 2 * 2), max(2, int(h) // 2 * 2)


@dataclass(frozen=True)
class ExportPlan:
    """A checked export: where, which frames, what size, which encoder, whether it is signed (C2PA)."""

    output: Path
    frame_range: tuple[int, int]
    size: tuple[int, int]
    crf: int
    codec: str
    content_credentials: bool = True


def plan_export(session: Session, state: ProjectState, export: ExportSettings) -> ExportPlan:
    """Validate the export settings against the session (fails fast, before any work).

    Raises:
        ConfigError / OutputError: no output path, bad extension or folder, bad resolution, crf or codec.
    """
    if export.output is None:
        raise ConfigError("no output file chosen", "choose where to save the video")
    output = check_output_path(export.output)
    state.settings.encode.validate()
    if export.codec not in CODECS:
        raise ConfigError(f"unknown H.264 encoder {export.codec!r}", f"use one of: {', '.join(CODECS)}")
    rng = state.frame_range(session.controls.fps, session.n_frames) if export.use_range else None
    return ExportPlan(output, rng or (0, session.n_frames), output_size(session.size, export.resolution),
                      int(state.settings.encode.crf), export.codec, bool(state.settings.encode.content_credentials))


def export_video(session: Session, controls: ControlTrack, plan: ExportPlan, *,
                 cancel: CancelToken | None = None,
                 monitor: ProgressMonitor | None = None) -> Job[Done]:
    """Render and encode ``plan.frame_range`` of ``session`` driven by ``controls``.

    It uses its own Session copy (``with_controls``), so it can run in a worker thread while the preview
    renders from another. Yields Progress (done/total in frames); returns Done.
    """
    own = session.with_controls(controls)
    # leave a core to the UI thread: the encoder would otherwise take them all
    threads = max(1, (os.cpu_count() or 2) - 1)
    return (yield from own.export(plan.output, frame_range=plan.frame_range, size=plan.size, codec=plan.codec,
                                  crf=plan.crf, threads=threads, content_credentials=plan.content_credentials,
                                  cancel=cancel, monitor=monitor))


def source_thumbnail(path: Path, *, max_side: int = 160) -> np.ndarray:
    """(h, w, 3) uint8 thumbnail of a photo or of a video's first frame, longest side ``max_side`` px.

    Raises:
        InputError: unreadable file.
    """
    path = Path(path)
    if is_video(path):
        _, frames = read_video_frames(path)
        try:
            frame = next(iter(frames))
        except StopIteration:
            raise InputError(f"no frames in {path}", "choose another video") from None
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
    else:
        frame = load_image(path)
    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1:
        frame = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame)


def export_project(session: Session | None, state: ProjectState, *, cancel: CancelToken | None = None,
                   monitor: ProgressMonitor | None = None) -> Job[Done]:
    """Export the document's video with its export settings.

    ``session`` is the studio's current one; when it is missing or was prepared at another frame rate than
    the document's, the document is prepared first (the first 20 % of the progress). Keyframes and the
    in/out range are stored in seconds, so they carry over to any frame rate.
    """
    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    if session is None or abs(session.controls.fps - float(state.settings.fps)) > 1e-9:
        session = yield from prepare_project(state, cancel=cancel, monitor=monitor.sub(0.0, 0.2))
        monitor = monitor.sub(0.2, 1.0)
    plan = plan_export(session, state, state.export)
    return (yield from export_video(session, controls_for(session.controls, state), plan, cancel=cancel,
                                    monitor=monitor))
