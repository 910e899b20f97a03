"""The studio's main window, driven headless (QT_QPA_PLATFORM=offscreen) with real sample media.

One window is loaded per module (photo and speech dropped with real QDropEvents, prepare run by the
workers); the tests then seek, edit sources and intensities, undo/redo, drag a keyframe, save and reopen,
and export while a 10 ms QTimer measures how long the UI thread is ever kept from running.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from conftest import sample  # noqa: E402

# Qt 6 marks the QPoint constructor of QDragEnterEvent deprecated but offers no other; it is what Qt sends.
pytestmark = pytest.mark.filterwarnings("ignore:Function.*QDragEnterEvent:DeprecationWarning")

PHOTO = "images/woman_brown_hair_624px.jpg"
SPEECH = "audio/english_short_16k_mono.wav"
POSE_VIDEO = "video/voxceleb2_00086.mp4"
WAIT_MS = 30_000


def drop_file(widget, path: Path) -> bool:
    """Simulate dragging a file from a file manager onto ``widget``; True when the drop was accepted."""
    return drop_files(widget, [path])


def drop_files(widget, paths: list[Path]) -> bool:
    """Simulate dragging several files from a file manager onto ``widget``; True when accepted."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPoint(widget.width() // 2, widget.height() // 2)
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(QPointF(pos), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()


def wait_until(condition, timeout_ms: int = WAIT_MS) -> None:
    """Process events until ``condition()`` holds (module fixtures cannot use qtbot)."""
    deadline = time.perf_counter() + timeout_ms / 1000
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not met in time")
        QApplication.processEvents()
        time.sleep(0.005)


def settle(window) -> None:
    """Wait until no prepare is pending and the preview shows the playhead's frame."""
    wait_until(lambda: not window.controller.preparing and window.session is not None)
    wait_until(lambda: window.preview.frame_index == window.current_frame())


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio")
    mp = pytest.MonkeyPatch()
    for name in ("CONFIG", "DATA", "CACHE"):
        mp.setenv(f"TALKSTUDIO_{name}_DIR", str(root / name.lower()))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def short_speech(dirs) -> Path:
    import soundfile as sf

    data, rate = sf.read(sample(SPEECH), dtype="float32")
    out = dirs / "speech_2s.wav"
    sf.write(out, data[: 2 * rate], rate)
    return out


def _new_window():
    from studio.gui.app import make_app
    from studio.gui.main_window import MainWindow

    make_app()
    window = MainWindow(interactive=False)
    window.resize(1400, 900)
    window.show()
    return window


def _close(window) -> None:
    window.close()
    window.deleteLater()
    QApplication.processEvents()


@pytest.fixture(scope="module")
def window(qapp, dirs, short_speech):
    """A main window with the sample photo dropped on Identity and 2 s of speech on the timeline."""
    w = _new_window()
    assert drop_file(w.identity.view, sample(PHOTO))
    assert drop_file(w.timeline.plots.viewport(), short_speech)
    wait_until(lambda: w.identity.info is not None)
    settle(w)
    yield w
    _close(w)


def test_drop_photo_and_speech_loads_everything(window, short_speech):
    state = window.model.state
    assert state.identity == sample(PHOTO) and state.audio == short_speech
    info = window.identity.info
    assert info.face is not None and info.aligned.shape == (256, 256, 3)
    assert window.identity.problem_text() == ""
    assert window.timeline.duration == pytest.approx(2.0, abs=0.01)
    assert window.session.n_frames == 50
    assert len(window.timeline.segments) > 3  # phoneme lane filled
    assert window.trajectory.track is not None and window.trajectory.projection.shape == (50, 2)
    assert window.preview.image is not None
    # a drop of something that is not speech is refused
    assert not drop_file(window.timeline.plots.viewport(), sample(PHOTO))


def test_click_on_timeline_seeks_and_preview_follows(window, qtbot):
    vb = window.timeline.wave.vb
    view_pt = window.timeline.plots.mapFromScene(vb.mapViewToScene(QPointF(1.3, 0.0)))
    QTest.mouseClick(window.timeline.plots.viewport(), Qt.MouseButton.LeftButton, pos=view_pt)
    qtbot.waitUntil(lambda: abs(window.transport.position - 1.3) < 0.05, timeout=2000)
    k = window.current_frame()
    assert k == pytest.approx(32, abs=1)
    qtbot.waitUntil(lambda: window.preview.frame_index == k, timeout=5000)
    assert window.timeline.head.value() == pytest.approx(window.transport.position)


def test_scrubbing_renders_only_the_newest_frame(window, qtbot):
    renderer = window.controller.renderer
    renders0, requests0 = renderer.renders, renderer.requests
    for k in range(0, 50, 1):  # a fast drag across the whole clip, faster than the engine renders
        window.seek(k / 25 + 0.001)
    qtbot.waitUntil(lambda: window.preview.frame_index == 49, timeout=5000)
    assert renderer.requests - requests0 == 50
    assert renderer.renders - renders0 < 25  # stale requests were dropped, not queued


def test_pose_source_intensity_undo_redo(window, qtbot):
    model, stack = window.model, window.model.undo_stack
    pose = window.sources.pose
    assert model.state.pose == "idle"
    pose.combo.setCurrentIndex(pose.combo.findData("nod"))
    pose.combo.activated.emit(pose.combo.currentIndex())
    assert model.state.pose == "nod"
    pose.slider.sliderPressed.emit()
    for v in (120, 150, 180):  # one drag: three moves, one undo step
        pose.slider.setValue(v)
    assert model.state.pose_intensity == pytest.approx(1.8)
    assert stack.undoText().startswith("Head pose intensity")
    stack.undo()
    assert model.state.pose_intensity == pytest.approx(1.0) and model.state.pose == "nod"
    assert pose.slider.value() == 100  # the view follows the document
    stack.undo()
    assert model.state.pose == "idle"
    assert pose.combo.currentData() == "idle"
    stack.redo()
    stack.redo()
    assert model.state.pose == "nod" and model.state.pose_intensity == pytest.approx(1.8)
    settings = model.state.render_settings()
    assert settings.pose == "nod" and settings.pose_intensity == pytest.approx(1.8)
    settle(window)  # the edit re-ran prepare in a worker
    assert window.session.settings.pose == "nod"


def test_pose_from_dropped_video_shows_thumbnail(window, qtbot):
    pose = window.sources.pose
    assert drop_file(pose, sample(POSE_VIDEO))
    assert window.model.state.pose_video_path == sample(POSE_VIDEO)
    qtbot.waitUntil(pose.thumbnail_ready, timeout=10_000)
    assert pose.combo.currentData() == "__file__"
    window.model.undo_stack.undo()
    assert window.model.state.pose == "nod"
    settle(window)


class _Drag:
    """A pyqtgraph mouse-drag event, as the scene delivers it to a ViewBox."""

    def __init__(self, down, pos, *, start=False, finish=False):
        self._down, self._pos, self._start, self._finish = down, pos, start, finish

    def button(self):
        return Qt.MouseButton.LeftButton

    def modifiers(self):
        return Qt.KeyboardModifier.NoModifier

    def isStart(self):  # noqa: N802
        return self._start

    def isFinish(self):  # noqa: N802
        return self._finish

    def scenePos(self):  # noqa: N802
        return self._pos

    def buttonDownScenePos(self):  # noqa: N802
        return self._down

    def accept(self):
        pass

    def ignore(self):
        pass


def test_dragging_a_channel_sets_a_keyframe(window, qtbot):
    lane = window.trajectory.lanes[0]  # mouth: jaw, open, spread
    track = window.controller.controls
    k = 30
    t = k / track.fps
    y0 = float(track.channel("open")[k])
    vb = lane.vb
    down = vb.mapViewToScene(QPointF(t, y0))
    vb.mouseDragEvent(_Drag(down, down, start=True))
    vb.mouseDragEvent(_Drag(down, vb.mapViewToScene(QPointF(t, 0.9))))
    vb.mouseDragEvent(_Drag(down, vb.mapViewToScene(QPointF(t, 0.9)), finish=True))
    keys = window.model.state.keyframes
    assert set(keys) == {"open"} and keys["open"][0][0] == pytest.approx(t, abs=1e-6)
    assert keys["open"][0][1] == pytest.approx(0.9, abs=0.02)
    # the keyframe only re-applies apply_keyframes: same session, new controls
    assert window.controller.controls.channel("open")[k] == pytest.approx(keys["open"][0][1], abs=1e-5)
    window.model.undo_stack.undo()
    assert window.model.state.keyframes == {}
    assert window.controller.controls.channel("open")[k] == pytest.approx(y0, abs=1e-6)
    window.model.undo_stack.redo()


def test_save_and_reopen_project(window, dirs, qtbot):
    window.set_range((0.4, 1.4))
    path = dirs / "projects" / "talk.talkproj"
    path.parent.mkdir()
    assert window.save_project_to(path)
    assert not window.isWindowModified()
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1
    assert not Path(data["audio"]).is_absolute() and not Path(data["identity"]).is_absolute()
    other = _new_window()
    try:
        assert other.open_project(path)
        assert other.model.state == window.model.state
        assert other.settings.recent[0] == str(path)
        settle(other)
        assert other.controller.controls.channel("open")[30] == pytest.approx(
            window.controller.controls.channel("open")[30])
    finally:
        _close(other)


def test_export_range_to_mp4_keeps_ui_responsive(window, dirs, qtbot):
    from studio.media.video import probe_media

    window.set_range((0.4, 1.4))
    dialog = window.show_export_dialog()
    out = dirs / "export" / "clip.mp4"
    out.parent.mkdir()
    dialog.output.setText(str(out))
    dialog.use_range.setChecked(True)
    dialog.resolution.setCurrentIndex(dialog.resolution.findData("480p"))
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    probe = QTimer(interval=10)
    probe.timeout.connect(tick)
    probe.start()
    qtbot.wait(50)
    gaps.clear()
    last[0] = time.perf_counter()
    qtbot.mouseClick(dialog.export_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.result is not None and dialog.worker is None, timeout=WAIT_MS)
    probe.stop()
    assert dialog.message.plain_text() == ""
    info = probe_media(out)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert (info.width, info.height) == (480, 480)
    assert info.duration == pytest.approx(1.0, abs=0.1)
    assert dialog.open_btn.isVisible()
    assert window.model.state.export.output == out and window.model.state.export.resolution == "480p"
    max_gap = max(gaps)
    print(f"\nUI latency probe during export: {len(gaps)} ticks, max gap {max_gap * 1000:.1f} ms, "
          f"p99 {np.percentile(gaps, 99) * 1000:.1f} ms")
    # Rendering the 25 frames on the UI thread would stall the event loop for the whole export (> 0.5 s
    # here); the bound leaves room for GIL hand-offs on a loaded 2-core CI machine (measured max 16-105 ms,
    # p99 < 25 ms). The figures themselves belong to the benchmarks.
    assert max_gap < 0.25
    assert np.percentile(gaps, 90) < 0.05
    dialog.close()


def test_no_face_photo_shows_inline_error(qapp, dirs, qtbot):
    from PIL import Image

    grey = dirs / "grey.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(grey)
    w = _new_window()
    try:
        assert drop_file(w.identity.view, grey)
        qtbot.waitUntil(lambda: w.identity.problem_text() != "", timeout=WAIT_MS)
        text = w.identity.problem_text()
        assert "no face found" in text and "frontal photo" in text
        assert w.identity.message.isVisible()
        assert w.identity.view._image is not None  # the photo is still shown
        assert not w.identity.pti.isEnabled() and "stylegan2-ffhq-config-f.pt" in w.identity.pti.toolTip()
    finally:
        _close(w)


def test_menus_and_settings_persist(qapp, dirs):
    from studio.app.settings import load_settings

    w = _new_window()
    try:
        titles = [a.text() for a in w.menuBar().actions()]
        assert titles[:2] == ["&File", "&Edit"] and "&View" in titles and "&Help" in titles
        assert w.act_batch.isEnabled() and "resumable queue" in w.act_batch.toolTip()
        assert len(w.view_menu.actions()) >= 4
        w.quality.setCurrentIndex(w.quality.findData("full"))
    finally:
        _close(w)
    s = load_settings()
    assert s.preview_quality == "full" and s.window_geometry
