"""Face detection and landmarks on real photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import load_rgb
from studio.core.errors import FaceError
from studio.engine.face import topology as T
from studio.engine.face.detect import detect_faces, select_face

PHOTOS = ["obama_official.jpg", "lin_manuel_miranda.png", "alex_lacamoire.png", "man_grey_hair_3511px.jpg",
          "woman_brown_hair_624px.jpg", "woman_dark_hair_474px.png", "taylor_256px.jpg"]


@pytest.mark.parametrize("name", PHOTOS)
def test_one_face_with_plausible_landmarks(name):
    rgb = load_rgb(f"images/{name}")
    faces = detect_faces(rgb)
    assert len(faces) == 1
    f = faces[0]
    assert f.points.shape == (478, 2) and f.points.dtype == np.float32
    x0, y0, x1, y1 = f.box
    # landmarks sit on the face: eyes above the mouth, nose between, chin lowest of the mouth/nose
    p = f.points
    eyes_y = (p[159, 1] + p[386, 1]) / 2
    assert eyes_y < p[T.NOSE_TIP, 1] < p[13, 1] < p[T.CHIN, 1]
    assert p[33, 0] < p[133, 0] < p[362, 0] < p[263, 0]  # eye corners left to right in the image
    assert x0 - 0.2 * (x1 - x0) < p[T.NOSE_TIP, 0] < x1 + 0.2 * (x1 - x0)
    # the mouth is about a third of the face width, independent of resolution
    assert 0.25 < T.mouth_width(p) / f.width < 0.6


def test_landmarks_scale_with_resolution():
    rgb = load_rgb("images/woman_brown_hair_624px.jpg")
    big = cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    a = detect_faces(rgb)[0].points
    b = detect_faces(big)[0].points / 2
    err = np.linalg.norm(a - b, axis=1)
    assert np.median(err) < 0.01 * detect_faces(rgb)[0].height


def test_no_face_is_a_clear_error():
    blank = np.full((400, 400, 3), 128, np.uint8)
    faces = detect_faces(blank)
    assert faces == []
    with pytest.raises(FaceError, match="no face found"):
        select_face(faces, source="blank.png")


def test_several_faces_largest_first_and_index():
    big = load_rgb("images/woman_brown_hair_624px.jpg")
    small = cv2.resize(load_rgb("images/alex_lacamoire.png"), (300, 279))
    canvas = np.full((624, 624 + 320, 3), 255, np.uint8)
    canvas[:, :624] = big
    canvas[100:379, 634:934] = small
    faces = detect_faces(canvas)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert faces[0].points[:, 0].mean() < 624 < faces[1].points[:, 0].mean()
    assert select_face(faces, face_index=1) is faces[1]
    with pytest.raises(FaceError, match="out of range"):
        select_face(faces, face_index=2)


def test_too_small_face_is_refused():
    rgb = load_rgb("images/woman_brown_hair_624px.jpg")
    tiny = cv2.resize(rgb, (96, 96), interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 480, 3), 255, np.uint8)
    canvas[200:296, 200:296] = tiny
    faces = detect_faces(canvas)
    if not faces:
        pytest.skip("detector does not see a 96 px portrait at all")  # then the no-face error applies
    with pytest.raises(FaceError, match="px tall"):
        select_face(faces, min_size=64)


# --------------------------------------------------------------------------------------------
# FFHQ alignment geometry on the real photos
# --------------------------------------------------------------------------------------------

#: where the FFHQ crop puts the eye centres at 1024² (x, y) px: the quad is 4x the eye distance wide and
#: centred 0.1 x eye-to-mouth below the eyes, so for usual proportions the eyes sit at x = 1024 * (1/2 -+ 1/8)
#: and y = 512 - 0.1 * 256 * |eye_to_mouth| / |eye_to_eye| ~ 485 (when eye-to-mouth dominates, x moves in)
FFHQ_EYES_1024 = np.array([[384.0, 485.0], [640.0, 485.0]])


def _eye_centres(points: np.ndarray) -> np.ndarray:
    """(2, 2) image-left and image-right eye centres (mean of the eyelid contour landmarks)."""
    return np.stack([points[list(T.EYE_IMAGE_LEFT["upper"]) + list(T.EYE_IMAGE_LEFT["lower"])].mean(axis=0),
                     points[list(T.EYE_IMAGE_RIGHT["upper"]) + list(T.EYE_IMAGE_RIGHT["lower"])].mean(axis=0)])


def test_ffhq_alignment_levels_the_eyes_at_the_canonical_positions_and_crops_agree_across_sizes():
    """On every sample photo: landmarks detected again on the aligned 1024² crop put the eyes level (each
    under 2 degrees, median under 1) within 16 px (1.6 %) of the canonical FFHQ eye positions; the 256²
    crop (encoders, metrics) is the 1024² one downscaled (same registration to a sub-pixel)."""
    from studio.engine.face.align import ffhq_alignment

    angles = []
    for name in PHOTOS:
        rgb = load_rgb(f"images/{name}")
        points = detect_faces(rgb)[0].points
        big = ffhq_alignment(points, size=1024)
        crop = big.crop(rgb)
        assert crop.shape == (1024, 1024, 3) and crop.dtype == np.uint8
        eyes = _eye_centres(detect_faces(crop)[0].points.astype(np.float64))  # measured on the crop itself
        (lx, ly), (rx, ry) = eyes
        angle = np.degrees(np.arctan2(ry - ly, rx - lx))
        angles.append(abs(angle))
        assert abs(angle) < 2.0, (name, angle)
        assert np.abs(eyes - FFHQ_EYES_1024).max() < 16, (name, eyes)
        assert 224 < rx - lx < 262, name  # at most a quarter of the crop apart (1/4 of 1024 = 256)
        # the transform agrees with what was measured: the photo's landmarks mapped into the crop
        assert np.abs(_eye_centres(big.to_crop(points.astype(np.float64))) - eyes).max() < 4, name

        small = big.resized(256)
        np.testing.assert_allclose(small.to_crop(points), (big.to_crop(points) + 0.5) / 4 - 0.5, atol=1e-3)
        crop256 = small.crop(rgb).astype(np.float64)
        down = cv2.resize(crop, (256, 256), interpolation=cv2.INTER_AREA).astype(np.float64)
        diff = np.abs(down - crop256).mean()
        shifted = np.abs(np.roll(down, 1, axis=1) - crop256).mean()  # what a one-pixel misregistration costs
        assert diff < 1.5 and diff < 0.4 * shifted, (name, diff, shifted)
    assert np.median(angles) < 1.0, angles
