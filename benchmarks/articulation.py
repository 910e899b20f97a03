"""Articulation of the lite engine against real talking videos: one JSON line per video and one pooled.

Each video is re-synthesised from its frame 0 and its own soundtrack (``talkstudio eval``'s protocol: lite
engine, still head, no blinks) and the per-frame lip gap (inner-lip opening / mouth width, MediaPipe) of the
render is compared with the real video's: Pearson r, mean error relative to the static first frame, closure
recall (real closed frames, gap < 0.07, matched by a closed render frame within +-2 frames) and opening
range (p90 ratio), plus LMD of the render and of the static baseline.

Usage::

    .venv/bin/python benchmarks/articulation.py ../shared/samples/video/grid_*.mpg [--rest-close 0,0.5,1]
        [--set acoustic_weight=0,0.5,1 --set full_open_gap=0.2,0.25] [--leave-one-out]

``--rest-close`` renders with each of the given rest closures of pauses (``Coarticulation.rest_close``: 0 =
the first wave's behaviour, lips keep the photo's gap in pauses; 1 = lips meet) and prints each one's lines:
the fit of that parameter. Fitted on the eight GRID sample clips (seven speakers, in-sync English, known
sentences; 3 s each, 25 fps, 360x288), pooled mean |lip-gap error| 0.0823 / 0.0790 / 0.0792 / 0.0776 for
0 / 0.5 / 0.75 / 1: 1 is the default.

``--set FIELD=V1,V2`` tries values of any other :class:`~studio.engine.audio.visemes.Coarticulation` field (every
combination of all of them). ``--leave-one-out`` renders each video with an acoustic opening model
(:mod:`studio.engine.audio.opening`) fitted on the *other* videos (``benchmarks/fit_opening.py``), so the figures
are for speakers the model never saw; ``acoustic_weight`` and ``full_open_gap`` were fitted that way (see
``Coarticulation``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from studio.core.events import drive
from studio.engine.audio import opening, visemes
from studio.engine.eval.harness import evaluate_video
from studio.engine.eval.metrics import articulation, pearson


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="+", type=Path)
    ap.add_argument("--rest-close", default=str(visemes.Coarticulation().rest_close),
                    help="comma-separated rest closures of pauses to try (default: the engine's)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=V1,V2",
                    help="also try these values of another Coarticulation field (repeatable: every combination)")
    ap.add_argument("--leave-one-out", action="store_true",
                    help="render each video with an acoustic opening model fitted on the other videos only "
                         "(benchmarks/fit_opening.py): figures for speakers the model never saw")
    ap.add_argument("--max-seconds", type=float, default=10.0)
    args = ap.parse_args()
    models = None
    if args.leave_one_out:
        import fit_opening

        data = [fit_opening.video_data(v) for v in args.videos]
        models = [fit_opening.fit([d for j, d in enumerate(data) if j != i], lam=opening.default_model().fit["lambda"])
                  for i in range(len(data))]
    grid = [("rest_close", [float(x) for x in args.rest_close.split(",")])]
    for item in args.set:
        name, _, values = item.partition("=")
        if name not in visemes.Coarticulation.__dataclass_fields__:
            ap.error(f"--set: no Coarticulation field {name!r}")
        grid.append((name, [float(x) for x in values.split(",")]))
    for combo in itertools.product(*(values for _, values in grid)):
        tag = {name: v for (name, _), v in zip(grid, combo)}
        visemes.analyze_speech.__kwdefaults__["coarticulation"] = visemes.Coarticulation(**tag)
        _run(args.videos, args.max_seconds, {**tag, "leave_one_out": args.leave_one_out}, models)


def _run(videos: list[Path], max_seconds: float, tag: dict, models: list | None) -> None:
    pooled = {"real": [], "lite": [], "static": [], "t": []}
    offset = 0
    for i, video in enumerate(videos):
        opening._DEFAULT = models[i] if models else None  # None: the shipped model, loaded again
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
