"""Alignment + paste-back round trip on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_rgb
from studio.engine.eval.metrics import psnr
from studio.engine.face.align import ffhq_alignment
from studio.engine.face.detect import detect_faces
from studio.engine.face.paste import face_mask, match_colors, paste_back


@pytest.mark.parametrize("name", ["obama_official.jpg", "man_grey_hair_3511px.jpg", "taylor_256px.jpg"])
def test_round_trip_keeps_everything_outside_the_face_identical(name):
    img = load_rgb(f"images/{name}")
    face = detect_faces(img)[0]
    align = ffhq_alignment(face.points, size=1024)
    crop = align.crop(img)
    mask = face_mask(align, face.points)
    out = paste_back(img, crop, align, mask)
    # outside the face box: bit for bit the original
    x0, y0, x1, y1 = face.box
    w, h = x1 - x0, y1 - y0
    outside = np.ones(img.shape[:2], bool)
    outside[max(0, int(y0 - 0.6 * h)):int(y1 + 0.3 * h), max(0, int(x0 - 0.3 * w)):int(x1 + 0.3 * w)] = False
    assert np.array_equal(out[outside], img[outside])
    # inside, pasting the photo's own crop back reproduces it closely (resampling twice, no colour shift)
    inside = ~outside
    assert psnr(out[inside].reshape(-1, 1, 3), img[inside].reshape(-1, 1, 3)) > 30


def test_pasted_face_replaces_the_face_and_matches_colours():
    img = load_rgb("images/woman_brown_hair_624px.jpg")
    face = detect_faces(img)[0]
    align = ffhq_alignment(face.points, size=256)
    mask = face_mask(align, face.points)
    assert mask.max() == pytest.approx(1.0, abs=1e-3) and mask[0, 0] == 0.0
    # a "generated" face with a strong colour cast is corrected towards the original's colours
    tinted = np.clip(align.crop(img).astype(int) * [0.6, 0.9, 1.3], 0, 255).astype(np.uint8)
    fixed = match_colors(tinted, align.crop(img), mask)
    weight = mask > 0.5
    err_before = np.abs(tinted[weight].astype(int) - align.crop(img)[weight]).mean()
    err_after = np.abs(fixed[weight].astype(int) - align.crop(img)[weight]).mean()
    assert err_after < 0.5 * err_before
    # a flat grey face pasted without colour matching lands where the mask is (the face), not elsewhere
    grey = np.full((256, 256, 3), 128, np.uint8)
    out = paste_back(img, grey, align, mask, color_match=False)
    nose = face.points[1].round().astype(int)
    assert np.abs(out[nose[1], nose[0]].astype(int) - 128).max() <= 1
    assert np.array_equal(out[:20], img[:20])
