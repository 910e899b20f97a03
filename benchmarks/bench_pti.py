"""Pivotal Tuning Inversion cost: prints one JSON line.

    python benchmarks/bench_pti.py [--cpu-steps 2] [--gpu-steps 20] [--tiny-max-steps 350] [--no-big]

Figures:
- ``big.sec_per_step``: seconds per tuning step at 1024² (random-init config-f generator, batch 1, LPIPS
  AlexNet at 256² + L2, Adam on the synthesis weights; fp16 autocast on CUDA, fp32 on CPU), mean over the
  timed steps after one warm-up step; ``big.peak_mem_mib``: peak allocated GPU memory (null on CPU).
  On CPU only ``--cpu-steps`` (2) steps are timed. ``big.est_sec_350_steps`` extrapolates PTI's default run.
- ``tiny``: steps and seconds until LPIPS <= 0.06 with the default TuneConfig (lr 3e-4) on the tiny test
  generator (64², 64 channels), a real sample face (FFHQ-aligned) as the target and the mean latent as the
  pivot. The LPIPS backbone is RANDOM (no ImageNet weights are needed): these distances are not perceptual
  and the step count is only a regression figure, not PTI's real convergence.
Without CUDA ``device`` says "cpu" and the GPU fields are null; the run never fails for lack of a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from studio.core.events import drive
from studio.engine.neural.perceptual import build_lpips
from studio.engine.neural.pti import TuneConfig, tune
from studio.models.stylegan2 import Generator

SAMPLE = REPO.parent / "shared" / "samples" / "images" / "woman_brown_hair_624px.jpg"


def _run(g, target, pivot, lp, config, dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()
    stamps = []
    t0 = time.perf_counter()

    def on_progress(ev) -> None:
        if ev.stage == "tune" and ev.done > 0 and len(stamps) < ev.done:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    result = drive(tune(g, [target], [pivot], lp, config=config), on_progress=on_progress)
    return result, t0, stamps


def _big(dev: torch.device, steps: int) -> dict:
    torch.manual_seed(0)
    g = Generator(1024).to(dev).eval()
    lp = build_lpips("alex", random_backbone=True, device=dev)
    with torch.no_grad():
        pivot = g.mapping(torch.randn(1, 512, device=dev))[:, None, :].repeat(1, g.n_latent, 1)
    target = (torch.rand(1, 3, 1024, 1024, device=dev) * 2 - 1)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    config = TuneConfig(steps=steps + 1, lpips_threshold=0.0)
    _result, _t0, stamps = _run(g, target, pivot, lp, config, dev)
    diffs = [b - a for a, b in zip(stamps[:-1], stamps[1:])]  # the first step is the warm-up
    sec = sum(diffs) / len(diffs)
    return {"sec_per_step": round(sec, 3), "timed_steps": len(diffs), "est_sec_350_steps": round(350 * sec, 1),
            "peak_mem_mib": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1) if dev.type == "cuda" else None,
            "precision": "fp16 autocast" if dev.type == "cuda" else "fp32", "threads": torch.get_num_threads()}


def _tiny(dev: torch.device, max_steps: int) -> dict:
    from studio.engine.face.align import ffhq_alignment
    from studio.engine.face.detect import detect_faces
    from studio.engine.neural.invert import to_tensor
    from studio.media.image import load_image

    torch.manual_seed(0)
    g = Generator(size=64, style_dim=64, n_mlp=2, channel_multiplier=1, channel_max=64).to(dev).eval()
    lp = build_lpips("alex", random_backbone=True, device=dev)
    if SAMPLE.exists():
        rgb = load_image(SAMPLE)
        target = to_tensor(ffhq_alignment(detect_faces(rgb)[0].points, size=64).crop(rgb), dev)
        source = SAMPLE.name
    else:  # pragma: no cover - samples missing
        target = torch.rand(1, 3, 64, 64, device=dev) * 2 - 1
        source = "uniform noise (sample image missing)"
    pivot = g.mean_latent(2000, seed=0)[:, None, :].repeat(1, g.n_latent, 1)
    config = TuneConfig(steps=max_steps)
    result, t0, stamps = _run(g, target, pivot, lp, config, dev)
    reached = result.history[-1]["lpips"] <= config.lpips_threshold
    return {"steps": result.steps, "reached_threshold": reached, "seconds": round(stamps[-1] - t0, 2),
            "initial_lpips": round(result.initial_lpips, 4), "final_lpips": round(result.final_lpips, 4),
            "initial_l2": round(result.initial_l2, 4), "final_l2": round(result.final_l2, 4),
            "threshold": config.lpips_threshold, "lr": config.lr, "target": source,
            "lpips_backbone": "random (not perceptual; regression figure only)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-steps", type=int, default=2)
    ap.add_argument("--gpu-steps", type=int, default=20)
    ap.add_argument("--tiny-max-steps", type=int, default=350)
    ap.add_argument("--no-big", action="store_true", help="skip the 1024² timing")
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = {"bench": "pti", "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
           "torch": torch.__version__}
    out["big_1024"] = None if args.no_big else _big(dev, args.gpu_steps if dev.type == "cuda" else args.cpu_steps)
    out["tiny"] = _tiny(dev, args.tiny_max_steps)
    out["peak_gpu_mem_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1) if dev.type == "cuda" else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
