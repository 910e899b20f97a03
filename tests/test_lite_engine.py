"""The lite engine's warp on real photos: what moves, by how much, and what must not move."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_rgb, sample
from studio.engine.face import topology as T
from studio.engine.face.detect import detect_faces
from studio.engine.lite.engine import LiteEngine


def _prepared(name: str):
    rgb = load_rgb(f"images/{name}")
    face = detect_faces(rgb)[0]
    eng = LiteEngine()
    return rgb, face, eng, eng.prepare_photo(rgb, face)


def _redetect(frame: np.ndarray):
    faces = detect_faces(frame.copy())
    assert len(faces) == 1, "the rendered frame must still read as exactly one face"
    return faces[0].points


@pytest.mark.parametrize("name", ["woman_dark_hair_474px.png", "obama_official.jpg", "man_grey_hair_3511px.jpg"])
def test_jaw_opens_the_mouth_monotonically(name):
    rgb, face, eng, ident = _prepared(name)
    rel_gap = lambda p: T.inner_lip_gap(p) / T.mouth_width(p)  # noqa: E731
    gaps = [rel_gap(_redetect(eng.render_values(ident, {"jaw": a, "open": a}))) for a in (0.0, 0.4, 0.8)]
    photo = rel_gap(face.points)
    # the photo's own mouth is the rest state: a closed mouth stays closed, parted lips (a smile showing
    # its teeth) stay parted; speech opens from there, wider and wider
    assert abs(gaps[0] - photo) < 0.03
    assert gaps[0] - 0.01 < gaps[1] < gaps[2]
    assert gaps[2] > max(0.2, photo + 0.03)
    if photo < 0.05:
        assert gaps[0] + 0.05 < gaps[1] + 0.02
    # a lip contact closes any photo's mouth
    assert rel_gap(_redetect(eng.render_values(ident, {"press": 1.0}))) < 0.08


def test_an_open_mouth_photo_keeps_its_lips_parted_at_rest():
    rgb, face, eng, ident = _prepared("obama_official.jpg")  # smiles with his teeth showing
    assert ident.rig.shows_teeth
    frame = eng.render_values(ident, {})
    p = _redetect(frame)
    assert abs(T.inner_lip_gap(p) - T.inner_lip_gap(face.points)) < 0.03 * T.mouth_width(face.points)
    # the mouth region is the photo's own at rest
    x0, y0 = face.points[list(T.IBUG_MOUTH_FROM_MEDIAPIPE)].min(axis=0).astype(int)
    x1, y1 = face.points[list(T.IBUG_MOUTH_FROM_MEDIAPIPE)].max(axis=0).astype(int)
    diff = np.abs(frame[y0:y1, x0:x1].astype(int) - rgb[y0:y1, x0:x1]).mean()
    assert diff < 6.0, diff
    # re-voicing video frames (rest_mouth="closed") still brings the photo's own lips together first
    closed = LiteEngine(rest_mouth="closed")
    p = _redetect(closed.render_values(closed.prepare_photo(rgb, face), {}))
    assert T.inner_lip_gap(p) / T.mouth_width(p) < 0.08
    # and speech wider than the photo's own gap opens it further; narrower speech keeps the photo's gap
    narrow = _redetect(eng.render_values(ident, {"jaw": 0.1, "open": 0.1}))
    assert abs(T.inner_lip_gap(narrow) - T.inner_lip_gap(face.points)) < 0.05 * T.mouth_width(face.points)


def test_nothing_moves_outside_the_head_region():
    rgb, face, eng, ident = _prepared("obama_official.jpg")
    x0, y0, x1, y1 = ident.rig.roi
    frame = eng.render_values(ident, {"jaw": 1, "open": 1, "spread": 1, "blink_l": 1, "yaw": 3, "pitch": 3,
                               "roll": 3, "tx": 0.02, "ty": 0.02}).copy()
    outside = np.ones(rgb.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert outside.any()
    assert np.array_equal(frame[outside], rgb[outside])
    # and inside the region, its border band (far from the face) is untouched too, except where the
    # region is cut by the image's own edge (the head reaches the top of this portrait)
    h, w = rgb.shape[:2]
    band = np.zeros(rgb.shape[:2], bool)
    band[y0:y1, x0:x1] = True
    band[y0 + 4 if y0 > 0 else 0:y1 - 4 if y1 < h else h, x0 + 4 if x0 > 0 else 0:x1 - 4 if x1 < w else w] = False
    assert band.sum() > 1000
    assert np.abs(frame[band].astype(int) - rgb[band]).max() <= 1


def test_rest_pose_keeps_a_closed_mouth_photo_nearly_identical():
    rgb, face, eng, ident = _prepared("woman_dark_hair_474px.png")
    frame = eng.render_values(ident, {})
    diff = np.abs(frame.astype(int) - rgb).max(axis=2)
    assert (diff > 12).mean() < 0.002


@pytest.mark.parametrize("name", ["woman_brown_hair_624px.jpg", "man_grey_hair_3511px.jpg", "taylor_256px.jpg"])
def test_blink_reads_as_closed_eyes(name):
    rgb, face, eng, ident = _prepared(name)
    ear = lambda p: np.mean([T.eye_aspect_ratio(p, e) for e in (T.EYE_IMAGE_LEFT, T.EYE_IMAGE_RIGHT)])  # noqa: E731
    half = _redetect(eng.render_values(ident, {"blink_l": 0.5, "blink_r": 0.5}))
    closed = _redetect(eng.render_values(ident, {"blink_l": 1.0, "blink_r": 1.0}))
    # a re-detected eye aspect ratio below 60 % of the open one counts as a blink (EAR blink detectors)
    assert ear(closed) < ear(half) < ear(face.points)
    assert ear(closed) < 0.6 * ear(face.points)


@pytest.mark.parametrize("name", ["woman_brown_hair_624px.jpg", "obama_official.jpg", "man_grey_hair_3511px.jpg"])
def test_closed_lids_have_the_photos_skin_grain_and_no_edge(name):
    """A closed lid carries the grain of the photo's own lid skin (not a flat patch: before issue 17 the
    texture ratio was 0.04-0.18 on these photos), and the changed area's border steps no more than the
    skin's own variation does."""
    from studio.engine.eval.metrics import eyelid_realism

    rgb, face, eng, ident = _prepared(name)
    opened = eng.render_values(ident, {}).copy()
    closed = eng.render_values(ident, {"blink_l": 1.0, "blink_r": 1.0}).copy()
    for eye in (T.EYE_IMAGE_LEFT, T.EYE_IMAGE_RIGHT):
        m = eyelid_realism(opened, closed, face.points, eye)
        assert 0.45 < m["texture"] < 1.5, m
        assert m["border_step"] < 1.25 * m["skin_step"], m


def _dark_runs(row: np.ndarray, thresh: float) -> int:
    dark = row < thresh
    return int(np.count_nonzero(dark[1:] & ~dark[:-1]))


def test_closed_lids_have_lashes_hanging_from_the_margin():
    """Below the closed lid's margin, lashes are separate dark strands (several dark runs across a row),
    not one solid line."""
    rgb, face, eng, ident = _prepared("man_grey_hair_3511px.jpg")
    closed = eng.render_values(ident, {"blink_l": 1.0}).copy()
    eye = ident.rig.eyes[0]
    gap = float(np.max(eye["b_lo"] - eye["b_up"]))
    a0, a1 = float(eye["knots"][0]), float(eye["knots"][-1])
    luma = closed.astype(float) @ (0.299, 0.587, 0.114)
    runs = []
    a = np.linspace(a0 + 0.1 * (a1 - a0), a1 - 0.3 * (a1 - a0), 400)  # its outer part: image left
    margin = np.interp(a, eye["knots"], eye["b_up"] + 1.1155 * (eye["b_lo"] - eye["b_up"]))  # closed
    for depth in (0.15, 0.25, 0.35):  # below the margin, in openings
        pts = eye["origin"] + a[:, None] * eye["ea"] + (margin + depth * gap)[:, None] * eye["eb"]
        row = luma[np.round(pts[:, 1]).astype(int), np.round(pts[:, 0]).astype(int)]
        runs.append(_dark_runs(row, 0.8 * np.median(row)))
    assert max(runs) >= 10, runs  # (5 before the lashes were drawn)


def test_head_motion_moves_the_face():
    rgb, face, eng, ident = _prepared("woman_brown_hair_624px.jpg")
    turned = _redetect(eng.render_values(ident, {"yaw": 4.0}))
    shift = turned[T.NOSE_TIP, 0] - face.points[T.NOSE_TIP, 0]
    assert shift > 0.01 * face.width  # positive yaw moves the face towards image right
    rolled = _redetect(eng.render_values(ident, {"roll": 4.0}))
    ang = lambda p: np.degrees(np.arctan2(*(p[263] - p[33])[::-1]))  # noqa: E731
    assert 2.0 < ang(rolled) - ang(face.points) < 6.0


def test_open_mouth_shows_an_interior_darker_than_the_lips():
    rgb, face, eng, ident = _prepared("woman_dark_hair_474px.png")
    frame = eng.render_values(ident, {"jaw": 1.0, "open": 1.0}).copy()
    p = _redetect(frame)
    # down the middle of the opening, between the inner lips: teeth at the top, the dark cavity, the tongue
    mid = ((p[13] + p[14]) / 2).round().astype(int)
    column = np.stack([frame[int(y), mid[0]].astype(float) for y in np.linspace(p[13, 1] + 1, p[14, 1] - 1, 24)])
    lip = rgb[int(face.points[17, 1]), int(face.points[17, 0])].astype(float).mean()
    assert column.mean(axis=1).min() < 0.6 * lip  # the cavity
    assert column.mean(axis=1).max() > lip  # the teeth
    assert frame[mid[1], mid[0]].mean() != rgb[mid[1], mid[0]].mean()


def _interior_pixels(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    import cv2

    inner = np.concatenate([points[list(T.LIPS_UPPER_INNER)], points[list(T.LIPS_LOWER_INNER)][::-1]])
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(inner).astype(np.int32)], 1)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
    return frame[mask].astype(float)


@pytest.mark.parametrize("tint", [None, (1.0, 0.85, 0.62)])  # greyscale; sepia
def test_the_mouth_interior_lives_in_the_photos_colour_space(tint):
    """A black-and-white (or sepia) photo gets a grey (sepia) mouth: no red cavity, no ivory teeth."""
    import cv2

    rgb = load_rgb("images/woman_dark_hair_474px.png")
    grey = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB).astype(float)
    photo = np.clip(grey * (tint or (1.0, 1.0, 1.0)), 0, 255).astype(np.uint8)
    face = detect_faces(photo)[0]
    eng = LiteEngine()
    ident = eng.prepare_photo(photo, face)
    assert ident.palette.chroma_gain < 0.15
    frame = eng.render_values(ident, {"jaw": 1.0, "open": 1.0}).copy()
    px = _interior_pixels(frame, _redetect(frame))
    assert len(px) > 200
    if tint is None:
        assert np.abs(px - px.mean(axis=1, keepdims=True)).max() <= 3.0
    else:  # every interior colour has the photo's own hue: channel ratios as in its skin
        bright = px[px.mean(axis=1) > 40]
        ratio = bright[:, 2] / np.maximum(bright[:, 0], 1)
        assert np.all(np.abs(ratio - 0.62) < 0.1), (ratio.min(), ratio.max())
    # the colour photo's interior is coloured: a red-brown cavity, not grey
    colour = eng.prepare_photo(rgb, detect_faces(rgb)[0])
    assert colour.palette.chroma_gain > 0.5
    cav = colour.palette.cavity
    assert cav[0] > cav[2] + 5
    teeth = colour.palette.teeth  # ivory, never green or blue, and bright
    assert teeth[0] >= teeth[1] >= teeth[2] and teeth.mean() > 180


def test_the_interior_is_no_sharper_than_the_photo():
    """The photo's blur around the mouth is measured (Gaussian sigma) and given to the synthesized interior."""
    import cv2

    from studio.engine.lite.mouth import photo_blur_sigma

    rgb = load_rgb("images/man_grey_hair_3511px.jpg")
    face = detect_faces(rgb)[0]
    x0, y0 = face.points[list(T.LIPS_UPPER_OUTER)].min(axis=0) - 50
    x1, y1 = face.points[list(T.LIPS_LOWER_OUTER)].max(axis=0) + 50
    box = (x0, y0, x1, y1)
    sharp = photo_blur_sigma(rgb, box)
    blurred = photo_blur_sigma(cv2.GaussianBlur(rgb, (0, 0), 3.0), box)
    assert blurred > sharp + 1.0, (sharp, blurred)
    assert 2.0 < blurred < 4.0


def test_mouth_atlas_keeps_open_frames_normalised_to_the_lips():
    """The atlas takes a video's open-mouth frames (not closed ones), resamples each interior to the inner-lip
    contour, keeps one per bin of opening (at most ATLAS_BINS), and blends the entries nearest an opening."""
    from studio.engine.eval.metrics import lip_gap
    from studio.engine.face.detect import FaceTracker
    from studio.engine.lite.mouth import ATLAS_BINS, ATLAS_COLS, ATLAS_ROWS, MouthAtlas
    from studio.media.video import read_video_frames

    atlas = MouthAtlas()
    with pytest.raises(ValueError):
        atlas.lookup(0.2, np.array([150.0, 80.0, 80.0]))
    _, frames = read_video_frames(sample("video/hdtf_katie_hill.mp4"))
    tracker, taken, closed_taken = FaceTracker(), 0, 0
    with frames:
        for rgb in frames:
            face = tracker.update(rgb)
            if face is None:
                continue
            took = atlas.add(rgb, face.points)
            taken += took
            closed_taken += took and lip_gap(face.points) < 0.05
    atlas.finish()
    assert taken >= 3 and closed_taken == 0
    assert 3 <= len(atlas) <= ATLAS_BINS
    assert atlas.openings == sorted(atlas.openings) and atlas.openings[-1] - atlas.openings[0] > 0.05
    tex = atlas.textures[-1]
    assert tex.shape == (ATLAS_ROWS, ATLAS_COLS, 3)
    # normalised to the contour: the teeth (bright) sit in the middle columns, the corners are darker
    lum = tex.mean(axis=2)
    assert lum[:, ATLAS_COLS // 3: 2 * ATLAS_COLS // 3].mean() > lum[:, :ATLAS_COLS // 8].mean()
    lip = atlas.lips[0]
    np.testing.assert_allclose(atlas.lookup(atlas.openings[0] - 1.0, lip), atlas.textures[0], atol=1e-3)
    brighter = atlas.lookup(atlas.openings[0] - 1.0, lip * 1.1)
    assert brighter.mean() > atlas.textures[0].mean() * 1.05


def test_closed_lips_of_a_photo_with_teeth_show_no_line_of_teeth():
    """MediaPipe's inner-lip points on a 256 px lipstick smile sit on the teeth's edge pixels; closing the lips
    along them drew a line of teeth between the lips (contact-line brightness p90 201, teeth 224, lips 76). The
    points are moved onto the real lip edges first, and the lips' inner rim (edge pixels mixing lip and teeth)
    is taken from further into the lip: the contact reads as lips (p90 89)."""
    from studio.engine.lite.mouth import refine_inner_lips

    rgb, face, eng, ident = _prepared("taylor_256px.jpg")
    rig = ident.rig
    assert rig.shows_teeth
    refined = refine_inner_lips(rgb, face.points)
    assert np.abs(refined - face.points).max() > 0.4  # some points moved ...
    assert np.abs(refined - face.points).max() < 0.5 * T.mouth_width(face.points)  # ... but not far
    frame = eng.render_values(ident, {"close": 1.0}).copy()
    us = np.linspace(0.8 * rig.u_left, 0.8 * rig.u_right, 60)
    xy = rig.mouth_origin + us[:, None] * rig.eu + rig.lip_line(us)[:, None] * rig.ev
    brightest = [max(frame[int(round(y + d)), int(round(x))].astype(float).mean() for d in range(-3, 4))
                 for x, y in xy]
    midway = (ident.palette.lip.mean() + ident.palette.teeth.mean()) / 2
    assert np.percentile(brightest, 90) < midway, (np.percentile(brightest, 90), midway)
    # a closed-mouth photo is left alone
    rgb2, face2, _, _ = _prepared("woman_brown_hair_624px.jpg")
    assert np.array_equal(refine_inner_lips(rgb2, face2.points), face2.points.astype(np.float64))


def test_the_engine_blurs_the_modelled_interior_like_the_photo():
    """The same photo, once sharp and once blurred: the modelled interior of the blurred one has clearly less
    detail (gradient energy), as the photo's own pixels around it do."""
    import cv2

    from studio.engine.eval.metrics import interior_stats

    rgb = load_rgb("images/woman_brown_hair_624px.jpg")
    energies = []
    for photo in (rgb, cv2.GaussianBlur(rgb, (0, 0), 2.5)):
        face = detect_faces(photo)[0]
        eng = LiteEngine()
        ident = eng.prepare_photo(photo, face)
        frame = eng.render_values(ident, {"jaw": 1.0, "open": 1.0}).copy()
        stats = interior_stats(frame, _redetect(frame))
        assert stats is not None
        energies.append((ident.palette.blur, stats[1]))
    (sharp_blur, sharp_e), (soft_blur, soft_e) = energies
    assert soft_blur > sharp_blur + 1.0
    assert soft_e < 0.6 * sharp_e, energies
