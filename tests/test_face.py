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
