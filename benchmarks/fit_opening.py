"""Fit the acoustic opening model (:mod:`studio.engine.audio.opening`) on real, in-sync talking videos.

For each video: the real per-frame lip gap (inner-lip opening / mouth width, MediaPipe, the measure
``talkstudio eval`` compares against) and the model's features from the video's own soundtrack, averaged
over each frame. Ridge regression maps the features to the gap. Every video is first predicted by a model
fitted on the *other* videos (leave-one-video-out: how the model does on speakers it never saw); one JSON
line each, then the pooled figures; then the model fitted on all of them is written (``--out``) with the
data description and those figures.

The shipped model was fitted on the nine in-sync sample videos: the eight GRID clips
(``../shared/samples/video/grid_*.mpg``: seven speakers, English, 3 s each, 25 fps, 360x288; GRID corpus, Cooke et
al. 2006, CC BY 4.0) and ``voxceleb2_00086.mp4`` (a TV interview, 5.2 s, 25 fps, 224x224, 16 kHz; the harness's
A/V check gives lag 0; the other non-GRID samples are off by 7 and 18 frames and were left out), with
lambda = 300 (of 100 / 300 / 1000: mean leave-one-out r 0.612 / 0.632 / 0.648, pooled 0.480 / 0.494 / 0.499;
the articulation parameters of :class:`~studio.engine.audio.visemes.Coarticulation` were fitted with 300).

Usage::

    .venv/bin/python benchmarks/fit_opening.py ../shared/samples/video/{grid_*.mpg,voxceleb2_00086.mp4} \
        [--lam 300] [--out studio/engine/audio/opening_model.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from studio.core.fileio import atomic_write_text
from studio.engine.audio.opening import OpeningModel
from studio.engine.audio.visemes import opening_inputs
from studio.engine.eval.metrics import lip_gap, pearson
from studio.engine.face.detect import FaceTracker
from studio.media.audio import load_audio
from studio.media.video import read_video_frames


def real_gaps(video: Path) -> tuple[np.ndarray, float]:
    """(T,) lip gap of each frame (NaN where no face was found) and the video's fps."""
    meta, frames = read_video_frames(video)
    tracker, gaps = FaceTracker(), []
    with frames:
        for rgb in frames:
            face = tracker.update(rgb)
            gaps.append(lip_gap(face.points) if face is not None else np.nan)
    return np.asarray(gaps, np.float64), float(meta.fps)


def video_data(video: Path) -> tuple[np.ndarray, np.ndarray]:
    """(T, N_FEATURES) frame-averaged model features of a video's soundtrack and its (T,) real lip gaps."""
    gaps, fps = real_gaps(video)
    clip = load_audio(video, sample_rate=16000)
    return opening_inputs(clip.samples, clip.sample_rate, fps=fps, n_frames=len(gaps)), gaps


def fit(data: list[tuple[np.ndarray, np.ndarray]], lam: float, info: dict | None = None) -> OpeningModel:
    """The model fitted on [(features, gaps), ...] of several videos."""
    return OpeningModel.fit_ridge(np.concatenate([d[0] for d in data]), np.concatenate([d[1] for d in data]),
                                  lam=lam, fit=info)


def _finite(real: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(real)
    return real[ok], pred[ok]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="+", type=Path)
    ap.add_argument("--lam", type=float, default=300.0, help="ridge regularisation (default 300)")
    ap.add_argument("--out", type=Path, default=None,
                    help="write the model fitted on all videos here (e.g. studio/engine/audio/opening_model.json)")
    args = ap.parse_args()
    data = []
    for video in args.videos:
        data.append((video, *video_data(video)))
    rows, pred_all, real_all = [], [], []
    for i, (video, feats, gaps) in enumerate(data):
        model = fit([d[1:] for j, d in enumerate(data) if j != i], args.lam)
        pred = model.predict(feats)
        ok = np.isfinite(gaps)  # frames without a face have no real gap
        r = pearson(gaps[ok], pred[ok])
        mae = float(np.nanmean(np.abs(pred - gaps)))
        rows.append({"video": video.name, "frames": len(gaps), "loo_r": round(r, 3), "loo_mae": round(mae, 4)})
        print(json.dumps(rows[-1]), flush=True)
        pred_all.append(pred)
        real_all.append(gaps)
    pooled = {"video": "pooled", "videos": len(data), "mean_loo_r": round(float(np.mean([r["loo_r"] for r in rows])), 3),
              "pooled_loo_r": round(pearson(*_finite(np.concatenate(real_all), np.concatenate(pred_all))), 3),
              "mean_loo_mae": round(float(np.mean([r["loo_mae"] for r in rows])), 4)}
    print(json.dumps(pooled))
    if args.out:
        info = {"script": "benchmarks/fit_opening.py", "lambda": args.lam, "target": "lip gap (MediaPipe inner-lip "
               "opening / mouth width) of each video frame", "videos": [
                   {"file": v.name, "sha256_16": hashlib.sha256(v.read_bytes()).hexdigest()[:16], "frames": len(g)}
                   for v, _, g in data], "leave_one_out": rows, "pooled": pooled}
        model = fit([d[1:] for d in data], args.lam, info)
        atomic_write_text(args.out, json.dumps(model.to_dict(), indent=1) + "\n")
        print(json.dumps({"wrote": str(args.out)}))


if __name__ == "__main__":
    main()
