"""One settings model: RenderSettings declared once; the CLI, projects and batch jobs derive from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.app.batch import CSV_COLUMNS, BatchQueue, JobSpec, jobs_from_csv
from studio.app.project import PREPARE_FIELDS, Project, ProjectState
from studio.cli import build_parser
from studio.core.errors import ConfigError
from studio.engine.settings import (ENCODER_CHOICES, ENGINE_NAMES, FLAT_NAMES, MOUTH_MODES, X264_PRESETS,
                                    RenderSettings)
from studio.engine.sources.settings import BLINK_MODES, EMOTIONS, parse_emotion
from studio.media.kinds import IMAGE_SUFFIXES, VIDEO_SUFFIXES, file_filter, with_output_suffix

EVERY = dict(engine="neural", fps=30.0, seed=7, face_index=1, transcript="bin blue at f two now",
             pose="nod", pose_intensity=0.5, emotion="sad", emotion_intensity=0.3, blink="off", crf=23,
             preset="slow", encoder="psp", projection_steps=40, mouth="directions", mouth_offset_ms=-40.0,
             mouth_intensity=1.3, content_credentials=False)


def test_flat_names_cover_every_field_once():
    s = RenderSettings()
    names = set(s.values())
    from dataclasses import fields

    leaves = [f.name for f in fields(RenderSettings) if f.name not in ("sources", "engine", "encode")]
    for group in (s.sources, s.engine, s.encode):
        leaves += [f.name for f in fields(group)]
    assert names == set(FLAT_NAMES) and len(FLAT_NAMES) == len(leaves) == 20
    changed = s.with_values(**EVERY)
    assert {k: changed.value(k) for k in EVERY} == EVERY
    assert changed.engine.name == "neural" and changed.sources.seed == 7 and changed.encode.preset == "slow"
    with pytest.raises(ConfigError, match="unknown setting 'speed'"):
        s.with_values(speed=2)
    with pytest.raises(ConfigError, match="invalid fps 'fast'"):
        s.with_values(fps="fast")
    assert s.with_values(fps="29.97", seed="3", crf="20").values()["crf"] == 20  # text from a CSV


def test_dict_roundtrip_with_relative_paths_and_schema(tmp_path):
    (tmp_path / "media").mkdir()
    s = RenderSettings().with_values(**EVERY, person=tmp_path / "media" / "ann.safetensors",
                                     emotion_source=tmp_path / "media" / "smile.png")
    s = s.with_values(pose=str(tmp_path / "media" / "pose.mp4"))
    data = s.to_dict(relative_to=tmp_path / "proj")
    assert data["schema_version"] == 1 and data["sources"]["pose"] == {"video": "../media/pose.mp4"}
    assert data["engine"]["person"] == "../media/ann.safetensors"
    json.dumps(data)  # JSON-ready
    assert RenderSettings.from_dict(data, relative_to=tmp_path / "proj") == s
    assert RenderSettings.from_dict({}) == RenderSettings()
    with pytest.raises(ConfigError, match="schema 2"):
        RenderSettings.from_dict({"schema_version": 2})
    with pytest.raises(ConfigError, match="must be a JSON object"):
        RenderSettings.from_dict({"sources": [1]})


@pytest.mark.parametrize("bad, match", [(dict(fps=0.5), "invalid fps"), (dict(pose_intensity=4), "pose intensity"),
                                        (dict(emotion="bored"), "unknown emotion"), (dict(crf=60), "CRF"),
                                        (dict(preset="warp"), "x264 preset"), (dict(engine="fast"), "unknown engine"),
                                        (dict(mouth="lips"), "mouth mode"), (dict(blink="source"), "source video"),
                                        (dict(mouth_offset_ms=900), "mouth offset"),
                                        (dict(mouth_intensity=-1), "mouth intensity")])
def test_invalid_values_are_named(bad, match):
    with pytest.raises(ConfigError, match=match):
        RenderSettings().with_values(**bad).validate()


def test_cli_options_are_the_settings():
    """render and batch take every setting, with the settings' own choices and defaults."""
    parser = build_parser()
    args = ["--engine", "neural", "--fps", "30", "--seed", "7", "--face-index", "1", "--transcript",
            "bin blue at f two now", "--pose-source", "nod", "--pose-intensity", "0.5", "--emotion", "Sad:0.3",
            "--blink", "off", "--crf", "23", "--preset", "slow", "--encoder", "psp", "--projection-steps", "40",
            "--mouth", "directions", "--mouth-offset-ms", "-40", "--mouth-intensity", "1.3",
            "--content-credentials", "off"]
    from studio.cli import _settings_from_args

    render = _settings_from_args(parser.parse_args(["render", "--image", "a", "--audio", "b", "--output", "c"] + args))
    batch = _settings_from_args(parser.parse_args(["batch", "--output-dir", "d"] + args))
    assert render == batch == RenderSettings().with_values(**EVERY)
    defaults = _settings_from_args(parser.parse_args(["batch", "--output-dir", "d"]))
    assert defaults == RenderSettings()
    sub = next(a for a in parser._actions if a.dest == "command").choices["render"]
    choices = {a.dest: tuple(a.choices) for a in sub._actions if a.choices}
    assert choices == {"engine": ENGINE_NAMES, "blink": BLINK_MODES, "encoder": ENCODER_CHOICES,
                       "mouth": MOUTH_MODES, "preset": X264_PRESETS, "content_credentials": ("on", "off")}


def test_emotion_is_parsed_one_way_everywhere(tmp_path):
    assert parse_emotion("Happy : 0.5") == ("happy", 0.5) and parse_emotion("") == ("neutral", None)
    assert set(EMOTIONS) >= {"neutral", "happy", "sad", "angry", "surprised"}
    csv_file = tmp_path / "jobs.csv"
    (tmp_path / "a.jpg").write_bytes(b"x")  # inputs must exist (checked, not read, when the CSV is read)
    (tmp_path / "b.wav").write_bytes(b"x")
    csv_file.write_text("identity,audio,emotion\na.jpg,b.wav,Happy:0.5\n", encoding="utf-8")
    from_csv = jobs_from_csv(csv_file, tmp_path)[0].settings
    parser = build_parser()
    from studio.cli import _settings_from_args

    from_cli = _settings_from_args(parser.parse_args(["batch", "--output-dir", "d", "--emotion", "Happy:0.5"]))
    assert from_csv.sources == from_cli.sources
    assert (from_csv.sources.emotion, from_csv.sources.emotion_intensity) == ("happy", 0.5)


def test_a_batch_job_can_set_every_setting(tmp_path):
    """Before, a CSV could set engine, pose, emotion and fps only: not seed, blinks, transcript, emotion
    source or pose intensity."""
    assert set(FLAT_NAMES) <= set(CSV_COLUMNS)
    for name in ("smile.png", "a.jpg", "b.wav"):
        (tmp_path / name).write_bytes(b"x")
    csv_file = tmp_path / "jobs.csv"
    csv_file.write_text("identity,audio,seed,blink,transcript,emotion_source,pose_intensity,crf\n"
                        "a.jpg,b.wav,5,off,place blue at c,smile.png,2.5,22\n", encoding="utf-8")
    defaults = JobSpec(Path(), Path(), Path(), settings=RenderSettings().with_values(fps=30.0))
    job = jobs_from_csv(csv_file, tmp_path / "out", defaults=defaults)[0]
    s = job.settings
    assert (s.sources.seed, s.sources.blink, s.transcript, s.sources.emotion_source, s.sources.pose_intensity,
            s.encode.crf, s.fps) == (5, "off", "place blue at c", tmp_path / "smile.png", 2.5, 22, 30.0)
    queue = BatchQueue(tmp_path / "out")
    stored = queue.add([job])[0]
    assert stored.settings == s  # the queue keeps all of it
    edited = queue.edit(stored.id, seed="9", emotion="angry:0.2")
    assert (edited.settings.sources.seed, edited.settings.sources.emotion,
            edited.settings.sources.emotion_intensity) == (9, "angry", 0.2)
    cleared = queue.edit(stored.id, transcript=None, emotion_source=None)
    assert cleared.settings.transcript is None and cleared.settings.sources.emotion_source is None
    with pytest.raises(ConfigError, match="cannot be empty"):
        queue.edit(stored.id, engine=None)
    with pytest.raises(ConfigError) as err:
        csv_file.write_text("identity,audio,pose_intensity\na.jpg,b.wav,9\n", encoding="utf-8")
        jobs_from_csv(csv_file, tmp_path / "out")
    assert err.value.problems[0][0] == "jobs.csv line 2" and "invalid pose intensity" in err.value.problems[0][1]


def test_cli_paths_are_absolute_so_a_queue_can_resume_anywhere(tmp_path, monkeypatch):
    from studio.cli import _settings_from_args

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["batch", "--output-dir", "d", "--pose", "clips/nod.mp4",
                                      "--emotion-source", "smile.png", "--person", "ann.safetensors"])
    s = _settings_from_args(args)
    assert s.sources.pose == str(tmp_path / "clips" / "nod.mp4")
    assert s.sources.emotion_source == tmp_path / "smile.png" and s.engine.person == tmp_path / "ann.safetensors"


V1_QUEUE = """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta VALUES ('schema_version', '1');
    CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, identity TEXT NOT NULL, audio TEXT NOT NULL,
        output TEXT NOT NULL UNIQUE, engine TEXT NOT NULL, pose TEXT NOT NULL, emotion TEXT NOT NULL,
        fps REAL NOT NULL, video_fit TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
        error TEXT NOT NULL DEFAULT '', hint TEXT NOT NULL DEFAULT '', progress REAL NOT NULL DEFAULT 0,
        pid INTEGER, attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, started_at REAL,
        finished_at REAL, elapsed_s REAL, duration_s REAL, frames INTEGER);
    INSERT INTO jobs (identity, audio, output, engine, pose, emotion, fps, video_fit, status, created_at)
        VALUES ('/m/a.jpg', '/m/b.wav', '/o/a__b.mp4', 'lite', 'nod', 'happy:0.4', 12, 'trim', 'done', 1.0);
    INSERT INTO jobs (identity, audio, output, engine, pose, emotion, fps, video_fit, created_at)
        VALUES ('/m/c.jpg', '/m/b.wav', '/o/c__b.mp4', 'neural', 'clips/nod.mp4', 'joy', 500, 'loop', 2.0);
"""


def _v1_queue(folder: Path) -> Path:
    import sqlite3

    from studio.app.batch import queue_path

    path = queue_path(folder)
    con = sqlite3.connect(path)
    con.executescript(V1_QUEUE)
    con.commit()
    con.close()
    return path


def test_a_schema_1_batch_queue_resumes_with_its_values(tmp_path):
    """Queues written before the settings were one model keep their jobs, and every value as it was: an
    invalid one still fails its own job when it runs (schema 1 checked them then), a relative pose video
    stays relative."""
    _v1_queue(tmp_path)
    done, bad = BatchQueue(tmp_path).jobs()
    s = done.settings
    assert (done.identity, done.status, done.video_fit) == (Path("/m/a.jpg"), "done", "trim")
    assert (s.fps, s.sources.pose, s.sources.emotion, s.sources.emotion_intensity) == (12.0, "nod", "happy", 0.4)
    b = bad.settings
    assert (b.engine.name, b.sources.pose, b.sources.emotion, b.fps) == ("neural", "clips/nod.mp4", "joy", 500.0)
    with pytest.raises(ConfigError, match="invalid fps"):
        b.check_values()
    assert len(BatchQueue(tmp_path).jobs()) == 2  # opening again: already migrated


def test_a_schema_2_batch_queue_gains_the_provenance_columns(tmp_path):
    """Schema 3 records each output's watermark id and signer; a schema 2 queue keeps its jobs and states."""
    import sqlite3

    from studio.app.batch import SCHEMA_VERSION, queue_path

    path = queue_path(tmp_path)
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '2');
        CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, identity TEXT NOT NULL, audio TEXT NOT NULL,
            output TEXT NOT NULL UNIQUE, settings TEXT NOT NULL, video_fit TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending', error TEXT NOT NULL DEFAULT '', hint TEXT NOT NULL DEFAULT '',
            progress REAL NOT NULL DEFAULT 0, pid INTEGER, attempts INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL, started_at REAL, finished_at REAL, elapsed_s REAL, duration_s REAL,
            frames INTEGER);
        INSERT INTO jobs (identity, audio, output, settings, video_fit, status, created_at)
            VALUES ('/m/a.jpg', '/m/b.wav', '/o/a__b.mp4', '{}', 'loop', 'done', 1.0);
    """)
    con.commit()
    con.close()
    (job,) = BatchQueue(tmp_path).jobs()
    assert (job.status, job.mark_id, job.signed_by) == ("done", None, None)
    assert job.settings.encode.content_credentials is True  # older settings JSON lacks the key: the default
    q = BatchQueue(tmp_path)  # opening again: already migrated
    q.update(job.id, mark_id="0badf00d", signed_by="Talking Head Studio (key 1234abcd)")
    assert q.get(job.id).to_json()["mark_id"] == "0badf00d"
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    con.close()


def test_an_interrupted_queue_migration_leaves_the_old_queue(tmp_path, monkeypatch):
    from studio.app import batch as batch_mod

    _v1_queue(tmp_path)
    calls = {"n": 0}
    real = batch_mod.RenderSettings.with_values

    def interrupted(self, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # after the table was renamed and the first job copied
            raise KeyboardInterrupt
        return real(self, **kw)

    monkeypatch.setattr(batch_mod.RenderSettings, "with_values", interrupted)
    with pytest.raises(KeyboardInterrupt):
        BatchQueue(tmp_path)
    monkeypatch.setattr(batch_mod.RenderSettings, "with_values", real)
    jobs = BatchQueue(tmp_path).jobs()  # the next run migrates it whole
    assert [j.output.name for j in jobs] == ["a__b.mp4", "c__b.mp4"]


def test_project_fields_follow_the_settings(tmp_path):
    assert PREPARE_FIELDS >= set(FLAT_NAMES) - {"crf", "preset", "content_credentials"}
    project = Project()
    seen = []
    project.observe(seen.append)
    assert project.update(mouth="directions", crf=20) == {"mouth", "crf"}
    assert project.state.settings.engine.mouth == "directions" and project.state.value("crf") == 20
    assert project.values(["mouth", "range_s"]) == {"mouth": "directions", "range_s": None}
    with pytest.raises(ConfigError):
        ProjectState().with_values(lips=1)


def test_a_damaged_project_is_a_clear_error(tmp_path):
    from studio.core.errors import InputError

    bad = tmp_path / "bad.talkproj"
    for text in ('{"schema_version": 1, "export": "x"}', '{"schema_version": 2, "settings": {"engine": {"name": null}}}',
                 '{"schema_version": 2, "settings": {"fps": "fast"}}'):
        bad.write_text(text)
        with pytest.raises(InputError, match="invalid field"):
            Project.load(bad)


def test_media_kinds_are_one_list():
    assert ".png" in IMAGE_SUFFIXES and ".mkv" in VIDEO_SUFFIXES
    assert file_filter("Photos", {".png", ".jpg"}) == "Photos (*.jpg *.png)"
    assert with_output_suffix("talk") == "talk.mp4" and with_output_suffix("talk.MOV") == "talk.MOV"
