"""The engine interface: engines looked up by name, immutable prepared states, frames into buffers the
caller owns, sessions that render side by side without touching each other's frames."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import soundfile as sf

from conftest import sample
from studio.core.events import drive
from studio.core.tracks import ControlTrack
from studio.engine import pipeline
from studio.engine.base import Engine
from studio.engine.lite.engine import LiteEngine
from studio.engine.pipeline import ENGINES, prepare
from studio.engine.settings import ENGINE_NAMES, RenderSettings
from studio.media.audio import load_audio


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("iface")
    clip = load_audio(sample("audio/english_short_16k_mono.wav"), sample_rate=16000)
    audio = tmp / "speech.wav"
    sf.write(audio, clip.samples[:16000], 16000)
    settings = RenderSettings().with_values(pose="still", blink="off")
    return drive(prepare(sample("images/taylor_256px.jpg"), audio, settings))


def _wide_open(controls: ControlTrack) -> ControlTrack:
    """The same track with the mouth wide open and the head turned on every frame (a keyframed preview)."""
    values = controls.values.copy()
    for name, v in (("jaw", 1.0), ("open", 1.0), ("yaw", 4.0)):
        values[:, controls.channels.index(name)] = v
    return dataclasses.replace(controls, values=values)


def test_engines_are_looked_up_by_name_and_implement_the_interface():
    assert tuple(ENGINES) == ENGINE_NAMES
    lite = ENGINES["lite"]()
    assert lite is LiteEngine and isinstance(LiteEngine(), Engine)
    neural = ENGINES["neural"]()
    for cls in (lite, neural):
        for method in ("check", "load", "prepare", "render", "latent_summary"):
            assert callable(getattr(cls, method)), (cls.__name__, method)
    assert drive(lite.load(RenderSettings().engine)).batch_size == 1


def test_prepared_state_is_immutable_and_frames_go_into_the_callers_buffer(session):
    prepared, engine, controls = session.prepared, session.engine, session.controls
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepared.rig = None
    assert not prepared.image.flags.writeable and not prepared.roi_xy.flags.writeable
    h, w = prepared.image.shape[:2]
    out = np.zeros((2, h, w, 3), np.uint8)
    got = engine.render(prepared, controls, [3, 7], out=out)
    assert got is out
    fresh = engine.render(prepared, controls, [7, 3])
    assert np.array_equal(fresh[0], out[1]) and np.array_equal(fresh[1], out[0])  # any order, same frames
    assert not np.array_equal(out[0], out[1]) or controls.values[3].tolist() == controls.values[7].tolist()
    with pytest.raises(ValueError, match="out must be"):
        engine.render(prepared, controls, [0], out=np.zeros((1, h, w + 2, 3), np.uint8))


def test_export_frames_are_not_overwritten_by_a_preview_rendering_meanwhile(session, tmp_path, monkeypatch):
    """Issue 15 bug 1: the studio's preview renders (from a keyframed copy of the session) while an export
    hands its frames to the encoder. Each session must render into its own buffer: before, both rendered
    into the prepared state's one frame, so the encoder could receive the preview's frame."""
    preview = session.with_controls(_wide_open(session.controls))
    written: list[np.ndarray] = []
    write = pipeline.FrameEncoder.write

    def interleaved(self, frame):  # the preview thread gets the GIL between render and the pipe write
        preview.render_frame(len(written) % preview.n_frames)
        written.append(frame.copy())
        write(self, frame)

    monkeypatch.setattr(pipeline.FrameEncoder, "write", interleaved)
    drive(session.export(tmp_path / "export.mp4", frame_range=(0, 8)))
    assert len(written) == 8
    for k, frame in enumerate(written):
        expected = session.render_frame(k)
        assert np.array_equal(frame, expected), f"frame {k} was changed by the preview's render"
        assert not np.array_equal(frame, preview.render_frame(k))  # the preview really renders other frames


def test_sessions_render_concurrently_from_one_prepared_state(session):
    a, b = session, session.with_controls(_wide_open(session.controls))
    assert a.prepared is b.prepared
    expect_a = [a.render_frame(k) for k in range(6)]
    expect_b = [b.render_frame(k) for k in range(6)]
    errors: list[str] = []

    def run(s, expect):
        for _ in range(3):
            for k in range(6):
                if not np.array_equal(s.render_frame(k), expect[k]):
                    errors.append(f"frame {k}")

    threads = [threading.Thread(target=run, args=(a, expect_a)), threading.Thread(target=run, args=(b, expect_b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_engine_checks_run_before_any_work(tmp_path, monkeypatch):
    """The neural engine names every missing model file before anything is read or rendered."""
    from studio.core.errors import ModelError

    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(ModelError, match="stylegan2-ffhq-config-f.pt"):
        pipeline.check_settings(RenderSettings().with_values(engine="neural"))
    pipeline.check_settings(RenderSettings())  # lite: nothing to install
