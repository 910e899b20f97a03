"""ARPAbet phone segments from speech, with the CMU PocketSphinx models shipped in the wheel.

Two ways to get phones out of 16 kHz mono int16 PCM:

* :func:`decode_phones`: phone recognition ("allphone" search over the shipped phonetic trigram
  ``en-us-phone.lm.bin``). Needs no transcript; works best on English, gives an approximate
  phone string for other languages.
* :func:`align_phones`: forced alignment of a transcript (words looked up in the shipped CMU
  dictionary, out-of-vocabulary words guessed by :func:`guess_pronunciation`). Much more precise
  when the transcript is right; falls back to :func:`decode_phones` where alignment fails.

Both work chunk by chunk (chunks cut in pauses by :func:`plan_chunks`, at most ~30 s each) so
that memory stays bounded on long recordings and a :class:`~studio.core.events.CancelToken`
is polled between chunks. Everything runs offline from the files inside the installed
``pocketsphinx`` package (``pocketsphinx.get_model_path()``); PocketSphinx's logging is silenced
(``loglevel="FATAL"``).

Segments are ``(phone, start_s, end_s)`` tuples: phone in the 39-phone ARPAbet set of the CMU
dictionary (no stress digits) or ``"SIL"``; times in seconds from the start of the given PCM,
contiguous and covering it entirely.

Measured speed (one core of the dev box, 60 s English clip): phone decoding ~20x real time,
alignment (word pass + phone pass) ~20x real time.
"""

from __future__ import annotations

import logging
import math
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from studio.core.errors import ModelError
from studio.core.events import CancelToken

SAMPLE_RATE = 16000
"""Sample rate (Hz) of the PCM the decoders take."""

FRAME_S = 0.01
"""PocketSphinx analysis hop (100 frames/s)."""

log = logging.getLogger(__name__)
_FRAME_SAMPLES = 160
# PocketSphinx frame j analyses samples [160 j, 160 j + 410) (25.6 ms window), so its centre lies
# 12.8 ms after its nominal start j * 10 ms; the boundary between frames j-1 and j is best placed
# half-way between their centres, i.e. 7.8 ms after j * 10 ms.
_FRAME_OFFSET_S = 0.0078

PHONES: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH",
    "UH", "UW", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
"""The 39 ARPAbet phones of the CMU dictionary / en-us acoustic model ("SIL" is silence)."""

Segment = tuple[str, float, float]

# Decoder settings. Allphone: CMU's recommended wide beams for phoneme recognition, with language
# weight 1 instead of the suggested 2: on our English samples it agrees better with forced
# alignment (frame-level visemes 65 % vs 63 % on a 60 s clip, 66 % vs 47 % on GRID) and leans
# less on English phonotactics for other languages. Alignment: default beams (wider ones made
# the phone pass fail more often) and no lattice best-path rescoring, which can hand the phone
# pass word durations shorter than their phones' HMMs ("impossible duration") and make it fail.
_ALLPHONE_KW = {"beam": 1e-20, "pbeam": 1e-20, "lw": 1.0}
_ALIGN_KW = {"bestpath": False}


# --------------------------------------------------------------------------------------------
# models


@dataclass(frozen=True)
class ModelPaths:
    """Files of the en-us model shipped inside the ``pocketsphinx`` wheel.

    Attributes:
        hmm: acoustic model directory; dictionary: CMU pronunciation dictionary;
        phone_lm: phonetic trigram for allphone decoding.
    """

    hmm: str
    dictionary: str
    phone_lm: str


@lru_cache(maxsize=1)
def model_paths() -> ModelPaths:
    """Locate the shipped en-us model (offline, from the installed package).

    Returns:
        :class:`ModelPaths`.

    Raises:
        ModelError: if ``pocketsphinx`` is not installed or a model file is missing.
    """
    try:
        import pocketsphinx
    except ImportError as exc:  # pragma: no cover - pinned dependency
        raise ModelError("pocketsphinx is not installed", "reinstall the studio") from exc
    base = pocketsphinx.get_model_path()
    paths = ModelPaths(
        hmm=os.path.join(base, "en-us", "en-us"),
        dictionary=os.path.join(base, "en-us", "cmudict-en-us.dict"),
        phone_lm=os.path.join(base, "en-us", "en-us-phone.lm.bin"),
    )
    for p in (paths.hmm, paths.dictionary, paths.phone_lm):
        if not os.path.exists(p):
            raise ModelError(
                f"PocketSphinx model file missing: {p}", "reinstall pocketsphinx==5.1.1"
            )
    return paths


def _allphone_decoder():
    from pocketsphinx import Decoder

    m = model_paths()
    return Decoder(
        hmm=m.hmm, allphone=m.phone_lm, lm=None, dict=None,
        samprate=SAMPLE_RATE, loglevel="FATAL", **_ALLPHONE_KW,
    )  # fmt: skip


def _align_decoder():
    from pocketsphinx import Decoder

    m = model_paths()
    return Decoder(
        hmm=m.hmm, dict=m.dictionary, lm=None, samprate=SAMPLE_RATE, loglevel="FATAL",
        **_ALIGN_KW,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# chunking


def plan_chunks(
    level_db: np.ndarray,
    speech: np.ndarray,
    *,
    max_s: float = 30.0,
    target_s: float = 20.0,
    min_s: float = 8.0,
) -> list[tuple[int, int]]:
    """Cut a recording into decoding chunks at pauses.

    Args:
        level_db: (N,) per-10 ms level in dB (any reference), N = number of 10 ms steps.
        speech: (N,) bool, True where the step is speech.
        max_s: longest chunk in seconds; target_s: preferred length; min_s: shortest chunk
            (except the last).

    Returns:
        Contiguous ``(start_step, end_step)`` pairs (10 ms steps, end exclusive) covering
        ``[0, N)``; a single chunk when N <= max_s. Cuts are placed at the middle of the longest
        pause inside ``[start + min_s, start + max_s]`` (preferring pauses near ``target_s``),
        or at the quietest 100 ms there when the speech has no pause.
    """
    n = int(len(level_db))
    step_max = int(round(max_s / FRAME_S))
    step_min = int(round(min_s / FRAME_S))
    step_tgt = int(round(target_s / FRAME_S))
    if n <= step_max:
        return [(0, n)]
    quiet = np.convolve(np.asarray(level_db, np.float64), np.ones(10) / 10.0, mode="same")
    chunks: list[tuple[int, int]] = []
    start = 0
    while n - start > step_max:
        lo, hi = start + step_min, min(start + step_max, n - 1)
        win = ~np.asarray(speech[lo:hi], bool)
        cut = -1
        if win.any():
            # runs of non-speech inside the window; score = length, penalised by distance to target
            edges = np.flatnonzero(np.diff(np.concatenate(([0], win.astype(np.int8), [0]))))
            best = -np.inf
            for a, b in zip(edges[::2], edges[1::2]):
                mid = lo + (a + b) // 2
                score = (b - a) - 0.02 * abs(mid - (start + step_tgt))
                if score > best:
                    best, cut = score, mid
        if cut < 0:
            cut = lo + int(np.argmin(quiet[lo:hi]))
        chunks.append((start, cut))
        start = cut
    chunks.append((start, n))
    return chunks


# --------------------------------------------------------------------------------------------
# segment helpers


def _normalize_phone(name: str) -> str:
    name = name.strip().upper()
    name = re.sub(r"\d", "", name)  # stress digits
    return name if name in PHONES else "SIL"  # SIL, +NSN+, +SPN+, <sil>, ... -> SIL


def _tidy(segments: list[Segment], t0: float, t1: float) -> list[Segment]:
    """Sort, clip to [t0, t1], fill gaps with SIL and merge consecutive identical SIL."""
    out: list[Segment] = []
    cur = t0
    for ph, a, b in sorted(segments, key=lambda s: s[1]):
        a, b = max(a, cur), min(b, t1)
        if b - a <= 1e-9:
            continue
        if a - cur > 1e-6:
            out.append(("SIL", cur, a))
        out.append((ph, a, b))
        cur = b
    if t1 - cur > 1e-6:
        out.append(("SIL", cur, t1))
    merged: list[Segment] = []
    for seg in out:
        if merged and seg[0] == "SIL" and merged[-1][0] == "SIL":
            merged[-1] = ("SIL", merged[-1][1], seg[2])
        else:
            merged.append(seg)
    return merged


def _frame_time(frame: int, origin_s: float, first: bool) -> float:
    # the first boundary of a chunk stays at the chunk start
    return origin_s + (0.0 if first and frame == 0 else frame * FRAME_S + _FRAME_OFFSET_S)


def _to_int16(pcm: np.ndarray) -> bytes:
    return np.ascontiguousarray(pcm, dtype=np.int16).tobytes()


def _check_pcm(pcm: np.ndarray) -> np.ndarray:
    pcm = np.asarray(pcm)
    if pcm.ndim != 1 or pcm.dtype != np.int16:
        raise ValueError(f"expected (N,) int16 PCM at 16 kHz, got {pcm.dtype} {pcm.shape}")
    return pcm


# --------------------------------------------------------------------------------------------
# phone decoding


def _decode_chunk(decoder, pcm: np.ndarray, origin_s: float) -> list[Segment]:
    decoder.start_utt()
    decoder.process_raw(_to_int16(pcm), full_utt=True)
    decoder.end_utt()
    segs = []
    for s in decoder.seg():
        a = _frame_time(s.start_frame, origin_s, True)
        b = _frame_time(s.end_frame + 1, origin_s, False)
        segs.append((_normalize_phone(s.word), a, b))
    return segs


def decode_phones(
    pcm: np.ndarray,
    chunks: Sequence[tuple[int, int]] | None = None,
    *,
    cancel: CancelToken | None = None,
) -> list[Segment]:
    """Phone recognition (no transcript) with the shipped en-us allphone model.

    Args:
        pcm: (N,) int16 mono PCM at 16 kHz.
        chunks: ``(start_step, end_step)`` 10 ms-step ranges from :func:`plan_chunks`
            (default: one chunk).
        cancel: polled before each chunk.

    Returns:
        Contiguous ``(phone, start_s, end_s)`` segments covering ``[0, N / 16000]``.

    Raises:
        Cancelled: if ``cancel`` fires. ModelError: if the model files are missing.
        ValueError: if ``pcm`` is not 1-D int16.
    """
    pcm = _check_pcm(pcm)
    if chunks is None:
        chunks = [(0, int(math.ceil(len(pcm) / _FRAME_SAMPLES)))]
    return _tidy(_decode_chunks(pcm, chunks, cancel), 0.0, len(pcm) / SAMPLE_RATE)


#: where the phone decoder runs (None: in the calling thread); see :func:`run_decoder_in`
_EXECUTOR = None


def run_decoder_in(executor) -> None:
    """Run the phone decoder's chunks in ``executor`` (a ``concurrent.futures.ProcessPoolExecutor``), or in the
    calling thread (None, the default).

    pocketsphinx holds the GIL for a whole chunk (up to ~0.8 s for 3 s of speech), so in the studio's process a
    worker thread's decoding froze the window for that long; in another process it cannot. The results are the
    same (same model, same settings, same chunks). The command line keeps the default: there is no UI to keep
    responsive and a process would only add its start-up time. If the executor breaks (its process was
    killed), decoding falls back to the calling thread.
    """
    global _EXECUTOR
    _EXECUTOR = executor


def _warn_executor_gone(exc: BaseException) -> None:
    global _EXECUTOR
    if _EXECUTOR is not None:
        log.warning("phone decoding process unavailable (%s: %s); decoding in this process from now on",
                    type(exc).__name__, exc)
    _EXECUTOR = None


def _decode_piece(piece: np.ndarray, origin_s: float) -> list[Segment]:
    """One chunk, with this process's decoder (the executor's entry point: module level, picklable)."""
    return _decode_chunk(_allphone_decoder(), piece, origin_s)


def _decode_chunks(
    pcm: np.ndarray, chunks: Sequence[tuple[int, int]], cancel: CancelToken | None
) -> list[Segment]:
    from concurrent.futures import TimeoutError as FutureTimeout
    from concurrent.futures.process import BrokenProcessPool

    decoder = None
    segs: list[Segment] = []
    for a, b in chunks:
        if cancel is not None:
            cancel.raise_if_cancelled()
        piece = pcm[a * _FRAME_SAMPLES : b * _FRAME_SAMPLES]
        if len(piece) < 4 * _FRAME_SAMPLES:
            continue
        try:
            executor = _EXECUTOR
            if executor is not None:
                try:
                    future = executor.submit(_decode_piece, np.ascontiguousarray(piece), a * FRAME_S)
                    while True:  # wait, polling the cancel token (a chunk takes up to ~1 s)
                        try:
                            segs.extend(future.result(timeout=0.1))
                            break
                        except FutureTimeout:
                            if cancel is not None and cancel.cancelled:
                                future.cancel()
                                cancel.raise_if_cancelled()
                    continue
                except (BrokenProcessPool, RuntimeError, OSError) as exc:
                    if isinstance(exc, RuntimeError) and not isinstance(exc, BrokenProcessPool) \
                            and "shutdown" not in str(exc) and "thread" not in str(exc):
                        raise  # the decoder's own refusal: handled below
                    # the decoding process is gone (killed, or the studio is closing) or cannot start: decode
                    # here instead, and say so once (the window may pause while decoding)
                    _warn_executor_gone(exc)
            decoder = decoder or _allphone_decoder()
            segs.extend(_decode_chunk(decoder, piece, a * FRAME_S))
        except RuntimeError:  # decoder refused this chunk; leave it as silence
            continue
    return segs


# --------------------------------------------------------------------------------------------
# transcripts


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))


def number_to_words(n: int) -> list[str]:
    """English cardinal words for a non-negative integer (e.g. 2024 -> two thousand twenty four).

    Numbers of 10**15 and more are read digit by digit.
    """
    if n < 0:
        return ["minus", *number_to_words(-n)]
    if n >= 10**15:
        return [_ONES[int(d)] for d in str(n)]
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [_ONES[n // 100], "hundred"] + (number_to_words(n % 100) if n % 100 else [])
    for value, name in _SCALES:
        if n >= value:
            rest = number_to_words(n % value) if n % value else []
            return number_to_words(n // value) + [name] + rest
    raise AssertionError  # pragma: no cover


_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at ", "=": " equals "}


def normalize_transcript(text: str) -> list[str]:
    """Turn free text into lower-case dictionary words for alignment.

    Accents are stripped, digits spelled out (``"2"`` -> ``"two"``, ``"3.5"`` -> ``"three point
    five"``), ``& % + @ =`` spoken, other punctuation dropped (apostrophes inside words kept).

    Returns:
        The words, possibly empty (e.g. for text in a non-Latin script).
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    for sym, word in _SYMBOLS.items():
        text = text.replace(sym, word)
    text = re.sub(r"(\d),(?=\d{3})", r"\1", text)  # 1,000 -> 1000
    text = re.sub(r"(\d)\.(\d)", r"\1 point \2", text)
    out: list[str] = []
    for tok in re.findall(r"[A-Za-z0-9']+", text):
        tok = tok.strip("'").lower()
        if not tok:
            continue
        for part in re.findall(r"\d+|[a-z']+", tok):
            if part.isdigit():
                if len(part) > 1 and part.startswith("0"):
                    out.extend(_ONES[int(d)] for d in part)
                else:
                    out.extend(number_to_words(int(part)))
            elif part.strip("'"):
                out.append(part.strip("'"))
    return out


# Rough letter-to-sound rules (longest grapheme first). Good enough to give the aligner a
# plausible consonant/vowel skeleton for names and foreign words; not a real G2P.
_G2P = [
    ("tion", "SH AH N"), ("sion", "ZH AH N"), ("ough", "AO"), ("augh", "AO"), ("eigh", "EY"),
    ("tch", "CH"), ("igh", "AY"), ("sch", "SH"),
    ("ph", "F"), ("sh", "SH"), ("ch", "CH"), ("th", "TH"), ("wh", "W"), ("ck", "K"), ("ng", "NG"),
    ("qu", "K W"), ("gh", ""), ("ee", "IY"), ("ea", "IY"), ("oo", "UW"), ("ou", "AW"),
    ("ow", "OW"), ("ai", "EY"), ("ay", "EY"), ("ei", "EY"), ("ey", "IY"), ("oi", "OY"),
    ("oy", "OY"), ("au", "AO"), ("aw", "AO"), ("ie", "IY"), ("oa", "OW"), ("ue", "UW"),
    ("ew", "UW"), ("ui", "UW"),
    ("a", "AE"), ("e", "EH"), ("i", "IH"), ("o", "AA"), ("u", "AH"),
    ("b", "B"), ("c", "K"), ("d", "D"), ("f", "F"), ("g", "G"), ("h", "HH"), ("j", "JH"),
    ("k", "K"), ("l", "L"), ("m", "M"), ("n", "N"), ("p", "P"), ("q", "K"), ("r", "R"),
    ("s", "S"), ("t", "T"), ("v", "V"), ("w", "W"), ("x", "K S"), ("z", "Z"),
]  # fmt: skip
_LONG = {"a": "EY", "e": "IY", "i": "AY", "o": "OW", "u": "UW"}
_VOWELS = set("aeiouy")


def guess_pronunciation(word: str) -> list[str]:
    """Rough letter-to-phone guess for a word missing from the CMU dictionary.

    Args:
        word: lower-case letters (other characters are ignored).

    Returns:
        ARPAbet phones (no stress), possibly empty when the word has no letters.
    """
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return []
    if len(w) <= 3 and not (_VOWELS & set(w)):  # acronym-like: spell it out
        return [p for ch in w for p in _LETTER_NAMES.get(ch, "").split()]
    if w.startswith(("kn", "gn", "wr", "ps")):
        w = w[1:]
    if w.endswith("mb"):
        w = w[:-1]
    # magic e: consonant + final e lengthens the previous vowel and is silent
    long_idx = -1
    if len(w) >= 3 and w[-1] == "e" and w[-2] not in _VOWELS and w[-3] in _LONG:
        long_idx = len(w) - 3
        w = w[:-1]
    phones: list[str] = []
    i = 0
    while i < len(w):
        ch = w[i]
        nxt = w[i + 1] if i + 1 < len(w) else ""
        if i == long_idx:
            phones.append(_LONG[ch])
            i += 1
            continue
        if ch == "c" and nxt in ("e", "i", "y"):
            phones.append("S")
            i += 1
            continue
        if ch == "g" and nxt in ("e", "i", "y") and i > 0:
            phones.append("JH")
            i += 1
            continue
        if ch == "y":
            phones.append("Y" if nxt in _VOWELS else ("AY" if len(w) <= 3 else "IY"))
            i += 1
            continue
        if i > 0 and ch == w[i - 1] and ch not in _VOWELS:  # doubled consonant
            i += 1
            continue
        for graph, ph in _G2P:
            if w.startswith(graph, i):
                phones.extend(ph.split())
                i += len(graph)
                break
        else:  # pragma: no cover - every letter has a rule
            i += 1
    # collapse repeats produced by the rules (e.g. "ck" after "c")
    out = [p for k, p in enumerate(phones) if k == 0 or p != phones[k - 1]]
    return out


_LETTER_NAMES = {
    "a": "EY", "b": "B IY", "c": "S IY", "d": "D IY", "e": "IY", "f": "EH F", "g": "JH IY",
    "h": "EY CH", "i": "AY", "j": "JH EY", "k": "K EY", "l": "EH L", "m": "EH M", "n": "EH N",
    "o": "OW", "p": "P IY", "q": "K Y UW", "r": "AA R", "s": "EH S", "t": "T IY", "u": "Y UW",
    "v": "V IY", "w": "D AH B AH L Y UW", "x": "EH K S", "y": "W AY", "z": "Z IY",
}  # fmt: skip


def _prepare_words(decoder, words: list[str]) -> list[str]:
    """Make every word known to the decoder (guessing missing ones); drop unpronounceable ones."""
    usable: list[str] = []
    new: dict[str, str] = {}
    for w in words:
        if decoder.lookup_word(w) is not None or w in new:
            usable.append(w)
            continue
        phones: list[str] = []
        if w.endswith("'s") and decoder.lookup_word(w[:-2]) is not None:  # possessive
            phones = decoder.lookup_word(w[:-2]).split() + ["Z"]
        elif "'" in w and decoder.lookup_word(w.replace("'", "")) is not None:
            phones = decoder.lookup_word(w.replace("'", "")).split()
        if not phones:
            phones = guess_pronunciation(w)
        if phones:
            new[w] = " ".join(phones)
            usable.append(w)
    items = list(new.items())
    for i, (w, pron) in enumerate(items):
        decoder.add_word(w, pron, i == len(items) - 1)
    return usable


# --------------------------------------------------------------------------------------------
# alignment


def _align_chunk(decoder, pcm: np.ndarray, origin_s: float, words: list[str],
                 ends: Sequence[int] | None) -> tuple[list[Segment], int] | None:
    """Align ``words`` (or a prefix ending at one of ``ends``) to ``pcm``.

    Returns ``(segments, n_words_used)`` or None when alignment fails.
    """
    data = _to_int16(pcm)
    try:
        if ends is None:
            decoder.set_align_text(" ".join(words))
        else:
            # chain of words; after each allowed last word, a second arc goes straight to the
            # final state (no epsilon arcs: their (NULL) segments break the phone pass)
            m = len(words)
            final = m + 1
            trans = [(k, k + 1, 1.0, words[k]) for k in range(m)]
            trans += [(k - 1, final, 1.0, words[k - 1]) for k in sorted(set(ends)) if 1 <= k <= m]
            fsg = decoder.create_fsg("chunk", 0, final, trans)
            try:
                decoder.remove_search("chunk")
            except (KeyError, RuntimeError):
                pass
            decoder.add_fsg("chunk", fsg)
            decoder.activate_search("chunk")
        decoder.start_utt()
        decoder.process_raw(data, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        if hyp is None:
            return None
        used = sum(
            1 for s in decoder.seg()
            if s.word and not s.word.startswith(("<", "[", "+")) and s.word != "(NULL)"
        )  # fmt: skip
        decoder.set_alignment()
        decoder.start_utt()
        decoder.process_raw(data, full_utt=True)
        decoder.end_utt()
        alignment = decoder.get_alignment()
        if alignment is None:
            return None
        segs = []
        for p in alignment.phones():
            a = _frame_time(p.start, origin_s, True)
            b = _frame_time(p.start + p.duration, origin_s, False)
            segs.append((_normalize_phone(p.name), a, b))
        if not segs:
            return None
        return segs, used
    except (RuntimeError, ValueError):
        return None


def align_phones(
    pcm: np.ndarray,
    transcript: str,
    chunks: Sequence[tuple[int, int]] | None = None,
    speech: np.ndarray | None = None,
    *,
    cancel: CancelToken | None = None,
) -> tuple[list[Segment], float]:
    """Forced alignment of a transcript with the shipped en-us model and CMU dictionary.

    Out-of-dictionary words get a rough letter-to-sound pronunciation
    (:func:`guess_pronunciation`). With several chunks, the words of each chunk are found by
    aligning against a grammar that may stop after any word in a window around the expected
    count (expected from the share of speech time), so the transcript need not be split by the
    caller. Chunks (or the whole clip) that cannot be aligned are phone-decoded instead.

    Args:
        pcm: (N,) int16 mono PCM at 16 kHz.
        transcript: free text (see :func:`normalize_transcript`).
        chunks: 10 ms-step ranges from :func:`plan_chunks` (default: one chunk).
        speech: (ceil(N / 160),) bool speech mask per 10 ms step, used to apportion words to
            chunks (default: all speech).
        cancel: polled before each chunk.

    Returns:
        ``(segments, aligned_fraction)``: contiguous ``(phone, start_s, end_s)`` segments covering
        ``[0, N / 16000]``, and the fraction (0..1) of the speech (the ``speech`` steps) in chunks that
        were aligned (the rest was phone-decoded); 1.0 when there is no speech.

    Raises:
        Cancelled: if ``cancel`` fires. ModelError: if the model files are missing.
        ValueError: if ``pcm`` is not 1-D int16.
    """
    pcm = _check_pcm(pcm)
    total = len(pcm) / SAMPLE_RATE
    n_steps = int(math.ceil(len(pcm) / _FRAME_SAMPLES))
    if chunks is None:
        chunks = [(0, n_steps)]
    if speech is None:
        speech = np.ones(n_steps, bool)
    speech = np.asarray(speech, bool)
    if cancel is not None:
        cancel.raise_if_cancelled()
    decoder = _align_decoder()
    words = _prepare_words(decoder, normalize_transcript(transcript))
    if not words:
        return decode_phones(pcm, chunks, cancel=cancel), 0.0

    segs: list[Segment] = []
    aligned_steps = 0
    fallback: list[tuple[int, int]] = []
    pos = 0
    speech_left = float(speech.sum()) or 1.0
    for ci, (a, b) in enumerate(chunks):
        if cancel is not None:
            cancel.raise_if_cancelled()
        piece = pcm[a * _FRAME_SAMPLES : b * _FRAME_SAMPLES]
        chunk_speech = float(speech[a:b].sum())
        last = ci == len(chunks) - 1
        remaining = len(words) - pos
        if len(piece) < 4 * _FRAME_SAMPLES or (remaining == 0 and chunk_speech == 0):
            speech_left -= chunk_speech
            continue
        result = None
        if remaining > 0:
            if len(chunks) == 1:
                result = _align_chunk(decoder, piece, a * FRAME_S, words, None)
            else:
                expect = remaining * chunk_speech / max(speech_left, 1.0)
                if last:
                    ends: list[int] = [remaining]
                    window = remaining
                else:
                    lo = max(1, int(0.5 * expect) - 3)
                    window = min(remaining, int(math.ceil(1.6 * expect)) + 5)
                    ends = list(range(min(lo, window), window + 1))
                result = _align_chunk(decoder, piece, a * FRAME_S, words[pos : pos + window], ends)
        speech_left -= chunk_speech
        if result is None:
            fallback.append((a, b))
            if not last and remaining > 0:  # skip the words this chunk probably held
                pos += int(round(remaining * chunk_speech / max(speech_left + chunk_speech, 1.0)))
            continue
        chunk_segs, used = result
        segs.extend(chunk_segs)
        aligned_steps += int(speech[a:b].sum())
        pos += used if len(chunks) > 1 else len(words)
    if fallback:
        segs.extend(_decode_chunks(pcm, fallback, cancel))
    total_speech = int(speech[:n_steps].sum())
    # of the speech (silent stretches, at the ends or between, do not count against the transcript)
    return _tidy(segs, 0.0, total), min(1.0, aligned_steps / total_speech) if total_speech else 1.0
