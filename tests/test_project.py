"""The project document, settings, autosave/recovery and the studio's display data (no Qt)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from studio.app.analysis import WaveformPyramid, phone_segments, project_2d
from studio.app.jobs import controls_for, output_size
from studio.app.project import (SCHEMA_VERSION, Autosaver, ExportSettings, Project, ProjectState, find_recoveries,
                                with_keyframe)
from studio.app.settings import MAX_RECENT, Settings, load_settings, save_settings
from studio.core.errors import InputError
from studio.core.tracks import ControlTrack


@pytest.fixture(autouse=True)
def user_dirs(tmp_path, monkeypatch):
    for name in ("CONFIG", "DATA", "CACHE"):
        monkeypatch.setenv(f"TALKSTUDIO_{name}_DIR", str(tmp_path / name.lower()))


def _state(root: Path) -> ProjectState:
    media = root / "media"
    media.mkdir(exist_ok=True)
    for name in ("face.jpg", "speech.wav", "pose.mp4", "smile.png"):
        (media / name).write_bytes(b"x")
    state = ProjectState(identity=media / "face.jpg", audio=media / "speech.wav",
                         keyframes={"jaw": ((0.5, 0.8), (1.0, 0.1))}, range_s=(0.2, 1.8),
                         export=ExportSettings(output=root / "out" / "talk.mp4", resolution="720p"))
    return state.with_values(pose=str(media / "pose.mp4"), pose_intensity=1.5, emotion="happy",
                             emotion_source=media / "smile.png", emotion_intensity=0.4, blink="off", fps=30.0,
                             seed=7, crf=20, preset="slow", encoder="psp", projection_steps=40,
                             mouth="directions")


def test_save_load_roundtrip_with_relative_paths(tmp_path):
    project = Project(_state(tmp_path))
    (tmp_path / "proj").mkdir()
    path = project.save(tmp_path / "proj" / "talk")  # suffix added
    assert path.name == "talk.talkproj" and not project.dirty
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["identity"] == "../media/face.jpg"
    assert data["settings"]["sources"]["pose"] == {"video": "../media/pose.mp4"}
    assert data["settings"]["sources"]["emotion_source"] == "../media/smile.png"
    assert data["export"]["output"] == "../out/talk.mp4"
    loaded = Project.load(path).state
    assert loaded == project.state
    # every render setting survives (schema 1 dropped the encoder, mouth driver, projection steps, preset)
    assert loaded.settings.values() == project.state.settings.values()
    assert (loaded.settings.engine.encoder, loaded.settings.engine.mouth, loaded.settings.engine.projection_steps,
            loaded.settings.encode.preset, loaded.settings.encode.crf) == ("psp", "directions", 40, "slow", 20)
    # the project folder moves with its media: paths still resolve
    moved = tmp_path / "moved"
    moved.mkdir()
    os.rename(tmp_path / "proj", moved / "proj")
    os.rename(tmp_path / "media", moved / "media")
    state = Project.load(moved / "proj" / "talk.talkproj").state
    assert state.identity == moved / "media" / "face.jpg" and state.settings.pose_video == moved / "media" / "pose.mp4"


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    project = Project(_state(tmp_path))
    path = project.save(tmp_path / "a.talkproj")
    project.update(seed=8)
    project.save()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.talkproj", "media"]
    assert json.loads(path.read_text())["settings"]["sources"]["seed"] == 8


def test_newer_or_foreign_files_are_clear_errors(tmp_path):
    newer = tmp_path / "newer.talkproj"
    newer.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(InputError, match="newer studio"):
        Project.load(newer)
    foreign = tmp_path / "foreign.talkproj"
    foreign.write_text("[1, 2]")
    with pytest.raises(InputError, match="not a Talking Head Studio project"):
        Project.load(foreign)
    with pytest.raises(InputError, match="not found"):
        Project.load(tmp_path / "missing.talkproj")


def test_migration_hook_upgrades_old_files(tmp_path, monkeypatch):
    from studio.app import project as mod

    monkeypatch.setattr(mod, "SCHEMA_VERSION", 3)
    monkeypatch.setitem(mod.MIGRATIONS, 2, lambda d: {**d, "audio": d.pop("speech")})
    old = tmp_path / "old.talkproj"
    old.write_text(json.dumps({"schema_version": 2, "speech": "talk.wav"}))
    assert Project.load(old).state.audio == tmp_path / "talk.wav"


def test_schema_1_projects_open_with_every_setting(tmp_path):
    """A project saved before the settings were one model (flat fields, CRF and codec in ``export``)."""
    (tmp_path / "pose.mp4").write_bytes(b"x")
    v1 = {"schema_version": 1, "identity": "face.jpg", "audio": "speech.wav", "transcript": "bin blue",
          "engine": "neural", "fps": 30, "seed": 4, "face_index": 1, "pose": {"video": "pose.mp4"},
          "pose_intensity": 0.5, "emotion": "sad", "emotion_source": None, "emotion_intensity": 0.3,
          "blink": "off", "person": "ann.person.safetensors", "keyframes": {"jaw": [[0.5, 0.2]]},
          "range_s": None, "export": {"output": "out.mp4", "resolution": "720p", "crf": 23,
                                      "encoder": "h264_nvenc", "use_range": False}}
    path = tmp_path / "v1.talkproj"
    path.write_text(json.dumps(v1))
    state = Project.load(path).state
    s = state.settings
    assert (s.fps, s.face_index, s.transcript, s.engine.name, s.engine.person) == (
        30.0, 1, "bin blue", "neural", tmp_path / "ann.person.safetensors")
    assert (s.sources.pose, s.sources.pose_intensity, s.sources.emotion, s.sources.emotion_intensity,
            s.sources.blink, s.sources.seed) == (str(tmp_path / "pose.mp4"), 0.5, "sad", 0.3, "off", 4)
    assert s.encode.crf == 23 and state.export.codec == "h264_nvenc" and state.export.resolution == "720p"
    assert state.keyframes == {"jaw": ((0.5, 0.2),)}


def test_update_notifies_only_real_changes(tmp_path):
    project = Project()
    seen = []
    project.observe(seen.append)
    assert project.update(seed=0) == frozenset() and seen == []
    assert project.update(seed=3, fps=25.0) == {"seed"}
    assert seen == [frozenset({"seed"})] and project.dirty


def test_render_settings_keyframes_and_range(tmp_path):
    state = _state(tmp_path)
    rs = state.render_settings()
    assert (rs.sources.pose, rs.sources.pose_intensity, rs.sources.emotion_source, rs.sources.blink, rs.fps) == (
        str(tmp_path / "media" / "pose.mp4"), 1.5, tmp_path / "media" / "smile.png", "off", 30.0)
    # the person file is the neural engine's: not passed to the lite engine
    assert state.with_values(person=tmp_path / "p.safetensors").render_settings().engine.person is None
    assert state.keyframes_in_frames(30.0, 40) == {"jaw": [(15, 0.8), (30, 0.1)]}
    assert state.keyframes_in_frames(30.0, 20) == {"jaw": [(15, 0.8)]}  # outside the clip: dropped
    assert state.frame_range(30.0, 60) == (6, 54)
    keys = with_keyframe(state.keyframes, "jaw", 0.5004, 0.3)  # replaces the key at the same time
    assert keys["jaw"] == ((0.5004, 0.3), (1.0, 0.1))
    track = ControlTrack.from_channels(30.0, 40, {"jaw": np.zeros(40)})
    assert controls_for(track, state).channel("jaw")[15] == pytest.approx(0.8)


def test_autosave_and_recovery(tmp_path):
    project = Project(_state(tmp_path))
    saver = Autosaver(project)
    assert saver.tick() is None  # clean: nothing to do
    project.update(seed=42)
    auto = saver.tick()
    assert auto is not None and auto.is_file() and saver.tick() is None  # unchanged since
    recoveries = find_recoveries()
    assert len(recoveries) == 1 and recoveries[0].project is None
    recovered = recoveries[0].load()
    assert recovered.state == project.state and recovered.dirty
    # a saved project whose file is newer than the autosave is not offered
    path = project.save(tmp_path / "p.talkproj")
    assert not auto.exists() and find_recoveries() == []
    project.update(seed=43)
    saver.tick()
    assert [r.project for r in find_recoveries()] == [path]
    time.sleep(0.01)
    project.save()
    assert find_recoveries() == []


def test_settings_toml_roundtrip(tmp_path):
    s = Settings(window_geometry="AdnQywAD", preview_quality="full", last_dir='C:\\Users\\a "b"')
    for i in range(MAX_RECENT + 3):
        s.add_recent(tmp_path / f"p{i}.talkproj")
    s.add_recent(tmp_path / "p5.talkproj")
    save_settings(s)
    loaded = load_settings()
    assert loaded == s and len(loaded.recent) == MAX_RECENT and loaded.recent[0].endswith("p5.talkproj")


def test_damaged_settings_give_defaults(tmp_path):
    from studio.app.settings import settings_path

    settings_path().parent.mkdir(parents=True)
    settings_path().write_text("[window\ngeometry = ")
    assert load_settings() == Settings()


def test_waveform_pyramid_bounds_points_for_long_audio():
    rate = 16000
    t = np.arange(rate * 600) / rate  # 10 minutes
    x = (0.5 * np.sin(2 * np.pi * 3 * t)).astype(np.float32)
    x[rate * 300] = 0.99  # one click in the middle must survive decimation
    pyr = WaveformPyramid(x, rate)
    tt, lo, hi = pyr.envelope(0, 600, max_buckets=1500)
    assert len(tt) <= 3100 and hi.max() == pytest.approx(0.99) and lo.min() == pytest.approx(-0.5, abs=1e-3)
    tt, lo, hi = pyr.envelope(299.9, 300.1, max_buckets=1500)
    assert tt[0] <= 299.9 and tt[-1] >= 300.05 and hi.max() == pytest.approx(0.99)


def test_projection_and_phone_segments():
    rng = np.random.default_rng(0)
    values = np.column_stack([rng.normal(size=100), np.zeros(100), rng.normal(size=100) * 30])
    p = project_2d(values)
    assert p.shape == (100, 2) and np.isfinite(p).all()
    segs = phone_segments([("SIL", 0.0, 0.2), ("AA", 0.2, 0.4)], ["X"] * 5 + ["D"] * 5, 25.0)
    assert [(s.phone, s.viseme) for s in segs] == [("SIL", "X"), ("AA", "D")]


def test_output_size_scales_down_to_even():
    assert output_size((910, 1136), "source") == (910, 1136)
    assert output_size((910, 1136), "720p") == (576, 720)
    assert output_size((624, 624), "1080p") == (624, 624)  # never scaled up
