"""Neural engine throughput: the speech-to-latent model per second of audio, and end-to-end frames per second.

    python benchmarks/bench_neural.py [--frames 4] [--batch 0] [--size 1024] [--audio-seconds 10]

Prints one JSON object:
- ``speech_model``: E_A + D of the paper's size (~31 M parameters, random weights) on ``--audio-seconds`` of
  real speech (a sample looped): ``mfcc_sec_per_audio_sec`` (features), ``model_sec_per_audio_sec`` (E_A + D on
  the 25 fps windows), on the CPU and on CUDA when present;
- ``frames``: the neural engine's per-frame path at ``--size`` (1024 = FFHQ config-f, random weights) on a real
  photo: W+ codes from a control track through discovered-style directions -> G -> paste-back into the photo;
  ``generator_sec_per_frame``, ``other_sec_per_frame`` (latents, uint8 conversion, colour match and paste-back)
  and ``non_generator_share`` (goal on a GPU: <= 0.10), ``fps``; batch 8 fp16 on CUDA, 1 fp32 on the CPU.
The random weights do not change the cost. Absolute times are only comparable on the same machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from studio.core.tracks import CHANNELS, ControlTrack
from studio.engine.audio.mfcc import mfcc_windows
from studio.engine.face.align import ffhq_alignment
from studio.engine.face.identity import load_identity
from studio.engine.face.paste import face_mask
from studio.engine.neural.directions import (
    SPECS,
    Direction,
    DirectionSet,
    scaled_layers,
)
from studio.engine.neural.engine import NeuralEngine, NeuralIdentity, NeuralOptions
from studio.media.audio import load_audio
from studio.models.latent_decoder import SpeechToLatent, parameter_report
from studio.models.stylegan2 import Generator

SAMPLES = REPO.parent / "shared" / "samples"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def bench_speech(dev: torch.device, seconds: float) -> dict:
    clip = load_audio(SAMPLES / "audio" / "english_short_16k_mono.wav", sample_rate=16000)
    reps = int(np.ceil(seconds / clip.duration))
    x = np.tile(clip.samples, reps)[: int(seconds * 16000)]
    mfcc_windows(x[:16000], 16000)  # warm-up (imports librosa's filterbank)
    t0 = time.perf_counter()
    feats = mfcc_windows(x, 16000)
    t_feat = time.perf_counter() - t0
    model = SpeechToLatent().to(dev).eval()
    f = torch.from_numpy(feats)[None].to(dev)
    w = torch.randn(1, 18, 512, device=dev)
    with torch.inference_mode():
        model(f[:, :25], w)  # warm-up
        _sync(dev)
        t0 = time.perf_counter()
        out = model(f, w)
        _sync(dev)
        t_model = time.perf_counter() - t0
    assert out.shape == (1, feats.shape[0], 18, 512)
    return {"device": dev.type, "audio_sec": seconds, "frames": int(feats.shape[0]),
            "mfcc_sec_per_audio_sec": round(t_feat / seconds, 5), "model_sec_per_audio_sec": round(t_model / seconds, 5),
            "parameters_million": round(parameter_report(model)["total"] / 1e6, 2), "paper_million": 29.68}


def bench_frames(dev: torch.device, size: int, frames: int, batch: int) -> dict:
    torch.manual_seed(0)
    g = Generator(size).to(dev).eval()
    with torch.no_grad():
        g.set_latent_avg(g.mean_latent(1024, seed=0)[0])
    n_latent, dim = g.n_latent, g.style_dim
    dirs = DirectionSet("0" * 64)
    for spec in SPECS:
        a, b = scaled_layers(spec.layers, n_latent)
        vec = torch.zeros(n_latent, dim)
        vec[a:b] = torch.randn(dim) * 0.05
        dirs.directions[spec.name] = Direction(spec.name, vec, (a, b), 1.0, 0.5, 0)
    batch = batch or (8 if dev.type == "cuda" else 1)
    engine = NeuralEngine(g, "0" * 64, dirs, options=NeuralOptions(batch=batch), device=dev)
    identity = load_identity(SAMPLES / "images" / "obama_official.jpg")
    align = ffhq_alignment(identity.face.points, size=size)
    ident = NeuralIdentity(image=identity.image, alignment=align, mask=face_mask(align, identity.face.points),
                           w_identity=g.latent_avg.reshape(1, -1).expand(n_latent, -1).clone().to(dev),
                           speech=None, mouth_source="bench")
    n = max(frames, batch)
    rng = np.random.default_rng(0)
    values = np.zeros((n, len(CHANNELS)), np.float32)
    values[:, CHANNELS.index("open")] = rng.uniform(0, 1, n)
    values[:, CHANNELS.index("yaw")] = rng.uniform(-5, 5, n)
    controls = ControlTrack(fps=25.0, values=values)
    from studio.engine.face.paste import paste_back

    t_gen = t_other = 0.0
    done = 0
    with torch.inference_mode():
        engine.render(ident, controls, np.arange(min(batch, n)))  # warm-up
        for start in range(0, n, batch):
            idx = np.arange(start, min(n, start + batch))
            _sync(dev)
            t0 = time.perf_counter()
            w = engine.latents(ident, controls, idx)
            t1 = time.perf_counter()
            imgs = g(w, input_space="w+", noise_mode="const")
            _sync(dev)
            t2 = time.perf_counter()
            crops = ((imgs.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            for c in crops:
                paste_back(ident.image, c, ident.alignment, ident.mask)
            t3 = time.perf_counter()
            t_gen += t2 - t1
            t_other += (t1 - t0) + (t3 - t2)
            done += len(idx)
    per = (t_gen + t_other) / done
    return {"device": dev.type, "size": size, "batch": batch, "frames": done,
            "photo": f"{identity.image.shape[1]}x{identity.image.shape[0]}",
            "generator_sec_per_frame": round(t_gen / done, 4), "other_sec_per_frame": round(t_other / done, 4),
            "non_generator_share": round(t_other / (t_gen + t_other), 3), "fps": round(1 / per, 2),
            "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=4, help="frames timed on the CPU (default 4; 64 on CUDA)")
    ap.add_argument("--batch", type=int, default=0, help="frames per generator pass (default: 8 CUDA, 1 CPU)")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--audio-seconds", type=float, default=10.0)
    args = ap.parse_args()
    cpu = torch.device("cpu")
    out: dict = {"speech_model": {"cpu": bench_speech(cpu, args.audio_seconds)}}
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        out["speech_model"]["cuda"] = bench_speech(cuda, args.audio_seconds)
        out["frames"] = bench_frames(cuda, args.size, max(args.frames, 64), args.batch)
        out["gpu"] = torch.cuda.get_device_name(0)
    else:
        out["frames"] = bench_frames(cpu, args.size, args.frames, args.batch)
        out["note"] = "no CUDA device: frame figures are CPU figures (the GPU goal is non_generator_share <= 0.10)"
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
