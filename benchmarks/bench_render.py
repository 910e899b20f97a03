"""Lite engine throughput and memory: prints one JSON line of figures.

    python benchmarks/bench_render.py [--photo PATH] [--audio PATH]

Figures (same machine, same run):
- ``render_fps``: frames per second of LiteEngine.render alone on a 1024x1024 face photo;
- ``render_encode_fps``: frames per second of the whole render + H.264/AAC encode (pipeline's frame loop);
- ``rss_10s_mb`` / ``rss_120s_mb``: peak resident memory of a full `talkstudio render` subprocess for 10 s
  and 120 s of speech, and their ratio (memory must not grow with the audio's length).
"""

from __future__ import annotations

import argparse
import json
import os
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


def _photo_1024(path: Path | None, workdir: Path) -> Path:
    from studio.media.image import load_image

    src = path or (SAMPLES / "images" / "man_grey_hair_3511px.jpg")
    if not src.exists():
        src = REPO / "resources" / "obama_official.jpg"
    rgb = load_image(src)
    side = min(rgb.shape[:2])
    y0, x0 = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
    square = cv2.resize(rgb[y0:y0 + side, x0:x0 + side], (1024, 1024), interpolation=cv2.INTER_AREA)
    out = workdir / "face_1024.png"
    cv2.imwrite(str(out), square[:, :, ::-1])
    return out


def _speech(seconds: float, path: Path | None, workdir: Path) -> Path:
    """Real speech looped to ``seconds``."""
    from studio.media.audio import load_audio

    src = path or (SAMPLES / "audio" / "english_60s_16k_mono.wav")
    if not src.exists():
        src = REPO / "resources" / "grid_bbaf2n.wav"
    clip = load_audio(src, sample_rate=16000)
    n = int(seconds * 16000)
    reps = int(np.ceil(n / clip.num_samples))
    out = workdir / f"speech_{seconds:g}s.wav"
    sf.write(out, np.tile(clip.samples, reps)[:n], 16000, subtype="PCM_16")
    return out


def _peak_rss_mb(cmd: list[str]) -> float:
    """Peak RSS (MB) of a child process, from wait4's rusage (ru_maxrss is in KiB on Linux)."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"render failed: {proc.stderr.read().decode(errors='replace')}")
    return usage.ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", type=Path)
    ap.add_argument("--audio", type=Path)
    ap.add_argument("--frames", type=int, default=250, help="frames for the fps figures (default 250 = 10 s)")
    args = ap.parse_args()

    from studio.core.events import drive
    from studio.engine.audio.visemes import analyze_speech
    from studio.engine.face.detect import detect_faces
    from studio.engine.face.identity import load_identity
    from studio.engine.lite.engine import LiteEngine
    from studio.engine.pipeline import Session, build_controls
    from studio.engine.settings import RenderSettings
    from studio.media.audio import frame_count, load_audio
    from studio.media.image import load_image

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photo = _photo_1024(args.photo, work)
        seconds = args.frames / 25.0
        speech = _speech(seconds, args.audio, work)
        rgb = load_image(photo)
        face = detect_faces(rgb)[0]
        audio = load_audio(speech, sample_rate=16000)
        n = frame_count(audio.duration, 25.0)
        t = time.perf_counter()
        mouth = analyze_speech(audio.samples, audio.sample_rate, fps=25.0, n_frames=n)
        analyse_s = time.perf_counter() - t
        controls = build_controls(mouth, RenderSettings())

        engine = LiteEngine()
        ident = engine.prepare_photo(rgb, face)
        frame = engine.render_values(ident, controls.frame(0))  # warm-up; then into the same buffer
        t = time.perf_counter()
        for k in range(n):
            engine.render_values(ident, controls.frame(k), out=frame)
        render_s = time.perf_counter() - t

        identity = load_identity(photo)
        session = Session(identity, audio, mouth, controls, RenderSettings(), engine=engine,
                          prepared=engine.prepare_photo(identity.image, identity.face))
        t = time.perf_counter()
        drive(session.export(work / "bench.mp4"))
        encode_s = time.perf_counter() - t

        rss = {}
        for secs in (10.0, 120.0):
            wav = _speech(secs, args.audio, work)
            rss[secs] = _peak_rss_mb([sys.executable, "-m", "studio.cli", "render", "--image", str(photo),
                                      "--audio", str(wav), "--output", str(work / f"rss_{secs:g}.mp4"), "--quiet"])

    print(json.dumps({
        "photo": "1024x1024", "frames": n, "cpu_count": os.cpu_count(),
        "render_fps": round(n / render_s, 1),
        "render_ms_per_frame": round(1000 * render_s / n, 2),
        "render_encode_fps": round(n / encode_s, 1),
        "speech_analysis_x_realtime": round(audio.duration / analyse_s, 1),
        "rss_10s_mb": round(rss[10.0], 1), "rss_120s_mb": round(rss[120.0], 1),
        "rss_ratio_120_vs_10": round(rss[120.0] / rss[10.0], 3),
        "stride_px": ident.rig.stride, "roi": list(ident.rig.roi),
    }))


if __name__ == "__main__":
    main()
