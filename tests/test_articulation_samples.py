"""Articulation on the samples that have no real video to compare with (issue 16): speech in other languages
and English recordings, rendered on a photo whose lips are parted in a smile with teeth showing (the hardest
rest to close), measured on the rendered frames with MediaPipe."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import sample

from studio.core.events import drive
from studio.engine.eval.metrics import CLOSED_GAP, lip_gap, pearson
from studio.engine.face import topology as T
from studio.engine.face.detect import FaceTracker
from studio.engine.pipeline import prepare
from studio.engine.settings import RenderSettings

AUDIO = {"english": "audio/english_short_16k_mono.wav", "japanese": "audio/japanese_48k_s24_stereo.wav",
         "german": "audio/german_48k_s24_stereo.wav", "unstated": "audio/speech_44k1_stereo.wav"}


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return list(zip(edges[::2], edges[1::2]))


@pytest.fixture(scope="module")
def measured():
    """language -> (lip gap, mouth width / eye distance, loudness energy, fps) of every rendered frame."""
    out = {}
    for lang, rel in AUDIO.items():
        session = drive(prepare(sample("images/obama_official.jpg"), sample(rel),
                                RenderSettings().with_values(pose="still", blink="off")))
        tracker, gap, width = FaceTracker(), [], []
        for k in range(session.n_frames):
            face = tracker.update(session.render_frame(k))
            assert face is not None, (lang, k)
            p = face.points
            gap.append(lip_gap(p))
            width.append(T.mouth_width(p) / np.linalg.norm(p[33] - p[263]))
        out[lang] = (np.asarray(gap), np.asarray(width), np.asarray(session.controls.energy), session.controls.fps)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("lang", list(AUDIO))
def test_lips_close_in_every_long_pause_and_open_with_the_voice(measured, lang):
    gap, _, energy, fps = measured[lang]
    pauses = [(a, b) for a, b in _runs(energy <= 0.0) if (b - a) / fps > 0.5]
    assert pauses, f"{lang}: the sample has a pause longer than 0.5 s"
    for a, b in pauses:
        assert gap[a:b].min() < CLOSED_GAP, (lang, a / fps, b / fps, gap[a:b].round(3))
    assert pearson(gap, energy) >= 0.4, lang


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["japanese", "german"])
def test_other_languages_round_and_spread_the_lips(measured, lang):
    """Mouth-width variation over speech frames at least half that of English speech."""
    def width_std(key):
        _, width, energy, _ = measured[key]
        return float(width[energy > 0.05].std())

    assert width_std(lang) >= 0.5 * width_std("english"), (width_std(lang), width_std("english"))
