"""Batch dubbing on a real Ray cluster (issue 21): a head and a worker node on 127.0.0.1, started with `ray start`
as separate processes, and `talkstudio batch --cluster auto` as the driver."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import sample
from studio.app.batch import BatchQueue, queue_path, verify_output
from studio.core.errors import ConfigError
from studio.media.audio import load_audio

ray = pytest.importorskip("ray", reason="the cluster extra (ray) is not installed")
psutil = pytest.importorskip("psutil")

BIN = Path(sys.executable).parent
TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A Ray head (1 CPU) and a worker node (1 CPU) as separate processes; yields the driver's environment."""
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths are length-limited
    port, client_port = _free_port(), _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus=1", "--disable-usage-stats"]
    try:
        subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={port}", "--include-dashboard=false",
                        f"--ray-client-server-port={client_port}", f"--temp-dir={temp}", *common], env=env,
                       check=True, capture_output=True, timeout=120)
        subprocess.run([str(BIN / "ray"), "start", f"--address=127.0.0.1:{port}", *common], env=env, check=True,
                       capture_output=True, timeout=120)
        yield {**env, "RAY_ADDRESS": f"127.0.0.1:{port}", "CLIENT": f"ray://127.0.0.1:{client_port}"}
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
        _wait_for_ray_to_exit()


def _wait_for_ray_to_exit(timeout_s: float = 60.0) -> None:
    """Ray's processes end asynchronously after `ray stop` / `ray.shutdown()`: wait, so that the next tests (timed
    GUI waits among them) do not share the two cores with a cluster that is still winding down."""
    names = ("raylet", "gcs_server", "ray::", "default_worker.py", "dashboard", "log_monitor.py", "monitor.py")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if proc.info["pid"] != os.getpid() and any(n in cmd for n in names):
                alive.append(proc.info["pid"])
        if not alive:
            return
        time.sleep(0.5)


@pytest.fixture(scope="module", autouse=True)
def _ray_gone_afterwards():
    yield
    _wait_for_ray_to_exit()


@pytest.fixture(scope="module")
def jobs_csv(tmp_path_factory):
    """Six short jobs on two sample photos, one of them with a photo that has no face."""
    folder = tmp_path_factory.mktemp("cluster-inputs")
    clip = load_audio(sample("audio/english_short_16k_mono.wav"), sample_rate=16000)
    for i in range(3):
        sf.write(folder / f"s{i}.wav", clip.samples[i * 16000:i * 16000 + 24000], 16000)
    import cv2

    cv2.imwrite(str(folder / "noface.png"), np.full((200, 200, 3), 90, np.uint8))
    rows = ["identity,audio,output"]
    for i, photo in enumerate(["taylor_256px.jpg", "woman_dark_hair_474px.png"]):
        for j in range(3):
            image = folder / "noface.png" if (i, j) == (1, 2) else sample(f"images/{photo}")
            rows.append(f"{image},{folder / f's{j}.wav'},job{i}{j}.mp4")
    csv = folder / "jobs.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def _batch(args: list[str], env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "talkstudio"), "batch", *args, "--quiet"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _outcome(folder: Path) -> dict[str, tuple]:
    report = json.loads((folder / "batch-report.json").read_text())
    return {Path(j["output"]).name: (j["status"], j["error"], j["duration_s"] and round(j["duration_s"], 1))
            for j in report["jobs"]}


def _no_partial_outputs(folder: Path) -> None:
    """Every video in the folder is a complete MP4 (a killed attempt leaves at most a hidden temp file)."""
    videos = [p for p in folder.iterdir() if p.suffix == ".mp4" and not p.name.startswith(".")]
    assert videos
    for video in videos:
        assert verify_output(video, expected_s=None) is None, video
    for job in BatchQueue(folder).jobs():
        assert job.status != "done" or job.output.exists()


def test_a_cluster_batch_matches_a_local_one(cluster, jobs_csv, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "cluster"
    p = _batch([str(jobs_csv), "--output-dir", str(local)], dict(os.environ))
    assert p.wait(TIMEOUT_S) == 1, p.stdout.read()  # one job fails: exit status 1
    p = _batch([str(jobs_csv), "--output-dir", str(remote), "--cluster", "auto"], cluster)
    out = p.communicate(timeout=TIMEOUT_S)[0]
    assert p.returncode == 1, out
    assert "the video is small (256x256)" in out  # the engine's notices reach the driver, as locally
    assert _outcome(remote) == _outcome(local)
    assert _outcome(remote)["job12.mp4"][0] == "failed" and "no face" in _outcome(remote)["job12.mp4"][1]
    jobs = BatchQueue(remote).jobs()
    assert {j.node.split(" ")[0] for j in jobs if j.status == "done"} == {socket.gethostname()}
    assert len({j.node for j in jobs if j.status == "done"}) == 2  # both nodes of the cluster ran jobs
    assert all(j.mark_id and j.signed_by for j in jobs if j.status == "done")
    _no_partial_outputs(remote)


def test_ray_client_addresses_submit_to_a_running_cluster(cluster, jobs_csv, tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in cluster.items() if k not in ("RAY_ADDRESS", "CLIENT")}
    p = _batch([str(jobs_csv), "--output-dir", str(out), "--cluster", cluster["CLIENT"]], env)
    text = p.communicate(timeout=TIMEOUT_S)[0]
    assert p.returncode == 1, text
    statuses = {Path(j.output).name: j.status for j in BatchQueue(out).jobs()}
    assert statuses == {**{f"job{i}{j}.mp4": "done" for i in range(2) for j in range(3)}, "job12.mp4": "failed"}
    _no_partial_outputs(out)


def _running_task_pids() -> list[int]:
    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if cmd.startswith("ray::_run_job"):
            pids.append(proc.info["pid"])
    return pids


def test_a_killed_worker_has_its_job_rerun(cluster, jobs_csv, tmp_path):
    out = tmp_path / "out"
    p = _batch([str(jobs_csv), "--output-dir", str(out), "--cluster", "auto"], cluster)
    killed = None
    deadline = time.monotonic() + TIMEOUT_S
    while killed is None and time.monotonic() < deadline and p.poll() is None:
        running = [j for j in (BatchQueue(out).jobs() if queue_path(out).exists() else [])
                   if j.status == "running" and j.node]
        pids = _running_task_pids()
        if running and pids:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.1)
    assert killed is not None, f"no job was seen running: {p.poll()} {p.stdout.read() if p.poll() is not None else ''}"
    text = p.communicate(timeout=TIMEOUT_S)[0]
    assert p.returncode == 1, text  # only the photo without a face fails
    statuses = {Path(j.output).name: j.status for j in BatchQueue(out).jobs()}
    assert statuses == {**{f"job{i}{j}.mp4": "done" for i in range(2) for j in range(3)}, "job12.mp4": "failed"}
    _no_partial_outputs(out)


def test_a_killed_driver_resumes_without_redoing_finished_jobs(cluster, jobs_csv, tmp_path):
    out = tmp_path / "out"
    p = _batch([str(jobs_csv), "--output-dir", str(out), "--cluster", "auto"], cluster, start_new_session=True)
    deadline = time.monotonic() + TIMEOUT_S
    done: dict[str, float] = {}
    while time.monotonic() < deadline and p.poll() is None:
        if queue_path(out).exists():
            done = {j.output.name: j.output.stat().st_mtime for j in BatchQueue(out).jobs() if j.status == "done"}
            if done:
                break
        time.sleep(0.1)
    assert done, "no job finished before the driver could be killed"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(60)
    q = _batch(["--resume", "--output-dir", str(out), "--cluster", "auto"], cluster)
    text = q.communicate(timeout=TIMEOUT_S)[0]
    assert q.returncode == 1, text
    jobs = {j.output.name: j for j in BatchQueue(out).jobs()}
    assert all(jobs[name].output.stat().st_mtime == mtime for name, mtime in done.items())  # not redone
    assert sorted(n for n, j in jobs.items() if j.status == "done") == sorted(
        f"job{i}{j}.mp4" for i in range(2) for j in range(3) if (i, j) != (1, 2))
    _no_partial_outputs(out)


def test_a_folder_the_workers_cannot_write_is_refused_before_any_job(tmp_path, monkeypatch):
    from studio.app import cluster as cl

    monkeypatch.setattr(cl, "_probe_folder", lambda folder: ("node-x", "Read-only file system"))
    queue = BatchQueue(tmp_path / "out")
    with pytest.raises(ConfigError, match="not writable from the cluster's worker on node-x"):
        list(cl.run_batch_cluster(queue, cluster="auto", workers=1))


def test_cluster_values_are_checked():
    from studio.app.cluster import check_cluster

    assert check_cluster("ray://head.example:10001") == "ray://head.example:10001"
    for bad in ("ray://", "ray://host", "ray://host:0", "kubernetes", ""):
        with pytest.raises(ConfigError):
            check_cluster(bad)
