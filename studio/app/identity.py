"""Identity inspection for the studio: photo or short video -> image, faces, aligned crop, problems.

:func:`inspect_identity` is a long job (Progress events; it returns an :class:`IdentityInfo`) so the GUI
can run it in a worker. A user-correctable problem (no face, face too small, index out of range) does not
raise: it comes back in ``IdentityInfo.problem`` together with the image, so the panel can show the photo
and say what to do. For a video, the sharpest frontal frame of its first seconds is used and written as a
PNG into the cache folder, because the render pipeline takes an image file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from studio.core.errors import FaceError, ImageError, StudioError
from studio.core.paths import cache_dir
from studio.core.events import CancelToken, Job, ProgressMonitor
from studio.engine.face.detect import FaceLandmarks, detect_faces, select_face
from studio.engine.face.align import ffhq_alignment
from studio.engine.face.identity import even_crop
from studio.media.image import MIN_PHOTO_SIDE, load_image
from studio.media.kinds import is_video
from studio.media.video import read_video_frames

@dataclass(frozen=True)
class IdentityInfo:
    """What the identity panel shows.

    Attributes:
        source: the file the user chose (photo or video).
        image_path: the photo the renderer reads (the source, or the extracted video frame).
        frame_s: time of the extracted frame in seconds (video sources), else None.
        image: (H, W, 3) uint8 RGB, even-cropped like the renderer's.
        faces: every face found (largest first).
        face: the chosen face, or None when there is a problem.
        aligned: (S, S, 3) uint8 FFHQ-style aligned crop of the chosen face, or None.
        problem: the user-facing error (no face, too small, ...), or None.
        notices: remarks that do not stop the render (several faces).
    """

    source: Path
    image_path: Path
    frame_s: float | None
    image: np.ndarray
    faces: tuple[FaceLandmarks, ...]
    face: FaceLandmarks | None
    aligned: np.ndarray | None
    problem: StudioError | None
    notices: tuple[str, ...]


def aligned_crop(image: np.ndarray, points: np.ndarray, size: int = 256) -> np.ndarray:
    """(size, size, 3) uint8 FFHQ-aligned crop of the face with landmarks ``points`` (478, 2)."""
    return ffhq_alignment(points, size=size).crop(image)


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image (higher = sharper)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def frontality(face: FaceLandmarks) -> float:
    """1 for a frontal face, smaller when turned: symmetry of the nose tip between the eye corners."""
    p = face.points
    left, right, nose = p[33], p[263], p[1]
    d_l = np.linalg.norm(nose - left)
    d_r = np.linalg.norm(nose - right)
    return float(min(d_l, d_r) / max(d_l, d_r, 1e-6))


def pick_video_frame(path: Path, *, max_seconds: float = 4.0, n_candidates: int = 3,
                     cancel: CancelToken | None = None) -> tuple[np.ndarray, float]:
    """The sharpest frontal frame among the first ``max_seconds`` of a video: (frame RGB, time in s).

    Every frame's sharpness is measured; the ``n_candidates`` sharpest go through face detection, and the
    most frontal face (ties: the sharpest) wins. Frames without a face are skipped.
    """
    cancel = cancel or CancelToken()
    meta, frames = read_video_frames(path)
    fps = meta.fps or 25.0
    scored: list[tuple[float, int, np.ndarray]] = []
    try:
        for i, frame in enumerate(frames):
            cancel.raise_if_cancelled()
            if i >= max_seconds * fps:
                break
            if i % 2 == 0:
                scored.append((sharpness(frame), i, frame))
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    if not scored:
        raise ImageError(f"no frames could be read from {path}", "choose another video, or a photo")
    scored.sort(key=lambda s: s[0], reverse=True)
    best = None
    for sharp, i, frame in scored[:n_candidates]:
        cancel.raise_if_cancelled()
        faces = detect_faces(frame)
        if faces:
            key = (round(frontality(faces[0]), 2), sharp)
            if best is None or key > best[0]:
                best = (key, i, frame)
    if best is None:
        _, i, frame = scored[0]
    else:
        _, i, frame = best
    return frame, i / fps


def extract_video_frame(path: Path, *, cancel: CancelToken | None = None) -> tuple[Path, float | None]:
    """Write the chosen frame of a video identity to the cache as PNG.

    Returns:
        (png path, frame time in s); the time is None when the PNG was already cached.
    """
    st = Path(path).stat()
    key = hashlib.sha256(f"{Path(path).absolute()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    folder = cache_dir() / "identity_frames"
    out = folder / f"{Path(path).stem[:40]}-{key}.png"
    if out.is_file():
        return out, None
    frame, t = pick_video_frame(path, cancel=cancel)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
        raise ImageError(f"cannot write the extracted frame to {out}", "check free disk space")
    tmp.replace(out)
    return out, t


def identity_image_path(source: Path, *, cancel: CancelToken | None = None) -> Path:
    """The photo the renderer reads for an identity source (a video's extracted frame, cached)."""
    return extract_video_frame(source, cancel=cancel)[0] if is_video(source) else Path(source)


def inspect_identity(source: Path, *, face_index: int = 0, cancel: CancelToken | None = None,
                     monitor: ProgressMonitor | None = None) -> Job[IdentityInfo]:
    """Load a photo or a video's best frame, detect faces and build the aligned crop.

    Yields Progress; returns the IdentityInfo (face problems are in ``.problem``, not raised).

    Raises:
        ImageError / InputError: the file cannot be read at all. Cancelled.
    """
    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    source = Path(source)
    frame_s = None
    if is_video(source):
        yield monitor.event("identity", 0, 3, "choosing a sharp frontal frame")
        image_path, frame_s = extract_video_frame(source, cancel=cancel)
    else:
        image_path = source
    yield monitor.event("identity", 1, 3, "reading the photo")
    image = even_crop(load_image(image_path, min_side=MIN_PHOTO_SIDE))
    cancel.raise_if_cancelled()
    yield monitor.event("identity", 2, 3, "finding the face")
    faces = tuple(detect_faces(image))
    face = aligned = problem = None
    notices: tuple[str, ...] = ()
    try:
        face = select_face(list(faces), face_index=face_index, source=source.name)
        aligned = aligned_crop(image, face.points)
        if len(faces) > 1:
            notices = (f"{len(faces)} faces found; animating face {face_index} "
                       f"({'the largest' if face_index == 0 else 'by size'}). Change it with the face selector.",)
    except FaceError as exc:
        problem = exc
    yield monitor.event("identity", 3, 3, "done")
    return IdentityInfo(source, image_path, frame_s, image, faces, face, aligned, problem, notices)
