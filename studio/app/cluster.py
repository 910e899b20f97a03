"""Batch dubbing on a Ray cluster: the same queue, its jobs run as Ray tasks on many machines.

``talkstudio batch ... --cluster auto|ray://HOST:PORT [--workers N]`` runs the jobs of a batch queue
(:mod:`studio.app.batch`) with Ray (https://docs.ray.io), not with a scheduler of our own:

* ``auto`` joins the cluster named by ``RAY_ADDRESS`` when it is set, else starts a local Ray instance with
  ``--workers`` processes (a machine with many cores gets parallel jobs); ``ray://HOST:PORT`` connects to a
  running cluster through Ray Client. (``local``, the default, is :func:`studio.app.batch.run_batch`.)
* Each job is a Ray task needing one CPU (and one GPU for the neural engine). A task whose worker dies (a
  killed process, a lost node) is re-run by Ray (``max_retries``); a re-run that finds the output already
  completed by the lost attempt keeps it, so a job is never done twice into the same file, and outputs are
  renamed into place only when complete (:class:`~studio.media.video.FrameEncoder`).
* The SQLite queue stays the source of truth and only this process (the driver) writes it: workers report
  progress, their node and their result through a Ray queue and their return value. ``--resume`` after a
  killed driver works as for a local batch: finished jobs are kept, interrupted ones run again.
* Each photo identity is loaded and analysed once (a Ray task) and shared with its jobs through Ray's object
  store. Video identities are tracked by each job (the tracking is per fit and length of speech).
* Inputs and outputs must be on a path every node sees (a shared file system): before queuing, a task checks
  that the output folder is writable from a worker.

Ray is an optional dependency (``pip install 'talking-head-studio[cluster]'``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path

from studio.app.batch import (BatchEvent, BatchQueue, BatchReport, Job, JobSpec, job_events, outstanding_jobs,
                              remove_stale_partials, settle_before_start, verify_output, write_report,
                              _speech_seconds)
from studio.core.errors import ConfigError, StudioError
from studio.core.events import CancelToken, Progress, drive
from studio.engine.dub import is_video_identity
from studio.engine.settings import RenderSettings

#: how often a worker reports a running job's progress, seconds
PROGRESS_EVERY_S = 0.5
#: a worker lost mid-job (killed process, lost node): times Ray re-runs its job
MAX_RETRIES = 3
#: CPUs a job asks Ray for (its render, encoder and OpenCV threads stay within them)
CPUS_PER_JOB = 1
_INSTALL_HINT = "install it with `pip install 'talking-head-studio[cluster]'` (Ray 2.60)"


def check_cluster(text: str) -> str:
    """Validate a ``--cluster`` value: "local", "auto" or "ray://HOST:PORT". Raises ConfigError."""
    if text in ("local", "auto"):
        return text
    if text.startswith("ray://"):
        host, _, port = text[len("ray://"):].rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return text
    raise ConfigError(f"invalid cluster {text!r}", "use local, auto, or ray://HOST:PORT (Ray Client's port, "
                                                   "10001 by default)")


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("running a batch on a cluster needs Ray, which is not installed", _INSTALL_HINT) from None
    return ray


@contextlib.contextmanager
def connect(cluster: str, workers: int | None = None) -> Iterator[object]:
    """Connect to (or start) Ray for ``cluster`` ("auto" or "ray://HOST:PORT"); yields the ``ray`` module and
    disconnects afterwards (a local instance started here is shut down).

    Raises:
        ConfigError: Ray is not installed, the cluster cannot be reached, or ``workers`` < 1.
    """
    ray = _ray()
    if workers is not None and workers < 1:
        raise ConfigError(f"invalid number of workers {workers}", "give 1 or more")
    address = (os.environ.get("RAY_ADDRESS") or None) if cluster == "auto" else cluster
    kwargs: dict = {"log_to_driver": False, "configure_logging": False}
    if address is None:  # "local": a new instance, never a cluster that `ray start` left on this machine
        kwargs.update(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False)
    elif workers is not None:
        raise ConfigError(f"--workers sets the size of a local Ray instance, but the batch joins the cluster at "
                          f"{address}", "leave --workers out (the cluster's nodes decide), or unset RAY_ADDRESS")
    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it with sys.exit: keep the CLI's handler
    try:
        ray.init(address=address or "local", **kwargs)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError, ...
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc}" if address else
                          f"cannot start a local Ray instance: {exc}",
                          "check the address (`ray status` on the head node), that the cluster runs the same Ray "
                          "and Python versions, or use --cluster local") from exc
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)
    try:
        yield ray
    finally:
        ray.shutdown()


# ---------------------------------------------------------------------------------------------- worker side
# These functions run in Ray worker processes; they never open the queue.

def _node() -> str:
    import ray

    try:
        node_id = ray.get_runtime_context().get_node_id()[:8]
    except Exception:  # noqa: BLE001 - outside a Ray worker (tests call these directly)
        node_id = "local"
    return f"{socket.gethostname()} ({node_id})"


def _probe_folder(folder: str) -> tuple[str, str | None]:
    """(node, None) if a worker can create and delete a file in ``folder``, else (node, the reason)."""
    path = Path(folder) / f".talkstudio-probe-{socket.gethostname()}-{os.getpid()}"
    try:
        path.write_bytes(b"")
        path.unlink()
    except OSError as exc:
        return _node(), f"{exc.strerror or exc}"
    return _node(), None


def _load_identity(path: str, face_index: int) -> object:
    """The analysed photo (an :class:`~studio.engine.face.identity.Identity`), or ("error", message, hint)."""
    from studio.engine.face.identity import load_identity

    try:
        return load_identity(Path(path), face_index=face_index)
    except StudioError as exc:
        return ("error", exc.message, exc.hint)
    except Exception as exc:  # noqa: BLE001 - reported as each of its jobs' failure
        return ("error", f"cannot analyse {Path(path).name}: {type(exc).__name__}: {exc}",
                "this is a bug; please report it with the log")


def _file_stamp(path: Path) -> list | None:
    """(inode, size, mtime in ns) of a file, None if it does not exist: compared on the file system's own terms
    (never against a clock of another machine)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _run_job(job: dict, identity: object, progress: object, before: list | None) -> dict:
    """Run one job on a worker; returns its outcome as a dict. It never raises for a failed job (only a lost
    worker makes Ray retry). ``before``: :func:`_file_stamp` of the output when the driver submitted the job."""
    node = _node()
    try:
        return _run_job_here(job, identity, progress, before, node)
    except StudioError as exc:
        return {"status": "failed", "node": node, "error": exc.message, "hint": exc.hint}
    except Exception as exc:  # noqa: BLE001 - one broken job must not stop the others
        return {"status": "failed", "node": node, "error": f"internal error: {type(exc).__name__}: {exc}",
                "hint": "this is a bug; please report it with the log"}


def _run_job_here(job: dict, identity: object, progress: object, before: list | None, node: str) -> dict:
    spec = JobSpec(identity=Path(job["identity"]), audio=Path(job["audio"]), output=Path(job["output"]),
                   settings=RenderSettings.from_dict(job["settings"]), video_fit=job["video_fit"])

    def report(fraction: float, notice: tuple[str, str] | None = None) -> None:
        try:
            progress.put_nowait((job["id"], float(fraction), node, os.getpid(), notice))  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - progress is best effort
            pass

    report(0.0)
    if isinstance(identity, tuple) and identity and identity[0] == "error":
        return {"status": "failed", "error": identity[1], "hint": identity[2], "node": node}
    out = spec.output
    # Ray re-runs a task whose worker died: if the lost attempt had already finished the file (it changed since
    # the driver submitted the job, and it verifies), keep it rather than render it again
    now = _file_stamp(out)
    if now is not None and now != before and verify_output(out, expected_s=None) is None:
        from studio.media.video import probe_media

        info = probe_media(out)
        return {"status": "done", "node": node, "n_frames": round(info.duration * (info.fps or spec.settings.fps)),
                "duration_s": info.duration, "fps": info.fps, "mark_id": None, "signed_by": None, "kept": True}
    last = [0.0]

    last_fraction = [0.0]

    def on_progress(ev: Progress) -> None:
        last_fraction[0] = ev.fraction
        t = time.monotonic()
        if t - last[0] >= PROGRESS_EVERY_S:
            last[0] = t
            report(ev.fraction)

    cpus = max(1, int(job.get("cpus", 1)))
    import cv2

    cv2.setNumThreads(cpus)  # the task was scheduled with this many CPUs: stay within them
    result = drive(job_events(spec, cancel=CancelToken(), identity=None if is_video_identity(spec.identity)
                              else identity, threads=cpus), on_progress=on_progress,
                   on_notice=lambda ev: report(last_fraction[0], (ev.level, ev.message)))
    reason = verify_output(out, expected_s=result.duration_s, fps=result.fps)
    if reason is not None:
        return {"status": "failed", "node": node, "error": f"{out.name} did not verify after rendering: {reason}",
                "hint": "check free disk space on the shared folder and run the batch again"}
    return {"status": "done", "node": node, "n_frames": result.n_frames, "duration_s": result.duration_s,
            "fps": result.fps, "signed_by": result.signed_by,
            "mark_id": None if result.mark_id is None else f"{result.mark_id:08x}"}


# ---------------------------------------------------------------------------------------------- driver side

def run_batch_cluster(queue: BatchQueue, *, cluster: str = "auto", workers: int | None = None,
                      overwrite: bool = False, retry_failed: bool = False, cancel: CancelToken | None = None,
                      pause: threading.Event | None = None,
                      report_path: Path | None = None) -> Generator[BatchEvent, None, BatchReport]:
    """:func:`studio.app.batch.run_batch` with the jobs run as Ray tasks (same events, same queue, same report).

    Args:
        cluster: "auto" or "ray://HOST:PORT" (see the module docstring). workers: processes of a local Ray
            instance started by "auto" (default: all cores).
        overwrite, retry_failed, cancel, pause, report_path: as :func:`~studio.app.batch.run_batch` (a pause
            stops submitting; running jobs finish).

    Raises:
        ConfigError: Ray missing or unreachable; the output folder is not writable from a worker; another live
            process runs this batch.
    """
    cancel = cancel or CancelToken()
    queue.acquire_runner()
    try:
        with connect(check_cluster(cluster), workers) as ray:
            return (yield from _drive(ray, queue, overwrite=overwrite, retry_failed=retry_failed, cancel=cancel,
                                      pause=pause, report_path=report_path))
    finally:
        queue.release_runner()


def _drive(ray, queue: BatchQueue, *, overwrite: bool, retry_failed: bool, cancel: CancelToken,
           pause: threading.Event | None, report_path: Path | None) -> Generator[BatchEvent, None, BatchReport]:
    from ray.util.queue import Empty, Queue

    t_run = time.perf_counter()
    probe = ray.remote(num_cpus=0)(_probe_folder)
    node, problem = ray.get(probe.remote(str(queue.output_dir)))
    if problem is not None:
        raise ConfigError(f"the output folder {queue.output_dir} is not writable from the cluster's worker on "
                          f"{node}: {problem}", "put inputs and outputs on a file system every node mounts at the "
                                                "same path (NFS, SMB, a cloud file store) and give that path")
    queue.recover()
    todo, skipped = outstanding_jobs(queue, overwrite=overwrite, retry_failed=retry_failed)
    if any(job.settings.engine.name == "neural" for job in todo) and not ray.cluster_resources().get("GPU"):
        raise ConfigError("the batch has neural-engine jobs, but the Ray cluster has no GPU",
                          "add a node with a GPU to the cluster, or give those jobs engine=lite")
    load_identity = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_load_identity)
    run_job = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_run_job)
    progress = Queue()
    total = len(todo)
    weights = {job.id: _speech_seconds(job.audio) for job in todo}
    index = {job.id: i for i, job in enumerate(todo)}
    total_w = sum(weights.values()) or 1.0
    done_w = 0.0
    fraction: dict[int, float] = {}
    ran: list[int] = []
    stopped = ""
    identities: dict[tuple[str, int], object] = {}  # (photo, face index) -> ObjectRef, one load per identity
    in_flight: dict[object, Job] = {}
    capacity = max(1, int(ray.cluster_resources().get("CPU", 1))) + 1  # queued ahead: bounded driver memory
    pending = list(todo)
    last_write: dict[int, float] = {}

    def overall() -> float:
        return min(1.0, (done_w + sum(weights[j] * f for j, f in fraction.items())) / total_w)

    def eta() -> float | None:
        o, elapsed = overall(), time.perf_counter() - t_run
        return elapsed / o * (1.0 - o) if o > 0.01 and elapsed > 0.5 else None

    def event(kind: str, job_id: int, frac: float, stage: str = "", message: str = "") -> BatchEvent:
        return BatchEvent(kind, queue.get(job_id), index.get(job_id, 0), total, frac, stage, message, overall(), eta())

    try:
        while pending or in_flight:
            if cancel.cancelled:
                stopped = "cancelled"
                break
            while pending and len(in_flight) < capacity and not (pause is not None and pause.is_set()):
                job = queue.get(pending.pop(0).id)  # it may have been edited meanwhile
                settled = settle_before_start(queue, job, overwrite=overwrite)
                if settled is not None:
                    kind, message = settled
                    done_w += weights[job.id]
                    (skipped if kind == "skipped" else ran).append(job.id)
                    yield event(kind, job.id, 1.0, "", message)
                    continue
                started = time.time()
                queue.update(job.id, status="running", pid=os.getpid(), attempts=job.attempts + 1, progress=0.0,
                             started_at=started, finished_at=None, error="", hint="", mark_id=None,
                             signed_by=None, node=None)
                ran.append(job.id)
                ref = None
                if not is_video_identity(job.identity):
                    key = (str(job.identity), int(job.settings.face_index))
                    if key not in identities:
                        identities[key] = load_identity.remote(*key)
                    ref = identities[key]
                gpus = 1 if job.settings.engine.name == "neural" else 0
                spec = job.to_json()
                future = run_job.options(num_cpus=CPUS_PER_JOB, num_gpus=gpus).remote(
                    {**{k: spec[k] for k in ("id", "identity", "audio", "output", "settings", "video_fit")},
                     "cpus": CPUS_PER_JOB}, ref, progress, _file_stamp(job.output))
                in_flight[future] = job
            if pause is not None and pause.is_set() and not in_flight:
                stopped = "paused"
                break
            finished, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.2) if in_flight else ([], [])
            while True:  # progress and the node of each running job, as the workers report them
                try:
                    job_id, frac, node, _pid, notice = progress.get_nowait()
                except Empty:
                    break
                if job_id not in weights or queue.get(job_id).status != "running":
                    continue
                first = job_id not in fraction
                fraction[job_id] = max(fraction.get(job_id, 0.0), frac)
                now = time.perf_counter()
                if first:
                    queue.update(job_id, node=node, progress=frac)
                    yield event("start", job_id, 0.0, "start", node)
                if notice is not None:  # the engine's notices, as a local batch yields them
                    yield event("notice", job_id, fraction[job_id], notice[0], notice[1])
                elif not first and now - last_write.get(job_id, 0.0) >= PROGRESS_EVERY_S:
                    last_write[job_id] = now
                    queue.update(job_id, progress=frac)
                    yield event("progress", job_id, frac, "render", f"on {node}")
            for future in finished:
                job = in_flight.pop(future)
                try:
                    out = ray.get(future)
                except Exception as exc:  # noqa: BLE001 - a lost worker/node (after retries), out of memory, ...
                    lost = type(exc).__name__ in ("WorkerCrashedError", "NodeDiedError", "ObjectLostError",
                                                  "OwnerDiedError", "OutOfMemoryError")
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                    out = {"status": "failed", "node": None,
                           "error": (f"the job's worker was lost {MAX_RETRIES + 1} times ({type(exc).__name__})"
                                     if lost else f"the cluster could not run the job: {first}"),
                           "hint": "check the cluster's nodes (memory, `ray status`) and resume the batch"}
                fraction.pop(job.id, None)
                done_w += weights[job.id]
                elapsed = time.time() - (queue.get(job.id).started_at or time.time())
                if out["status"] == "done":
                    queue.update(job.id, status="done", progress=1.0, finished_at=time.time(), pid=None,
                                 elapsed_s=elapsed, duration_s=out["duration_s"], frames=out["n_frames"],
                                 mark_id=out.get("mark_id"), signed_by=out.get("signed_by"),
                                 node=out.get("node"))
                    yield event("done", job.id, 1.0, "done", f"{out['n_frames']} frames in {elapsed:.1f} s on "
                                                             f"{out.get('node')}")
                else:
                    queue.update(job.id, status="failed", error=out["error"], hint=out.get("hint", ""), pid=None,
                                 finished_at=time.time(), elapsed_s=elapsed, node=out.get("node"))
                    yield event("failed", job.id, 1.0, "failed", out["error"])
    finally:
        if in_flight:  # cancelled (or the driver is being interrupted): stop the running jobs
            for future, job in in_flight.items():
                with contextlib.suppress(Exception):
                    ray.cancel(future, force=True)
            for future, job in in_flight.items():
                remove_stale_partials(job.output)
                queue.update(job.id, status="cancelled", progress=0.0, pid=None, finished_at=time.time(),
                             error="cancelled", hint="resume the batch to redo it")
            stopped = stopped or "cancelled"
        with contextlib.suppress(Exception):
            progress.shutdown()
    for job_id in [j.id for j in todo if queue.get(j.id).status == "cancelled" and j.id in ran]:
        yield event("cancelled", job_id, fraction.get(job_id, 0.0), "", "cancelled")
    return write_report(queue, report_path=report_path, ran=ran, skipped=skipped,
                        elapsed_s=time.perf_counter() - t_run, stopped=stopped)


__all__ = ["MAX_RETRIES", "check_cluster", "connect", "run_batch_cluster"]
