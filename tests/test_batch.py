"""Batch dubbing (issue 10): the SQLite queue, `talkstudio batch`, resume after a kill, video identities."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, pearson, sample
from studio.app.batch import (BatchQueue, InvalidJobs, JobSpec, cross_product, jobs_from_csv, partial_files,
                              queue_path, verify_output)
from studio.cli import main
from studio.core.errors import ConfigError
from studio.engine.dub import DubSettings, MouthDubber, dub_video, edit_mask, frame_plan
from studio.engine.face import topology as T
from studio.engine.face.detect import FaceTracker
from jobutil import notices, run_job
from studio.engine.base import Done
from studio.engine.face.identity import even_crop
from studio.engine.lite.rig import FaceRig
from studio.engine.settings import RenderSettings
from studio.media.audio import load_audio, rms_envelope
from studio.media.video import FrameEncoder, probe_media, read_video_frames


def _speech(src: str, dst: Path, start_s: float, seconds: float) -> Path:
    clip = load_audio(sample(src), sample_rate=16000)
    sf.write(dst, clip.samples[int(start_s * 16000): int((start_s + seconds) * 16000)], 16000, subtype="PCM_16")
    return dst


# ------------------------------------------------------------------------------------------ job lists

def test_csv_defaults_relative_paths_and_errors(tmp_path):
    (tmp_path / "in").mkdir()
    csv_file = tmp_path / "in" / "jobs.csv"
    abs_dir = tmp_path / "abs"
    abs_dir.mkdir()
    for f in (tmp_path / "in" / "face.jpg", tmp_path / "in" / "speech.wav", abs_dir / "b.png", abs_dir / "s2.wav"):
        f.write_bytes(b"x")  # the inputs must exist (they are checked before any job runs, not read)
    csv_file.write_text("identity,audio,output,engine,pose,emotion,fps\n"
                        "face.jpg,speech.wav,,,,,\n"
                        f"{abs_dir}/b.png,{abs_dir}/s2.wav,custom.mp4,lite,nod,happy:0.5,12\n", encoding="utf-8")
    out = tmp_path / "out"
    specs = jobs_from_csv(csv_file, out, defaults=JobSpec(Path(), Path(), Path(), settings=RenderSettings().with_values(fps=30.0, pose="still")))
    assert specs[0].identity == tmp_path / "in" / "face.jpg" and specs[0].audio == tmp_path / "in" / "speech.wav"
    assert specs[0].output == out.absolute() / "face__speech.mp4"
    s0, s1 = specs[0].settings, specs[1].settings
    assert (s0.fps, s0.sources.pose, s0.engine.name) == (30.0, "still", "lite")
    assert specs[1].output == out.absolute() / "custom.mp4"
    assert (s1.fps, s1.sources.pose, s1.sources.emotion, s1.sources.emotion_intensity) == (12.0, "nod", "happy", 0.5)

    bad = tmp_path / "bad.csv"
    bad.write_text("identity,speech\na.jpg,b.wav\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="missing column"):
        jobs_from_csv(bad, out)
    for f in ("a.jpg", "b.wav", "c.jpg", "d.wav"):
        (tmp_path / f).write_bytes(b"x")
    bad.write_text("identity,audio,fps\na.jpg,b.wav,fast\n", encoding="utf-8")
    with pytest.raises(InvalidJobs) as err:
        jobs_from_csv(bad, out)
    assert err.value.problems[0][0] == "bad.csv line 2" and "invalid fps" in err.value.problems[0][1]
    bad.write_text("identity,audio,output\na.jpg,b.wav,x.mp4\nc.jpg,d.wav,x.mp4\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        jobs_from_csv(bad, out)
    assert err.value.problems == [("bad.csv line 3", "writes x.mp4, as bad.csv line 2 does (give another output name)")]
    assert err.value.hint


def test_cross_product_names_and_queue_merge(tmp_path):
    specs = cross_product([Path("/p/ann.jpg"), Path("/p/bob.mp4")], [Path("/a/en.wav"), Path("/a/de.m4a")], tmp_path)
    assert [s.output.name for s in specs] == ["ann__en.mp4", "ann__de.mp4", "bob__en.mp4", "bob__de.mp4"]
    q = BatchQueue(tmp_path)
    assert queue_path(tmp_path).is_file()
    q.add(specs)
    q.add(specs)  # the same jobs again: merged, not duplicated
    assert len(q.jobs()) == 4 and q.counts()["pending"] == 4
    job = q.jobs()[0]
    q.update(job.id, status="done")
    q.add(specs[:1])  # unchanged inputs keep a finished job
    assert q.get(job.id).status == "done"
    q.add([specs[0].__class__(**{**specs[0].__dict__, "settings": RenderSettings(fps=12.0)})])  # changed: redo
    assert q.get(job.id).status == "pending" and q.get(job.id).settings.fps == 12.0
    assert q.remove([job.id]) == 1 and len(q.jobs()) == 3


# ------------------------------------------------------------------------------------------ CLI batch

def test_batch_with_a_bad_job_records_its_error_and_finishes_the_others(tmp_path, capsys):
    speech = _speech("audio/english_short_16k_mono.wav", tmp_path / "hello.wav", 0.0, 1.5)
    not_a_face = tmp_path / "wall.png"
    import cv2

    cv2.imwrite(str(not_a_face), np.full((200, 200, 3), 128, np.uint8))
    (tmp_path / "jobs.csv").write_text(
        "identity,audio,output,engine,pose,emotion,fps\n"
        f"{sample('images/taylor_256px.jpg')},hello.wav,,,still,,10\n"
        "wall.png,hello.wav,,,,,10\n"
        f"{sample('images/woman_dark_hair_474px.png')},hello.wav,,,,sad,10\n", encoding="utf-8")
    out = tmp_path / "out"
    t0 = time.perf_counter()
    rc = main(["batch", str(tmp_path / "jobs.csv"), "--output-dir", str(out), "--quiet"])
    took = time.perf_counter() - t0
    printed = capsys.readouterr()
    assert rc == 1, "a failed job makes the exit status non-zero"
    good = [out / "taylor_256px__hello.mp4", out / "woman_dark_hair_474px__hello.mp4"]
    for path in good:
        assert verify_output(path, expected_s=1.5, fps=10) is None
        info = probe_media(path)
        assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert not (out / "wall__hello.mp4").exists()
    report = json.loads((out / "batch-report.json").read_text(encoding="utf-8"))
    assert str(out / "batch-report.json") in printed.out
    assert report["counts"]["done"] == 2 and report["counts"]["failed"] == 1
    failed = [j for j in report["jobs"] if j["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["identity"].endswith("wall.png")
    assert "no face" in failed[0]["error"] and failed[0]["hint"]
    assert "no face" in printed.err  # the failure is shown as it happens
    assert not [p for p in out.iterdir() if p.name.endswith(".partial.mp4")]
    print(f"3-job batch: {took:.1f} s; per job: "
          + ", ".join(f"{Path(j['output']).name} {j['elapsed_s']:.2f} s" for j in report["jobs"]))

    # an existing file that the queue did not make is never overwritten without --overwrite
    (out / "x.csv").write_text(f"identity,audio,output\n{sample('images/taylor_256px.jpg')},{speech},"
                               "woman_dark_hair_474px__hello.mp4\n", encoding="utf-8")
    other = tmp_path / "other"
    other.mkdir()
    (other / "woman_dark_hair_474px__hello.mp4").write_bytes(b"precious")
    assert main(["batch", str(out / "x.csv"), "--output-dir", str(other), "--quiet"]) == 1
    assert (other / "woman_dark_hair_474px__hello.mp4").read_bytes() == b"precious"
    job = BatchQueue(other).jobs()[0]
    assert job.status == "failed" and "already exists" in job.error and "--overwrite" in job.hint


def _wait_for(pred, timeout: float, proc: subprocess.Popen) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return
        if proc.poll() is not None:
            pytest.fail(f"batch exited early with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("timed out waiting for the batch")


def test_killed_batch_resumes_without_redoing_finished_jobs(tmp_path):
    short = _speech("audio/english_short_16k_mono.wav", tmp_path / "short.wav", 0.0, 1.0)
    long = _speech("audio/english_radio_16k_stereo.wav", tmp_path / "long.wav", 0.5, 6.0)
    (tmp_path / "jobs.csv").write_text(
        "identity,audio,fps\n"
        f"{sample('images/taylor_256px.jpg')},short.wav,10\n"
        f"{sample('images/woman_dark_hair_474px.png')},long.wav,25\n"
        f"{sample('images/taylor_256px.jpg')},long.wav,8\n", encoding="utf-8")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "batch", str(tmp_path / "jobs.csv"),
                             "--output-dir", str(out), "--quiet"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def second_is_rendering() -> bool:
            if not queue_path(out).exists():
                return False
            try:
                jobs = BatchQueue(out).jobs()
            except Exception:  # noqa: BLE001 - the queue is being created
                return False
            return len(jobs) == 3 and jobs[0].status == "done" and jobs[1].status == "running" \
                and jobs[1].progress >= 0.3 and bool(partial_files(jobs[1].output))

        _wait_for(second_is_rendering, 120, proc)
        proc.send_signal(signal.SIGKILL)  # a crash: no chance to clean up
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    queue = BatchQueue(out)
    before = queue.jobs()
    assert [j.status for j in before] == ["done", "running", "pending"]
    assert partial_files(before[1].output), "the killed job left its temp file (as a crash would)"
    assert not before[1].output.exists()

    assert main(["batch", "--resume", "--output-dir", str(out), "--quiet"]) == 0
    after = queue.jobs()
    assert [j.status for j in after] == ["done", "done", "done"]
    assert after[0].attempts == 1 and after[0].finished_at == before[0].finished_at, "the finished job was redone"
    assert after[1].attempts == 2 and after[2].attempts == 1
    for job, seconds, fps in zip(after, (1.0, 6.0, 6.0), (10, 25, 8)):
        assert verify_output(job.output, expected_s=seconds, fps=fps) is None
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".talkstudio-batch.sqlite"
                 and not p.name.startswith(".talkstudio-batch.sqlite-")]
    assert leftovers == [], f"partial files left: {leftovers}"
    report = json.loads((out / "batch-report.json").read_text(encoding="utf-8"))
    assert report["skipped"] == [after[0].id] and sorted(report["ran"]) == [after[1].id, after[2].id]


def test_ctrl_c_cancels_the_running_job_and_cleans_up(tmp_path):
    # 30 s of speech (750 frames): the job is still rendering when the signal arrives, even on a loaded machine
    long = _speech("audio/english_60s_16k_mono.wav", tmp_path / "long.wav", 0.0, 30.0)
    out = tmp_path / "out"
    ids = tmp_path / "ids"
    ids.mkdir()
    (ids / "w.png").symlink_to(sample("images/woman_dark_hair_474px.png"))
    auds = tmp_path / "auds"
    auds.mkdir()
    long.rename(auds / "long.wav")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "studio.cli", "batch", "--identities", str(ids), "--audio",
                             str(auds), "--output-dir", str(out), "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def rendering() -> bool:
        try:
            jobs = BatchQueue(out).jobs() if queue_path(out).exists() else []
        except Exception:  # noqa: BLE001
            return False
        return bool(jobs) and jobs[0].status == "running" and bool(partial_files(jobs[0].output))

    _wait_for(rendering, 120, proc)
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(60)
    err = proc.stderr.read().decode()
    assert rc == 130, err
    job = BatchQueue(out).jobs()[0]
    assert job.status == "cancelled"
    assert not partial_files(job.output) and not job.output.exists()
    assert "--resume" in err


# ------------------------------------------------------------------------------------------ video identities

def _region(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The lower face's box from the landmarks: the face outline's width plus 10 % each side (the jaw moves
    against the background), nose tip to well below the chin."""
    p = points
    oval = p[list(T.FACE_OVAL), 0]
    margin = 0.1 * (oval.max() - oval.min())
    x0, x1 = oval.min() - margin, oval.max() + margin
    y0 = p[T.NOSE_TIP, 1]
    y1 = p[T.CHIN, 1] + 0.8 * (p[T.CHIN, 1] - p[14, 1])
    m = np.zeros(shape, bool)
    m[max(int(y0), 0):int(y1) + 1, max(int(x0), 0):int(x1) + 1] = True
    return m


def test_frame_plan_loops_with_a_crossfade_or_plays_straight():
    a, b, w = frame_plan(10, 8, crossfade=3)
    assert a.tolist() == list(range(8)) and (b == -1).all()
    a, b, w = frame_plan(10, 20, crossfade=3)
    # pass 2 starts at output 7: source 7..9 fade into 0..2, then 3.. follows
    assert a.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 4, 5, 6, 7, 8, 9, 3, 4, 5]
    assert b.tolist()[7:10] == [0, 1, 2] and np.allclose(w[7:10], [0.25, 0.5, 0.75])
    assert (np.diff(w[7:10]) > 0).all() and (b[10:14] == -1).all()


@pytest.fixture(scope="module")
def dubbed(tmp_path_factory):
    """A VoxCeleb2 interview clip (224 px, 5.3 s) re-voiced with 4 s of another person's English speech."""
    tmp = tmp_path_factory.mktemp("dub")
    speech = _speech("audio/english_radio_16k_stereo.wav", tmp / "new.wav", 1.0, 4.0)
    video = sample("video/voxceleb2_00086.mp4")
    out = tmp / "dub.mp4"
    t0 = time.perf_counter()
    done, _events = run_job(dub_video(video, speech, out, DubSettings(fit="loop", crf=18)))
    assert isinstance(done, Done)
    print(f"dub {done.n_frames} frames at 224x224: {time.perf_counter() - t0:.1f} s "
          f"(track {done.timings['track']:.1f} s, render {done.timings['render'] / done.n_frames * 1000:.0f} ms/frame)")
    return video, speech, out, done


def test_dubbed_video_keeps_the_source_outside_the_mouth(dubbed, tmp_path):
    video, speech, out, done = dubbed
    assert done.n_frames == 100 and abs(probe_media(out).duration - 4.0) <= 0.05
    # raw frames: bit-identical outside the edit mask, which lies inside the mouth/jaw box
    _, frames = read_video_frames(video)
    tracker = FaceTracker()
    dubber = MouthDubber()
    src_frames, src_points = [], []
    with frames:
        for k, frame in enumerate(frames):
            if k >= done.n_frames:
                break
            frame = even_crop(frame)
            face = tracker.update(frame)
            src_frames.append(frame)
            src_points.append(face.points)
    for k in (5, 40, 77):
        f, p = src_frames[k], src_points[k]
        dub = dubber.frame(f, p, np.zeros(478, np.float32), {"jaw": 0.8, "open": 0.9, "spread": 0.2})
        region = _region(p, f.shape[:2])
        assert np.array_equal(dub[~region], f[~region]), "a pixel outside the mouth/jaw region changed"
        assert np.abs(dub[region].astype(int) - f[region]).mean() > 1.0, "the mouth was not re-driven"
        box, mask = edit_mask(FaceRig(p, f.shape[:2], head_rotation=False), f.shape[:2])
        assert mask.max() == pytest.approx(1.0) and mask.min() >= 0.0

    # encoded: outside the region, the dub differs from the source no more than re-encoding it unchanged (with
    # the invisible watermark every export carries)
    plain = tmp_path / "plain.mp4"
    with FrameEncoder(plain, width=224, height=224, fps=25, crf=18, watermark=done.mark_id) as enc:
        for f in src_frames:
            enc.write(f)
    _, dub_frames = read_video_frames(out)
    _, plain_frames = read_video_frames(plain)
    out_d, base_d, in_d = [], [], []
    with dub_frames, plain_frames:
        for k, (d, pl) in enumerate(zip(dub_frames, plain_frames)):
            region = _region(src_points[k], d.shape[:2])
            src = src_frames[k].astype(np.int16)
            out_d.append(np.abs(d.astype(np.int16) - src)[~region].mean())
            base_d.append(np.abs(pl.astype(np.int16) - src)[~region].mean())
            in_d.append(np.abs(d.astype(np.int16) - src)[region].mean())
    out_mean, base_mean = float(np.mean(out_d)), float(np.mean(base_d))
    print(f"outside the mouth region: dub vs source {out_mean:.3f} grey levels, plain re-encode {base_mean:.3f}; "
          f"inside: {np.mean(in_d):.2f}")
    assert out_mean <= base_mean + 0.25, (out_mean, base_mean)
    assert np.mean(in_d) > out_mean + 1.0


def _open_interiors(path: Path, limit: int = 200) -> list:
    from studio.engine.eval.metrics import OPEN_GAP, interior_stats, lip_gap

    _, frames = read_video_frames(path)
    tracker, out = FaceTracker(), []
    with frames:
        for k, frame in enumerate(frames):
            if k >= limit:
                break
            face = tracker.update(frame)
            if face is not None and lip_gap(face.points) > OPEN_GAP:
                stats = interior_stats(frame, face.points)
                if stats is not None:
                    out.append(stats)
    return out


@pytest.mark.slow
def test_a_dubbed_mouth_shows_the_persons_own_interior(dubbed, tmp_path, monkeypatch):
    """Re-voiced open mouths take their teeth, tongue and cavity from the person's own open-mouth frames (the
    mouth atlas gathered while tracking): each one's colour is nearer to one of the source's real interiors
    than the modelled interior's is (on this clip: nearest CIE76 ΔE 2.2 against 5.3)."""
    from studio.engine import dub

    video, speech, out, _done = dubbed
    real = np.array([s[0] for s in _open_interiors(video)])
    assert len(real) >= 10

    def nearest(path: Path) -> float:
        gen = _open_interiors(path)
        assert len(gen) >= 10
        return float(np.mean([np.min(np.linalg.norm(real - g[0], axis=1)) for g in gen]))

    monkeypatch.setattr(dub, "MIN_ATLAS", 10 ** 9)  # the modelled interior, as before the atlas
    modelled = tmp_path / "model.mp4"
    _, events = run_job(dub_video(video, speech, modelled, DubSettings(fit="loop", crf=18)))
    assert any("modelled mouth interior" in n for n in notices(events))
    own, model = nearest(out), nearest(modelled)
    assert own < model, (own, model)
    assert own < 4.0, own


def test_dubbed_mouth_follows_the_new_speech(dubbed):
    video, speech, out, done = dubbed
    gaps, src_gaps = [], []
    for path, sink in ((out, gaps), (video, src_gaps)):
        tracker = FaceTracker()
        _, frames = read_video_frames(path)
        with frames:
            for k, frame in enumerate(frames):
                if k >= done.n_frames:
                    break
                face = tracker.update(frame)
                assert face is not None, "every frame must still show a detectable face"
                sink.append(T.inner_lip_gap(face.points) / T.mouth_width(face.points))
    clip = load_audio(speech)
    rms = rms_envelope(clip.samples, clip.sample_rate, fps=25.0, n_frames=len(gaps))
    r_new = pearson(gaps, rms)
    r_old = pearson(src_gaps, rms)
    print(f"mouth opening vs the new speech's RMS: dub r = {r_new:.2f}, original video r = {r_old:.2f}")
    assert r_new >= 0.5, r_new
    assert r_new > r_old + 0.3
    assert max(gaps) - min(gaps) > 0.15


def test_short_video_loops_or_trims(tmp_path):
    # a 1.2 s clip made from the GRID video, dubbed with 2 s of speech
    src = tmp_path / "short.mp4"
    meta, frames = read_video_frames(sample("video/grid_bbaf2n.mpg"), size=(180, 144))
    with frames, FrameEncoder(src, width=180, height=144, fps=25, crf=12) as enc:
        for k, f in enumerate(frames):
            if k == 30:
                break
            enc.write(f)
    speech = _speech("audio/english_short_16k_mono.wav", tmp_path / "s.wav", 0.5, 2.0)
    loop, events = run_job(dub_video(src, speech, tmp_path / "loop.mp4", DubSettings(fit="loop")))
    assert loop.n_frames == 50 and abs(probe_media(tmp_path / "loop.mp4").duration - 2.0) <= 0.05
    assert any("loops" in m for m in notices(events))
    trim, _ = run_job(dub_video(src, speech, tmp_path / "trim.mp4", DubSettings(fit="trim")))
    assert trim.n_frames == 30 and abs(probe_media(tmp_path / "trim.mp4").duration - 1.2) <= 0.05
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial.mp4")]


def test_one_runner_per_queue(tmp_path):
    queue = BatchQueue(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        queue._exec("INSERT OR REPLACE INTO meta VALUES ('runner_pid', ?)", (str(holder.pid),))
        with pytest.raises(ConfigError, match=f"running in process {holder.pid}"):
            queue.acquire_runner()
    finally:
        holder.kill()
        holder.wait()
    queue.acquire_runner()  # the holder is gone: its mark is stale
    queue.release_runner()
    assert not queue._exec("SELECT * FROM meta WHERE key='runner_pid'")
