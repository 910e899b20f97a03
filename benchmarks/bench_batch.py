"""Batch throughput, local vs a local Ray instance; prints one JSON line.

    python benchmarks/bench_batch.py [--jobs 12] [--workers 2]

Queues ``--jobs`` short jobs (2 s of the sample speech on two sample photos, lite engine) twice: once run by
:func:`studio.app.batch.run_batch` in this process (``--cluster local``: one job at a time), once by
:func:`studio.app.cluster.run_batch_cluster` on a local Ray instance with ``--workers`` processes
(``--cluster auto --workers N``). Figures, from the same run on the same machine:

- ``local_jobs_per_min`` / ``cluster_jobs_per_min`` and their ``speedup`` (goal >= 1.6 with 2 workers on two
  cores); the cluster figure includes starting Ray (``ray_start_s``, also printed); ``local_cores_busy``: how
  many cores the local batch already keeps busy (render thread + ffmpeg), the ceiling of any speed-up on
  this machine being ``cores / local_cores_busy``;
- ``driver_cpu_s_per_job``: CPU time the driver process spends per job (queue writes, submitting, collecting
  progress): the per-job overhead Ray adds on the driver (goal <= 0.5 s);
- ``queue_latency_s``: mean time from submitting a job to its worker's first report (scheduling + argument
  transfer); ``driver_mb_for_10000_jobs``: peak memory (tracemalloc) the driver allocates to hold a
  10,000-job queue's outstanding jobs and their weights; ``driver_rss_mb``: this process's peak resident
  memory (it also ran the local batch).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLES = REPO.parent / "shared" / "samples"


def _specs(n: int, work: Path, out: Path):
    from studio.app.batch import JobSpec
    from studio.media.audio import load_audio

    clip = load_audio(SAMPLES / "audio" / "english_short_16k_mono.wav", sample_rate=16000)
    photos = [SAMPLES / "images" / "woman_dark_hair_474px.png", SAMPLES / "images" / "woman_brown_hair_624px.jpg"]
    specs = []
    for i in range(n):
        speech = work / f"s{i}.wav"
        start = (i % 4) * 8000
        sf.write(speech, clip.samples[start:start + 32000], 16000)
        specs.append(JobSpec(photos[i % 2], speech, out / f"job{i:02d}.mp4"))
    return specs


def _run(events) -> None:
    from studio.core.events import Returning

    run = Returning(events)
    for _ in run:
        pass
    assert run.result is not None and not run.result.failed, [j.error for j in run.result.failed]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.pop("RAY_ADDRESS", None)
    from studio.app import cluster
    from studio.app.batch import BatchQueue, run_batch

    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    local_out, cluster_out = work / "local", work / "cluster"
    BatchQueue(local_out).add(_specs(args.jobs, work, local_out))
    t0, c0 = time.perf_counter(), os.times()
    _run(run_batch(BatchQueue(local_out)))
    local_s = time.perf_counter() - t0
    c1 = os.times()  # the render threads and the ffmpeg children: how many cores one local job already keeps busy
    local_cores = (c1.user + c1.system + c1.children_user + c1.children_system
                   - c0.user - c0.system - c0.children_user - c0.children_system) / local_s

    queue = BatchQueue(cluster_out)
    queue.add(_specs(args.jobs, work, cluster_out))
    import ray

    t0 = time.perf_counter()
    with cluster.connect("auto", args.workers):
        ray_start = time.perf_counter() - t0
    submitted: dict[int, float] = {}
    reported: dict[int, float] = {}
    real_update = BatchQueue.update

    def timed_update(self, job_id, **values):  # the driver's own bookkeeping tells when each job started
        if values.get("status") == "running":
            submitted[job_id] = time.perf_counter()
        if "node" in values and values["node"]:
            reported.setdefault(job_id, time.perf_counter())
        return real_update(self, job_id, **values)

    BatchQueue.update = timed_update
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    try:
        _run(cluster.run_batch_cluster(queue, cluster="auto", workers=args.workers))
    finally:
        BatchQueue.update = real_update
    cluster_s = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    latency = [reported[j] - submitted[j] for j in reported if j in submitted]

    # what a 10,000-job batch costs the driver: the outstanding jobs and their weights in memory (the queue itself
    # is on disk; Ray holds at most cluster CPUs + 1 jobs in flight, one object per distinct photo)
    import tracemalloc

    from studio.app.batch import _speech_seconds, outstanding_jobs

    big = BatchQueue(work / "big")
    specs = _specs(4, work, work / "big")
    big.add([type(s)(s.identity, s.audio, work / "big" / f"j{i:05d}.mp4") for i in range(10_000)
             for s in specs[i % 4:i % 4 + 1]])
    tracemalloc.start()
    todo, _ = outstanding_jobs(big, overwrite=False, retry_failed=False)
    weights = {job.id: _speech_seconds(job.audio) for job in todo}
    driver_10k_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert len(weights) == 10_000
    print(json.dumps({
        "jobs": args.jobs, "workers": args.workers, "cores": os.cpu_count(),
        "local_s": round(local_s, 1), "cluster_s": round(cluster_s, 1), "ray_start_s": round(ray_start, 1),
        "local_jobs_per_min": round(60 * args.jobs / local_s, 2),
        "cluster_jobs_per_min": round(60 * args.jobs / cluster_s, 2),
        "speedup": round(local_s / cluster_s, 2),
        "local_cores_busy": round(local_cores, 2),
        "driver_cpu_s_per_job": round(cpu / args.jobs, 3),
        "queue_latency_s": round(sum(latency) / max(len(latency), 1), 2),
        "driver_mb_for_10000_jobs": round(driver_10k_mb, 1),
        "driver_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ray": ray.__version__,
    }))


if __name__ == "__main__":
    main()
