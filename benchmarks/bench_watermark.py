"""Provenance marks: watermark robustness, false positives, invisibility and cost; prints one JSON object.

    python benchmarks/bench_watermark.py [--exports 20] [--negatives 50] [--out DIR]

What it does (issue 20's "what must be shown"):
- renders ``--exports`` three-second lite exports of the sample photos with the sample speech (the real
  export path: watermark + Content Credentials), then applies to each the transformations a video meets on
  its way to a viewer — H.264 re-encode at CRF 28, scaling to 720p and 480p, a 10 % crop, a 1.5 s excerpt,
  and all of scaling to 480p + 10 % crop + CRF 28 at once — and counts how often ``detect_mark`` finds the
  right id (goal >= 95 % per transformation);
- false positives: ``detect_mark`` on every real sample video and on ``--negatives`` re-encoded, cropped and
  scaled excerpts of them (goal: 0);
- PSNR of marked vs unmarked frames (goal >= 42 dB), embedding cost per 1024² frame on one thread (goal
  <= 3 ms), and the wall time of ``talkstudio verify``'s work on a 10 s 1024² export (goal <= 5 s).
Everything runs on the CPU; ratios and pass rates are comparable across machines, absolute times are this
machine's.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLES = REPO.parent / "shared" / "samples"

TRANSFORMS = {
    "crf28": ["-c:v", "libx264", "-crf", "28", "-preset", "veryfast"],
    "720p": ["-vf", "scale=-2:720", "-c:v", "libx264", "-crf", "23", "-preset", "veryfast"],
    "480p": ["-vf", "scale=-2:480", "-c:v", "libx264", "-crf", "23", "-preset", "veryfast"],
    "crop10": ["-vf", "crop=trunc(iw*0.9/2)*2:trunc(ih*0.9/2)*2", "-c:v", "libx264", "-crf", "23",
               "-preset", "veryfast"],
    "excerpt1.5s": ["-ss", "0.7", "-t", "1.5", "-c:v", "libx264", "-crf", "23", "-preset", "veryfast"],
    "480p+crop10+crf28": ["-vf", "crop=trunc(iw*0.9/2)*2:trunc(ih*0.9/2)*2,scale=-2:480", "-c:v", "libx264",
                          "-crf", "28", "-preset", "veryfast"],
}


def _ffmpeg(args: list[str]) -> None:
    from studio.media._common import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True)


def _speech_excerpts(workdir: Path, seconds: float) -> list[Path]:
    out = []
    for i, path in enumerate(sorted((SAMPLES / "audio").glob("*.wav"))):
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        start = min(int(1.0 * rate), max(0, len(data) - int(seconds * rate)))
        clip = data[start:start + int(seconds * rate)].mean(axis=1)
        dst = workdir / f"speech_{i}.wav"
        sf.write(dst, clip, rate)
        out.append(dst)
    return out


def _probe_size(path: Path) -> tuple[int, int]:
    from studio.media.video import probe_media

    info = probe_media(path)
    return info.width, info.height


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 99.0 if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _export(photo: Path, speech: Path, out: Path, n_frames: int | None) -> tuple[int, list[float]]:
    """Render ``photo`` + ``speech`` to ``out``; returns (mark id, PSNR of 12 marked vs unmarked frames)."""
    from studio.core.events import drive
    from studio.engine.pipeline import prepare
    from studio.engine.settings import RenderSettings
    from studio.media.watermark import WatermarkEmbedder

    session = drive(prepare(photo, speech, RenderSettings()))
    n = session.n_frames if n_frames is None else min(n_frames, session.n_frames)
    done = drive(session.export(out, frame_range=(0, n)))
    w, h = session.size
    embed = WatermarkEmbedder(w, h, done.mark_id)
    psnr = []
    for k in range(min(12, n)):
        frame = session.render_frame(k)
        psnr.append(_psnr(frame, embed.apply(frame.copy())))
    return done.mark_id, psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exports", type=int, default=20)
    parser.add_argument("--negatives", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None, help="keep the videos here (default: a temp folder)")
    args = parser.parse_args()
    # everything imported up front: a run takes ~25 min and must not mix code versions
    from studio.app.provenance import detect_mark, verify
    from studio.media.watermark import RELIABLE_SIDE, WatermarkEmbedder

    work = args.out or Path(tempfile.mkdtemp(prefix="bench-watermark-"))
    work.mkdir(parents=True, exist_ok=True)
    photos = sorted(p for p in (SAMPLES / "images").iterdir() if p.suffix.lower() in (".jpg", ".png"))
    speech = _speech_excerpts(work, 3.2)
    rows = []
    psnrs: list[float] = []
    hits = {name: 0 for name in ["direct", *TRANSFORMS]}
    hits_big = dict(hits)  # exports of at least RELIABLE_SIDE pixels on a side
    misses: dict[str, list[str]] = {name: [] for name in hits}
    t_detect = []
    for i in range(args.exports):
        photo, audio = photos[i % len(photos)], speech[(i * 3) % len(speech)]
        out = work / f"export_{i:02d}.mp4"
        mark, psnr = _export(photo, audio, out, 75)
        psnrs += psnr
        variants = {"direct": out}
        for name, ff in TRANSFORMS.items():
            dst = work / f"export_{i:02d}_{name}.mp4"
            _ffmpeg(["-i", str(out), *ff, str(dst)])
            variants[name] = dst
        for name, path in variants.items():
            t0 = time.perf_counter()
            det = detect_mark(path)
            t_detect.append(time.perf_counter() - t0)
            ok = det.found and det.mark_id == mark
            hits[name] += ok
            hits_big[name] += ok and min(_probe_size(out)) >= RELIABLE_SIDE
            if not ok:
                misses[name].append(f"{photo.name}+{audio.name}")
        rows.append({"photo": photo.name, "speech": audio.name, "psnr_min": round(min(psnr), 2),
                     "size": list(_probe_size(out))})
        print(f"export {i}: {photo.name} {min(psnr):.1f} dB", file=sys.stderr, flush=True)

    # false positives on real videos and re-encoded / cropped / scaled excerpts of them
    real = sorted((SAMPLES / "video").iterdir())
    rng = random.Random(0)
    negatives = list(real)
    for j in range(args.negatives):
        src = real[j % len(real)]
        crop = rng.uniform(0.75, 0.95)
        height = rng.choice([360, 480, 720])
        dst = work / f"negative_{j:02d}.mp4"
        _ffmpeg(["-ss", f"{rng.uniform(0, 1.5):.2f}", "-t", "3", "-i", str(src), "-vf",
                 f"crop=trunc(iw*{crop:.2f}/2)*2:trunc(ih*{crop:.2f}/2)*2,scale=-2:{height}",
                 "-c:v", "libx264", "-crf", str(rng.choice([23, 28])), "-preset", "veryfast", "-an", str(dst)])
        negatives.append(dst)
    false_positives = [p.name for p in negatives if detect_mark(p).found]

    # cost: embedding on one thread at 1024², verify of a 10 s 1024² export
    cv2.setNumThreads(1)
    frame = cv2.resize(cv2.imread(str(photos[0]))[:, :, ::-1], (1024, 1024))
    embed = WatermarkEmbedder(1024, 1024, 0x1234ABCD)
    for _ in range(10):
        embed.apply(frame.copy())
    t0 = time.perf_counter()
    reps = 200
    for _ in range(reps):
        embed.apply(frame)
    embed_ms = 1000 * (time.perf_counter() - t0) / reps
    cv2.setNumThreads(0)
    square = work / "photo_1024.png"
    big = cv2.imread(str(SAMPLES / "images" / "man_grey_hair_3511px.jpg"))
    side = min(big.shape[:2])
    cv2.imwrite(str(square), cv2.resize(big[:side, :side], (1024, 1024), interpolation=cv2.INTER_AREA))
    long_speech = work / "speech_10s.wav"
    data, rate = sf.read(SAMPLES / "audio" / "english_60s_16k_mono.wav", dtype="float32")
    sf.write(long_speech, data[: 10 * rate], rate)
    ten = work / "export_10s.mp4"
    _export(square, long_speech, ten, None)

    t0 = time.perf_counter()
    result = verify(ten)
    verify_s = time.perf_counter() - t0

    n = args.exports
    big = sum(min(r["size"]) >= RELIABLE_SIDE for r in rows)
    print(json.dumps({
        "exports": n,
        "detection_rate": {k: round(v / n, 3) for k, v in hits.items()},
        f"detection_rate_at_least_{RELIABLE_SIDE}px": {k: round(v / max(big, 1), 3) for k, v in hits_big.items()},
        f"exports_under_{RELIABLE_SIDE}px": n - big,
        "misses": {k: v for k, v in misses.items() if v},
        "false_positives": len(false_positives), "negatives_examined": len(negatives),
        "false_positive_files": false_positives,
        "psnr_db": {"mean": round(float(np.mean(psnrs)), 2), "min": round(float(np.min(psnrs)), 2)},
        "embed_ms_per_1024_frame_1_thread": round(embed_ms, 2),
        "detect_s_median": round(float(np.median(t_detect)), 2),
        "verify_10s_1024_s": round(verify_s, 2), "verify_10s_marked": result.marked,
        "per_export": rows,
    }, indent=1))


if __name__ == "__main__":
    main()
