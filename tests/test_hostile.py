"""Hostile and unlucky inputs (issue 18): termination signals, dead runs' files, unbounded reads, untrusted
project files and outputs that must stay where the user said."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, sample
from studio.cli import main
from studio.media.audio import load_audio

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")


def _tiled(src: Path, dst: Path, seconds: float) -> Path:
    clip = load_audio(src, sample_rate=16000)
    sf.write(dst, np.resize(clip.samples, int(seconds * 16000)), 16000, subtype="PCM_16")
    return dst


def _processes_mentioning(text: str) -> list[int]:
    """Pids of the processes whose command line contains ``text`` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmd:
            out.append(int(entry.name))
    return out


def _start_render(tmp_path: Path, seconds: float = 120.0) -> tuple[subprocess.Popen, Path, Path]:
    """A CLI render of ``seconds`` of speech into tmp_path/out, with its own TMPDIR; returns once ffmpeg is
    writing frames (its .partial file has grown), long before the render can end."""
    audio = _tiled(sample("audio/english_60s_16k_mono.wav"), tmp_path / "speech.wav", seconds)
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "render", "--image",
                             str(sample("images/taylor_256px.jpg")), "--audio", str(audio), "--output",
                             str(out / "talk.mp4"), "--quiet"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"render exited early ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
        partial = [p for p in out.iterdir() if p.name.endswith(".partial.mp4")]
        if partial and partial[0].stat().st_size > 0:
            return proc, out, tmp
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the render never started encoding")


@posix_only
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_termination_signals_leave_nothing_behind(tmp_path, sig):
    """What `timeout`, `docker stop` and a closing terminal send: one clear line, exit 128 + signal, no video,
    no .partial in the output folder, no temp WAV, no ffmpeg left running."""
    proc, out, tmp = _start_render(tmp_path)
    partial = next(p.name for p in out.iterdir() if p.name.endswith(".partial.mp4"))
    try:
        proc.send_signal(getattr(signal, sig))
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode()
    assert rc == 128 + getattr(signal, sig), err[-2000:]
    assert f"stopped by {sig}" in err and "Traceback" not in err, err[-2000:]
    assert sorted(p.name for p in out.iterdir()) == []
    assert [p.name for p in tmp.iterdir() if p.name.startswith("talkstudio-")] == []
    assert _processes_mentioning(partial) == []


@posix_only
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_after_sigkill_ffmpeg_dies_and_the_next_run_cleans_up(tmp_path, monkeypatch):
    proc, out, tmp = _start_render(tmp_path)
    partial = next(p for p in out.iterdir() if p.name.endswith(".partial.mp4"))
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    deadline = time.monotonic() + 30
    while _processes_mentioning(partial.name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(partial.name) == [], "the encoder outlived the killed studio"
    # killed with its parent, ffmpeg did not go on to finish the file: the leftover is not a playable MP4
    from studio.core.errors import StudioError
    from studio.media.video import probe_media

    with pytest.raises(StudioError):
        probe_media(partial)
    wavs = [p for p in tmp.iterdir() if p.name.startswith("talkstudio-") and p.suffix == ".wav"]
    assert partial.exists() and wavs, "a killed process cannot clean up (the premise of this test)"
    # the next run that writes into that folder removes what the dead run left (and only that)
    live = out / f".other.mp4.{os.getpid()}.0123abcd.partial.mp4"
    live.write_bytes(b"a live run's file")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    short = _tiled(sample("audio/english_short_16k_mono.wav"), tmp_path / "short.wav", 1.0)
    assert main(["render", "--image", str(sample("images/taylor_256px.jpg")), "--audio", str(short),
                 "--output", str(out / "next.mp4"), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([live.name, "next.mp4"])
    assert [p for p in tmp.iterdir() if p.name.startswith("talkstudio-")] == []


# ------------------------------------------------------------------------------------------ unbounded reads

@posix_only
@pytest.mark.parametrize("make_argv", [
    lambda t: ["render", "--image", str(sample("images/taylor_256px.jpg")), "--audio",
               str(sample("audio/english_short_16k_mono.wav")), "--output", str(t / "o.mp4"),
               "--transcript-file", "/dev/zero"],
    lambda t: ["batch", "/dev/zero", "--output-dir", str(t / "b")],
], ids=["transcript", "batch-csv"])
def test_devices_are_refused_before_reading(tmp_path, capsys, make_argv):
    assert main(make_argv(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "/dev/zero" in err and "not a regular file" in err


def test_oversized_text_inputs_are_refused(tmp_path, capsys):
    from studio.app.batch import MAX_CSV_BYTES

    big = tmp_path / "jobs.csv"
    with open(big, "wb") as fh:
        fh.write(b"identity,audio\n")
        fh.truncate(MAX_CSV_BYTES + 1)
    assert main(["batch", str(big), "--output-dir", str(tmp_path / "b")]) == 2
    assert "too large" in capsys.readouterr().err


@posix_only
def test_sigterm_stops_a_batch_cleanly(tmp_path):
    """The running job becomes "cancelled" (resumable), its temp files go, and the queue's runner mark is
    released, so `--resume` starts at once."""
    import sqlite3

    from studio.app.batch import BatchQueue, partial_files, queue_path

    long = _tiled(sample("audio/english_60s_16k_mono.wav"), tmp_path / "long.wav", 60.0)
    (tmp_path / "jobs.csv").write_text(f"identity,audio\n{sample('images/taylor_256px.jpg')},{long}\n",
                                       encoding="utf-8")
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "batch", str(tmp_path / "jobs.csv"), "--output-dir",
                             str(out), "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def rendering() -> bool:
        try:
            jobs = BatchQueue(out).jobs() if queue_path(out).exists() else []
        except Exception:  # noqa: BLE001 - the queue is being created
            return False
        return bool(jobs) and jobs[0].status == "running" and any(p.stat().st_size > 0
                                                                   for p in partial_files(jobs[0].output))

    deadline = time.monotonic() + 300
    while not rendering():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the batch never started rendering"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(60)
    err = proc.stderr.read().decode()
    assert rc == 143 and "stopped by SIGTERM" in err and "Traceback" not in err, err[-2000:]
    job = BatchQueue(out).jobs()[0]
    assert job.status == "cancelled" and job.pid is None
    assert not partial_files(job.output) and not job.output.exists()
    assert [p.name for p in tmp.iterdir() if p.name.startswith("talkstudio-")] == []
    with sqlite3.connect(queue_path(out)) as con:
        assert con.execute("SELECT value FROM meta WHERE key='runner_pid'").fetchone() is None


# ------------------------------------------------------------------------------------------ clear errors

PHOTO = sample("images/taylor_256px.jpg")
SPEECH = sample("audio/english_short_16k_mono.wav")


def _render_argv(out: Path, *extra: str) -> list[str]:
    return ["render", "--image", str(PHOTO), "--audio", str(SPEECH), "--output", str(out), "--quiet", *extra]


@pytest.mark.parametrize("shape", [(1, 1), (2, 20000), (20000, 2)])
def test_degenerate_photos_get_one_clear_line(tmp_path, capsys, shape):
    import cv2

    img = tmp_path / "tiny.png"
    cv2.imwrite(str(img), np.full((*shape, 3), 128, np.uint8))
    assert main(["render", "--image", str(img), "--audio", str(SPEECH), "--output", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err
    assert "too small" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("extra, message", [
    (["--seed", "-1"], "invalid seed -1"),
    (["--emotion", "happy:"], "no intensity after the colon"),
    (["--pose-source", str(PHOTO)], "pose source must be a video or a preset"),
])
def test_bad_render_options_are_named(tmp_path, capsys, extra, message):
    try:
        rc = main(_render_argv(tmp_path / "o.mp4", *extra))
    except SystemExit as exc:  # argparse's own (one-line) usage errors
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_eval_checks_its_options_and_leaves_no_empty_report(tmp_path, capsys):
    video = str(sample("video/grid_bbaf2n.mpg"))
    report_file = tmp_path / "report"
    report_file.write_text("not a folder", encoding="utf-8")
    for argv, message in (([video, "--report", str(report_file)], "report folder is a file"),
                          ([video, "--report", str(tmp_path / "r"), "--max-seconds", "0"], "invalid --max-seconds"),
                          ([video, "--report", str(tmp_path / "r"), "--identity-frame", "-1"], "invalid identity frame")):
        assert main(["eval", *argv, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert report_file.read_text(encoding="utf-8") == "not a folder"
    # a run that fails (here: a video with no face) removes the report folder it created
    import cv2

    silent = tmp_path / "noface.mp4"
    from studio.media.audio import AudioClip
    from studio.media.video import FrameEncoder

    with FrameEncoder(silent, width=128, height=128, fps=25,
                      audio=AudioClip(np.zeros(16000, np.float32), 16000)) as enc:
        for _ in range(25):
            enc.write(np.full((128, 128, 3), 90, np.uint8))
    assert main(["eval", str(silent), "--report", str(tmp_path / "r2"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "noface.mp4, frame 0" in err and "identity.png" not in err, err
    assert not (tmp_path / "r2").exists()
    del cv2


# ------------------------------------------------------------------------------------------ outputs

def test_render_never_replaces_what_it_should_not(tmp_path, capsys):
    existing = tmp_path / "talk.mp4"
    existing.write_bytes(b"precious")
    assert main(_render_argv(existing)) == 2
    assert "already exists" in capsys.readouterr().err and existing.read_bytes() == b"precious"
    dangling = tmp_path / "link.mp4"
    dangling.symlink_to(tmp_path / "elsewhere" / "x.mp4")
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    for target, message in ((dangling, "symbolic link"), (fifo, "not a regular file")):
        assert main(_render_argv(target, "--overwrite")) == 2
        assert message in capsys.readouterr().err
    assert dangling.is_symlink() and not (tmp_path / "elsewhere").exists()
    assert main(_render_argv(existing, "--overwrite")) == 0
    assert existing.stat().st_size > 1000


def test_batch_validates_every_row_up_front_and_confines_outputs(tmp_path, capsys):
    rows = ["identity,audio,output"]
    rows += [f"{PHOTO},missing_{k}.wav," for k in range(300)]  # 300 rows whose speech is missing
    rows += [f"{PHOTO},{SPEECH},../../escape.mp4", f"{PHOTO},{SPEECH},{tmp_path / 'abs.mp4'}",
             f"{PHOTO},{SPEECH},fine.mp4"]
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["batch", str(jobs), "--output-dir", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "302 of 303 jobs cannot run" in err
    assert err.count("speech not found") == 300 and err.count("is not inside the output folder") == 2
    assert not out.exists(), "nothing runs (or is created) before every row is valid"
    # --skip-invalid runs the valid row only, and writes nothing outside the output folder
    assert main(["batch", str(jobs), "--output-dir", str(out), "--quiet", "--skip-invalid"]) == 0
    assert "skipping 302 invalid row(s)" in capsys.readouterr().err
    assert (out / "fine.mp4").is_file()
    assert not (tmp_path.parent / "escape.mp4").exists() and not (tmp_path / "abs.mp4").exists()


def test_a_queued_output_outside_the_folder_fails_its_job(tmp_path):
    """A queue from an older studio (or edited by hand) cannot make a job write outside the output folder."""
    from studio.app.batch import BatchQueue, JobSpec, run_batch
    from studio.core.events import Returning

    out = tmp_path / "out"
    out.mkdir()
    queue = BatchQueue(out, create=True)
    queue.add([JobSpec(identity=PHOTO, audio=SPEECH, output=tmp_path / "outside.mp4")])
    run = Returning(run_batch(queue))
    list(run)
    report = run.result
    job = queue.jobs()[0]
    assert job.status == "failed" and "outside the output folder" in job.error
    assert not (tmp_path / "outside.mp4").exists() and report.failed


# ------------------------------------------------------------------------------------------ large photos

def test_large_photos_are_scaled_on_load_with_a_notice(tmp_path):
    import cv2

    from studio.engine.face.identity import load_identity
    from studio.media.image import MAX_PHOTO_SIDE, load_photo

    face = cv2.imread(str(sample("images/obama_official.jpg")))
    big = tmp_path / "big.jpg"
    cv2.imwrite(str(big), cv2.resize(face, (5000, 6250), interpolation=cv2.INTER_LINEAR))
    image, size = load_photo(big)
    assert size == (5000, 6250) and max(image.shape[:2]) == MAX_PHOTO_SIDE
    assert image.shape[:2] == (MAX_PHOTO_SIDE, round(5000 * MAX_PHOTO_SIDE / 6250))
    ident = load_identity(big)
    assert any("5000x6250" in n and "at most 4096" in n for n in ident.notices())


# ------------------------------------------------------------------------------------------ project files

def _valid_project() -> dict:
    from studio.app.project import ProjectState, state_to_dict

    return json.loads(json.dumps(state_to_dict(ProjectState(), Path("/tmp"))))


def _with(doc: dict, path: tuple, value) -> dict:
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize("path, value, field", [
    (("base_dir",), 5, "base_dir"),
    (("export",), "x", "export"),
    (("keyframes",), [1, 2], "keyframes"),
    (("keyframes",), {"jaw": [[0.5]]}, "keyframes.jaw.0"),
    (("keyframes",), {"rm -rf": [[0.5, 1.0]]}, "keyframes"),
    (("range_s",), [1], "range_s"),
    (("settings", "fps"), -5, "settings.fps"),
    (("settings", "sources", "seed"), "abc", "settings.sources.seed"),
    (("settings", "engine", "name"), "rm -rf /", "settings.engine.name"),
    (("export", "resolution"), "8k", "export.resolution"),
    (("settings", "face_index"), -7, "settings.face_index"),
    (("settings", "encode", "crf"), True, "settings.encode.crf"),
])
def test_invalid_project_fields_are_named(tmp_path, path, value, field):
    from studio.app.project import Project
    from studio.core.errors import InputError

    doc = _with(_valid_project(), path, value)
    f = tmp_path / "bad.talkproj"
    f.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(InputError) as err:
        Project.load(f)
    assert f"invalid field {field}" in err.value.message


@pytest.mark.parametrize("text, message", [
    ('{"schema_version": 2, "settings": {"fps": NaN}}', "NaN is not a valid number"),
    ('{"schema_version": true}', "no schema_version"),
    ('{"schema_version": 2, "keyframes": {"jaw": ' + "[" * 100_000 + "]" * 100_000 + "}}", "cannot read the project"),
])
def test_malformed_projects_are_refused(tmp_path, text, message):
    from studio.app.project import Project
    from studio.core.errors import InputError

    f = tmp_path / "bad.talkproj"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        Project.load(f)


def test_a_project_cannot_redirect_its_paths(tmp_path):
    from studio.app.project import Project

    doc = _valid_project()
    doc.update(base_dir="/etc", identity="passwd", export={**doc["export"], "output": "out.mp4"})
    f = tmp_path / "p.talkproj"
    f.write_text(json.dumps(doc), encoding="utf-8")
    state = Project.load(f).state
    assert state.identity == tmp_path / "passwd" and state.export.output == tmp_path / "out.mp4"


@posix_only
def test_loading_a_device_as_a_project_is_refused_at_once():
    from studio.app.project import Project
    from studio.core.errors import InputError

    with pytest.raises(InputError, match="not a regular file"):
        Project.load(Path("/dev/zero"))


def test_stale_file_cleanup_keeps_what_is_not_provably_dead(tmp_path, monkeypatch):
    """Only files of dead local pids that no live writer holds locked are removed: a folder may be shared with
    other machines or containers (where our pid check means nothing), and a name may be crafted."""
    import subprocess as sp

    from studio.media.video import _lock, remove_stale_temp_files

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    dead = sp.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that existed and is gone
    stale = tmp_path / f".a.mp4.{dead.pid}.0123abcd.partial.mp4"
    foreign = tmp_path / f".b.mp4.{dead.pid}.4567abcd.partial.mp4"  # same dead pid, but its writer holds the lock
    crafted = tmp_path / ".c.mp4.99999999999999999999.89abcdef.partial.mp4"
    mine = tmp_path / f".d.mp4.{os.getpid()}.01234567.partial.mp4"
    wav = tmp_path / "tmp" / f"talkstudio-{dead.pid}-x.wav"
    for p in (stale, foreign, crafted, mine, wav):
        p.write_bytes(b"x")
    held = _lock(foreign)
    assert held is not None
    try:
        removed = remove_stale_temp_files(tmp_path)
    finally:
        os.close(held)
    assert sorted(removed) == sorted([stale, wav])
    assert foreign.exists() and crafted.exists() and mine.exists()


@posix_only
def test_an_ignored_sighup_stays_ignored_under_nohup():
    from studio.core.termination import Terminated, termination_raises

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with termination_raises():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)  # nothing is raised: nohup's intent holds
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        with pytest.raises(Terminated), termination_raises():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # interrupted by the handler long before this ends
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_numbers_too_large_for_a_float_and_reversed_ranges_are_refused(tmp_path):
    from studio.app.project import Project
    from studio.core.errors import InputError

    f = tmp_path / "p.talkproj"
    for doc, message in ((_with(_valid_project(), ("keyframes",), {"jaw": [[1.0, 0.5]]}), None),
                         (_with(_valid_project(), ("range_s",), [5.0, 1.0]), "not before the out point")):
        f.write_text(json.dumps(doc), encoding="utf-8")
        if message is None:
            Project.load(f)
        else:
            with pytest.raises(InputError, match=message):
                Project.load(f)
    f.write_text(json.dumps(_valid_project()).replace('"keyframes": {}', '"keyframes": {"jaw": [[1e400, 0.5]]}'),
                 encoding="utf-8")
    with pytest.raises(InputError, match="too large a number"):
        Project.load(f)


def test_a_cut_short_wav_renders_with_a_warning(tmp_path, capsys):
    full = tmp_path / "full.wav"
    sf.write(full, load_audio(SPEECH, sample_rate=16000).samples[:16000 * 2], 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 16000 * 2])  # 1 of its 2 seconds
    assert main(["render", "--image", str(PHOTO), "--audio", str(cut), "--output", str(tmp_path / "o.mp4"),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "cut.wav is cut short" in err and "2.0 s" in err and "1.0 s" in err


def test_a_transcript_that_does_not_match_the_speech_is_said(tmp_path, capsys):
    """GRID clip 'bin blue at f two now': its own sentence aligns; another sentence gets a warning (the mouth then
    follows the sound where the words could not be aligned)."""
    grid = str(sample("video/grid_bbaf2n.mpg"))
    for transcript, warned in (("bin blue at f two now", False), ("the quick brown fox jumps over the lazy dog", True)):
        out = tmp_path / f"{warned}.mp4"
        assert main(["render", "--image", str(PHOTO), "--audio", grid, "--output", str(out), "--quiet",
                     "--transcript", transcript]) == 0
        err = capsys.readouterr().err
        assert ("does not seem to match the speech" in err) == warned, err
