"""``talkstudio batch``: the resumable batch-dubbing queue on the command line.

Progress: one bar for the running job and one for the whole run with its ETA (rich, on a terminal; one
line per finished job otherwise). Ctrl-C cancels the running job at its next frame (its temp file is
removed, it is marked cancelled) and stops; a second Ctrl-C interrupts at once. At the end: a summary
table and the JSON report's path. Exit status 0 when every job is done, 1 when any failed, 130 when
cancelled, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from studio.app.batch import (BatchEvent, BatchQueue, BatchReport, InvalidJobs, JobSpec, jobs_from_csv, jobs_from_folders,
                              run_batch)
from studio.core.errors import Cancelled, ConfigError
from studio.core.events import CancelToken, Returning
from studio.engine.settings import RenderSettings

_STYLE = {"done": "green", "failed": "red", "cancelled": "yellow", "pending": "dim", "running": "cyan"}


def _specs(args: argparse.Namespace, settings: RenderSettings) -> list[JobSpec] | None:
    """The jobs named on the command line, with ``settings`` as their defaults (None with --resume alone)."""
    folders = args.identities is not None or args.audio is not None
    if args.jobs is not None and folders:
        raise ConfigError("give either a jobs CSV or --identities/--audio, not both",
                          "run one batch per jobs source, or put every job in the CSV")
    defaults = JobSpec(identity=Path(), audio=Path(), output=Path(), settings=settings, video_fit=args.video_fit)
    if args.jobs is not None:
        problems: list[tuple[str, str]] = []
        try:
            specs = jobs_from_csv(args.jobs, args.output_dir, defaults=defaults, skip_invalid=args.skip_invalid,
                                  problems=problems)
        except InvalidJobs as exc:
            print(exc.table(), file=sys.stderr)
            raise
        if problems:
            rows = len({where for where, _ in problems})
            table = InvalidJobs(problems, rows + len(specs)).table()
            print(f"skipping {rows} invalid row(s):\n{table}", file=sys.stderr)
        if not specs:
            raise ConfigError("no valid job to run", "fix the rows listed above")
        return specs
    if folders:
        if args.identities is None or args.audio is None:
            raise ConfigError("--identities and --audio go together", "give both folders")
        return jobs_from_folders(args.identities, args.audio, args.output_dir, defaults=defaults)
    if not args.resume:
        raise ConfigError("nothing to do", "give JOBS.csv, or --identities DIR --audio DIR, or --resume")
    return None


def run_batch_command(args: argparse.Namespace, settings: RenderSettings) -> int:
    """Run ``talkstudio batch`` for parsed arguments; ``settings``: the render options given (the jobs'
    defaults). Returns the exit status (see the module doc).

    Raises:
        StudioError subclasses for bad arguments (the CLI prints them as one line).
    """
    if args.cluster != "local":
        from studio.app.cluster import _ray, check_cluster

        check_cluster(args.cluster)
        _ray()  # says how to install Ray before anything is queued
    specs = _specs(args, settings)
    queue = BatchQueue(args.output_dir, create=specs is not None)
    if specs is not None:
        queue.add(specs, overwrite=args.overwrite)
    cancel = CancelToken()

    def on_sigint(signum, frame):  # first Ctrl-C: stop cleanly after the current frame; second: at once
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()
        print("\ncancelling: stopping the running job and removing its temp file (Ctrl-C again to force)",
              file=sys.stderr)

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        if args.cluster == "local":
            if args.workers is not None:
                raise ConfigError("--workers needs --cluster auto", "add --cluster auto (Ray) to run jobs in parallel")
            events = run_batch(queue, overwrite=args.overwrite, retry_failed=args.retry_failed, cancel=cancel,
                               report_path=args.report)
        else:
            from studio.app.cluster import run_batch_cluster

            events = run_batch_cluster(queue, cluster=args.cluster, workers=args.workers, overwrite=args.overwrite,
                                       retry_failed=args.retry_failed, cancel=cancel, report_path=args.report)
        report = _drive(events, quiet=args.quiet)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    _summary(report)
    print(f"report: {report.report_path}")
    if report.stopped == "cancelled":
        raise Cancelled("batch cancelled", "finished videos are kept; `talkstudio batch --resume --output-dir "
                                           f"{queue.output_dir}` continues")
    return 1 if report.failed else 0


def _drive(batch, *, quiet: bool) -> BatchReport:
    events = Returning(batch)
    if not quiet and sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        columns = (TextColumn("{task.description:<34}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                   TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"))
        with Progress(*columns, console=console, transient=True) as bar:
            overall = bar.add_task("batch", total=1.0, detail="", eta="")
            current = bar.add_task("", total=1.0, detail="", eta="")
            for ev in events:
                eta = f"ETA {_fmt_s(ev.eta_s)}" if ev.eta_s is not None else ""
                bar.update(overall, completed=ev.overall, eta=eta,
                           description=f"batch: job {ev.index + 1}/{ev.total}")
                bar.update(current, completed=ev.fraction, description=ev.job.output.name[:34],
                           detail=ev.message[:40])
                if ev.kind in ("done", "failed", "cancelled", "skipped", "notice"):
                    bar.console.print(_line(ev))
    else:
        for ev in events:
            if ev.kind in ("start", "done", "failed", "cancelled", "skipped", "notice"):
                print(_line(ev, rich=False), file=sys.stderr, flush=True)
    assert events.result is not None
    return events.result


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _line(ev: BatchEvent, *, rich: bool = True) -> str:
    name = ev.job.output.name
    head = f"[{ev.index + 1}/{ev.total}] {name}"
    if ev.kind == "failed":
        text = f"{head}: failed: {ev.job.error}" + (f" — {ev.job.hint}" if ev.job.hint else "")
        return f"[red]{text}[/]" if rich else text
    if ev.kind == "notice":
        return f"[yellow]{head}: {ev.message}[/]" if rich else f"{head}: {ev.stage or 'warning'}: {ev.message}"
    text = f"{head}: {ev.kind}" + (f" ({ev.message})" if ev.message and ev.kind != "start" else "")
    if ev.kind in ("done", "start") and ev.eta_s is not None:
        text += f", batch ETA {_fmt_s(ev.eta_s)}"
    return f"[{_STYLE.get(ev.kind, 'white')}]{text}[/]" if rich and ev.kind in _STYLE else text


def _summary(report: BatchReport) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"batch: {report.counts['done']} done, {report.counts['failed']} failed, "
                        f"{report.counts['pending'] + report.counts['cancelled']} to do "
                        f"({report.elapsed_s:.1f} s)")
    for col in ("#", "output", "status", "seconds", "video", "error"):
        table.add_column(col, overflow="fold")
    for job in report.jobs:
        took = f"{job.elapsed_s:.1f}" if job.elapsed_s is not None and job.status == "done" else ""
        if job.id in report.skipped and job.id not in report.ran:
            took = "kept"
        length = f"{job.duration_s:.2f} s" if job.duration_s is not None and job.status == "done" else ""
        error = job.error + (f" — {job.hint}" if job.hint else "") if job.status == "failed" else ""
        style = _STYLE.get(job.status, "white")
        table.add_row(str(job.id), job.output.name, f"[{style}]{job.status}[/]", took, length, error)
    Console(width=max(100, Console().width)).print(table)
