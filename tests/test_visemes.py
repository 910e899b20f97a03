"""Speech -> mouth controls (studio.engine.audio.visemes) on real speech samples.

The samples live in ../shared/samples (see its MANIFEST.md); tests that need them are skipped
when the folder is absent. Clips are trimmed to a few seconds to keep the file fast.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from studio.core.errors import AudioError, Cancelled, ConfigError
from studio.core.events import CancelToken
from studio.engine.audio import phonemes
from studio.engine.audio.visemes import (
    VISEME_TARGETS,
    VISEMES,
    Coarticulation,
    MouthTrack,
    analyze_speech,
    viseme_of,
)

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples"
GRID_WAV = Path(__file__).resolve().parents[1] / "resources" / "grid_bbaf2n.wav"
CO = Coarticulation()


def _load(rel: str, start: float = 0.0, dur: float | None = None) -> tuple[np.ndarray, int]:
    path = SAMPLES / rel
    if not path.exists():
        pytest.skip(f"sample {path} not available (shared samples folder absent)")
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    a = int(round(start * sr))
    b = len(x) if dur is None else min(len(x), a + int(round(dur * sr)))
    return np.ascontiguousarray(x[a:b]), sr


def _grid() -> tuple[np.ndarray, int]:
    if not GRID_WAV.exists():
        pytest.skip(f"{GRID_WAV} not available")
    x, sr = sf.read(str(GRID_WAV), dtype="float32")
    return x, sr


def _frame_rms(x: np.ndarray, sr: int, fps: float, n: int) -> np.ndarray:
    """Plain RMS of each frame's sample interval [k / fps, (k + 1) / fps)."""
    out = np.zeros(n)
    for k in range(n):
        a, b = int(round(k * sr / fps)), int(round((k + 1) * sr / fps))
        seg = x[a:min(b, len(x))]
        out[k] = math.sqrt(float(np.mean(seg.astype(np.float64) ** 2))) if len(seg) else 0.0
    return out


def _frames_in(track: MouthTrack, t0: float, t1: float) -> slice:
    k0 = max(0, int(math.floor(t0 * track.fps)))
    k1 = min(track.n_frames, int(math.ceil(t1 * track.fps)))
    return slice(k0, k1)


# ------------------------------------------------------------------------------------------
# shapes, dtypes, ranges


@pytest.mark.parametrize("fps", [25.0, 29.97])
def test_lengths_dtypes_ranges(fps: float) -> None:
    x, sr = _load("audio/english_short_16k_mono.wav", 0.5, 3.0)
    track = analyze_speech(x, sr, fps=fps)
    expected = math.ceil(len(x) / sr * fps - 1e-6)
    assert track.n_frames == expected
    assert track.fps == fps
    for name, lo, hi in [
        ("jaw", 0, 1), ("open", 0, 1), ("spread", -1, 1), ("press", 0, 1), ("teeth", 0, 1),
        ("energy", 0, 1),
    ]:  # fmt: skip
        arr = getattr(track, name)
        assert arr.dtype == np.float32 and arr.shape == (expected,), name
        assert np.all(arr >= lo) and np.all(arr <= hi), name
        assert not arr.flags.writeable, name
    assert len(track.visemes) == expected and set(track.visemes) <= set(VISEMES)
    assert track.controls().shape == (expected, 6)
    # speech is present: the mouth moves and more than one shape is used
    assert track.open.max() > 0.2 and len(set(track.visemes)) >= 4
    # phones are contiguous ARPAbet segments over the clip
    ph = track.phones
    assert ph and ph[0][1] == 0.0 and abs(ph[-1][2] - len(x) / sr) < 0.02
    assert all(abs(a[2] - b[1]) < 1e-3 for a, b in zip(ph, ph[1:]))
    assert {p for p, _, _ in ph} <= set(phonemes.PHONES) | {"SIL"}


def test_n_frames_override_pads_with_rest() -> None:
    x, sr = _grid()
    x = x[: int(2.0 * sr)]  # cut mid-"now": the sound stops abruptly at 2.0 s
    track = analyze_speech(x, sr, fps=25, n_frames=80, use_phones=False)
    assert track.n_frames == 80
    assert np.all(track.energy[50:] == 0)
    assert track.open[-10:].max() < 1e-3 and set(track.visemes[-10:]) == {"X"}
    short = analyze_speech(x, sr, fps=25, n_frames=10, use_phones=False)
    assert short.n_frames == 10


def test_loudness_alone_leaves_the_lip_width_neutral() -> None:
    # loudness tells how wide the mouth opens, not whether the lips spread or round
    x, sr = _grid()
    track = analyze_speech(x, sr, fps=25, use_phones=False)
    assert track.open.max() > 0.3
    assert np.all(track.spread == 0)


# ------------------------------------------------------------------------------------------
# loudness


@pytest.mark.parametrize(
    "rel,start,dur",
    [
        ("audio/english_radio_16k_stereo.wav", 0.0, 6.0),
        ("audio/japanese_48k_s24_stereo.wav", 0.0, 6.0),
        ("audio/german_48k_s24_stereo.wav", 1.0, 5.0),
    ],
)
def test_open_follows_loudness(rel: str, start: float, dur: float) -> None:
    x, sr = _load(rel, start, dur)
    track = analyze_speech(x, sr, fps=25)
    rms = _frame_rms(x, sr, 25, track.n_frames)
    r = np.corrcoef(track.open, rms)[0, 1]
    # half the opening drive is the acoustic opening model (the spectrum's lip gap, not the level): r 0.50 /
    # 0.55 / 0.54 here, against 0.65 / 0.73 / 0.71 with the loudness alone; real speakers' lip gap follows the
    # level with r 0.2-0.7 (the GRID clips), and issue 16 asks for >= 0.4 on the rendered lip gap
    assert r > 0.45, f"Pearson r(open, RMS) = {r:.2f}"
    assert np.corrcoef(track.energy, rms)[0, 1] > 0.6


def test_silence_gives_rest() -> None:
    for x in (np.zeros(16000, np.float32),
              np.random.default_rng(1).normal(0, 1e-4, 44100).astype(np.float32)):
        sr = 16000 if len(x) == 16000 else 44100
        track = analyze_speech(x, sr, fps=25)
        assert track.n_frames == 25
        assert np.abs(track.open).max() < 1e-3 and np.abs(track.jaw).max() < 1e-3
        assert np.abs(track.press).max() < 1e-3 and np.all(track.energy == 0)
        assert set(track.visemes) == {"X"}


def test_inserted_pause_closes_mouth() -> None:
    x, sr = _load("audio/english_short_16k_mono.wav", 0.7, 3.6)
    cut = int(1.2 * sr)  # inside the first phrase (speech 0.75 .. 2.68 s in the file)
    pause = 0.5
    y = np.concatenate([x[:cut], np.zeros(int(pause * sr), np.float32), x[cut:]])
    fps = 25.0
    track = analyze_speech(y, sr, fps=fps)
    t0 = cut / sr
    # from two release times after the sound stops until the anticipation of the next sound
    inner = _frames_in(track, t0 + 2 * CO.release_s, t0 + pause - CO.anticipation_s - 1 / fps)
    assert inner.stop - inner.start >= 5
    assert track.open[inner].max() < 0.05 and track.jaw[inner].max() < 0.05
    assert track.open[inner][-3:].max() < 1e-3  # fully closed before speech resumes
    assert set(track.visemes[inner]) == {"X"}
    assert np.all(track.energy[inner] == 0)
    # ... and speaks on both sides of it
    assert track.open[_frames_in(track, 0, t0)].max() > 0.2
    assert track.open[_frames_in(track, t0 + pause, t0 + pause + 1.0)].max() > 0.2


def test_pauses_bring_the_lips_together_and_short_gaps_do_not() -> None:
    """Real speakers close their lips in pauses and talk from closed lips (whatever a photo's own rest looks
    like): ``close`` is ``speech_close`` while talking and in short gaps between words (under ``pause_s``),
    rises to ``rest_close`` in a silence of at least ``pause_s`` and is back at ``speech_close`` before the
    next sound. By default both are 1: the photo's own lip gap never shows once the clip has started."""
    x, sr = _load("audio/english_short_16k_mono.wav", 0.7, 3.6)
    cut_long, cut_short = int(1.2 * sr), int(1.9 * sr)  # both inside the first phrase
    y = np.concatenate([x[:cut_long], np.zeros(int(0.6 * sr), np.float32), x[cut_long:cut_short],
                        np.zeros(int(0.15 * sr), np.float32), x[cut_short:], np.zeros(int(0.6 * sr), np.float32)])
    fps = 25.0
    co = Coarticulation(speech_close=0.2)
    track = analyze_speech(y, sr, fps=fps, coarticulation=co)
    t_long = cut_long / sr
    middle = _frames_in(track, t_long + 0.25, t_long + 0.45)
    assert track.close[middle].min() > 0.9, track.close[middle]
    onset = _frames_in(track, t_long + 0.6, t_long + 0.7)  # the sound resumes: back to the speaking rest
    assert np.abs(track.close[onset] - 0.2).max() < 0.1
    t_short = t_long + 0.6 + (cut_short - cut_long) / sr
    assert np.abs(track.close[_frames_in(track, t_short, t_short + 0.15)] - 0.2).max() < 0.05
    assert np.abs(track.close[_frames_in(track, 0.5, t_long)] - 0.2).max() < 0.05  # speaking
    # the silence after the last word closes them too, and a clip of silence is closed throughout
    assert track.close[-3:].min() > 0.9
    assert analyze_speech(np.zeros(16000, np.float32), 16000, fps=25).close[10:].min() > 0.9
    no_pauses = analyze_speech(y, sr, fps=fps, coarticulation=Coarticulation(pause_s=2.0, speech_close=0.2))
    assert no_pauses.close.max() <= 0.2 + 1e-6
    # the default: closed from 150 ms on, talking or not (the clip starts from the photo's own mouth)
    default = analyze_speech(y, sr, fps=fps)
    assert default.close[0] < 0.5 and default.close[_frames_in(default, 0.3, len(y) / sr)].min() > 0.95


def test_mouth_offset_and_intensity() -> None:
    x, sr = _load("audio/english_short_16k_mono.wav", 0.7, 2.0)
    track = analyze_speech(x, sr, fps=25.0)
    later = track.adjusted(offset_ms=80.0)  # two frames at 25 fps
    np.testing.assert_allclose(later.jaw[2:], track.jaw[:-2], atol=1e-6)
    np.testing.assert_allclose(later.jaw[:2], track.jaw[0], atol=1e-6)
    assert later.visemes[2:] == track.visemes[:-2] and later.phones == track.phones
    # a fractional offset still shows every lip closure and F/V contact whole, in the frame its time falls in
    contacts = np.flatnonzero(track.press >= 0.99)
    assert contacts.size >= 1
    for ms in (10.0, 20.0, -30.0):
        shifted = track.adjusted(offset_ms=ms, intensity=2.0)
        moved = np.floor(contacts + ms / 1000.0 * 25.0 + 0.5).astype(int)
        moved = moved[(moved >= 0) & (moved < track.n_frames)]
        assert (shifted.press[moved] >= 0.99).all() and (shifted.open[moved] <= track.open[contacts].max() + 1e-6).all()
    half = track.adjusted(intensity=0.5)
    np.testing.assert_allclose(half.jaw, track.jaw * 0.5, atol=1e-6)
    np.testing.assert_allclose(half.spread, track.spread * 0.5, atol=1e-6)
    np.testing.assert_array_equal(half.press, track.press)  # contacts still close
    assert track.adjusted() is track


# ------------------------------------------------------------------------------------------
# phones and visemes on GRID "bin blue at F two now"


def _segments(track: MouthTrack, phone: str) -> list[tuple[float, float]]:
    return [(a, b) for p, a, b in track.phones if p == phone]


def test_grid_forced_alignment() -> None:
    x, sr = _grid()
    track = analyze_speech(x, sr, fps=25, transcript="Bin blue at F two now.")
    seq = [p for p, _, _ in track.phones if p != "SIL"]
    assert seq == ["B", "IH", "N", "B", "L", "UW", "AE", "T", "EH", "F", "T", "UW", "N", "AW"]
    # the two /B/ closures ("bin", "blue") press the lips shut
    b_segs = _segments(track, "B")
    assert len(b_segs) == 2
    for a, b in b_segs:
        win = _frames_in(track, a - CO.occlusion_s[1], b)
        k = win.start + int(np.argmax(track.press[win]))
        assert track.press[k] >= 0.8 and track.open[k] < 0.05 and track.visemes[k] == "A"
    # F of "F" [EH F]: lower lip to the upper teeth
    (fa, fb), = _segments(track, "F")
    win = _frames_in(track, fa - CO.anticipation_s, fb)
    assert track.teeth[win].max() > 0.5 and "G" in track.visemes[win]
    # "two" [T UW]: rounded
    uw = [s for s in _segments(track, "UW") if s[0] > fb]
    assert uw
    win = _frames_in(track, uw[0][0], uw[0][1])
    assert track.spread[win].mean() < -0.3 and track.spread[win].max() < 0
    # "now" [N AW]: the mouth opens on the diphthong
    (aw0, aw1), = _segments(track, "AW")
    assert track.open[_frames_in(track, aw0, aw1)].max() > 0.3


def test_grid_transcript_with_unknown_words_and_digits() -> None:
    x, sr = _grid()
    track = analyze_speech(x, sr, fps=25, transcript="bin bluue at eff 2 nowz")
    seq = [p for p, _, _ in track.phones if p != "SIL"]
    assert seq[:3] == ["B", "IH", "N"] and "T" in seq and "UW" in seq
    assert track.press[_frames_in(track, 0.8, 1.3)].max() >= 0.8


def test_grid_phone_decoding(capfd: pytest.CaptureFixture[str]) -> None:
    x, sr = _grid()
    track = analyze_speech(x, sr, fps=25)  # no transcript: allphone decoding
    out, err = capfd.readouterr()
    assert out == "" and err == "", "PocketSphinx logging leaked"
    assert track.phones and any(p != "SIL" for p, _, _ in track.phones)
    # closure(s) around "bin blue" (0.9 .. 1.3 s), within a frame or two
    assert track.press[_frames_in(track, 0.8, 1.35)].max() >= 0.8
    # the vowels open the mouth, the rounded "two"/"blue" round it
    assert track.open[_frames_in(track, 1.3, 2.1)].max() > 0.3
    assert track.spread[_frames_in(track, 1.15, 2.1)].min() < -0.3
    # silence before and after the sentence
    assert set(track.visemes[_frames_in(track, 0.0, 0.7)]) == {"X"}
    assert set(track.visemes[_frames_in(track, 2.4, 3.0)]) == {"X"}


def test_anticipation_opens_before_sound() -> None:
    for x, sr in (_grid(), _load("audio/english_short_16k_mono.wav", 0.0, 2.0)):
        fps = 25.0
        track = analyze_speech(x, sr, fps=fps)
        rms = _frame_rms(x, sr, fps, track.n_frames)
        onset = int(np.argmax(rms > 0.1 * rms.max()))  # first loud frame of the utterance
        assert onset >= 3
        moving = np.maximum.reduce([track.open, track.jaw, track.press, track.teeth])
        assert moving[onset - 1] > 0.05, "no movement one frame before the energy onset"
        assert moving[: max(onset - 6, 1)].max() < 0.02  # but still at rest well before


def test_fps_independent_motion() -> None:
    x, sr = _grid()
    a = analyze_speech(x, sr, fps=25, transcript="bin blue at f two now")
    b = analyze_speech(x, sr, fps=50, phones=a.phones)  # caller-given phones: no decoding
    assert b.phones == a.phones
    n = min(a.n_frames, b.n_frames // 2)
    for name in ("jaw", "spread", "energy"):
        coarse = getattr(a, name)[:n]
        fine = getattr(b, name)[: 2 * n].reshape(n, 2).mean(axis=1)
        assert np.abs(coarse - fine).mean() < 0.03, name


# ------------------------------------------------------------------------------------------
# timing: no drift


def test_no_drift_tone_burst_at_nine_minutes() -> None:
    sr, fps = 16000, 29.97
    t_on, t_len = 540.0, 0.2
    n = int((t_on + 1.0) * sr)
    x = np.zeros(n, np.float32)
    t = np.arange(int(t_len * sr)) / sr
    a = int(t_on * sr)
    x[a : a + len(t)] = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 660 * t)
    track = analyze_speech(x, sr, fps=fps, use_phones=False)
    assert track.n_frames == math.ceil(len(x) / sr * fps - 1e-6)
    k_on = int(math.floor(t_on * fps))  # frame holding the onset: [k / fps, (k + 1) / fps)
    k_off = int(math.floor((t_on + t_len) * fps))
    assert track.energy[k_on - 1] == 0 and track.energy[k_on] > 0
    assert track.energy[k_off] > 0 and track.energy[k_off + 1] == 0
    assert np.all(track.open[k_on + 1 : k_off] > 0.1)
    assert track.open[k_on] > 0
    assert track.open[: k_on - 4].max() == 0
    assert track.open[k_off + 8 :].max() < 0.02


# ------------------------------------------------------------------------------------------
# long audio, cancellation, errors, table


def test_long_audio_is_chunked_and_cancellable(monkeypatch: pytest.MonkeyPatch) -> None:
    x, sr = _load("audio/english_60s_16k_mono.wav")
    token = CancelToken()
    calls = []
    real = phonemes._decode_chunk

    def one_chunk_then_cancel(decoder, pcm, origin_s):
        calls.append(len(pcm) / phonemes.SAMPLE_RATE)
        token.cancel()
        return real(decoder, pcm[: phonemes.SAMPLE_RATE], origin_s)

    monkeypatch.setattr(phonemes, "_decode_chunk", one_chunk_then_cancel)
    with pytest.raises(Cancelled):
        analyze_speech(x, sr, fps=25, cancel=token)
    assert len(calls) == 1 and calls[0] <= 30.0 + 1e-6


def test_chunked_alignment_finds_each_chunks_words() -> None:
    x, sr = _grid()  # 16 kHz
    speech = x[int(0.85 * sr) : int(2.25 * sr)]
    gap = np.zeros(int(0.6 * sr), np.float32)
    y = np.concatenate([gap, speech, gap, speech, gap, speech, gap])
    pcm = np.clip(np.rint(y * 32767), -32768, 32767).astype(np.int16)
    n = math.ceil(len(pcm) / 160)
    level = np.full(n, -90.0)
    speech_mask = np.zeros(n, bool)
    for k in range(3):
        a = int(round((0.6 + k * (1.4 + 0.6)) * 100))
        level[a : a + 140], speech_mask[a : a + 140] = -20.0, True
    chunks = phonemes.plan_chunks(level, speech_mask, max_s=3.0, target_s=2.0, min_s=1.5)
    assert len(chunks) == 3
    segs, aligned = phonemes.align_phones(
        pcm, "bin blue at F two now " * 3, chunks, speech_mask
    )
    assert aligned == 1.0
    seq = [p for p, _, _ in segs if p != "SIL"]
    assert seq == ["B", "IH", "N", "B", "L", "UW", "AE", "T", "EH", "F", "T", "UW", "N", "AW"] * 3
    for (p0, a0, _), (p1, a1, _) in zip(segs, segs[1:]):
        assert a1 > a0


def test_transcript_normalisation_and_guessing() -> None:
    assert phonemes.normalize_transcript("Set 2 at 3.5%, O'Brien's café!") == [
        "set", "two", "at", "three", "point", "five", "percent", "o'brien's", "cafe",
    ]  # fmt: skip
    assert phonemes.number_to_words(2024) == ["two", "thousand", "twenty", "four"]
    assert phonemes.normalize_transcript("こんにちは") == []
    guess = phonemes.guess_pronunciation("shinkansen")
    assert guess and set(guess) <= set(phonemes.PHONES) and guess[0] == "SH"


def test_cancelled_before_start() -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        analyze_speech(np.zeros(1600, np.float32), 16000, fps=25, cancel=token)


def test_errors() -> None:
    with pytest.raises(AudioError):
        analyze_speech(np.zeros(0, np.float32), 16000, fps=25)
    with pytest.raises(AudioError):
        analyze_speech(np.zeros((1600, 2), np.float32), 16000, fps=25)
    with pytest.raises(AudioError):
        analyze_speech(np.full(1600, np.nan, np.float32), 16000, fps=25)
    for bad in (0, -25, float("nan"), float("inf")):
        with pytest.raises((ConfigError, ValueError)):
            analyze_speech(np.zeros(1600, np.float32), 16000, fps=bad)


def test_int16_input_matches_float() -> None:
    x, sr = _grid()
    pcm = np.clip(np.rint(x * 32767), -32768, 32767).astype(np.int16)
    a = analyze_speech(x, sr, fps=25, use_phones=False)
    b = analyze_speech(pcm, sr, fps=25, use_phones=False)
    assert np.abs(a.open - b.open).max() < 1e-3


def test_viseme_table() -> None:
    table = {
        "M": "A", "B": "A", "P": "A", "AA": "D", "AE": "C", "EH": "C", "AO": "E", "ER": "E",
        "UW": "F", "OW": "E", "W": "F", "F": "G", "V": "G", "L": "H", "IY": "B", "S": "B",
        "T": "B", "K": "B", "SIL": "X", "aa1": "D", "+NSN+": "X",
    }  # fmt: skip
    for phone, shape in table.items():
        assert viseme_of(phone) == shape, phone
    with pytest.raises(ValueError):
        viseme_of("QQ")
    assert set(VISEME_TARGETS) == set(VISEMES)
    assert VISEME_TARGETS["A"][3] == 1.0 and VISEME_TARGETS["A"][1] == 0.0
    assert VISEME_TARGETS["G"][4] == 1.0 and VISEME_TARGETS["F"][2] < -0.5
    assert VISEME_TARGETS["D"][0] > VISEME_TARGETS["C"][0] > VISEME_TARGETS["B"][0]


def test_the_phone_decoder_gives_the_same_phones_in_another_process():
    """The studio decodes in a separate process (pocketsphinx holds the GIL for a whole chunk, which froze its
    window for up to ~0.8 s); the phones must be the ones decoded in-thread, and a process that is gone must
    fall back to decoding in the calling thread."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    x, sr = _load("audio/english_short_16k_mono.wav", 0.0, 3.0)
    assert sr == 16000
    pcm = np.clip(np.rint(x * 32767), -32768, 32767).astype(np.int16)
    here = phonemes.decode_phones(pcm)
    executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    phonemes.run_decoder_in(executor)
    try:
        assert phonemes.decode_phones(pcm) == here and len(here) > 5
        executor.shutdown()
        assert phonemes.decode_phones(pcm) == here  # the executor is gone: decoded here instead
    finally:
        phonemes.run_decoder_in(None)
        executor.shutdown(cancel_futures=True)


def test_silence_around_the_speech_does_not_count_against_its_transcript():
    """The aligned share is of the speech: a correct transcript over a clip with long quiet stretches (a
    recording left running) is not reported as mismatched."""
    from studio.media.audio import load_audio

    clip = load_audio(SAMPLES / "video" / "grid_bbaf2n.mpg", sample_rate=16000)
    quiet = (np.random.default_rng(0).standard_normal(16000 * 12) * 1e-4).astype(np.float32)
    x = np.concatenate([np.tile(clip.samples, 4), quiet])
    track = analyze_speech(x, 16000, fps=25, transcript="bin blue at f two now " * 4)
    assert track.aligned_fraction is not None and track.aligned_fraction >= 0.9, track.aligned_fraction
    wrong = analyze_speech(x, 16000, fps=25, transcript="the quick brown fox jumps over the lazy dog")
    assert wrong.aligned_fraction < 0.6
