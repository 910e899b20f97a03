"""The interface every engine implements, so the pipeline, the studio, batch, re-voicing and evaluation
never care which engine runs.

An engine turns an :class:`~studio.engine.face.identity.Identity`, the speech and a per-frame
:class:`~studio.core.tracks.ControlTrack` into frames. Its class checks a render's
:class:`~studio.engine.settings.EngineSettings` before any work (``check``, a classmethod raising
ConfigError / ModelError) and loads its models (``load``, a classmethod long job); then::

    engine = yield from ENGINE_CLASS.load(settings.engine, monitor=m1, cancel=c)   # weights, once
    prepared = yield from engine.prepare(identity, speech, controls, monitor=m2, cancel=c)
    frames = engine.render(prepared, controls, [k, k + 1], out=buffer)              # any frames, any order

``prepared`` is immutable: the preview, an export and a batch job may render from one prepared state at
once, each into its own buffer (``out``), and with their own control tracks (keyframe edits change the
controls, not the prepared state). The pipeline looks engines up by name in
:data:`studio.engine.pipeline.ENGINES`; nothing branches on an engine's type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from studio import __version__
from studio.core.events import CancelToken, Job, ProgressMonitor
from studio.core.tracks import ControlTrack

ANALYSIS_RATE = 16000  # Hz: speech analysis and the muxed soundtrack's source rate


@runtime_checkable
class Engine(Protocol):
    """A talking-head renderer.

    Attributes:
        name: its name in :data:`studio.engine.pipeline.ENGINES` ("lite", "neural").
        batch_size: how many frames one :meth:`render` call renders best (1 for the lite engine, 8 for
            the neural engine on a GPU); callers that stream many frames ask for that many at a time.
    """

    name: str
    batch_size: int

    def prepare(self, identity: Any, speech: Any, controls: ControlTrack, *, monitor: ProgressMonitor,
                cancel: CancelToken) -> Job[Any]:
        """Everything per identity and speech that :meth:`render` needs, computed once.

        Args:
            identity: :class:`~studio.engine.face.identity.Identity` (photo or frame with its face).
            speech: :class:`~studio.media.audio.AudioClip`, mono float32 at 16 kHz.
            controls: the per-frame controls (n_frames and fps of the output).
            monitor, cancel: progress sub-range and cancellation of this step.

        Returns (as a generator's return value, after Progress/Notice events):
            an immutable prepared state, valid for any control track with the same n_frames and fps.
        """
        ...

    def render(self, prepared: Any, controls: ControlTrack, frames: Sequence[int], *,
               out: np.ndarray | None = None) -> np.ndarray:
        """Render frames ``frames`` (indices into ``controls``).

        Args:
            prepared: from :meth:`prepare`. controls: the control track (keyframe edits included).
            frames: N frame indices. out: an (N, H, W, 3) uint8 buffer the caller owns (None: a new one).

        Returns:
            (N, H, W, 3) uint8 RGB frames at the identity's size: ``out`` when given. Nothing the engine
            keeps aliases it, so it is the caller's until it is reused.
        """
        ...

    def latent_summary(self, prepared: Any, controls: ControlTrack) -> tuple[np.ndarray, np.ndarray] | None:
        """For engines that render from W+ codes: (h (T, 3) leading coefficients of the trajectory,
        (T, n_latent) per-layer displacement norms) for the trajectory viewer; None otherwise."""
        ...


def frame_buffer(out: np.ndarray | None, n: int, height: int, width: int) -> np.ndarray:
    """``out`` checked against (n, height, width, 3) uint8, or a new zeroed buffer of that shape.

    Raises:
        ValueError: ``out`` has another shape or dtype.
    """
    if out is None:
        return np.zeros((n, height, width, 3), np.uint8)
    if out.shape != (n, height, width, 3) or out.dtype != np.uint8:
        raise ValueError(f"out must be ({n}, {height}, {width}, 3) uint8, got {out.shape} {out.dtype}")
    return out


@dataclass(frozen=True)
class Done:
    """The render finished and ``output`` is complete.

    Attributes:
        output: the written video. n_frames: frames rendered. fps: frame rate.
        duration_s: audio duration in seconds. size: (width, height) of the video in pixels.
        timings: seconds spent per stage ("analyse", "render", "encode_wait", "total").
        mark_id: the invisible watermark's 32-bit id in the frames (:mod:`studio.media.watermark`).
        signed_by: common name of the certificate that signed its Content Credentials (None: not signed).
    """

    output: Path
    n_frames: int
    fps: float
    duration_s: float
    size: tuple[int, int]
    timings: dict[str, float]
    mark_id: int | None = None
    signed_by: str | None = None


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
class OutputMarks:
    """The provenance marks of one export: what :class:`~studio.media.video.FrameEncoder` embeds and signs.

    Attributes:
        mark_id: the invisible watermark's id (always present: the mark cannot be turned off).
        credentials: Content Credentials to sign, or None when the user turned signing off.
        notices: things to tell the user (a local signing key was just created, signing is off).
    """

    mark_id: int
    credentials: Any  # studio.media.credentials.ContentCredentials | None (media is imported lazily here)
    notices: tuple[str, ...] = ()

    @property
    def signed_by(self) -> str | None:
        if self.credentials is None:
            return None
        try:
            return str(self.credentials.key.describe()["common_name"])
        except Exception:  # noqa: BLE001 - the key was read once already; a description is only for display
            return str(self.credentials.key.chain_path)


def output_marks(engine: str, inputs: Sequence[tuple[Path | None, str]], *, sign: bool,
                 extra: dict | None = None, size: tuple[int, int] | None = None) -> OutputMarks:
    """Choose the watermark id and build the Content Credentials of an export.

    Args:
        engine: the engine's name. inputs: (file, role) pairs of what the video is made from (identity,
            speech, pose, expression, person); None files are skipped. sign: the
            ``content_credentials`` setting. extra: more facts for the manifest's render assertion.
            size: the video's (width, height) in pixels: below the watermark's reliable size a notice says so.

    Returns:
        :class:`OutputMarks`. Without a configured signing key, a local self-signed one is created
        first (:func:`studio.media.credentials.create_local_key`) and a notice says so.

    Raises:
        ConfigError: the configured key cannot be read, does not match its certificate or has expired.
        InputError: an input file cannot be hashed.
        OutputError: a local key cannot be written.
    """
    from studio.media.credentials import ContentCredentials, create_local_key, ingredients_for, key_dir, signing_key
    from studio.media.watermark import RELIABLE_SIDE, new_mark_id

    mark_id = new_mark_id()
    notices = []
    if size is not None and min(size) < RELIABLE_SIDE:
        notices.append(f"the video is small ({size[0]}x{size[1]}): its invisible watermark is embedded, but below "
                       f"{RELIABLE_SIDE} pixels on a side it may be too weak to be found after re-encoding")
    if not sign:
        notices.append("Content Credentials are off (setting content_credentials): the video carries only the "
                       "invisible watermark, no signed manifest")
        return OutputMarks(mark_id, None, tuple(notices))
    key = signing_key()
    if key is None:
        key = create_local_key()
        notices.append(f"created a local, self-signed Content Credentials key in {key_dir()} (mode 0600); videos "
                       "are signed with it. Others will see the signature as valid but its signer as not "
                       "trusted: a self-signed key proves that a file is unchanged, not who made it")
    key.check()  # a clear error now (unreadable, mismatched or expired) rather than after the render
    credentials = ContentCredentials(engine=engine, key=key, ingredients=ingredients_for(inputs), mark_id=mark_id,
                                     extra=dict(extra or {}))
    return OutputMarks(mark_id, credentials, tuple(notices))


__all__ = ["ANALYSIS_RATE", "Done", "Engine", "OutputMarks", "frame_buffer", "output_marks", "provenance"]
