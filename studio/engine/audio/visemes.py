"""Speech -> per-video-frame mouth controls for the lite engine.

Pipeline (all times in seconds, so every frame rate gives the same motion):

1. **Loudness.** The speech is resampled to 16 kHz mono, high-passed at 60 Hz, and its level is
   measured every 10 ms (20 ms windows). A noise floor is estimated from the quietest frames
   (5th percentile of the frames above -70 dBFS, never closer than 30 dB below the speech
   level) and a speech gate placed 8 dB above it; a hysteresis VAD (+4 dB to start) with
   40 ms minimum islands and 60 ms gap filling gives the speech mask. ``energy`` in [0, 1] is the
   level between the gate (0) and the clip's speech level (95th percentile of speech, 1).
2. **Phones** (:mod:`studio.engine.audio.phonemes`): forced alignment when a transcript is
   given, else PocketSphinx phone decoding; or caller-supplied segments; or none (energy only).
   Decoded phone segments shorter than 35 ms are absorbed by their neighbours, and a decoded
   M/B/P/F/V without the >= 6 dB level dip a lip contact causes is demoted to a free-shape phone.
3. **Visemes.** Phones map to Rhubarb Lip Sync's nine mouth shapes (:data:`PHONE_VISEMES`),
   with Rhubarb's refinements: diphthongs split 60/40 into two shapes, duration-dependent AH/AY/
   AW/ER/L, flexible consonants (T D K G N NG R Y S Z SH ...) take the shape of the neighbouring
   vowel when it is one of their allowed shapes (so "two" is rounded from the T on), and the lips
   close for B/P *before* the release (occlusion = half the previous phone, 20..60 ms, plus the
   first half of the B/P segment itself). Non-speech frames are "X" whatever the decoder said;
   decoder silence inside speech gets a shape from the opening drive (B soft, C, D open; step 4).
4. **Targets.** Each shape has targets for jaw/open/spread/press/teeth (:data:`VISEME_TARGETS`).
   Jaw and open are multiplied by an opening drive in [0, 1]: half the loudness drive
   (``(0.3 * energy + 0.7 * loudness) ** 0.75`` where loudness spans the top 18 dB below the speech level,
   so loud syllables open wider and soft speech still moves the mouth), half the lip gap that the acoustic
   opening model (:mod:`studio.engine.audio.opening`: MFCC -> lip gap, fitted on real talking videos,
   language independent) predicts, over 0.15; then by 1.1 (see :class:`Coarticulation`). Shapes from *decoded* phones are
   blended 60/40 with the drive-only shape, since phone decoding is only ~60 % right on English and approximate on
   other languages; aligned phones are used as they are.
5. **Coarticulation** (:class:`Coarticulation`): shapes and the opening drive are anticipated by
   ``anticipation_s`` (50 ms; speech offsets are not anticipated: the mouth closes after the
   sound), then every control goes through two cascaded one-pole filters whose time constants
   depend on the direction: opening 50 ms (10-90 %), relaxing 100 ms, lip contacts formed in
   35 ms and released in 30 ms, rounding/spreading 80 ms.
6. **The lips' rest.** The ``close`` control brings the photo's lips together: to ``speech_close`` (1) while
   talking, so a photo whose lips are parted (or smiling with its teeth showing) speaks from closed lips and
   opens by jaw/open alone, and to ``rest_close`` (1) in a silence of at least ``pause_s`` (0.3 s), as real
   speakers rest (measured on the GRID clips: their lip gap sits below 0.07 of the mouth width in pauses). It
   rises over ``rest_close_s`` (150 ms) from the photo's own mouth at the start of a clip.
7. **Frames.** Frame k covers audio ``[k / fps, (k + 1) / fps)``; each control is the exact mean of
   the 10 ms control curve over that interval (absolute times, so no drift at any fps). Every
   M/B/P closure and F/V contact is then guaranteed to show in at least one frame (the frame it
   overlaps most): press 1 / open 0 for closures, teeth >= 0.85 for F/V.

The nine shapes are Rhubarb Lip Sync's (Daniel Wolf, MIT license; phone mapping and timing rules
after ``rhubarb/src/animation/animation-rules.cpp``), the letters after Preston Blair's chart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from studio.core.errors import AudioError, ConfigError
from studio.core.events import CancelToken
from studio.engine.audio import opening as _opening
from studio.engine.audio import phonemes as _ph

VISEMES: tuple[str, ...] = ("X", "A", "B", "C", "D", "E", "F", "G", "H")
"""Rhubarb Lip Sync's mouth shapes.

X rest/silence; A closed lips (M B P); B slightly open, teeth clenched (most consonants, K S T,
EE); C open (EH AE, some vowels); D wide open (AA); E slightly rounded (AO ER); F puckered
(UW OW W); G upper teeth on lower lip (F V); H tongue raised (L).
"""

CONTROLS: tuple[str, ...] = ("jaw", "open", "spread", "press", "teeth", "close")
"""Names of the continuous mouth controls: the five of :data:`VISEME_TARGETS` rows, then ``close`` (the
photo's lips brought together: their rest while talking and in pauses, see :class:`Coarticulation`)."""

VISEME_TARGETS: dict[str, tuple[float, float, float, float, float]] = {
    #      jaw   open  spread press teeth
    "X": (0.00, 0.00, 0.00, 0.00, 0.00),  # relaxed, lips lightly together
    "A": (0.04, 0.00, 0.05, 1.00, 0.00),  # lips pressed (M B P)
    "B": (0.20, 0.25, 0.45, 0.00, 0.00),  # teeth nearly together, lips parted, spread (S T K EE)
    "C": (0.55, 0.62, 0.25, 0.00, 0.00),  # open (EH AE)
    "D": (1.00, 1.00, 0.10, 0.00, 0.00),  # wide open (AA)
    "E": (0.48, 0.48, -0.45, 0.00, 0.00),  # slightly rounded (AO ER)
    "F": (0.20, 0.20, -0.95, 0.00, 0.00),  # puckered (UW OW W)
    "G": (0.10, 0.06, 0.10, 0.00, 1.00),  # lower lip under upper teeth (F V)
    "H": (0.42, 0.46, 0.15, 0.00, 0.00),  # open, tongue up (L)
}
"""Per-shape targets (jaw, open, spread, press, teeth) at full loudness; see :class:`MouthTrack`."""

# phone -> (shape for short phones, shape for long phones or None, threshold s) for vowels, and
# the plain shape for consonants; diphthongs are (first, second) pairs split 60/40.
_VOWELS: dict[str, str] = {
    "AA": "D", "AE": "C", "AO": "E", "EH": "C", "IH": "B", "IY": "B", "UH": "F", "UW": "F",
}  # fmt: skip
_DIPHTHONGS: dict[str, tuple[str, str]] = {
    "EY": ("C", "B"), "AY": ("C", "B"), "OW": ("E", "F"), "AW": ("C", "E"), "OY": ("E", "B"),
}  # fmt: skip
# consonant -> (default shape, shapes it may take from a neighbouring vowel)
_ANY_OPEN = frozenset("BCDEFH")
_CONSONANTS: dict[str, tuple[str, frozenset[str]]] = {
    "P": ("A", frozenset()), "B": ("A", frozenset()), "M": ("A", frozenset()),
    "F": ("G", frozenset()), "V": ("G", frozenset()),
    "T": ("B", frozenset("BF")), "D": ("B", frozenset("BF")),
    "K": ("B", frozenset("BCEFH")), "G": ("B", frozenset("BCEFH")),
    "CH": ("B", frozenset("BF")), "JH": ("B", frozenset("BF")),
    "TH": ("B", frozenset("BF")), "DH": ("B", frozenset("BF")),
    "S": ("B", frozenset("BF")), "Z": ("B", frozenset("BF")),
    "SH": ("B", frozenset("BF")), "ZH": ("B", frozenset("BF")),
    "HH": ("B", _ANY_OPEN), "N": ("B", frozenset("BCFH")), "NG": ("B", frozenset("BCEF")),
    "L": ("H", frozenset("BEFH")), "R": ("B", frozenset("BEF")), "Y": ("B", frozenset("BCF")),
    "W": ("F", frozenset()),
}  # fmt: skip

PHONE_VISEMES: dict[str, str] = {
    "SIL": "X",
    **_VOWELS,
    "AH": "C",  # D when >= 200 ms
    "ER": "E",  # B (schwa-like) when < 70 ms
    **{p: pair[0] for p, pair in _DIPHTHONGS.items()},
    **{p: rule[0] for p, rule in _CONSONANTS.items()},
}
"""Context-free shape of every ARPAbet phone (first shape for diphthongs); see :func:`viseme_of`."""

_CONTACT_PHONES = frozenset({"P", "B", "M", "F", "V"})
_STEP_S = _ph.FRAME_S  # control-curve resolution: 10 ms
_ABS_GATE_DB = -70.0  # dBFS below which nothing is speech
_GATE_ABOVE_FLOOR_DB = 8.0
_START_ABOVE_GATE_DB = 4.0
_MAX_FLOOR_BELOW_SPEECH_DB = 30.0
_MIN_ISLAND_S = 0.04
_MAX_GAP_S = 0.06
# Opening drive in [0, 1] (scales jaw/open targets): _OPEN_FLOOR * energy (gate .. speech level,
# ~30 dB) + (1 - _OPEN_FLOOR) * loudness over the top _OPEN_RANGE_DB below the speech level, so
# soft speech still moves the mouth and loud syllables open clearly wider than soft ones.
_OPEN_FLOOR = 0.3
_OPEN_RANGE_DB = 18.0
_DRIVE_GAMMA = 0.75
# Decoded (not aligned) phones are uncertain: their open shapes are blended with the shape the
# loudness alone suggests (B soft / C / D loud, drive thresholds below), weight on the phone.
_DECODED_WEIGHT = 0.6
_SHAPE_C, _SHAPE_D = 0.35, 0.75
_CONTACT_DIP_DB = 6.0  # a decoded M/B/P/F/V needs a level dip this deep to count as a contact
_RISE_PER_TAU = 3.357  # 10-90 % rise time of two cascaded one-pole filters, in time constants


def viseme_of(phone: str) -> str:
    """Context-free Rhubarb shape of an ARPAbet phone.

    Args:
        phone: ARPAbet symbol, any case, stress digits allowed (``"AA1"``); ``"SIL"``, ``"sil"``,
            ``"<sil>"`` and noise fillers (``"+NSN+"``, ``"+SPN+"``) are silence.

    Returns:
        One of :data:`VISEMES` (first shape for diphthongs, short-duration shape for AH/ER).

    Raises:
        ValueError: for a symbol that is not an ARPAbet phone.
    """
    p = "".join(c for c in phone.strip().upper() if not c.isdigit())
    if p in PHONE_VISEMES:
        return PHONE_VISEMES[p]
    fillers = {"", "<SIL>", "<S>", "</S>", "SP", "SPN", "NSN"}
    if p in fillers or (p.startswith("+") and p.endswith("+")):
        return "X"
    raise ValueError(f"not an ARPAbet phone: {phone!r}")


@dataclass(frozen=True)
class Coarticulation:
    """Timing of the mouth motion, in seconds (independent of the frame rate).

    Transition times are 10-90 % rise times of the two-stage smoothing filter.

    Attributes:
        attack_s: opening (jaw/open rising), 0.05.
        release_s: relaxing/closing toward a non-contact shape or rest, 0.10.
        contact_s: forming a lip contact (M/B/P closure, F/V lip-to-teeth), 0.035.
        contact_release_s: releasing press/teeth, 0.03.
        spread_s: rounding/spreading changes, 0.08.
        anticipation_s: shapes (and speech onsets) start this much before their sound, 0.05.
        occlusion_s: (min, max) lip closure before a B/P release, Rhubarb-style half of the
            previous phone clamped to this range, (0.02, 0.06).
        min_phone_s: *decoded* phone segments shorter than this are absorbed by their longer
            neighbour (aligned or caller-given phones are kept), 0.035; M/B/P/F/V are kept.
        pause_s: a silence at least this long relaxes the lips to a closed rest, 0.3 (real speakers close
            their lips in pauses whatever their face's rest looks like in a photo).
        rest_close_s: how long the lips take to come together in such a pause, 0.15; they part again
            ``anticipation_s`` before the next sound, in ``contact_release_s``.
        rest_close: how far they come together there, the ``close`` target in [0, 1] (1 = lips meet; less
            leaves that share of the photo's own lip gap).
        speech_close: the ``close`` target while talking and in silences shorter than ``pause_s``, 1.0: the
            photo's own lip gap (parted lips, a smile with teeth) is not how its person's mouth rests while they
            speak, so the mouth opens from closed lips by jaw/open alone.
        acoustic_weight: share of the opening drive that comes from the acoustic opening model
            (:mod:`studio.engine.audio.opening`, the lip gap the spectrum predicts), the rest from the loudness;
            0.5. full_open_gap: the predicted lip gap that counts as fully open (drive 1), 0.15.
        open_gain: jaw and open targets are multiplied by this (then clipped to 1), 1.1: with the lips closed as
            the speaking rest, the drive alone opened the mouth less far than real speakers do.

    ``speech_close``, ``acoustic_weight``, ``full_open_gap`` and ``open_gain`` were fitted with ``benchmarks/articulation.py
    --leave-one-out`` on the nine in-sync sample videos (eight GRID clips and voxceleb2_00086; each rendered
    with an opening model fitted on the other eight), pooled lip-gap r / gap err/static / closure recall / open
    range with the final interior and model: weight 0, speech_close 0 (the loudness drive alone) 0.476 / 0.702 /
    0.799 / 0.927; weight 0, speech_close 1: 0.519 / 0.669 / 0.854 / 0.733; weight 0.5, speech_close 0: 0.494 /
    0.698 / 0.768 / 0.954; weight 0.5, speech_close 1 (the defaults): 0.546 / 0.631 / 0.818 / 0.768.
    full_open_gap 0.12 / 0.15 (weight 0.5): r 0.538 / 0.546, range 0.786 / 0.768. Weight 0.75 reaches r 0.557
    but the opening of clean studio speech then follows its loudness less (r with the RMS 0.31-0.49 on the
    radio, Japanese and German samples, against 0.49-0.60 with 0.5). open_gain 1 / 1.1 / 1.2 / 1.4 (with the
    defaults above): r 0.546 / 0.548 / 0.550 / 0.554, err 0.631 / 0.633 / 0.648 / 0.709, recall 0.818 / 0.809 /
    0.787 / 0.780, range 0.768 / 0.846 / 0.962 / 1.138.
    """

    attack_s: float = 0.05
    release_s: float = 0.10
    contact_s: float = 0.035
    contact_release_s: float = 0.03
    spread_s: float = 0.08
    anticipation_s: float = 0.05
    occlusion_s: tuple[float, float] = (0.02, 0.06)
    min_phone_s: float = 0.035
    pause_s: float = 0.3
    rest_close_s: float = 0.15
    rest_close: float = 1.0
    speech_close: float = 1.0
    acoustic_weight: float = 0.5
    full_open_gap: float = 0.15
    open_gain: float = 1.1

    def __post_init__(self) -> None:
        values = [self.attack_s, self.release_s, self.contact_s, self.contact_release_s,
                  self.spread_s, self.anticipation_s, self.min_phone_s, self.pause_s, self.rest_close_s,
                  *self.occlusion_s]
        if not all(math.isfinite(v) and 0.0 <= v <= 2.0 for v in values):
            raise ConfigError(f"coarticulation times must be in [0, 2] s, got {self}")
        if not (math.isfinite(self.rest_close) and 0.0 <= self.rest_close <= 1.0):
            raise ConfigError(f"rest_close is a fraction in [0, 1], got {self.rest_close}")
        if not (math.isfinite(self.speech_close) and 0.0 <= self.speech_close <= 1.0):
            raise ConfigError(f"speech_close is a fraction in [0, 1], got {self.speech_close}")
        if not (math.isfinite(self.acoustic_weight) and 0.0 <= self.acoustic_weight <= 1.0):
            raise ConfigError(f"acoustic_weight is a fraction in [0, 1], got {self.acoustic_weight}")
        if not (math.isfinite(self.open_gain) and 0.5 <= self.open_gain <= 2.0):
            raise ConfigError(f"open_gain must be in [0.5, 2], got {self.open_gain}")
        if not (math.isfinite(self.full_open_gap) and 0.02 <= self.full_open_gap <= 1.0):
            raise ConfigError(f"full_open_gap is a lip gap in [0.02, 1], got {self.full_open_gap}")
        if self.occlusion_s[0] > self.occlusion_s[1]:
            raise ConfigError(f"occlusion_s must be (min, max), got {self.occlusion_s}")


@dataclass(frozen=True)
class MouthTrack:
    """Per-frame mouth controls for one speech clip.

    Frame k covers audio ``[k / fps, (k + 1) / fps)``. All arrays are read-only, shape (T,),
    float32.

    Attributes:
        fps: frames per second (> 0).
        jaw: [0, 1] jaw drop, 1 = widest natural speech opening.
        open: [0, 1] inner-lip aperture, 0 = lips touching.
        spread: [-1, 1] lip corners, -1 rounded/puckered (OO, W), +1 spread (EE).
        press: [0, 1] lips pressed together (M/B/P closure).
        teeth: [0, 1] lower lip tucked under the upper teeth (F/V).
        close: [0, 1] lips brought together at rest (``Coarticulation.speech_close`` while talking,
            ``rest_close`` in pauses of at least ``pause_s``; both 1 by default), whatever the photo's own rest:
            1 closes a photo's parted lips without pressing them, and jaw/open open them from there.
        energy: [0, 1] loudness: per-frame RMS in dB between the clip's speech gate (0, also
            every non-speech frame) and its speech level (1, 95th percentile of speech).
        visemes: (T,) dominant Rhubarb shape per frame, one of :data:`VISEMES`.
        phones: ``(phone, start_s, end_s)`` segments (ARPAbet or ``"SIL"``) from alignment or
            phone decoding, contiguous over the audio; empty when phones were not used.
        aligned_fraction: with a transcript, the share (0..1) of the audio whose chunks the transcript could be
            aligned to (the rest was phone-decoded: a low share means the transcript does not match the
            speech); None without a transcript.
    """

    fps: float
    jaw: np.ndarray
    open: np.ndarray
    spread: np.ndarray
    press: np.ndarray
    teeth: np.ndarray
    close: np.ndarray
    energy: np.ndarray
    visemes: tuple[str, ...]
    phones: tuple[tuple[str, float, float], ...] = field(default=())
    aligned_fraction: float | None = None

    def __post_init__(self) -> None:
        n = len(self.visemes)
        for name in (*CONTROLS, "energy"):
            arr = np.asarray(getattr(self, name), dtype=np.float32)
            if arr.shape != (n,):
                raise ValueError(f"MouthTrack.{name} has shape {arr.shape}, expected ({n},)")
            arr = arr.copy()
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return len(self.visemes)

    def adjusted(self, *, offset_ms: float = 0.0, intensity: float = 1.0) -> "MouthTrack":
        """The track shifted in time and scaled, for a user who wants the mouth earlier/later or livelier.

        Args:
            offset_ms: milliseconds the mouth moves later (negative: earlier); frame k takes the controls of
                time (k + 0.5)/fps - offset (linear interpolation; the first/last frame's values beyond the
                ends), and each frame's viseme label from the nearest frame.
            intensity: factor on jaw, open and spread (>= 0); press, teeth and close are kept, so lip contacts
                and pauses still close.

        Returns:
            A new :class:`MouthTrack` (this one when both are neutral).
        """
        if offset_ms == 0.0 and intensity == 1.0:
            return self
        n = self.n_frames
        shift_frames = offset_ms / 1000.0 * self.fps
        src = np.arange(n) - shift_frames  # fractional source frame of each frame
        k = np.arange(n)

        def shift(a: np.ndarray) -> np.ndarray:
            return np.interp(src, k, a) if n else np.asarray(a, np.float64)

        nearest = np.clip(np.floor(src + 0.5), 0, max(n - 1, 0)).astype(np.int64)
        vis = [self.visemes[int(j)] for j in nearest] if n else []
        jaw, opn = shift(self.jaw) * intensity, shift(self.open) * intensity
        press, teeth = shift(self.press), shift(self.teeth)
        # interpolation would blend away the one frame a closure or an F/V contact is guaranteed: move those
        # frames whole to the frame their time falls in, with the contact's own opening
        for j in np.flatnonzero((self.press >= 0.99) | (self.teeth >= 0.85)):
            t = int(np.floor(j + shift_frames + 0.5))
            if 0 <= t < n:
                press[t], teeth[t] = max(press[t], self.press[j]), max(teeth[t], self.teeth[j])
                opn[t], jaw[t] = min(opn[t], self.open[j]), min(jaw[t], self.jaw[j])
                vis[t] = self.visemes[j]
        return MouthTrack(fps=self.fps, jaw=np.clip(jaw, 0, 1), open=np.clip(opn, 0, 1),
                          spread=np.clip(shift(self.spread) * intensity, -1, 1), press=press, teeth=teeth,
                          close=shift(self.close), energy=self.energy, visemes=tuple(vis),
                          phones=self.phones,  # the phones are the sound's: they keep their times
                          aligned_fraction=self.aligned_fraction)

    def controls(self) -> np.ndarray:
        """(T, 6) float32 array of jaw, open, spread, press, teeth, close (see :data:`CONTROLS`)."""
        return np.stack([getattr(self, c) for c in CONTROLS], axis=1)


# --------------------------------------------------------------------------------------------
# input


def _to_float(samples: np.ndarray) -> np.ndarray:
    a = np.asarray(samples)
    if a.ndim != 1:
        raise AudioError(
            f"speech samples must be 1-D (mono), got shape {a.shape}",
            "mix the channels down to mono first",
        )
    if a.size == 0:
        raise AudioError("the speech audio is empty", "choose a file that contains speech")
    kind = a.dtype.kind
    if kind == "i":
        x = a.astype(np.float32) / float(2 ** (8 * a.dtype.itemsize - 1))
    elif kind == "u":
        half = float(2 ** (8 * a.dtype.itemsize - 1))
        x = (a.astype(np.float32) - half) / half
    elif kind == "f":
        x = a.astype(np.float32)
    else:
        raise AudioError(f"unsupported sample type {a.dtype}", "use float or integer PCM")
    if not np.isfinite(x).all():
        raise AudioError("the speech audio contains NaN or infinite samples", "re-export it")
    return x


def _resample_16k(x: np.ndarray, sample_rate: int) -> np.ndarray:
    if sample_rate == _ph.SAMPLE_RATE:
        return x
    import soxr

    return soxr.resample(x, sample_rate, _ph.SAMPLE_RATE, quality="HQ").astype(np.float32)


#: samples processed at a time by the whole-clip filters (10 s at 16 kHz): their float64 temporaries stay small
_CHUNK = 160_000


def _highpass(x: np.ndarray) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    sos = butter(2, 60.0, "highpass", fs=_ph.SAMPLE_RATE, output="sos")
    out = np.empty(len(x), np.float32)
    zi = np.zeros((sos.shape[0], 2))
    for i in range(0, len(x), _CHUNK):  # the filter state carries over: identical to one call
        out[i:i + _CHUNK], zi = sosfilt(sos, x[i:i + _CHUNK], zi=zi)
    return out


def _pcm16_for_decoder(x: np.ndarray) -> np.ndarray:
    """Peak-normalised int16 with +-1 LSB deterministic dither (no all-zero frames)."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    gain = 0.9 / peak if peak > 1e-6 else 1.0
    gain = min(gain, 1000.0)
    out = np.empty(len(x), np.int16)
    rng = np.random.default_rng(0)
    for i in range(0, len(x), _CHUNK):  # chunked: the same dither stream as one call, bounded memory
        y = x[i:i + _CHUNK] * np.float32(32767.0 * gain)
        y += rng.integers(-1, 2, size=y.shape).astype(np.float32)
        out[i:i + _CHUNK] = np.clip(np.rint(y), -32768, 32767)
    return out


# --------------------------------------------------------------------------------------------
# loudness


@dataclass(frozen=True)
class _Levels:
    db: np.ndarray  # (S,) dBFS per 10 ms step (20 ms window centred on the step)
    gate_db: float
    speech_db: float
    mask: np.ndarray  # (S,) bool speech
    energy: np.ndarray  # (S,) float in [0, 1]: gate .. speech level
    loud: np.ndarray  # (S,) float in [0, 1]: speech level - _OPEN_RANGE_DB .. speech level


def _step_levels_db(x16: np.ndarray, n_steps: int) -> np.ndarray:
    """dBFS per 10 ms step i, RMS over samples [160 i - 80, 160 i + 240) (20 ms, centred)."""
    block = _ph.SAMPLE_RATE // 200  # 5 ms = 80 samples
    n_blocks = 2 * n_steps + 3
    m = min(len(x16), (n_blocks - 1) * block)
    # energy of each 5 ms block (block 0 is silence before the audio), in float64, a chunk of blocks at a time
    e = np.zeros(n_blocks, np.float64)
    per = _CHUNK // block
    for b0 in range(0, (m + block - 1) // block, per):
        seg = np.zeros(per * block, np.float64)
        part = x16[b0 * block : min((b0 + per) * block, m)]
        seg[: len(part)] = part
        n = (len(part) + block - 1) // block
        e[1 + b0 : 1 + b0 + n] = (seg[: n * block].reshape(n, block) ** 2).sum(1)
    n2 = 2 * n_steps
    win = e[0:n2:2] + e[1 : n2 + 1 : 2] + e[2 : n2 + 2 : 2] + e[3 : n2 + 3 : 2]
    rms = np.sqrt(win / (4 * block))
    return 20.0 * np.log10(np.maximum(rms, 1e-6))


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return edges[::2], edges[1::2]


def _levels(x16: np.ndarray, n_steps: int) -> _Levels:
    db = _step_levels_db(x16, n_steps)
    n_audio = min(n_steps, int(math.ceil(len(x16) / (_ph.SAMPLE_RATE * _STEP_S))))
    audio = db[:n_audio]
    active = audio[audio > _ABS_GATE_DB]
    zeros = np.zeros(n_steps)
    empty = _Levels(db, 0.0, 0.0, np.zeros(n_steps, bool), zeros, zeros)
    if active.size < 3:
        return empty
    p95 = float(np.percentile(active, 95))
    p5 = float(np.percentile(active, 5))
    if p95 - p5 < 6.0 and p95 < -45.0:  # quiet and steady: hum or hiss, not speech
        return empty
    floor = min(p5, p95 - _MAX_FLOOR_BELOW_SPEECH_DB)
    gate = max(_ABS_GATE_DB, floor + _GATE_ABOVE_FLOOR_DB)
    loud = audio[audio > gate + _START_ABOVE_GATE_DB]
    speech_db = float(np.percentile(loud, 95)) if loud.size else p95
    speech_db = max(speech_db, gate + 10.0)

    # hysteresis VAD: runs above the gate that contain a step above gate + 4 dB
    above = db > gate
    above[n_audio:] = False
    starts, ends = _runs(above)
    mask = np.zeros(n_steps, bool)
    strong = db > gate + _START_ABOVE_GATE_DB
    min_island = int(round(_MIN_ISLAND_S / _STEP_S))
    for a, b in zip(starts, ends):
        if b - a >= min_island and strong[a:b].any():
            mask[a:b] = True
    # fill short gaps (stop closures) inside speech
    gaps_a, gaps_b = _runs(~mask)
    max_gap = int(round(_MAX_GAP_S / _STEP_S))
    for a, b in zip(gaps_a, gaps_b):
        if a > 0 and b < n_steps and b - a <= max_gap:
            mask[a:b] = True
    energy = np.clip((db - gate) / (speech_db - gate), 0.0, 1.0) * mask
    loud = np.clip((db - speech_db) / _OPEN_RANGE_DB + 1.0, 0.0, 1.0) * mask
    loud = (_OPEN_FLOOR * energy + (1.0 - _OPEN_FLOOR) * loud) ** _DRIVE_GAMMA
    return _Levels(db, gate, speech_db, mask, energy, loud)


def _frame_bounds(n_frames: int, fps: float, rate: float) -> np.ndarray:
    """Sample (or step) index of each frame boundary k / fps, k = 0..n_frames (float64)."""
    k = np.arange(n_frames + 1, dtype=np.float64)
    return k * rate / fps


def _frame_energy(x16: np.ndarray, lv: _Levels, n_frames: int, fps: float) -> np.ndarray:
    if lv.speech_db <= lv.gate_db or n_frames == 0:
        return np.zeros(n_frames, np.float32)
    bounds = np.clip(np.rint(_frame_bounds(n_frames, fps, _ph.SAMPLE_RATE)), 0, len(x16))
    bounds = bounds.astype(np.int64)
    csum = np.concatenate(([0.0], np.cumsum(x16.astype(np.float64) ** 2)))
    n = np.diff(bounds)
    sums = csum[bounds[1:]] - csum[bounds[:-1]]
    rms = np.sqrt(np.where(n > 0, sums / np.maximum(n, 1), 0.0))
    db = 20.0 * np.log10(np.maximum(rms, 1e-6))
    e = np.clip((db - lv.gate_db) / (lv.speech_db - lv.gate_db), 0.0, 1.0)
    # zero where the frame holds no speech step
    speech_share = _box_mean(lv.mask.astype(np.float64), n_frames, fps)
    e[(speech_share <= 0.0) | (n == 0)] = 0.0
    return e.astype(np.float32)


# --------------------------------------------------------------------------------------------
# phones -> shapes


def _kind(phone: str) -> str:
    if phone == "SIL":
        return "sil"
    if phone in _VOWELS or phone in _DIPHTHONGS or phone in ("AH", "ER"):
        return "vowel"
    return "cons"


def _absorb_short(
    segs: list[tuple[str, float, float]], min_s: float
) -> list[tuple[str, float, float]]:
    """Give decoded segments shorter than ``min_s`` (except M/B/P/F/V) to their neighbours.

    A lone short segment goes to the longer neighbour; a run of short segments is split
    between the two neighbours at its middle. Linear time.
    """
    segs = [list(s) for s in segs]
    n = len(segs)
    keep = [s[2] - s[1] >= min_s - 1e-9 or s[0] in _CONTACT_PHONES for s in segs]
    out: list[list] = []
    i = 0
    while i < n:
        if keep[i]:
            out.append(segs[i])
            i += 1
            continue
        j = i
        while j < n and not keep[j]:
            j += 1
        t0, t1 = segs[i][1], segs[j - 1][2]
        left = out[-1] if out else None
        right = segs[j] if j < n else None
        if left is None and right is None:
            out.extend(segs[i:j])
        elif right is None:
            left[2] = t1
        elif left is None:
            right[1] = t0
        elif j - i == 1:
            if left[2] - left[1] >= right[2] - right[1]:
                left[2] = t1
            else:
                right[1] = t0
        else:
            left[2] = right[1] = 0.5 * (t0 + t1)
        i = j
    return [(p, a, b) for p, a, b in out]


# a decoded contact without the level dip it must cause becomes a phone with a free lip shape
_NO_CONTACT = {"P": "HH", "B": "HH", "M": "N", "F": "TH", "V": "DH"}


def _check_contacts(
    segs: list[tuple[str, float, float]], db: np.ndarray
) -> list[tuple[str, float, float]]:
    """Demote decoded M/B/P/F/V that show no level dip (lip closure / frication) vs. neighbours."""
    out = []
    n = len(db)

    def steps(t0: float, t1: float) -> slice:
        i0 = min(max(int(math.floor(t0 / _STEP_S)), 0), n - 1)
        return slice(i0, min(max(int(math.ceil(t1 / _STEP_S)), i0 + 1), n))

    for ph, a, b in segs:
        if ph in _NO_CONTACT:
            inner = steps(a - 0.03, a + 0.5 * (b - a)) if ph in ("P", "B") else steps(a, b)
            around = steps(a - 0.15, b + 0.15)
            if float(db[around].max() - db[inner].min()) < _CONTACT_DIP_DB:
                ph = _NO_CONTACT[ph]
        out.append((ph, a, b))
    return out


def _vowel_shapes(ph: str, dur: float) -> tuple[str, str | None]:
    """(first shape, second shape or None) of a vowel, with Rhubarb's duration rules."""
    if ph == "AH":
        return ("D" if dur >= 0.20 else "C"), None
    if ph == "ER":
        return ("E" if dur >= 0.07 else "B"), None
    if ph == "AY":
        return ("D" if dur >= 0.20 else "C"), "B"
    if ph == "AW":
        return ("D" if dur >= 0.30 else "C"), "E"
    if ph in _DIPHTHONGS:
        return _DIPHTHONGS[ph]
    return _VOWELS[ph], None


@dataclass
class _Plan:
    labels: list[tuple[str, float, float]]  # shape intervals before anticipation
    closures: list[tuple[float, float, float, float]]  # (lip closed from, to, phone from, to)


def _plan_shapes(segs: Sequence[tuple[str, float, float]], co: Coarticulation) -> _Plan:
    n = len(segs)
    first = [""] * n
    last = [""] * n
    for i, (ph, a, b) in enumerate(segs):
        if _kind(ph) == "vowel":
            s1, s2 = _vowel_shapes(ph, b - a)
            first[i], last[i] = s1, s2 or s1

    def neighbour_vowel(i: int, step: int) -> str:
        """Shape of the nearest vowel after (step 1) / before (-1) segment i, within 150 ms."""
        j = i + step
        while 0 <= j < n and segs[j][0] != "SIL":
            gap = segs[j][1] - segs[i][2] if step > 0 else segs[i][1] - segs[j][2]
            if gap > 0.15:
                break
            if first[j]:
                return first[j] if step > 0 else last[j]
            if segs[j][0] in _CONTACT_PHONES:
                break
            j += step
        return ""

    labels: list[tuple[str, float, float]] = []
    closures: list[tuple[float, float, float, float]] = []
    for i, (ph, a, b) in enumerate(segs):
        dur = b - a
        kind = _kind(ph)
        if kind == "sil":
            labels.append(("X", a, b))
        elif kind == "vowel":
            s1, s2 = _vowel_shapes(ph, dur)
            if s2 is None:
                labels.append((s1, a, b))
            else:
                mid = a + 0.6 * dur
                labels += [(s1, a, mid), (s2, mid, b)]
        else:
            default, allowed = _CONSONANTS.get(ph, ("B", frozenset()))
            nxt, prv = neighbour_vowel(i, +1), neighbour_vowel(i, -1)
            if ph in ("P", "B"):
                prev_dur = segs[i - 1][2] - segs[i - 1][1] if i > 0 else co.occlusion_s[1]
                occl = float(np.clip(prev_dur / 2, *co.occlusion_s))
                closures.append((a - occl, a + 0.5 * dur, a, b))
                labels.append((nxt or "B", a, b))  # burst: already moving to the next shape
            elif ph == "M":
                prev_dur = segs[i - 1][2] - segs[i - 1][1] if i > 0 else co.occlusion_s[0]
                occl = float(np.clip(prev_dur / 2, 0.0, co.occlusion_s[0]))
                closures.append((a - occl, b, a, b))
                labels.append(("A", a, b))
            elif ph == "L" and dur >= 0.2:
                labels.append(("H", a, b))
            else:
                shape = default
                if nxt in allowed:
                    shape = nxt
                elif prv in allowed and ph not in ("F", "V"):
                    shape = prv
                labels.append((shape, a, b))
    return _Plan(labels, closures)


def _energy_shape(e: np.ndarray) -> np.ndarray:
    """Shape index for speech without a phone: B (soft), C, D (loud)."""
    idx = np.full(e.shape, VISEMES.index("B"), np.int8)
    idx[e >= _SHAPE_C] = VISEMES.index("C")
    idx[e >= _SHAPE_D] = VISEMES.index("D")
    return idx


def _rasterize(intervals: Sequence[tuple[str, float, float]], n_steps: int) -> np.ndarray:
    """Shape index per 10 ms step (by step centre), X where no interval covers it."""
    lab = np.zeros(n_steps, np.int8)
    centres = (np.arange(n_steps) + 0.5) * _STEP_S
    for shape, a, b in intervals:
        i0 = int(np.searchsorted(centres, a))
        i1 = int(np.searchsorted(centres, b))
        if i1 > i0:
            lab[i0:i1] = VISEMES.index(shape)
    return lab


# --------------------------------------------------------------------------------------------
# smoothing and frame sampling


def _alpha(rise_s: float) -> float:
    tau = max(rise_s, 1e-4) / _RISE_PER_TAU
    return 1.0 - math.exp(-_STEP_S / tau)


def _smooth(target: np.ndarray, up: np.ndarray | float, down: np.ndarray | float) -> np.ndarray:
    """Two cascaded one-pole filters from 0; per-step coefficient ``up`` when rising, ``down`` falling."""
    n = len(target)
    up_a = np.broadcast_to(np.asarray(up, np.float64), (n,)).tolist()
    dn_a = np.broadcast_to(np.asarray(down, np.float64), (n,)).tolist()
    x = target.tolist()
    out = [0.0] * n
    s1 = s2 = 0.0
    for i in range(n):
        t = x[i]
        s1 += (up_a[i] if t > s1 else dn_a[i]) * (t - s1)
        s2 += (up_a[i] if s1 > s2 else dn_a[i]) * (s1 - s2)
        out[i] = s2
    return np.asarray(out, np.float64)


def _box_mean(curve: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """Exact mean of a 10 ms piecewise-constant curve over each frame interval [k, k+1) / fps."""
    edges = _frame_bounds(n_frames, fps, 1.0 / _STEP_S)  # in steps
    c = np.concatenate(([0.0], np.cumsum(curve, dtype=np.float64)))
    pos = np.arange(len(c), dtype=np.float64)
    integ = np.interp(edges, pos, c)
    width = np.diff(edges)
    return (np.diff(integ) / np.where(width > 0, width, 1.0)).astype(np.float64)


def _dominant(lab: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    shares = np.stack(
        [_box_mean((lab == v).astype(np.float64), n_frames, fps) for v in range(len(VISEMES))]
    )
    return np.argmax(shares, axis=0)


# --------------------------------------------------------------------------------------------
# main entry


def _check_fps(fps: float) -> float:
    try:
        fps = float(fps)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"fps must be a number, got {fps!r}", "use e.g. 25 or 30") from exc
    if not math.isfinite(fps) or fps <= 0:
        raise ConfigError(f"fps must be > 0, got {fps}", "use e.g. 25, 29.97 or 30")
    return fps


def analyze_speech(
    samples: np.ndarray,
    sample_rate: int,
    *,
    fps: float,
    n_frames: int | None = None,
    transcript: str | None = None,
    cancel: CancelToken | None = None,
    phones: Sequence[tuple[str, float, float]] | None = None,
    use_phones: bool = True,
    coarticulation: Coarticulation | None = None,
) -> MouthTrack:
    """Per-frame mouth controls (jaw/open/spread/press/teeth/close), loudness and visemes for speech.

    Args:
        samples: (N,) mono speech; float in [-1, 1], or integer PCM (int16/int32 full scale,
            unsigned 8-bit centred on 128).
        sample_rate: Hz, > 0 (resampled to 16 kHz internally with soxr).
        fps: video frame rate (> 0, any value: 25, 29.97, 60 ...). Frame k covers audio
            ``[k / fps, (k + 1) / fps)``.
        n_frames: number of frames T; default ``ceil(duration * fps - 1e-6)``. Frames past the
            end of the audio are silence (the mouth relaxes to rest).
        transcript: what is said (free text). Given: forced alignment with the CMU dictionary
            (unknown words get a letter-to-sound guess; unalignable parts fall back to phone
            decoding). None: PocketSphinx phone decoding.
        cancel: polled between 30 s decoding chunks and processing stages.
        phones: optional ``(ARPAbet phone, start_s, end_s)`` segments to use instead of
            recognition (e.g. from an external aligner); ``transcript`` is then ignored.
        use_phones: False skips phones entirely (energy-driven B/C/D shapes; fast, for
            non-speech or as a fallback).
        coarticulation: motion timing (default :class:`Coarticulation`).

    Returns:
        :class:`MouthTrack` with T frames.

    Raises:
        AudioError: empty, non-1-D, NaN/inf or non-numeric samples, or sample_rate <= 0.
        ConfigError: fps not a finite number > 0, or n_frames < 0.
        ValueError: a symbol in ``phones`` is not an ARPAbet phone.
        Cancelled: if ``cancel`` fires.
        ModelError: if the PocketSphinx model files are missing (phones needed).

    Speed (one CPU core): ~20x real time with phone decoding or alignment; >100x with
    ``use_phones=False``.
    """
    fps = _check_fps(fps)
    x = _to_float(samples)
    if not sample_rate or sample_rate <= 0:
        raise AudioError(f"invalid sample rate {sample_rate}", "the file header may be corrupt")
    duration = len(x) / float(sample_rate)
    if n_frames is None:
        n_frames = max(0, int(math.ceil(duration * fps - 1e-6)))
    n_frames = int(n_frames)
    if n_frames < 0:
        raise ConfigError(f"n_frames must be >= 0, got {n_frames}")
    co = coarticulation or Coarticulation()
    if cancel is not None:
        cancel.raise_if_cancelled()

    x16 = _highpass(_resample_16k(x, int(sample_rate)))
    span = max(duration, n_frames / fps)
    lead = int(round(co.anticipation_s / _STEP_S))
    tail = int(round((co.release_s * 2 + co.anticipation_s) / _STEP_S)) + 2
    n_steps = int(math.ceil(span / _STEP_S)) + tail
    lv = _levels(x16, n_steps)

    # ---- phones
    segs: list[tuple[str, float, float]] = []
    decoded = False
    aligned: float | None = None
    if phones is not None:
        segs = [(_norm_phone(p), float(a), float(b)) for p, a, b in phones if b > a]
        segs.sort(key=lambda s: s[1])
    elif use_phones and lv.mask.any():
        pcm = _pcm16_for_decoder(x16)
        n_ps = int(math.ceil(len(pcm) / (_ph.SAMPLE_RATE * _STEP_S)))
        chunks = _ph.plan_chunks(lv.db[:n_ps], lv.mask[:n_ps])
        if transcript is not None and transcript.strip():
            segs, aligned = _ph.align_phones(pcm, transcript, chunks, lv.mask[:n_ps], cancel=cancel)
        else:
            segs = _ph.decode_phones(pcm, chunks, cancel=cancel)
            decoded = True
    if cancel is not None:
        cancel.raise_if_cancelled()
    used = _check_contacts(_absorb_short(segs, co.min_phone_s), lv.db) if decoded else segs

    # ---- shapes per 10 ms step
    X = 0
    plan = _plan_shapes(used, co) if used else _Plan([], [])
    lab = _rasterize(plan.labels, n_steps)
    mask = lv.mask
    lab[~mask] = X
    no_phone = mask & (lab == X)
    drive = _opening_drive(x16, lv, n_steps, co)
    lab[no_phone] = _energy_shape(drive)[no_phone]
    # anticipation: every shape change and speech onset moves `lead` earlier; speech offsets
    # stay where the sound ends (the mouth closes after it)
    ant = np.empty_like(lab)
    ant[: n_steps - lead] = lab[lead:]
    ant[n_steps - lead :] = X
    hold = (ant == X) & (lab != X)
    ant[hold] = lab[hold]
    loud = np.empty_like(drive)  # opening drive, anticipated like the shapes
    loud[: n_steps - lead] = drive[lead:]
    loud[n_steps - lead :] = 0.0
    loud[hold] = drive[hold]
    # steps whose shape comes from the loudness alone (no phone): anticipated like the shapes
    loud_only = np.zeros(n_steps, bool)
    loud_only[: n_steps - lead] = no_phone[lead:]
    loud_only[hold] = no_phone[hold]

    # lip closures (B/P occlusion, M), kept only when their phone touches speech
    centres = (np.arange(n_steps) + 0.5) * _STEP_S
    closures: list[tuple[float, float]] = []
    A = VISEMES.index("A")
    for c0, c1, p0, p1 in plan.closures:
        i0, i1 = np.searchsorted(centres, [p0, p1])
        if not mask[i0 : max(i1, i0 + 1)].any():
            continue
        j0, j1 = np.searchsorted(centres, [c0, c1])
        if j1 <= j0:  # shorter than a step: still close for one step
            j1 = min(j0 + 1, n_steps)
        ant[j0:j1] = A
        closures.append((j0 * _STEP_S, j1 * _STEP_S))
    # F/V contacts (after anticipation) for the per-frame guarantee
    G = VISEMES.index("G")
    g_starts, g_ends = _runs(ant == G)
    teeth_contacts = [(a * _STEP_S, b * _STEP_S) for a, b in zip(g_starts, g_ends)]

    # ---- targets
    table = np.asarray([VISEME_TARGETS[v] for v in VISEMES], np.float64)
    tgt = table[ant]  # (S, 5)
    # loudness tells how wide the mouth opens, nothing about the lips' spreading or rounding: shapes
    # chosen by the loudness alone keep the lips' width neutral
    tgt[loud_only & (ant != A) & (ant != G), 2] = 0.0
    if decoded and _DECODED_WEIGHT < 1.0:
        free = (ant != X) & (ant != A) & (ant != G)
        gen = table[_energy_shape(loud)]
        gen[:, 2] = 0.0
        tgt[free] = _DECODED_WEIGHT * tgt[free] + (1.0 - _DECODED_WEIGHT) * gen[free]
    scale = np.where(ant == X, 0.0, loud) * co.open_gain
    tgt[:, 0] *= scale
    tgt[:, 1] *= scale
    contact = (ant == A) | (ant == G)
    a_att, a_rel, a_con = _alpha(co.attack_s), _alpha(co.release_s), _alpha(co.contact_s)
    a_crel, a_spr = _alpha(co.contact_release_s), _alpha(co.spread_s)
    close_a = np.where(contact, a_con, a_rel)
    curves = [
        _smooth(tgt[:, 0], a_att, close_a),  # jaw
        _smooth(tgt[:, 1], a_att, close_a),  # open
        _smooth(tgt[:, 2], a_spr, a_spr),  # spread
        _smooth(tgt[:, 3], a_con, a_crel),  # press
        _smooth(tgt[:, 4], a_con, a_crel),  # teeth
    ]
    # the lips' own rest: ``speech_close`` while talking (and in short silences), ``rest_close`` from rest_close_s
    # into a long silence until ``lead`` steps before the next sound (the shapes' anticipation)
    rest = np.full(n_steps, co.speech_close)
    p_starts, p_ends = _runs(~mask)
    for a, b in zip(p_starts, p_ends):
        if (b - a) * _STEP_S >= co.pause_s:
            rest[a: max(a, b - lead - 1) if b < n_steps else b] = co.rest_close
    # a clip that starts in a pause starts from the photo's own mouth and closes over rest_close_s: on the GRID
    # clips that fits the real lips better (pooled mean |gap error| 0.0776) than starting closed (0.0787)
    curves.append(_smooth(rest, _alpha(co.rest_close_s), a_crel))
    if cancel is not None:
        cancel.raise_if_cancelled()

    # ---- frames
    jaw, opn, spread, press, teeth, close = (_box_mean(c, n_frames, fps) for c in curves)
    vis = _dominant(ant, n_frames, fps)
    edges = _frame_bounds(n_frames, fps, 1.0)

    def best_frame(t0: float, t1: float) -> int:
        k0 = max(0, int(math.floor(t0 * fps)))
        k1 = min(n_frames - 1, int(math.floor(t1 * fps)))
        if k1 < k0 or n_frames == 0:
            return -1
        ks = np.arange(k0, k1 + 1)
        ov = np.minimum(edges[ks + 1], t1) - np.maximum(edges[ks], t0)
        return int(ks[int(np.argmax(ov))])

    ta = VISEME_TARGETS["A"]
    for t0, t1 in closures:
        k = best_frame(t0, t1)
        if k >= 0:
            press[k] = 1.0
            opn[k] = 0.0
            jaw[k] = min(jaw[k], ta[0])
            teeth[k] = 0.0
            vis[k] = A
    tg = VISEME_TARGETS["G"]
    for t0, t1 in teeth_contacts:
        k = best_frame(t0, t1)
        if k >= 0 and vis[k] != A:
            teeth[k] = max(teeth[k], 0.85)
            opn[k] = min(opn[k], tg[1] + 0.05)
            vis[k] = G

    energy = _frame_energy(x16, lv, n_frames, fps)
    f32 = np.float32
    return MouthTrack(
        fps=fps,
        jaw=np.clip(jaw, 0, 1).astype(f32),
        open=np.clip(opn, 0, 1).astype(f32),
        spread=np.clip(spread, -1, 1).astype(f32),
        press=np.clip(press, 0, 1).astype(f32),
        teeth=np.clip(teeth, 0, 1).astype(f32),
        close=np.clip(close, 0, 1).astype(f32),
        energy=energy,
        visemes=tuple(VISEMES[int(v)] for v in vis),
        phones=tuple((p, round(a, 4), round(b, 4)) for p, a, b in segs),
        aligned_fraction=None if aligned is None else float(aligned),
    )


def _opening_features(x16: np.ndarray, lv: _Levels, n_steps: int) -> np.ndarray:
    """(n_steps, N_FEATURES) opening-model features: computed over the audio's own steps, the last one repeated
    past the audio's end (the frames that follow it are silence)."""
    n_audio = max(1, min(n_steps, int(math.ceil(len(x16) / (_ph.SAMPLE_RATE * _STEP_S)))))
    feats = _opening.step_features(x16, lv.loud[:n_audio])
    if n_audio < n_steps:
        feats = np.concatenate([feats, np.repeat(feats[-1:], n_steps - n_audio, axis=0)])
    return feats


def _opening_drive(x16: np.ndarray, lv: _Levels, n_steps: int, co: Coarticulation) -> np.ndarray:
    """(n_steps,) opening drive in [0, 1]: the acoustic model's lip gap over ``co.full_open_gap``, mixed
    ``co.acoustic_weight`` : 1 - weight with the loudness drive; 0 outside speech."""
    if co.acoustic_weight <= 0.0 or not lv.mask.any():
        return lv.loud
    gap = _opening.default_model().predict(_opening_features(x16, lv, n_steps))
    acoustic = np.clip(gap / co.full_open_gap, 0.0, 1.0) * lv.mask
    return co.acoustic_weight * acoustic + (1.0 - co.acoustic_weight) * lv.loud


def opening_inputs(samples: np.ndarray, sample_rate: int, *, fps: float, n_frames: int) -> np.ndarray:
    """The acoustic opening model's features (:func:`studio.engine.audio.opening.step_features`) averaged
    over each video frame, as :func:`analyze_speech` computes them: for fitting the model to real videos.

    Args:
        samples: (N,) mono speech (as :func:`analyze_speech` takes it). sample_rate: Hz. fps: video frame rate.
        n_frames: T frames (frame k covers ``[k / fps, (k + 1) / fps)``).

    Returns:
        (T, N_FEATURES) float64 (a linear model's prediction on it is the frame mean of its 10 ms predictions).

    Raises:
        AudioError, ConfigError: as :func:`analyze_speech`.
    """
    fps = _check_fps(fps)
    x = _to_float(samples)
    if not sample_rate or sample_rate <= 0:
        raise AudioError(f"invalid sample rate {sample_rate}", "the file header may be corrupt")
    x16 = _highpass(_resample_16k(x, int(sample_rate)))
    n_steps = int(math.ceil(max(len(x16) / _ph.SAMPLE_RATE, n_frames / fps) / _STEP_S)) + 1
    feats = _opening_features(x16, _levels(x16, n_steps), n_steps)
    return np.stack([_box_mean(feats[:, j], n_frames, fps) for j in range(feats.shape[1])], axis=1)


def _norm_phone(p: str) -> str:
    q = "".join(c for c in str(p).strip().upper() if not c.isdigit())
    if q in _ph.PHONES:
        return q
    if viseme_of(q) == "X":  # silence / noise symbols; raises ValueError for junk
        return "SIL"
    return q  # pragma: no cover
