"""Batch dubbing: a resumable queue of render/dub jobs persisted in SQLite beside the outputs.

The queue lives in ``OUTPUT_DIR/.talkstudio-batch.sqlite`` (stdlib sqlite3, WAL journal), so the CLI
(``talkstudio batch``) and the studio's Batch dubbing dialog share it: a batch started in one resumes in
the other. Every job is one identity (photo, or video to re-voice, see :mod:`studio.engine.dub`) and one
speech file into one MP4.

- Jobs come from a CSV (:func:`jobs_from_csv`) or from every identity x speech pair of two folders
  (:func:`jobs_from_folders`); outputs are named ``IDENTITY__SPEECH.mp4`` unless the CSV names them.
- :func:`run_batch` is a generator of :class:`BatchEvent` that returns a :class:`BatchReport`: it recovers
  jobs left ``running`` by a process that died (their ``.partial`` files are removed), skips finished jobs
  whose output still verifies as a complete MP4 (:func:`verify_output`), records a failing job's error and
  hint and goes on with the others, and writes a JSON report.
- Outputs are written by the engine's FrameEncoder (hidden ``.partial`` file renamed when complete), so a
  killed job never leaves a half-written MP4 under its name; an existing output is never replaced unless
  ``overwrite``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import sqlite3
import threading
import time
import traceback
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Generator, Iterable

from studio.core.errors import Cancelled, ConfigError, InputError, OutputError, StudioError
from studio.core.events import CancelToken, Job as LongJob, Notice, Progress
from studio.core.fileio import atomic_write_text, read_text_bounded
from studio.core.termination import pid_alive
from studio.engine.base import Done
from studio.engine.dub import VIDEO_FITS, DubSettings, dub_video, is_video_identity
from studio.engine.face.identity import Identity
from studio.engine.pipeline import RenderRequest, render
from studio.engine.settings import FLAT_NAMES, PATH_NAMES, RenderSettings, absolute_path
from studio.engine.sources.settings import is_pose_preset, parse_emotion
from studio.media.kinds import AUDIO_SUFFIXES, IMAGE_SUFFIXES, VIDEO_SUFFIXES
from studio.media.video import probe_media

log = logging.getLogger(__name__)

QUEUE_NAME = ".talkstudio-batch.sqlite"
#: the largest jobs CSV read (a row is ~200 bytes: 16 MiB is ~80,000 jobs)
MAX_CSV_BYTES = 16 << 20
REPORT_NAME = "batch-report.json"
SCHEMA_VERSION = 3
STATUSES = ("pending", "running", "done", "failed", "cancelled")
#: a CSV's columns: the job's files, how a video identity fits the speech, and any render setting by its
#: flat name (``emotion`` also takes ``NAME:INTENSITY``); identity and audio are required
CSV_COLUMNS = ("identity", "audio", "output", "video_fit") + tuple(FLAT_NAMES)
#: what :meth:`BatchQueue.edit` may change
EDITABLE = ("identity", "audio", "output", "video_fit") + tuple(FLAT_NAMES)
_PROGRESS_WRITE_S = 0.5  # at most one progress write to the queue per this many seconds

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity TEXT NOT NULL, audio TEXT NOT NULL, output TEXT NOT NULL UNIQUE,
    settings TEXT NOT NULL, video_fit TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', error TEXT NOT NULL DEFAULT '', hint TEXT NOT NULL DEFAULT '',
    progress REAL NOT NULL DEFAULT 0, pid INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL, elapsed_s REAL,
    duration_s REAL, frames INTEGER, mark_id TEXT, signed_by TEXT, node TEXT
);
"""
_SCHEMA_STATEMENTS = [s.strip() for s in _SCHEMA.split(";") if s.strip()]


# ---------------------------------------------------------------------------------------------- jobs

@dataclass(frozen=True)
class JobSpec:
    """What one job makes.

    Attributes:
        identity: photo (animated) or video (re-voiced), absolute path.
        audio: speech file, absolute path. output: the MP4 to write, absolute path.
        settings: every render setting of the job (:class:`~studio.engine.settings.RenderSettings`: the
            batch's defaults with the CSV row's overrides). A video identity keeps its own frame rate, head
            motion and expression; its transcript, face index, CRF and x264 preset apply.
        video_fit: "loop" or "trim" (video identities, see :mod:`studio.engine.dub`).
    """

    identity: Path
    audio: Path
    output: Path
    settings: RenderSettings = RenderSettings()
    video_fit: str = "loop"


@dataclass(frozen=True)
class Job(JobSpec):
    """A job in the queue: its spec plus its state.

    Attributes:
        id: row id. status: one of :data:`STATUSES`. error, hint: the failure's message and what to do.
        progress: fraction [0, 1] of the running job (updated every ~0.5 s). pid: process running it.
        attempts: times it was started. started_at / finished_at: Unix times (s). elapsed_s: wall time of
        the last run, seconds. duration_s: the output's duration (s); frames: its frame count.
        mark_id: the output's invisible watermark id (8 hex digits). signed_by: the common name of the
        certificate that signed its Content Credentials (None: unsigned, the ``content_credentials`` setting was
        off). Both are set when the job is done and cleared when it runs again. node: the cluster node that runs
        or ran it ("host (node id)"; None for a local batch).
    """

    id: int = 0
    status: str = "pending"
    error: str = ""
    hint: str = ""
    progress: float = 0.0
    pid: int | None = None
    attempts: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    elapsed_s: float | None = None
    duration_s: float | None = None
    frames: int | None = None
    mark_id: str | None = None
    signed_by: str | None = None
    node: str | None = None

    @property
    def spec(self) -> JobSpec:
        """The job's inputs and settings alone, without its state."""
        return JobSpec(**{f.name: getattr(self, f.name) for f in fields(JobSpec)})

    def to_json(self) -> dict:
        """The job as JSON-ready values (paths as strings, settings as :meth:`RenderSettings.to_dict`)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("identity", "audio", "output"):
            out[key] = str(out[key])
        out["settings"] = self.settings.to_dict()
        return out


def default_output_name(identity: Path, audio: Path) -> str:
    """``IDENTITY__SPEECH.mp4`` from the two files' stems (characters unsafe in file names become _)."""
    clean = lambda s: re.sub(r"[^\w.\-]+", "_", s).strip("._") or "x"  # noqa: E731
    return f"{clean(Path(identity).stem)}__{clean(Path(audio).stem)}.mp4"


def _check_fit(fit: str) -> str:
    if fit not in VIDEO_FITS:
        raise ConfigError(f"unknown video fit {fit!r}", f"choose one of: {', '.join(VIDEO_FITS)}")
    return fit


def row_settings(row: dict[str, str], base: RenderSettings, folder: Path, *, where: str = "") -> RenderSettings:
    """``base`` with the non-blank render-setting cells of one CSV row applied (see :func:`apply_settings`)."""
    return apply_settings(base, {k: v for k, v in row.items() if k in FLAT_NAMES and v != ""}, folder, where=where)


def apply_settings(base: RenderSettings, changes: dict, folder: Path, *, where: str = "") -> RenderSettings:
    """``base`` with flat render settings replaced (a CSV row's cells, a batch edit).

    ``emotion`` takes ``NAME`` or ``NAME:INTENSITY``; a pose video, an emotion source and a person file are
    resolved against ``folder`` when relative; None clears an optional setting (transcript, emotion source,
    person). Raises ConfigError (prefixed with ``where``) for a value that does not parse or is invalid.
    """
    changes = dict(changes)
    try:
        if changes.get("emotion") is not None:
            name, level = parse_emotion(str(changes["emotion"]))
            changes["emotion"] = name
            if level is not None and "emotion_intensity" not in changes:
                changes["emotion_intensity"] = level
        if changes.get("pose") is not None and not is_pose_preset(str(changes["pose"])):
            changes["pose"] = str(_resolve(str(changes["pose"]), folder))
        for name in PATH_NAMES & changes.keys():
            if changes[name] not in (None, ""):
                changes[name] = _resolve(str(changes[name]), folder)
        settings = base.with_values(**changes)
        # source files and models are checked when the job runs: a missing one fails that job only
        settings.check_values()
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}" if where else exc.message, exc.hint) from None
    return settings


class InvalidJobs(ConfigError):
    """Rows of a jobs CSV that cannot run, all of them: ``problems`` is [(where, what is wrong)], ``where`` like
    ``jobs.csv line 7``. Raised before any job starts (``--skip-invalid`` runs the valid rows instead)."""

    def __init__(self, problems: list[tuple[str, str]], total: int) -> None:
        self.problems = problems
        self.total = total
        rows = len({where for where, _ in problems})
        super().__init__(f"{rows} of {total} jobs cannot run (listed above)",
                         "fix those rows, or pass --skip-invalid to run the others")

    def table(self) -> str:
        """The problems as aligned text lines, one per problem."""
        width = max(len(w) for w, _ in self.problems)
        return "\n".join(f"{w:<{width}}  {msg}" for w, msg in self.problems)


def output_inside(output_dir: Path, text: str) -> Path:
    """The output path a job's ``output`` cell names: a file name (or a relative path below the output folder,
    without ``..``) resolved against ``output_dir``. Outputs stay where the user said: inside that folder.

    Raises:
        ConfigError: an absolute path, a ``..`` component, or a name that leaves the folder.
    """
    root = Path(output_dir).expanduser().absolute()
    rel = Path(text)
    if rel.is_absolute() or text.startswith("~") or ".." in rel.parts or not rel.parts:
        raise ConfigError(f"output {text!r} is not inside the output folder",
                          "give a file name such as talk.mp4 (it is written into --output-dir)")
    out = Path(os.path.normpath(root / rel))
    if root not in out.parents:
        raise ConfigError(f"output {text!r} is not inside the output folder", "give a plain file name")
    return out


def input_problems(spec: JobSpec) -> list[str]:
    """What keeps a job's input files from being read, without reading them: each file named (identity,
    speech, a pose or emotion source video, a person file) must exist as a regular file."""
    out = []
    files = [("identity", spec.identity), ("speech", spec.audio)]
    src = spec.settings.sources
    if src.pose_video is not None:
        files.append(("pose source", Path(src.pose_video)))
    if src.emotion_source is not None:
        files.append(("emotion source", Path(src.emotion_source)))
    if spec.settings.engine.person is not None:
        files.append(("person file", Path(spec.settings.engine.person)))
    for what, path in files:
        if not path.exists():
            out.append(f"{what} not found: {path}")
        elif not path.is_file():
            out.append(f"{what} is not a regular file: {path}")
    return out


def jobs_from_csv(path: Path, output_dir: Path, *, defaults: JobSpec | None = None,
                  skip_invalid: bool = False, problems: list[tuple[str, str]] | None = None) -> list[JobSpec]:
    """Read jobs from a CSV with a header row.

    Columns (:data:`CSV_COLUMNS`): identity, audio (required), output, video_fit, and any render setting
    by its flat name (engine, fps, mouth_offset_ms, mouth_intensity, pose, pose_intensity, emotion,
    emotion_intensity, emotion_source, blink,
    seed, transcript, face_index, crf, preset, person, encoder, projection_steps, mouth); a blank cell means
    the default from ``defaults``. identity, audio, a pose video, an emotion source and a person file are
    resolved against the CSV's folder when relative; output against ``output_dir`` (default
    ``IDENTITY__SPEECH.mp4``).

    Every row is checked before anything runs: its cells, that its output stays inside ``output_dir`` (a file
    name or a relative path without ``..``), and that its input files exist (a row whose speech is missing
    fails here, not after the jobs before it have rendered).

    Args:
        skip_invalid: leave invalid rows out (each is appended to ``problems``) instead of raising.
        problems: receives (where, what) of every invalid row when ``skip_invalid``.

    Raises:
        InputError: the CSV cannot be read (not a regular file, over MAX_CSV_BYTES, not UTF-8).
        ConfigError: a required column is missing, or an unknown column. InvalidJobs (a ConfigError): rows
            that cannot run, all of them (a cell that does not parse or is invalid, an empty identity/audio
            cell, an output outside ``output_dir``, a missing input file, two rows with the same output).
    """
    path = Path(path).expanduser()
    base = path.absolute().parent
    d = defaults or JobSpec(Path(), Path(), Path())
    text = read_text_bounded(path, what="jobs file", max_bytes=MAX_CSV_BYTES, encoding="utf-8-sig",
                             hint="give a UTF-8 CSV file (at most 16 MiB) with a header row")
    records: list[tuple[int, list[str]]] = []  # (first line of the record, its cells)
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        start = 1
        for cells in reader:
            records.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"cannot read the jobs file {path}: {exc}", "give a UTF-8 CSV file with a header row") from None
    header = [h.strip().lower() for h in records[0][1]] if records else []
    rows = [(line, cells) for line, cells in records[1:] if any(c.strip() for c in cells)]
    if not rows:
        raise ConfigError(f"no jobs in {path}", "add a header (identity,audio and optional columns such as "
                                                "output,engine,pose,emotion,fps) and one row per video")
    unknown = [h for h in header if h and h not in CSV_COLUMNS]
    missing = [c for c in ("identity", "audio") if c not in header]
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if missing or unknown or twice:
        what = (f"missing column(s) {', '.join(missing)}" if missing else
                f"unknown column(s) {', '.join(unknown)}" if unknown else f"repeated column(s) {', '.join(twice)}")
        raise ConfigError(f"{path}: {what}", f"the columns are: {', '.join(CSV_COLUMNS)} (identity and audio required)")
    specs: list[tuple[str, JobSpec]] = []
    bad: list[tuple[str, str]] = []
    total = 0
    for line, cells in rows:
        total += 1
        where = f"{path.name} line {line}"
        if len(cells) > len(header):
            bad.append((where, f"{len(cells)} cells but {len(header)} columns (quote a cell that holds a comma)"))
            continue
        row = {h: c.strip() for h, c in zip(header, cells) if h}
        try:
            if not row.get("identity") or not row.get("audio"):
                raise ConfigError("identity and audio are required", "fill both cells or delete the row")
            identity = _resolve(row["identity"], base)
            audio = _resolve(row["audio"], base)
            settings = row_settings(row, d.settings, base, where=where)
            fit = _check_fit(row.get("video_fit") or d.video_fit)
            output = output_inside(output_dir, row.get("output") or default_output_name(identity, audio))
        except StudioError as exc:
            message = exc.message[len(where) + 2:] if exc.message.startswith(f"{where}: ") else exc.message
            bad.append((where, f"{message} ({exc.hint})" if exc.hint else message))
            continue
        spec = JobSpec(identity=identity, audio=audio, output=output, settings=settings, video_fit=fit)
        missing = input_problems(spec)
        if missing:
            bad.extend((where, m) for m in missing)
            continue
        specs.append((where, spec))
    seen: dict[Path, str] = {}
    unique = []
    for where, spec in specs:
        if spec.output in seen:
            bad.append((where, f"writes {spec.output.name}, as {seen[spec.output]} does (give another output name)"))
            continue
        seen[spec.output] = where
        unique.append(spec)
    if bad:
        if not skip_invalid:
            raise InvalidJobs(bad, total)
        if problems is not None:
            problems.extend(bad)
    return unique


def _resolve(text: str, base: Path) -> Path:
    return absolute_path(text, base)


def _output_problem(output_dir: Path, output: Path) -> str | None:
    """Why a queued job may not write ``output`` (None when it may): outside the output folder (its real
    path, links resolved), a symbolic link, or not a regular file."""
    def real(p: Path) -> Path:  # links resolved, case folded where the file system ignores case
        return Path(os.path.normcase(os.path.realpath(p)))

    root, parent = real(output_dir), real(output.parent)
    if parent != root and root not in parent.parents:
        return f"{output} is outside the output folder {output_dir}"
    if output.is_symlink():
        return f"{output} is a symbolic link (the studio does not write through links)"
    if output.exists() and not output.is_file():
        return f"{output} is not a regular file"
    return None


def _check_unique(specs: list[JobSpec]) -> None:
    seen: dict[Path, JobSpec] = {}
    for s in specs:
        if s.output in seen:
            other = seen[s.output]
            raise ConfigError(f"two jobs write {s.output.name}: {other.identity.name} + {other.audio.name} and "
                              f"{s.identity.name} + {s.audio.name}", "give them different output names")
        seen[s.output] = s


def _settings_json(settings: RenderSettings) -> str:
    """A job's settings as the queue stores them (canonical JSON, so equal settings compare equal)."""
    return json.dumps(settings.to_dict(), sort_keys=True)


def _migrate_queue_1_to_2(con: sqlite3.Connection) -> None:
    """Schema 1 kept engine, pose, emotion and fps as columns: fold them into the ``settings`` JSON (inside
    the caller's transaction). Values are carried over as they were, unchecked (schema 1 checked them when
    the job ran, so an invalid one still fails its job with the reason), and a relative pose video stays
    relative (it was read from the working folder)."""
    con.execute("ALTER TABLE jobs RENAME TO jobs_v1")
    for statement in _SCHEMA_STATEMENTS:
        con.execute(statement)
    cur = con.execute("SELECT * FROM jobs_v1")
    names = [c[0] for c in cur.description]
    old = [dict(zip(names, r)) for r in cur.fetchall()]
    keep = [c for c in names if c not in ("engine", "pose", "emotion", "fps")]
    for row in old:
        try:
            emotion, level = parse_emotion(row["emotion"])
        except ConfigError:
            emotion, level = str(row["emotion"]), None
        values = {"engine": row["engine"], "pose": row["pose"], "emotion": emotion, "fps": row["fps"]}
        if level is not None:
            values["emotion_intensity"] = level
        settings = RenderSettings().with_values(**values)
        cols = keep + ["settings"]
        con.execute(f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    (*[row[c] for c in keep], _settings_json(settings)))
    con.execute("DROP TABLE jobs_v1")


def _migrate_queue_2_to_3(con: sqlite3.Connection) -> None:
    """Schema 3 records each output's provenance marks (watermark id, C2PA signer) and which cluster node ran
    the job: three new columns."""
    con.execute("ALTER TABLE jobs ADD COLUMN mark_id TEXT")
    con.execute("ALTER TABLE jobs ADD COLUMN signed_by TEXT")
    con.execute("ALTER TABLE jobs ADD COLUMN node TEXT")


def media_files(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    """Files in ``folder`` (not recursive, hidden files skipped) with one of ``suffixes``, sorted by name.

    Raises:
        InputError: the folder does not exist.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"folder not found: {folder}", "give an existing folder")
    wanted = {s.lower() for s in suffixes}
    return sorted((p.absolute() for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in wanted),
                  key=lambda p: p.name.lower())


def cross_product(identities: Iterable[Path], audios: Iterable[Path], output_dir: Path, *,
                  defaults: JobSpec | None = None) -> list[JobSpec]:
    """One job per (identity, speech) pair, outputs ``output_dir/IDENTITY__SPEECH.mp4``.

    Raises:
        ConfigError: two pairs would write the same output name.
    """
    d = defaults or JobSpec(Path(), Path(), Path())
    out_dir = Path(output_dir).expanduser().absolute()
    specs = [replace(d, identity=Path(i).absolute(), audio=Path(a).absolute(),
                     output=out_dir / default_output_name(Path(i), Path(a)))
             for i in identities for a in audios]
    _check_unique(specs)
    return specs


def jobs_from_folders(identities: Path, audio: Path, output_dir: Path, *,
                      defaults: JobSpec | None = None) -> list[JobSpec]:
    """Every identity (photo or video) in one folder x every speech file in another.

    Raises:
        InputError: a folder is missing. ConfigError: a folder holds no usable file.
    """
    ids = media_files(identities, IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    auds = media_files(audio, AUDIO_SUFFIXES | VIDEO_SUFFIXES)
    if not ids:
        raise ConfigError(f"no photo or video in {identities}", "put JPEG/PNG photos or MP4 videos there")
    if not auds:
        raise ConfigError(f"no speech file in {audio}", "put WAV, FLAC, MP3 or M4A files there")
    return cross_product(ids, auds, output_dir, defaults=defaults)


# ---------------------------------------------------------------------------------------------- queue

def queue_path(output_dir: Path) -> Path:
    """Where the queue of a batch writing into ``output_dir`` is kept."""
    return Path(output_dir).expanduser().absolute() / QUEUE_NAME


def _pid_alive(pid: int | None) -> bool:
    return bool(pid) and pid_alive(int(pid))


def partial_files(output: Path) -> list[Path]:
    """Temporary files FrameEncoder may have left for ``output`` (``.NAME.<pid>.<id>.partial.mp4``)."""
    output = Path(output)
    if not output.parent.is_dir():
        return []
    prefix = f".{output.name[:100]}."
    return [p for p in output.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".partial.mp4")]


def remove_stale_partials(output: Path) -> list[Path]:
    """Delete the partial files of ``output`` whose writing process is gone (or is this one); returns them."""
    removed = []
    for p in partial_files(output):
        parts = p.name[len(f".{Path(output).name[:100]}."):].split(".")
        pid = int(parts[0]) if parts and parts[0].isdigit() else None
        if pid is None or pid == os.getpid() or not _pid_alive(pid):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


class BatchQueue:
    """The persisted job queue of one output folder.

    Each call opens its own short-lived SQLite connection, so the queue may be used from any thread
    (the studio's worker writes while its dialog reads) and by several processes.

    Args:
        output_dir: the batch's output folder (created if missing).
        create: False to require an existing queue.

    Raises:
        OutputError: the folder cannot be created or written. ConfigError: no queue there (create=False),
            or it was written by a newer version of the studio.
    """

    def __init__(self, output_dir: Path, *, create: bool = True) -> None:
        self.output_dir = Path(output_dir).expanduser().absolute()
        self.path = queue_path(self.output_dir)
        if not self.path.exists():
            if not create:
                raise ConfigError(f"no batch to resume in {self.output_dir}",
                                  "start one with `talkstudio batch JOBS.csv --output-dir DIR` "
                                  "or `--identities DIR --audio DIR`")
            try:
                self.output_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create the output folder {self.output_dir}: {exc.strerror or exc}",
                                  "choose a folder you can write to") from None
        try:
            con = self._connect()
            try:
                con.execute("PRAGMA journal_mode=WAL")
                # one transaction: a queue is migrated whole or not at all, by one process (another one
                # opening the same queue waits, then sees the new version)
                con.execute("BEGIN IMMEDIATE")
                try:
                    row = None
                    if con.execute("SELECT name FROM sqlite_master WHERE name='meta'").fetchone() is not None:
                        row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                    version = int(row[0]) if row is not None else None
                    if version is not None and version > SCHEMA_VERSION:
                        raise ConfigError(f"the batch queue {self.path} was written by a newer version of the "
                                          "studio", "update Talking Head Studio, or use another output folder")
                    if version == 1:
                        _migrate_queue_1_to_2(con)
                    elif version == 2:
                        _migrate_queue_2_to_3(con)
                    for statement in _SCHEMA_STATEMENTS:
                        con.execute(statement)
                    con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise OutputError(f"cannot open the batch queue {self.path}: {exc}",
                              "check that the output folder is writable; delete the file to start afresh") from None

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        con.row_factory = sqlite3.Row
        return con

    def _exec(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        con = self._connect()
        try:
            with con:
                return con.execute(sql, args).fetchall()
        finally:
            con.close()

    @staticmethod
    def _job(row: sqlite3.Row) -> Job:
        d = dict(row)
        for key in ("identity", "audio", "output"):
            d[key] = Path(d[key])
        d["settings"] = RenderSettings.from_dict(json.loads(d["settings"]))
        return Job(**d)

    # -- reading ---------------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        """Every job, in insertion order."""
        return [self._job(r) for r in self._exec("SELECT * FROM jobs ORDER BY id")]

    def get(self, job_id: int) -> Job:
        """One job by id (KeyError if it was removed)."""
        rows = self._exec("SELECT * FROM jobs WHERE id=?", (job_id,))
        if not rows:
            raise KeyError(job_id)
        return self._job(rows[0])

    def counts(self) -> dict[str, int]:
        """Number of jobs per status (every status present, 0 when none)."""
        out = {s: 0 for s in STATUSES}
        for r in self._exec("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status"):
            out[r["status"]] = r["n"]
        return out

    # -- writing ---------------------------------------------------------------------------------
    def add(self, specs: Iterable[JobSpec], *, overwrite: bool = False) -> list[Job]:
        """Add jobs; a job whose output is already queued is updated (and made pending again when its
        inputs changed, or always with ``overwrite``). A running job is never touched.

        Returns:
            The queued jobs for ``specs``, in order.
        """
        now = time.time()
        ids = []
        con = self._connect()
        try:
            with con:
                for s in specs:
                    values = (str(s.identity), str(s.audio), _settings_json(s.settings), s.video_fit)
                    row = con.execute("SELECT * FROM jobs WHERE output=?", (str(s.output),)).fetchone()
                    if row is None:
                        cur = con.execute(
                            "INSERT INTO jobs (identity, audio, output, settings, video_fit, created_at) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (*values[:2], str(s.output), *values[2:], now))
                        ids.append(cur.lastrowid)
                        continue
                    ids.append(row["id"])
                    if row["status"] == "running" and _pid_alive(row["pid"]) and row["pid"] != os.getpid():
                        continue
                    stored = _settings_json(RenderSettings.from_dict(json.loads(row["settings"])))  # older rows lack
                    same = (row["identity"], row["audio"], stored, row["video_fit"]) == values  # newer keys
                    if same and not overwrite:
                        continue
                    con.execute("UPDATE jobs SET identity=?, audio=?, settings=?, video_fit=?, status='pending', "
                                "error='', hint='', progress=0, mark_id=NULL, signed_by=NULL, node=NULL WHERE id=?",
                                (*values, row["id"]))
        finally:
            con.close()
        return [self.get(i) for i in ids]

    def update(self, job_id: int, **values) -> None:
        """Set columns of one job (e.g. ``status="pending"``)."""
        if not values:
            return
        cols = ", ".join(f"{k}=?" for k in values)
        args = tuple(str(v) if isinstance(v, Path) else v for v in values.values())
        self._exec(f"UPDATE jobs SET {cols} WHERE id=?", (*args, job_id))

    def edit(self, job_id: int, **spec) -> Job:
        """Change a job's files, video fit or render settings (by flat name, see :data:`EDITABLE`; ``emotion``
        takes ``NAME:INTENSITY``); the job becomes pending again.

        Raises:
            ConfigError: the job is running, an unknown field, an invalid value, or the output is already
                another job's.
        """
        bad = set(spec) - set(EDITABLE)
        if bad:
            raise ConfigError(f"cannot edit {', '.join(sorted(bad))}", f"editable: {', '.join(EDITABLE)}")
        job = self.get(job_id)
        if job.status == "running":
            raise ConfigError(f"{job.output.name} is being rendered", "pause or cancel the batch first")
        flat = {k: spec.pop(k) for k in list(spec) if k in FLAT_NAMES}
        if flat:
            spec["settings"] = _settings_json(apply_settings(job.settings, flat, self.output_dir))
        if "video_fit" in spec:
            _check_fit(spec["video_fit"])
        if "output" in spec:
            spec["output"] = _resolve(str(spec["output"]), self.output_dir)
            others = [j for j in self.jobs() if j.id != job_id and j.output == spec["output"]]
            if others:
                raise ConfigError(f"another job already writes {spec['output'].name}", "choose another name")
        self.update(job_id, **spec, status="pending", error="", hint="", progress=0.0)
        return self.get(job_id)

    def remove(self, job_ids: Iterable[int]) -> int:
        """Delete jobs that are not running; returns how many were removed (outputs are kept)."""
        n = 0
        for i in job_ids:
            rows = self._exec("DELETE FROM jobs WHERE id=? AND status!='running' RETURNING id", (i,))
            n += len(rows)
        return n

    def acquire_runner(self) -> None:
        """Mark this process as the one running the batch (one runner per queue at a time).

        Raises:
            ConfigError: another live process is running this batch.
        """
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT value FROM meta WHERE key='runner_pid'").fetchone()
            pid = int(row[0]) if row is not None and str(row[0]).isdigit() else None
            if pid is not None and pid != os.getpid() and _pid_alive(pid):
                con.execute("ROLLBACK")
                raise ConfigError(f"the batch in {self.output_dir} is running in process {pid}",
                                  "wait for it to finish or stop it (the studio's Batch dubbing dialog or "
                                  "`talkstudio batch`), then resume")
            con.execute("INSERT OR REPLACE INTO meta VALUES ('runner_pid', ?)", (str(os.getpid()),))
            con.execute("COMMIT")
        finally:
            con.close()

    def release_runner(self) -> None:
        """Clear this process's runner mark (no-op when another process holds it)."""
        self._exec("DELETE FROM meta WHERE key='runner_pid' AND value=?", (str(os.getpid()),))

    def recover(self) -> list[Job]:
        """Make jobs left ``running`` by a process that is gone pending again and delete their partial files.

        Returns:
            The recovered jobs.

        Raises:
            ConfigError: another live process is running this batch.
        """
        recovered = []
        for job in self.jobs():
            if job.status != "running":
                continue
            if job.pid and job.pid != os.getpid() and _pid_alive(job.pid):
                raise ConfigError(f"the batch in {self.output_dir} is running in process {job.pid}",
                                  "wait for it to finish or stop it, then resume")
            remove_stale_partials(job.output)
            self.update(job.id, status="pending", progress=0.0, pid=None,
                        error="", hint="")
            recovered.append(self.get(job.id))
        return recovered


# ---------------------------------------------------------------------------------------------- verify

def verify_output(path: Path, *, expected_s: float | None = None, fps: float = 25.0) -> str | None:
    """Check that ``path`` is a complete dub: an MP4 with a video and an audio stream whose duration is
    ``expected_s`` (within 2 frames + 50 ms) when given.

    Returns:
        None when complete, else the reason (missing, unreadable, no audio, too short...).
    """
    path = Path(path)
    if not path.is_file():
        return "the output is missing"
    try:
        info = probe_media(path)
    except StudioError as exc:
        return exc.message
    if not info.has_video or not info.has_audio:
        return "the output has no " + ("video" if not info.has_video else "audio") + " stream"
    if info.duration is None:
        return "the output's duration is unknown (incomplete file)"
    if expected_s is not None and abs(info.duration - expected_s) > 2.0 / max(fps, 1.0) + 0.05:
        return f"the output lasts {info.duration:.2f} s instead of {expected_s:.2f} s"
    return None


def _speech_seconds(path: Path) -> float:
    """Duration of a speech file in seconds (1.0 when it cannot be read: the job will say why)."""
    try:
        return float(probe_media(path).duration or 1.0)
    except StudioError:
        return 1.0


# ---------------------------------------------------------------------------------------------- run

@dataclass(frozen=True)
class BatchEvent:
    """Something happened to one job.

    Attributes:
        kind: "start", "progress", "notice", "done", "skipped", "failed" or "cancelled".
        job: the job's state after the event. index: its position among the jobs this run handles (0-based);
        total: how many this run handles. fraction: the job's own progress [0, 1]; stage, message: detail
        (for a notice, stage is its level: "warning" or "note"). overall: the whole run's progress [0, 1]
        (weighted by speech length; never decreases within a run). eta_s: estimated seconds left for the
        run (None until measurable).
    """

    kind: str
    job: Job
    index: int
    total: int
    fraction: float = 0.0
    stage: str = ""
    message: str = ""
    overall: float = 0.0
    eta_s: float | None = None


@dataclass(frozen=True)
class BatchReport:
    """The end of a run: every job's final state and where the JSON report was written.

    Attributes:
        jobs: all jobs of the queue. counts: jobs per status. ran: ids run (or re-run) this time.
        skipped: ids already complete. report_path: the JSON report. elapsed_s: wall time of the run.
        stopped: "" when every job was handled, "paused" or "cancelled" otherwise.
    """

    jobs: tuple[Job, ...]
    counts: dict[str, int]
    ran: tuple[int, ...]
    skipped: tuple[int, ...]
    report_path: Path
    elapsed_s: float
    stopped: str = ""

    @property
    def failed(self) -> list[Job]:
        """The jobs whose status is "failed" (their ``error`` and ``hint`` say why and what to do)."""
        return [j for j in self.jobs if j.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when no job failed and the run was not stopped early."""
        return not self.failed and not self.stopped


def job_events(job: JobSpec, *, cancel: CancelToken, identity: Identity | None = None,
               threads: int | None = None) -> LongJob[Done]:
    """The engine's long job for one job: a video identity is re-voiced, a photo animated (``identity``: the
    photo already loaded and analysed, e.g. shared by a cluster's jobs through Ray's object store; ``threads``:
    the encoder's threads for a photo's render, None = all cores)."""
    settings = job.settings
    if is_video_identity(job.identity):
        if settings.engine.name != "lite":
            raise ConfigError(f"the {settings.engine.name} engine cannot re-voice videos", "use the lite engine")
        dub = DubSettings(fit=job.video_fit, face_index=settings.face_index, transcript=settings.transcript,
                          crf=settings.encode.crf, preset=settings.encode.preset,
                          mouth_offset_ms=settings.mouth_offset_ms, mouth_intensity=settings.mouth_intensity,
                          content_credentials=settings.encode.content_credentials)
        return dub_video(job.identity, job.audio, job.output, dub, cancel=cancel)
    return render(RenderRequest(image=job.identity, audio=job.audio, output=job.output, settings=settings,
                                identity=identity, threads=threads), cancel=cancel)


def run_batch(queue: BatchQueue, *, overwrite: bool = False, retry_failed: bool = False,
              cancel: CancelToken | None = None, pause: threading.Event | None = None,
              report_path: Path | None = None) -> Generator[BatchEvent, None, BatchReport]:
    """Run every outstanding job of ``queue``: yields :class:`BatchEvent` s, returns the :class:`BatchReport`
    (iterate with :class:`~studio.core.events.Returning` to get both).

    Outstanding: pending, cancelled, and interrupted jobs (``running`` in a process that died), failed
    ones too with ``retry_failed``, and done ones whose output no longer verifies. A job whose output
    exists is refused (recorded as failed) unless ``overwrite``, or unless it is this job's own complete
    output from an interrupted attempt.

    Args:
        cancel: stops the running job (its temp file is removed, it becomes "cancelled") and the run.
        pause: when set, the run stops before starting the next job (the rest stay pending).
        report_path: where to write the JSON report (default ``OUTPUT_DIR/batch-report.json``).

    Raises:
        ConfigError: another live process is running this batch. KeyboardInterrupt is re-raised after the
            running job is marked cancelled and its temp file removed.
    """
    cancel = cancel or CancelToken()
    queue.acquire_runner()
    try:
        return (yield from _run(queue, overwrite=overwrite, retry_failed=retry_failed, cancel=cancel, pause=pause,
                                report_path=report_path))
    finally:
        queue.release_runner()


def outstanding_jobs(queue: BatchQueue, *, overwrite: bool, retry_failed: bool) -> tuple[list[Job], list[int]]:
    """(jobs to run, ids of done jobs skipped) of a queue: pending, cancelled and interrupted jobs, failed ones
    with ``retry_failed``, done ones whose output no longer verifies (made pending again), everything with
    ``overwrite``. Shared by the local and the cluster runner."""
    todo: list[Job] = []
    skipped: list[int] = []
    for job in queue.jobs():
        if job.status == "done":
            reason = verify_output(job.output, expected_s=job.duration_s, fps=job.settings.fps)
            if reason is None and not overwrite:
                skipped.append(job.id)
                continue
            if reason is not None:
                queue.update(job.id, status="pending", error="", hint="")
                job = queue.get(job.id)
        elif job.status == "failed" and not retry_failed and not overwrite:
            continue
        todo.append(job)
    return todo, skipped


def settle_before_start(queue: BatchQueue, job: Job, *, overwrite: bool) -> tuple[str, str] | None:
    """Settle a job that must not run, before it starts: an output outside the folder fails it; an existing
    output fails it unless ``overwrite``, or is kept as done when it is this job's own complete output from an
    interrupted attempt. Returns the event (kind "failed" or "skipped", message), or None to run the job (its
    stale partial files removed)."""
    escape = _output_problem(queue.output_dir, job.output)
    if escape is not None:  # a queue written by an older studio, or edited: outputs stay in the folder
        queue.update(job.id, status="failed", error=escape, finished_at=time.time(),
                     hint="give the job an output name inside the output folder")
        return "failed", escape
    remove_stale_partials(job.output)
    if job.output.exists() and not overwrite:
        if job.attempts > 0 and verify_output(job.output, expected_s=None) is None:
            queue.update(job.id, status="done", progress=1.0, finished_at=time.time(), error="", hint="")
            return "skipped", "output already complete"
        queue.update(job.id, status="failed", error=f"{job.output} already exists",
                     hint="pass --overwrite (or tick Overwrite) to replace it, or choose another output folder",
                     finished_at=time.time())
        return "failed", "output exists"
    return None


def _run(queue: BatchQueue, *, overwrite: bool, retry_failed: bool, cancel: CancelToken,
         pause: threading.Event | None, report_path: Path | None) -> Generator[BatchEvent, None, BatchReport]:
    t_run = time.perf_counter()
    queue.recover()
    todo, skipped = outstanding_jobs(queue, overwrite=overwrite, retry_failed=retry_failed)
    weights = [_speech_seconds(j.audio) for j in todo]
    total_w = sum(weights) or 1.0
    done_w = 0.0
    ran: list[int] = []
    stopped = ""
    total = len(todo)
    work_t = 0.0  # seconds spent on jobs this run (for the ETA)

    def eta(overall: float) -> float | None:
        elapsed = work_t + (time.perf_counter() - t_job if t_job else 0.0)
        return elapsed / overall * (1.0 - overall) if overall > 0.01 and elapsed > 0.5 else None

    t_job = 0.0
    for index, job in enumerate(todo):
        if cancel.cancelled:
            stopped = "cancelled"
            break
        if pause is not None and pause.is_set():
            stopped = "paused"
            break
        job = queue.get(job.id)  # it may have been edited meanwhile
        w = weights[index]
        t_job = time.perf_counter()
        settled = settle_before_start(queue, job, overwrite=overwrite)
        if settled is not None:
            kind, message = settled
            done_w += w
            (skipped if kind == "skipped" else ran).append(job.id)
            yield BatchEvent(kind, queue.get(job.id), index, total, 1.0, "", message, done_w / total_w,
                             eta(done_w / total_w))
            continue
        queue.update(job.id, status="running", pid=os.getpid(), attempts=job.attempts + 1, progress=0.0,
                     started_at=time.time(), finished_at=None, error="", hint="", mark_id=None, signed_by=None,
                     node=None)
        job = queue.get(job.id)
        ran.append(job.id)
        yield BatchEvent("start", job, index, total, 0.0, "start", "", done_w / total_w, eta(done_w / total_w))
        last_write = 0.0
        fraction = 0.0  # the running job's progress so far: notices and a cancel report it, not 0
        try:
            events = job_events(job, cancel=cancel)
            while True:  # the job's events become batch events; its return value is the result
                try:
                    ev = next(events)
                except StopIteration as stop:
                    result: Done = stop.value
                    break
                if isinstance(ev, Progress):
                    fraction = ev.fraction
                    overall = (done_w + w * ev.fraction) / total_w
                    now = time.perf_counter()
                    if now - last_write >= _PROGRESS_WRITE_S:
                        last_write = now
                        queue.update(job.id, progress=float(ev.fraction))
                    yield BatchEvent("progress", job, index, total, ev.fraction, ev.stage, ev.message, overall,
                                     eta(overall))
                elif isinstance(ev, Notice):
                    overall = (done_w + w * fraction) / total_w
                    yield BatchEvent("notice", job, index, total, fraction, ev.level, ev.message, overall,
                                     eta(overall))
            cancel.raise_if_cancelled()
            reason = verify_output(job.output, expected_s=result.duration_s, fps=result.fps)
            if reason is not None:
                raise OutputError(f"{job.output.name} did not verify after rendering: {reason}",
                                  "check free disk space and run the batch again")
            queue.update(job.id, status="done", progress=1.0, finished_at=time.time(), pid=None,
                         elapsed_s=time.perf_counter() - t_job, duration_s=result.duration_s,
                         frames=result.n_frames, signed_by=result.signed_by,
                         mark_id=None if result.mark_id is None else f"{result.mark_id:08x}")
            kind, message = "done", f"{result.n_frames} frames in {time.perf_counter() - t_job:.1f} s"
        except (StudioError, KeyboardInterrupt) as exc:
            if isinstance(exc, StudioError) and not (isinstance(exc, Cancelled) or cancel.cancelled):
                queue.update(job.id, status="failed", error=exc.message, hint=exc.hint, pid=None,
                             finished_at=time.time(), elapsed_s=time.perf_counter() - t_job)
                kind, message = "failed", exc.message
                work_t += time.perf_counter() - t_job
                t_job = 0.0
                done_w += w
                yield BatchEvent(kind, queue.get(job.id), index, total, 1.0, kind, message, done_w / total_w,
                                 eta(done_w / total_w))
                continue
            # cancelled (a Ctrl-C also stops ffmpeg, which surfaces as an encoder error): not a failure
            remove_stale_partials(job.output)
            queue.update(job.id, status="cancelled", progress=0.0, pid=None, finished_at=time.time(),
                         elapsed_s=time.perf_counter() - t_job, error="cancelled", hint="resume the batch to redo it")
            if isinstance(exc, KeyboardInterrupt):
                raise
            stopped = "cancelled"
            work_t += time.perf_counter() - t_job
            yield BatchEvent("cancelled", queue.get(job.id), index, total, fraction, "", "cancelled",
                             (done_w + w * fraction) / total_w, None)
            break
        except Exception as exc:  # noqa: BLE001 - one broken job must not stop the others
            log.error("batch job %s failed:\n%s", job.output.name, traceback.format_exc())
            queue.update(job.id, status="failed", error=f"internal error: {type(exc).__name__}: {exc}",
                         hint="this is a bug; please report it with the log", pid=None, finished_at=time.time(),
                         elapsed_s=time.perf_counter() - t_job)
            kind, message = "failed", f"{type(exc).__name__}: {exc}"
        work_t += time.perf_counter() - t_job
        t_job = 0.0
        done_w += w
        yield BatchEvent(kind, queue.get(job.id), index, total, 1.0, kind, message, done_w / total_w,
                         eta(done_w / total_w))
    report = write_report(queue, report_path=report_path, ran=ran, skipped=skipped,
                          elapsed_s=time.perf_counter() - t_run, stopped=stopped)
    return report


def write_report(queue: BatchQueue, *, report_path: Path | None = None, ran: Iterable[int] = (),
                 skipped: Iterable[int] = (), elapsed_s: float = 0.0, stopped: str = "") -> BatchReport:
    """Write the JSON report of the queue's current state (atomically) and return it as a :class:`BatchReport`.

    The JSON holds ``schema_version``, the queue path, counts per status, the run's elapsed seconds, and
    every job (spec, status, error, hint, timings, output duration and frames).
    """
    jobs = tuple(queue.jobs())
    counts = queue.counts()
    path = Path(report_path) if report_path is not None else queue.output_dir / REPORT_NAME
    data = {"schema_version": SCHEMA_VERSION, "queue": str(queue.path), "output_dir": str(queue.output_dir),
            "finished_at": time.time(), "elapsed_s": elapsed_s, "stopped": stopped, "counts": counts,
            "ran": list(ran), "skipped": list(skipped), "jobs": [j.to_json() for j in jobs]}
    atomic_write_text(path, json.dumps(data, indent=2))
    return BatchReport(jobs=jobs, counts=counts, ran=tuple(ran), skipped=tuple(skipped), report_path=path,
                       elapsed_s=elapsed_s, stopped=stopped)
