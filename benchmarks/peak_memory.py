"""Peak memory of `talkstudio render` for large photos and long audio (issue 18): prints one JSON line.

    python benchmarks/peak_memory.py [--long-seconds 600] [--skip-long] [--code CHECKOUT]

Each case runs a full ``talkstudio render`` in its own process and reads its peak resident set size (and the
ffmpeg encoder's, a separate process) from ``wait4``'s rusage:
- ``photo_24mp`` / ``photo_100mp``: a 6000x4000 and a 10000x10000 JPEG (a sample portrait upscaled and
  framed), 5 s of speech;
- ``audio_10s_fps10`` / ``audio_long_fps10`` and the same at 25 fps: a 1024x1024 portrait with 10 s and
  ``--long-seconds`` (default 10 min) of speech.
Goals: every photo case <= 1.5 GB; RSS(long) <= 1.2 x RSS(10 s) at each fps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"


def _photo(work: Path, width: int, height: int) -> Path:
    """A sample portrait scaled so the face is ~1/3 of the height, centred on a blurred copy of itself."""
    face = cv2.imread(str(SAMPLES / "images" / "obama_official.jpg"))
    s = height / face.shape[0] * 0.6
    face = cv2.resize(face, None, fx=s, fy=s, interpolation=cv2.INTER_CUBIC)
    canvas = cv2.resize(cv2.GaussianBlur(face, (0, 0), 9), (width, height), interpolation=cv2.INTER_LINEAR)
    y, x = (height - face.shape[0]) // 2, (width - face.shape[1]) // 2
    canvas[y:y + face.shape[0], x:x + face.shape[1]] = face[:height - y, :width - x]
    path = work / f"photo_{width}x{height}.jpg"
    cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def _speech(work: Path, seconds: float) -> Path:
    x, sr = sf.read(str(SAMPLES / "audio" / "english_60s_16k_mono.wav"), dtype="float32")
    x = x.mean(axis=1) if x.ndim == 2 else x
    path = work / f"speech_{seconds:g}s.wav"
    sf.write(str(path), np.resize(x, int(seconds * sr)), sr, subtype="PCM_16")
    return path


def _render_peak(photo: Path, audio: Path, out: Path, fps: int = 25, code: Path = REPO) -> dict:
    """Peak RSS (MB) of a render process and of its children (ffmpeg), via wait4's rusage (KiB on Linux)."""
    code = ("import json, resource, sys; from studio.cli import main; rc = main(sys.argv[1:]); "
            "print(json.dumps({'rc': rc, 'self': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
            "'children': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))")
    env = {**os.environ, "PYTHONPATH": str(code)}
    res = subprocess.run([sys.executable, "-c", code, "render", "--image", str(photo), "--audio", str(audio),
                          "--output", str(out), "--fps", str(fps), "--quiet", "--overwrite"], env=env,
                         cwd=out.parent, capture_output=True,
                         text=True, check=False)
    try:
        data = json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": res.stderr.strip()[-500:]}
    return {"rc": data["rc"], "rss_mb": round(data["self"] / 1024, 1), "ffmpeg_rss_mb": round(data["children"] / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--long-seconds", type=float, default=600.0)
    ap.add_argument("--skip-long", action="store_true", help="only the photo cases")
    ap.add_argument("--code", type=Path, default=REPO, help="the studio checkout to measure (default: this one)")
    args = ap.parse_args()
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        five = _speech(work, 5.0)
        for name, (w, h) in {"photo_24mp": (6000, 4000), "photo_100mp": (10000, 10000)}.items():
            out[name] = _render_peak(_photo(work, w, h), five, work / f"{name}.mp4", code=args.code)
        if not args.skip_long:
            photo = _photo(work, 1024, 1024)
            for fps in (10, 25):
                for label, secs in (("10s", 10.0), ("long", args.long_seconds)):
                    out[f"audio_{label}_fps{fps}"] = _render_peak(photo, _speech(work, secs), work / "a.mp4", fps,
                                                                      code=args.code)
                a, b = out[f"audio_10s_fps{fps}"], out[f"audio_long_fps{fps}"]
                if "rss_mb" in a and "rss_mb" in b:
                    out[f"rss_ratio_long_vs_10s_fps{fps}"] = round(b["rss_mb"] / a["rss_mb"], 3)
    out["long_seconds"] = args.long_seconds
    print(json.dumps(out))


if __name__ == "__main__":
    main()
