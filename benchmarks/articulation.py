"""Articulation of the lite engine against real talking videos: one JSON line per video and one pooled.

Each video is re-synthesised from its frame 0 and its own soundtrack (``talkstudio eval``'s protocol: lite
engine, still head, no blinks) and the per-frame lip gap (inner-lip opening / mouth width, MediaPipe) of the
render is compared with the real video's: Pearson r, mean error relative to the static first frame, closure
recall (real closed frames, gap < 0.07, matched by a closed render frame within +-2 frames) and opening
range (p90 ratio), plus LMD of the render and of the static baseline.

Usage::

    .venv/bin/python benchmarks/articulation.py ../shared/samples/video/grid_*.mpg [--rest-close 0,0.5,1]

``--rest-close`` renders with each of the given rest closures of pauses (``Coarticulation.rest_close``: 0 =
the first wave's behaviour, lips keep the photo's gap in pauses; 1 = lips meet) and prints each one's lines:
the fit of that parameter. Fitted on the eight GRID sample clips (seven speakers, in-sync English, known
sentences; 3 s each, 25 fps, 360x288), pooled mean |lip-gap error| 0.0823 / 0.0790 / 0.0792 / 0.0776 for
0 / 0.5 / 0.75 / 1: 1 is the default.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from studio.core.events import drive  # noqa: E402
from studio.engine.audio import visemes  # noqa: E402
from studio.engine.eval.harness import evaluate_video  # noqa: E402
from studio.engine.eval.metrics import articulation, pearson  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="+", type=Path)
    ap.add_argument("--rest-close", default=str(visemes.Coarticulation().rest_close),
                    help="comma-separated rest closures of pauses to try (default: the engine's)")
    ap.add_argument("--max-seconds", type=float, default=10.0)
    args = ap.parse_args()
    for level in (float(x) for x in args.rest_close.split(",")):
        visemes.analyze_speech.__kwdefaults__["coarticulation"] = visemes.Coarticulation(rest_close=level)
        _run(args.videos, args.max_seconds, {"rest_close": level})


def _run(videos: list[Path], max_seconds: float, tag: dict) -> None:
    pooled = {"real": [], "lite": [], "static": [], "t": []}
    offset = 0
    for video in videos:
        t0 = time.perf_counter()
        r = drive(evaluate_video(video, engine="lite", max_seconds=max_seconds))
        m, s = r.metrics, r.series
        print(json.dumps({**tag, "video": video.name, "seconds": round(time.perf_counter() - t0, 1),
                          "lip_gap_r": round(m["lite"]["lip_gap_r"], 3),
                          **{k: round(m["lite"][k], 3) for k in ("gap_err_ratio", "closure_recall", "open_range")},
                          "lmd_lite": round(m["lite"]["lmd"], 3), "lmd_static": round(m["static"]["lmd"], 3),
                          "av_lag_frames": m["reference"].get("av_lag_frames")}), flush=True)
        pooled["real"] += s["gap_real"]
        pooled["lite"] += s["gap_lite"]
        pooled["static"] += s["gap_static"]
        pooled["t"] += [k + offset for k in s["t_gap"]]
        offset += max(s["t_gap"], default=0) + 100
    real, lite, static = (np.asarray(pooled[k], float) for k in ("real", "lite", "static"))
    out = {**tag, "video": "pooled", "videos": len(videos), "lip_gap_r": round(pearson(real, lite), 3),
           "mean_abs_error": round(float(np.mean(np.abs(lite - real))), 4),
           **{k: round(v, 3) for k, v in articulation(real, lite, static, np.asarray(pooled["t"])).items()
              if not math.isnan(v)}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
