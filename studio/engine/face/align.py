"""FFHQ face alignment from landmarks, keeping the transform so results can be pasted back.

The FFHQ crop (Karras et al., "A Style-Based Generator Architecture for GANs", dataset script
``ffhq-dataset/download_ffhq.py``): the eye centres and mouth corners define an oriented square centred a
little below the eyes (eye_avg + 0.1 * eye_to_mouth), sized 2x the eye distance or 1.8x the eye-to-mouth
distance, whichever is larger. Here it is a single affine map, so crops at any size (1024 for StyleGAN2,
256 for encoders and metrics) come from the full-resolution photo in one resampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from studio.engine.face import topology as T


@dataclass(frozen=True)
class Alignment:
    """An FFHQ-aligned crop's geometry.

    Attributes:
        quad: (4, 2) float64 corners of the crop in image pixels (top-left, bottom-left, bottom-right,
            top-right), as in the FFHQ script.
        size: crop side in pixels.
        matrix: (2, 3) float64 affine from image pixels to crop pixels.
    """

    quad: np.ndarray
    size: int
    matrix: np.ndarray

    def crop(self, image: np.ndarray) -> np.ndarray:
        """(size, size, C) crop of ``image`` (H, W, C) uint8, bilinear; when the crop shrinks the face by
        more than 2x the photo is first box-averaged by an integer factor (no aliasing). Outside the photo
        the border is reflected, as the FFHQ script pads."""
        m = self.matrix
        k = int(1.0 / self.scale) if self.scale < 0.5 else 1
        if k > 1:
            h, w = image.shape[:2]
            image = cv2.resize(image[: h - h % k, : w - w % k], (w // k, h // k), interpolation=cv2.INTER_AREA)
            # small pixel s covers full pixels k*s .. k*s + k-1: its centre is x = k*s + (k-1)/2
            m = np.c_[m[:, :2] * k, m[:, 2] + m[:, :2] @ np.full(2, (k - 1) / 2)]
        return cv2.warpAffine(image, m, (self.size, self.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return float(np.hypot(*self.matrix[0, :2]))

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Image pixel positions (..., 2) -> crop pixel positions."""
        return points @ self.matrix[:, :2].T + self.matrix[:, 2]

    def resized(self, size: int) -> "Alignment":
        """The same crop at another resolution."""
        return ffhq_alignment_from_quad(self.quad, size)


def ffhq_alignment_from_quad(quad: np.ndarray, size: int) -> Alignment:
    src = np.asarray(quad, dtype=np.float64)[[0, 1, 3]]
    dst = np.array([[0, 0], [0, size], [size, 0]], dtype=np.float64) - 0.5
    matrix = cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)
    return Alignment(quad=np.asarray(quad, dtype=np.float64), size=int(size), matrix=matrix)


def ffhq_alignment(points: np.ndarray, *, size: int = 1024) -> Alignment:
    """The FFHQ crop for a face.

    Args:
        points: (478, 2) MediaPipe landmarks in pixels.
        size: output side in pixels (1024 for StyleGAN2 FFHQ, 256 for pSp/e4e and metrics).

    Returns:
        The :class:`Alignment` (its quad in image pixels and the image->crop affine).
    """
    p = np.asarray(points, dtype=np.float64)
    eye_left = p[list(T.EYE_IMAGE_LEFT["upper"]) + list(T.EYE_IMAGE_LEFT["lower"])].mean(axis=0)
    eye_right = p[list(T.EYE_IMAGE_RIGHT["upper"]) + list(T.EYE_IMAGE_RIGHT["lower"])].mean(axis=0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_avg = (p[T.MOUTH_LEFT] + p[T.MOUTH_RIGHT]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return ffhq_alignment_from_quad(quad, size)
