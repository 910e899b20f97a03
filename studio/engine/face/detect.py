"""Face detection and dense landmarks from the models that ship inside MediaPipe 0.10.21.

Two stages, both Apache-2.0 models bundled in the ``mediapipe`` wheel (nothing is downloaded):

1. BlazeFace full-range detector (``face_detection_full_range_sparse.tflite``) finds every face box in the
   whole photo, small or large;
2. the Face Mesh landmarker with attention (``face_landmark_with_attention.tflite``, 478 points: the
   468-point mesh plus 10 iris points) runs on a square crop around each box, so landmark precision does
   not depend on the photo's size (a 3511 px portrait and a 256 px crop give equally dense meshes).

Landmarks use MediaPipe's 478-point indexing (see :mod:`studio.engine.face.topology`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from studio.core.errors import FaceError

NUM_LANDMARKS = 478
_CROP_SCALE = 2.0  # crop side / detected box side for the landmark stage
_CROP_SIZE = 384  # crop resolution fed to the landmarker (it works at 192 internally)

_lock = threading.Lock()
_models: dict[str, object] = {}


@dataclass(frozen=True)
class FaceLandmarks:
    """One detected face.

    Attributes:
        box: (x0, y0, x1, y1) detector box in pixels of the full image (float).
        score: detector confidence in [0, 1].
        points: (478, 2) float32 landmark positions in pixels (x right, y down), MediaPipe indexing.
        depth: (478,) float32 relative depth in pixels (negative = towards the camera).
    """

    box: tuple[float, float, float, float]
    score: float
    points: np.ndarray
    depth: np.ndarray

    @property
    def width(self) -> float:
        """Face width in pixels: distance between the cheek landmarks 234 and 454."""
        return float(np.linalg.norm(self.points[454] - self.points[234]))

    @property
    def height(self) -> float:
        """Face height in pixels: forehead (10) to chin (152)."""
        return float(np.linalg.norm(self.points[152] - self.points[10]))

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence TFLite/glog lines that the native graph prints straight to file descriptor 2."""
    try:
        fd = os.dup(2)
    except OSError:  # no stderr at all (e.g. a windowed bundle)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)
        os.close(devnull)


def _model(name: str):
    """Lazily build (once per process) one of the MediaPipe graphs."""
    if name not in _models:
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            with _quiet_native_stderr():
                import mediapipe as mp  # heavy import: only when a face is first needed
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise FaceError(
                "the face landmark models are not installed (mediapipe 0.10.21 is missing)",
                "run `make setup`, or `pip install --no-deps mediapipe==0.10.21`",
            ) from exc
        with _quiet_native_stderr():
            if name == "detector":
                _models[name] = mp.solutions.face_detection.FaceDetection(
                    model_selection=1, min_detection_confidence=0.5
                )
            else:
                _models[name] = mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                    min_detection_confidence=0.3,
                )
    return _models[name]


def _detect_boxes(rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Face boxes as ((x0, y0, x1, y1) pixels, score), from the full-range detector."""
    h, w = rgb.shape[:2]
    scale = min(1.0, 1280.0 / max(h, w))  # the detector runs at 192 px: a smaller copy loses nothing
    small = rgb if scale == 1.0 else cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    with _lock, _quiet_native_stderr():
        result = _model("detector").process(small)
    boxes = []
    for det in result.detections or []:
        rb = det.location_data.relative_bounding_box
        box = np.array([rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w, (rb.ymin + rb.height) * h])
        boxes.append((box, float(det.score[0])))
    return boxes


def _landmarks_in_box(rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """478 landmarks of the face in ``box``, from a square crop resampled to ``_CROP_SIZE``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    # MediaPipe's box is tight on the lower face: centre the crop a little higher to include the brow
    side = _CROP_SCALE * max(box[2] - box[0], box[3] - box[1])
    cy -= 0.1 * (box[3] - box[1])
    s = _CROP_SIZE / side
    # crop pixel (u, v) = s * (x - x0, y - y0), with (x0, y0) the crop's top-left corner
    x0, y0 = cx - side / 2, cy - side / 2
    affine = np.array([[s, 0, -s * x0], [0, s, -s * y0]], dtype=np.float64)
    crop = cv2.warpAffine(rgb, affine, (_CROP_SIZE, _CROP_SIZE), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    with _lock, _quiet_native_stderr():
        result = _model("mesh").process(crop)
    if not result.multi_face_landmarks:
        return None
    lm = result.multi_face_landmarks[0].landmark
    arr = np.array([(p.x, p.y, p.z) for p in lm], dtype=np.float64) * _CROP_SIZE
    points = (arr[:, :2] / s + (x0, y0)).astype(np.float32)
    depth = (arr[:, 2] / s).astype(np.float32)
    return points, depth


def detect_faces(rgb: np.ndarray) -> list[FaceLandmarks]:
    """Detect every face in a photo and fit 478 landmarks to each.

    Args:
        rgb: (H, W, 3) uint8 RGB image, any size.

    Returns:
        Faces sorted by box area, largest first (index 0 is the default subject; ``--face-index`` picks
        another). Empty when there is no face.

    Source: MediaPipe Face Detection (full range) + Face Mesh with attention, v0.10.21.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    rgb = np.ascontiguousarray(rgb)
    faces = []
    for box, score in _detect_boxes(rgb):
        found = _landmarks_in_box(rgb, box)
        if found is None:
            continue
        points, depth = found
        faces.append(FaceLandmarks(tuple(float(v) for v in box), score, points, depth))
    faces.sort(key=lambda f: f.area, reverse=True)
    return faces


def select_face(faces: list[FaceLandmarks], *, face_index: int = 0, min_size: float = 64.0,
                source: str = "the photo") -> FaceLandmarks:
    """Pick the subject among detected faces, with a user-facing error when there is none.

    Args:
        faces: output of :func:`detect_faces` (largest first).
        face_index: 0-based index into ``faces``.
        min_size: smallest supported face height (forehead to chin) in pixels.
        source: how to name the image in messages.

    Raises:
        FaceError: no face, ``face_index`` out of range, or the face is smaller than ``min_size``.
    """
    if not faces:
        raise FaceError(f"no face found in {source}",
                        "use a well-lit, frontal photo where the face is clearly visible")
    if not 0 <= face_index < len(faces):
        raise FaceError(f"--face-index {face_index} is out of range: {source} has {len(faces)} face(s)",
                        f"pick an index from 0 to {len(faces) - 1} (0 is the largest face)")
    face = faces[face_index]
    if face.height < min_size:
        raise FaceError(
            f"the face in {source} is only {face.height:.0f} px tall; this engine needs at least {min_size:.0f} px",
            "use a larger photo or crop closer to the face",
        )
    return face


class FaceTracker:
    """Landmarks of the main face through a video, frame by frame.

    The first frame (and any frame where the face is lost) runs the full detector; the others fit the
    landmarker in the previous frame's face box, which is about 3x faster and temporally steadier.

    Args:
        face_index: which face (by size, 0 = largest) to follow when the detector runs.
    """

    def __init__(self, *, face_index: int = 0) -> None:
        self.face_index = face_index
        self._box: np.ndarray | None = None

    def update(self, rgb: np.ndarray) -> FaceLandmarks | None:
        """Landmarks in this frame ((H, W, 3) uint8 RGB), or None when no face is visible."""
        rgb = np.ascontiguousarray(rgb)
        if self._box is not None:
            found = _landmarks_in_box(rgb, self._box)
            if found is not None:
                points, depth = found
                self._box = _box_of(points)
                return FaceLandmarks(tuple(float(v) for v in self._box), 1.0, points, depth)
        faces = detect_faces(rgb)
        if len(faces) <= self.face_index:
            self._box = None
            return None
        face = faces[self.face_index]
        self._box = _box_of(face.points)
        return face


def _box_of(points: np.ndarray) -> np.ndarray:
    """A detector-like box (x0, y0, x1, y1) around landmarks: the mesh spans brow to chin, the detector's
    box is a little tighter and lower, so shrink it to match what :func:`_landmarks_in_box` expects."""
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    w, h = x1 - x0, y1 - y0
    return np.array([x0 + 0.05 * w, y0 + 0.15 * h, x1 - 0.05 * w, y1 + 0.02 * h], dtype=np.float64)
