"""StyleGAN2 generator throughput at 1024x1024 (config-f, random weights): prints one JSON line.

    python benchmarks/bench_generator.py [--cpu-iters 2] [--batches 1,4,8,16] [--gpu-seconds 2] [--compile]

Figures:
- ``cpu.sec_per_frame``: seconds per 1024² frame on the CPU, batch 1, fp32 (mean of ``--cpu-iters``
  timed runs after one warm-up run), with the thread count used;
- ``cuda.fps[precision][batch]``: frames per second on the first CUDA device for fp32 and fp16
  (fp16 = the generator's automatic fast path: float16 at >= 128², channels_last), batches
  ``--batches``; ``cuda.peak_mem_mib[precision][batch]``: peak allocated GPU memory of that run;
  ``cuda.fp16_vs_fp32``: RMS and max difference of the two precisions on the same latents.
Without CUDA the ``cuda`` entry is null and ``note`` says so; the run never fails for lack of a GPU.
Reference: the paper reports 35 FPS at 1024² on a V100 (whole pipeline).
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

from studio.models.stylegan2 import Generator


def _cpu(iters: int) -> dict:
    torch.manual_seed(0)
    g = Generator(1024).eval()
    w = g.mapping(torch.randn(1, 512))
    with torch.inference_mode():
        t0 = time.perf_counter()
        g(w, input_space="w")  # warm-up (allocator, oneDNN primitive caches)
        warm = time.perf_counter() - t0
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            img = g(w, input_space="w")
            times.append(time.perf_counter() - t0)
    assert img.shape == (1, 3, 1024, 1024)
    return {"sec_per_frame": round(sum(times) / len(times), 3), "min_sec": round(min(times), 3),
            "warmup_sec": round(warm, 3), "iters": iters, "threads": torch.get_num_threads()}


def _cuda(batches: list[int], seconds: float, compile_: bool) -> dict:
    dev = torch.device("cuda")
    torch.manual_seed(0)
    g = Generator(1024).to(dev).eval()
    torch.backends.cudnn.benchmark = True
    run = g
    notes = []
    if compile_:
        try:
            run = torch.compile(g)
        except Exception as exc:  # pragma: no cover - depends on the toolchain
            notes.append(f"torch.compile failed: {exc!r}")
    fps: dict[str, dict[int, float]] = {}
    mem: dict[str, dict[int, float]] = {}
    for precision in ("fp32", "fp16"):
        fps[precision], mem[precision] = {}, {}
        for b in batches:
            w = g.mapping(torch.randn(b, 512, device=dev)).detach()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
            try:
                with torch.inference_mode():
                    for _ in range(3):
                        run(w, input_space="w", precision=precision)
                    torch.cuda.synchronize(dev)
                    n, t0 = 0, time.perf_counter()
                    while True:
                        run(w, input_space="w", precision=precision)
                        n += 1
                        torch.cuda.synchronize(dev)
                        if time.perf_counter() - t0 >= seconds and n >= 3:
                            break
                    dt = time.perf_counter() - t0
            except torch.cuda.OutOfMemoryError:
                fps[precision][b] = None
                mem[precision][b] = None
                notes.append(f"{precision} batch {b}: out of memory")
                continue
            fps[precision][b] = round(n * b / dt, 2)
            mem[precision][b] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    with torch.inference_mode():
        w = g.mapping(torch.randn(4, 512, device=dev))
        ref = g(w, input_space="w", precision="fp32")
        fast = g(w, input_space="w", precision="fp16")
        err = (fast - ref).float()
        diff = {"rms": float(err.square().mean().sqrt()), "max_abs": float(err.abs().max()),
                "ref_std": float(ref.std())}
    return {"device_name": torch.cuda.get_device_name(dev), "fps": fps, "peak_mem_mib": mem,
            "fp16_vs_fp32": diff, "compiled": bool(compile_ and not notes), "notes": notes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-iters", type=int, default=2, help="timed CPU frames after one warm-up (0 skips)")
    ap.add_argument("--batches", default="1,4,8,16", help="CUDA batch sizes")
    ap.add_argument("--gpu-seconds", type=float, default=2.0, help="timed seconds per CUDA configuration")
    ap.add_argument("--compile", action="store_true", help="wrap the generator in torch.compile on CUDA")
    args = ap.parse_args(argv)
    out: dict = {"benchmark": "generator_1024", "torch": torch.__version__, "config": "config-f random weights"}
    out["cpu"] = _cpu(args.cpu_iters) if args.cpu_iters > 0 else None
    if torch.cuda.is_available():
        out["cuda"] = _cuda([int(b) for b in args.batches.split(",") if b], args.gpu_seconds, args.compile)
        out["note"] = ""
    else:
        out["cuda"] = None
        out["note"] = "no CUDA device: GPU throughput, fp16 and peak GPU memory skipped"
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
