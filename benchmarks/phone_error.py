"""Phone and viseme error rates of the lite engine's phone decoding on GRID clips, against their known sentences.

A GRID file name encodes its sentence (command, colour, preposition, letter, digit, adverb: ``bbaf2n`` = "bin
blue at F two now"). For each clip the reference is the forced alignment of that sentence
(:func:`~studio.engine.audio.visemes.analyze_speech` with ``transcript=``: CMU dictionary pronunciations
placed in time), the hypothesis is what the analysis uses without a transcript (PocketSphinx phone
decoding, as a user gets it). Printed as one JSON line per clip and one pooled:

* ``per``: phone error rate, Levenshtein distance between the two phone sequences (silences dropped) over the
  reference length;
* ``ver``: the same on Rhubarb viseme sequences (phones mapped by :func:`viseme_of`, repeats merged): what the
  mouth can show;
* ``frame_viseme_agreement``: share of speech frames (25 fps) whose shown viseme is the same both ways.

Usage::

    .venv/bin/python benchmarks/phone_error.py ../shared/samples/video/grid_*.mpg
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from studio.engine.audio.visemes import analyze_speech, viseme_of
from studio.media.audio import load_audio

GRID_WORDS = (
    {"b": "bin", "l": "lay", "p": "place", "s": "set"},
    {"b": "blue", "g": "green", "r": "red", "w": "white"},
    {"a": "at", "b": "by", "i": "in", "w": "with"},
    None,  # a letter, said as its name
    {str(d): w for d, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])},
    {"a": "again", "n": "now", "p": "please", "s": "soon"},
)


def grid_sentence(stem: str) -> str:
    """The sentence of a GRID clip from its six-character name (``bbaf2n`` -> "bin blue at F two now").

    Raises:
        ValueError: not a GRID name.
    """
    code = stem.removeprefix("grid_").removeprefix("id2_vcd_")
    if len(code) != 6:
        raise ValueError(f"not a GRID clip name: {stem!r}")
    words = []
    for part, table in zip(code, GRID_WORDS):
        if table is None:
            words.append(part.upper())
        elif part in table:
            words.append(table[part])
        else:
            raise ValueError(f"not a GRID clip name: {stem!r}")
    return " ".join(words)


def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def _phones(track) -> list[str]:
    return [p for p, _, _ in track.phones if viseme_of(p) != "X"]


def _visemes(phones: list[str]) -> list[str]:
    out: list[str] = []
    for p in phones:
        v = viseme_of(p)
        if not out or out[-1] != v:
            out.append(v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="+", type=Path)
    args = ap.parse_args()
    tot = {"pe": 0, "pn": 0, "ve": 0, "vn": 0, "agree": 0, "frames": 0}
    for video in args.videos:
        sentence = grid_sentence(video.stem)
        clip = load_audio(video, sample_rate=16000)
        ref = analyze_speech(clip.samples, clip.sample_rate, fps=25, transcript=sentence)
        hyp = analyze_speech(clip.samples, clip.sample_rate, fps=25)
        rp, hp = _phones(ref), _phones(hyp)
        rv, hv = _visemes(rp), _visemes(hp)
        speech = np.asarray([v != "X" for v in ref.visemes])
        agree = int(sum(a == b for a, b, s in zip(ref.visemes, hyp.visemes, speech) if s))
        pe, ve = edit_distance(rp, hp), edit_distance(rv, hv)
        print(json.dumps({"video": video.name, "sentence": sentence, "per": round(pe / max(len(rp), 1), 3),
                          "ver": round(ve / max(len(rv), 1), 3),
                          "frame_viseme_agreement": round(agree / max(int(speech.sum()), 1), 3),
                          "reference": " ".join(rp), "decoded": " ".join(hp)}), flush=True)
        for k, v in (("pe", pe), ("pn", len(rp)), ("ve", ve), ("vn", len(rv)), ("agree", agree),
                     ("frames", int(speech.sum()))):
            tot[k] += v
    print(json.dumps({"video": "pooled", "videos": len(args.videos), "per": round(tot["pe"] / max(tot["pn"], 1), 3),
                      "ver": round(tot["ve"] / max(tot["vn"], 1), 3),
                      "frame_viseme_agreement": round(tot["agree"] / max(tot["frames"], 1), 3)}))


if __name__ == "__main__":
    main()
