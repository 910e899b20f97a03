"""The identity of a render: a photo, every face found in it, and the chosen subject.

Frame sizes are even everywhere in the studio (H.264 yuv420p needs even sizes), so an identity's image
is cropped by at most one row and one column (:func:`even_crop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.engine.face.detect import FaceLandmarks, detect_faces, select_face
from studio.media.image import MAX_PHOTO_SIDE, MIN_PHOTO_SIDE, load_photo


def even_crop(image: np.ndarray) -> np.ndarray:
    """``image`` without its last row / column where needed so that both sides are even (a view, no copy).

    Args:
        image: (H, W, ...) array.

    Returns:
        (H - H % 2, W - W % 2, ...) view of ``image``.
    """
    h, w = image.shape[:2]
    return image[: h - h % 2, : w - w % 2]


@dataclass(frozen=True)
class Identity:
    """A photo (or one video frame) ready to animate.

    Attributes:
        path: where it came from (for messages). image: (H, W, 3) uint8 RGB, H and W even.
        faces: every face found, largest first. face: the subject. face_index: its index in ``faces``.
        photo_size: (width, height) of the photo before it was scaled to at most MAX_PHOTO_SIDE (None: the
            image is the photo's own size, or a video frame).
    """

    path: Path
    image: np.ndarray
    faces: tuple[FaceLandmarks, ...]
    face: FaceLandmarks
    face_index: int
    photo_size: tuple[int, int] | None = None

    @classmethod
    def of_frame(cls, image: np.ndarray, face: FaceLandmarks, *, path: Path | str = "") -> "Identity":
        """An identity of an already-tracked frame (re-voicing): ``image`` (H, W, 3) uint8 RGB with even
        sides, ``face`` its subject's landmarks."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.shape[0] % 2 or image.shape[1] % 2:
            raise ValueError(f"expected an even-sized (H, W, 3) uint8 RGB frame, got {image.shape} {image.dtype}")
        return cls(path=Path(path), image=image, faces=(face,), face=face, face_index=0)

    def notices(self) -> list[str]:
        """User-facing remarks about the photo (scaled down; several faces: which one is animated)."""
        out = []
        h, w = self.image.shape[:2]
        if self.photo_size is not None and max(self.photo_size) > max(w, h) + 1:
            out.append(f"the photo is {self.photo_size[0]}x{self.photo_size[1]} pixels; the video is made at "
                       f"{w}x{h} (at most {MAX_PHOTO_SIDE} pixels on the longer side)")
        n = len(self.faces)
        if n > 1:
            which = "the largest" if self.face_index == 0 else f"number {self.face_index} by size"
            out.append(f"found {n} faces in {self.path}; animating {which} (face index {self.face_index}); "
                       "--face-index picks another")
        return out


def load_identity(path: Path, *, face_index: int = 0) -> Identity:
    """Read a photo, find its faces and choose the subject.

    Args:
        path: a JPEG/PNG/WebP/BMP/TIFF photo. face_index: 0 = the largest face, 1 = the next, ...

    Raises:
        ImageError: unreadable photo, or a side under MIN_PHOTO_SIDE. FaceError: no face, index out of range,
            face too small. A photo larger than MAX_PHOTO_SIDE is scaled down (see :meth:`Identity.notices`).
    """
    image, size = load_photo(path, min_side=MIN_PHOTO_SIDE)
    image = even_crop(image)
    faces = detect_faces(image)
    face = select_face(faces, face_index=face_index, source=str(path))
    return Identity(path=Path(path), image=image, faces=tuple(faces), face=face, face_index=face_index,
                    photo_size=size)


__all__ = ["Identity", "even_crop", "load_identity"]
