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
import soundfile as sf
import pytest

pytest.importorskip("PySide6.QtWidgets")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from conftest import resolved_paths, same_path, sample  # noqa: E402

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


class UiProbe:
    """A 10 ms QTimer on the UI thread that records, for every interval between two ticks, the wall-clock
    gap and the CPU time the UI thread itself spent in it (``time.thread_time``).

    The CPU time is what the studio's own code does on the UI thread; a gap longer than it is the thread
    waiting (for the GIL held by a worker, or for a core on a loaded machine)."""

    #: Bounds on the UI thread's own CPU time between two ticks (``time.thread_time``): what the studio's code
    #: does on it, which load from other processes does not inflate. Any one gap (no stretch of work longer
    #: than 50 ms) and the median gap: scrubbing costs the UI thread ~7 ms of CPU per gap, idle or on a
    #: loaded machine, while a preview render done on the UI thread (~25 ms of CPU for a lite frame of a
    #: 624 px photo, seconds for a neural one) makes it >= 20 ms at every seek.
    MAX_CPU_S = 0.05
    MAX_MEDIAN_CPU_S = 0.015
    #: Bound on the wall-clock gap, which also counts the UI thread waiting (for the GIL held by a worker, on a
    #: blocking call) and kept from a core by other processes: a loaded two-core machine delays it tens of ms
    #: now and then (up to ~140 ms seen beside three busy loops and another test run), far from 250 ms;
    #: blocking it for hundreds of ms still exceeds that.
    MAX_GAP_S = 0.25

    def __init__(self, name: str) -> None:
        self.name = name
        self.gaps: list[float] = []
        self.cpu: list[float] = []
        self.timer = QTimer(interval=10)
        self.timer.timeout.connect(self._tick)

    def __enter__(self) -> "UiProbe":
        self._wall, self._cpu = time.perf_counter(), time.thread_time()
        self.timer.start()
        return self

    def _tick(self) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        self.gaps.append(wall - self._wall)
        self.cpu.append(cpu - self._cpu)
        self._wall, self._cpu = wall, cpu

    def __exit__(self, *exc) -> None:
        self.timer.stop()

    def check(self) -> None:
        """The UI thread never works more than 50 ms at a stretch, typically works less than 15 ms between two
        ticks (its own CPU time, see :attr:`MAX_CPU_S`) and is never kept from running 250 ms (wall clock).

        No wall-clock bound near the 10 ms tick (such as a 50 ms p99): on a busy machine the OS alone delays
        the UI thread that much now and then, whatever the studio does."""
        gaps, cpu = np.array(self.gaps), np.array(self.cpu)
        assert len(gaps) > 10, f"{self.name}: the probe barely ran ({len(gaps)} ticks)"
        print(f"\nUI latency probe during {self.name}: {len(gaps)} ticks; wall gap median "
              f"{np.median(gaps) * 1000:.1f} ms, p99 {np.percentile(gaps, 99) * 1000:.1f} ms, max "
              f"{gaps.max() * 1000:.1f} ms; UI-thread CPU per gap median {np.median(cpu) * 1000:.1f} ms, "
              f"max {cpu.max() * 1000:.1f} ms")
        assert cpu.max() < self.MAX_CPU_S, (
            f"{self.name}: the UI thread worked {cpu.max() * 1000:.0f} ms (CPU time) without a break")
        assert np.median(cpu) < self.MAX_MEDIAN_CPU_S, (
            f"{self.name}: the UI thread typically worked {np.median(cpu) * 1000:.0f} ms (CPU time) between two "
            "10 ms ticks: is something (a frame render?) done on it instead of in a worker?")
        assert gaps.max() < self.MAX_GAP_S, f"{self.name}: the UI thread stalled {gaps.max() * 1000:.0f} ms"


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
    assert same_path(state.identity, sample(PHOTO)) and same_path(state.audio, short_speech)
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


def test_notices_keep_their_level_in_the_status_bar(window):
    """A job's warning and its notes reach the window with their level (the first wave dropped it)."""
    window.controller.notice.emit("the audio is silent", "warning")
    assert window.status_label.text() == "warning: the audio is silent"
    assert "ffc66d" in window.status_label.styleSheet()
    window.controller.notice.emit("neural engine: the mouth follows the directions", "note")
    assert window.status_label.text() == "neural engine: the mouth follows the directions"
    assert window.status_label.styleSheet() == ""


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
    renderer.clear_cache()  # frames rendered ahead earlier would hide whether stale requests are dropped
    renders0, requests0 = renderer.renders, renderer.requests
    with UiProbe("scrubbing") as probe:
        for k in range(0, 50, 1):  # a drag across the whole clip (a mouse move every 5 ms), faster than renders
            window.seek(k / 25 + 0.001)
            qtbot.wait(5)
        qtbot.waitUntil(lambda: window.preview.frame_index == 49, timeout=5000)
    assert renderer.requests - requests0 == 50
    assert renderer.renders - renders0 < 30  # stale requests were dropped, not queued
    probe.check()


def test_paused_preview_renders_ahead_and_plays_every_frame_from_the_cache(window, qtbot):
    fps = window.controller.controls.fps
    window.set_range((0.4, 1.2))
    window.seek(0.4)
    renderer = window.controller.renderer
    renderer.clear_cache()
    # paused: the frames after the playhead up to the out point are rendered ahead and marked on the timeline
    first, last = 10, 29  # frames of [0.4 s, 1.2 s)
    qtbot.waitUntil(lambda: set(range(first, last + 1)) <= set(renderer.cached_frames(window.controller.generation)),
                    timeout=WAIT_MS)
    assert max(renderer.cached_frames(window.controller.generation)) <= last  # not past the out point
    qtbot.waitUntil(lambda: any(a <= first / fps and b >= (last + 1) / fps - 1e-6
                                for a, b in window.timeline.cached_spans), timeout=2000)
    shown: list[tuple[int, str]] = []
    original = window.preview.show_frame
    window.preview.show_frame = lambda image, k, overlay: (shown.append((k, overlay)), original(image, k, overlay))
    try:
        with UiProbe("playback") as probe:
            window.transport.play()
            assert window.transport.playing
            qtbot.waitUntil(lambda: not window.transport.playing, timeout=5000)
    finally:
        del window.preview.show_frame
        window.set_range(None)
    assert window.transport.position == pytest.approx(1.2) and window.timeline.head.value() == pytest.approx(1.2)
    qtbot.waitUntil(lambda: window.preview.frame_index == window.current_frame() == 30, timeout=5000)
    frames = [k for k, _ in shown if k <= last]
    assert frames == sorted(frames) and frames[0] <= first + 1
    assert len(set(frames) & set(range(first, last + 1))) >= 0.8 * (last + 1 - first)  # ticks may skip a frame
    assert all("cached" in overlay for k, overlay in shown if k <= last)
    probe.check()


def test_trajectory_draws_every_channel_of_every_lane(window):
    from studio.app.analysis import TRAJECTORY_GROUPS

    n = window.session.n_frames
    for lane, (_title, _unit, channels) in zip(window.trajectory.lanes, TRAJECTORY_GROUPS):
        assert tuple(lane.curves) == channels
        for name in channels:
            x, y = lane.curves[name].getData()
            assert len(x) == n and np.array_equal(y, window.controller.controls.channel(name)), name
        # the legend sits above the curves: the lane's y range leaves headroom over the highest value
        top = max(float(window.controller.controls.channel(c).max()) for c in channels)
        assert lane.plot.viewRange()[1][1] > top


def test_pose_source_intensity_undo_redo(window, qtbot):
    model, stack = window.model, window.model.undo_stack
    pose = window.sources.pose
    assert model.state.value("pose") == "idle"
    pose.combo.setCurrentIndex(pose.combo.findData("nod"))
    pose.combo.activated.emit(pose.combo.currentIndex())
    assert model.state.value("pose") == "nod"
    pose.slider.sliderPressed.emit()
    for v in (120, 150, 180):  # one drag: three moves, one undo step
        pose.slider.setValue(v)
    assert model.state.value("pose_intensity") == pytest.approx(1.8)
    assert stack.undoText().startswith("Head pose intensity")
    stack.undo()
    assert model.state.value("pose_intensity") == pytest.approx(1.0) and model.state.value("pose") == "nod"
    assert pose.slider.value() == 100  # the view follows the document
    stack.undo()
    assert model.state.value("pose") == "idle"
    assert pose.combo.currentData() == "idle"
    stack.redo()
    stack.redo()
    assert model.state.value("pose") == "nod" and model.state.value("pose_intensity") == pytest.approx(1.8)
    settings = model.state.render_settings()
    assert settings.sources.pose == "nod" and settings.sources.pose_intensity == pytest.approx(1.8)
    settle(window)  # the edit re-ran prepare in a worker
    assert window.session.settings.sources.pose == "nod"


def test_pose_from_dropped_video_shows_thumbnail(window, qtbot):
    pose = window.sources.pose
    assert drop_file(pose, sample(POSE_VIDEO))
    assert same_path(window.model.state.settings.pose_video, sample(POSE_VIDEO))
    qtbot.waitUntil(pose.thumbnail_ready, timeout=10_000)
    assert pose.combo.currentData() == "__file__"
    window.model.undo_stack.undo()
    assert window.model.state.value("pose") == "nod"
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
    from studio.app.project import SCHEMA_VERSION

    window.set_range((0.4, 1.4))
    path = dirs / "projects" / "talk.talkproj"
    path.parent.mkdir()
    assert window.save_project_to(path)
    assert not window.isWindowModified()
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert not Path(data["audio"]).is_absolute() and not Path(data["identity"]).is_absolute()
    other = _new_window()
    try:
        assert other.open_project(path)
        # reopened paths are resolved against the project's folder: ../shared (the samples) may be a symlink
        assert resolved_paths(other.model.state) == resolved_paths(window.model.state)
        assert other.settings.recent[0] == str(path)
        settle(other)
        assert other.controller.controls.channel("open")[30] == pytest.approx(
            window.controller.controls.channel("open")[30])
    finally:
        _close(other)


def test_export_range_to_mp4_keeps_ui_responsive(window, dirs, qtbot):
    from studio.media.credentials import create_local_key, signing_key
    from studio.media.video import probe_media

    if signing_key() is None:  # else the first export says that it made one (a message above the buttons)
        create_local_key()

    window.set_range((0.4, 1.4))
    dialog = window.show_export_dialog()
    out = dirs / "export" / "clip.mp4"
    out.parent.mkdir()
    dialog.output.setText(str(out))
    dialog.use_range.setChecked(True)
    dialog.resolution.setCurrentIndex(dialog.resolution.findData("480p"))
    qtbot.wait(50)
    export_x = dialog.export_btn.mapTo(dialog, dialog.export_btn.rect().topLeft())  # buttons must not move
    assert dialog.open_btn.isVisible() and not dialog.open_btn.isEnabled()
    with UiProbe("export") as probe:
        qtbot.mouseClick(dialog.export_btn, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: dialog.result is not None and dialog.worker is None, timeout=WAIT_MS)
    assert dialog.message.plain_text() == ""
    info = probe_media(out)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert (info.width, info.height) == (480, 480)
    assert info.duration == pytest.approx(1.0, abs=0.1)
    assert dialog.open_btn.isVisible() and dialog.open_btn.isEnabled()
    assert dialog.export_btn.mapTo(dialog, dialog.export_btn.rect().topLeft()) == export_x
    assert window.model.state.export.output == out and window.model.state.export.resolution == "480p"
    probe.check()
    dialog.close()


def test_export_can_skip_signing_with_a_warning_and_verify_reads_the_marks(window, dirs, qtbot):
    from studio.app.provenance import MARKED, UNMARKED
    from studio.media.credentials import read_credentials

    dialog = window.show_export_dialog()
    assert dialog.credentials.isChecked() and not dialog.credentials_warning.isVisible()
    dialog.credentials.setChecked(False)
    assert dialog.credentials_warning.isVisible()
    out = dirs / "unsigned" / "clip.mp4"
    out.parent.mkdir()
    dialog.output.setText(str(out))
    dialog.resolution.setCurrentIndex(dialog.resolution.findData("480p"))
    qtbot.mouseClick(dialog.export_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.result is not None and dialog.worker is None, timeout=WAIT_MS)
    assert window.model.state.settings.encode.content_credentials is False  # recorded in the project
    assert "Content Credentials are off" in dialog.message.plain_text()
    assert read_credentials(out).state == "absent" and dialog.result.signed_by is None
    dialog.close()
    window.model.undo_stack.undo()  # the window is shared by this module's tests
    assert window.model.state.settings.encode.content_credentials is True

    verify = window.show_verify_dialog()
    verify.check([out, sample("video/grid_bbaf2n.mpg")])
    qtbot.waitUntil(lambda: verify.worker is None and bool(verify.results), timeout=WAIT_MS)
    assert [r.status for r in verify.results] == [MARKED, UNMARKED]
    assert verify.results[0].watermark.mark_id == dialog.result.mark_id
    assert "1 marked as synthetic, 1 without a mark" in verify.summary.text()
    assert "Watermark: found" in verify.report.toPlainText()
    verify.check([out] * 20)  # closing mid-check stops the worker first (else Qt aborts the process)
    verify.reject()
    assert verify.worker is None or verify.worker.isFinished()


def test_export_asks_before_replacing_a_file_and_lists_what_it_reads(window, dirs, qtbot, monkeypatch):
    """A project may come from anywhere: its stored output path is not trusted to replace a file silently."""
    dialog = window.show_export_dialog()
    out = dirs / "existing.mp4"
    out.write_bytes(b"precious")
    dialog.output.setText(str(out))
    asked = []

    def refuse(path):
        asked.append(dialog.reads_and_writes(path))
        return False

    monkeypatch.setattr(dialog, "confirm_replace", refuse)
    qtbot.mouseClick(dialog.export_btn, Qt.MouseButton.LeftButton)
    qtbot.wait(100)
    assert dialog.worker is None and out.read_bytes() == b"precious"
    reads, writes = asked[0]
    assert writes == out and window.model.state.identity in reads and window.model.state.audio in reads
    dialog.close()


def test_window_fits_a_1280x720_laptop_screen(window, qtbot):
    """Before: the minimum size was 844x967, so the timeline and status bar were off a 720 px screen."""
    hint = window.minimumSizeHint()
    assert hint.width() <= 1024 and hint.height() <= 640, hint
    window.resize(1280, 720)
    qtbot.waitUntil(lambda: window.height() == 720, timeout=5000)
    qtbot.wait(50)
    inside = window.rect()
    parts = {"preview": window.preview, "status bar": window.statusBar(),
             **{name: dock for name, dock in window.docks.items()}}
    for name, widget in parts.items():
        assert widget.isVisible(), name
        top_left = widget.mapTo(window, widget.rect().topLeft())
        geom = widget.rect().translated(top_left)
        assert inside.contains(geom), (name, geom, inside)
        assert geom.height() >= 60 or name == "status bar", (name, geom)
    assert window.timeline.plots.height() >= 100  # the waveform and lanes are usable, not a sliver
    window.resize(1400, 900)  # the window is shared by this module's tests
    qtbot.waitUntil(lambda: window.height() == 900, timeout=5000)


def test_reset_layout_brings_back_every_panel(window, qtbot):
    window.docks["trajectory"].hide()
    window.docks["sources"].setFloating(True)
    window.act_reset_layout.trigger()
    qtbot.wait(50)
    for name, dock in window.docks.items():
        assert dock.isVisible() and not dock.isFloating(), name
    assert window.dockWidgetArea(window.docks["timeline"]) == Qt.DockWidgetArea.BottomDockWidgetArea


def test_a_failed_or_cut_short_speech_is_said_and_stays_said(window, dirs, qtbot):
    """Before: after a failed load the old waveform stayed and the error was one status line that the next
    message overwrote; a truncated WAV loaded without a word."""
    assert window.timeline.pyramid is not None
    original = window.model.state.audio
    broken = dirs / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(200))
    window.set_audio(broken)
    wait_until(lambda: window.timeline.message.isVisible())
    assert window.timeline.pyramid is None  # the old speech's waveform is gone: it is not what the project names
    assert "broken.wav" in window.timeline.message.plain_text()
    window.show_status("something else happened")  # the next status message does not hide the problem
    assert window.timeline.message.isVisible()
    qtbot.mouseClick(window.timeline.dismiss, Qt.MouseButton.LeftButton)
    assert not window.timeline.message.isVisible()
    # a WAV cut short (a copy that stopped half-way): it loads, with a warning naming both lengths
    full = dirs / "full.wav"
    sf.write(full, np.zeros(16000 * 4, np.float32), 16000, subtype="PCM_16")
    cut = dirs / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 16000 * 2 * 2])
    window.set_audio(cut)
    wait_until(lambda: window.timeline.pyramid is not None and window.timeline.message.isVisible())
    text = window.timeline.message.plain_text()
    assert "cut short" in text and "4.0 s" in text and "2.0 s" in text
    assert window.timeline.duration == pytest.approx(2.0, abs=0.05)
    # the window is shared by this module's tests: put its speech back (undo both changes)
    window.model.undo_stack.undo()
    window.model.undo_stack.undo()
    assert window.model.state.audio == original
    wait_until(lambda: not window.timeline.message.isVisible() and window.session is not None
               and not window.controller.preparing and window.session.n_frames == 50)


def test_keyframe_values_are_clamped_to_what_a_face_can_do(window):
    """Before: a jaw keyframe of 1.46 was accepted and gave an unnatural mouth."""
    initial = dict(window.model.state.keyframes)  # the window is shared: earlier tests may have set some
    window.set_keyframe("jaw", 1.0, 1.46)
    window.set_keyframe("yaw", 1.5, -80.0)
    keys = window.model.state.keyframes
    assert keys["jaw"] == ((1.0, 1.0),) and keys["yaw"] == ((1.5, -45.0),)
    wait_until(lambda: not window.controller.preparing and window.controller.controls is not None
               and float(window.controller.controls.channel("jaw")[25]) == pytest.approx(1.0, abs=1e-6))
    window.model.undo_stack.undo()
    window.model.undo_stack.undo()
    assert window.model.state.keyframes == initial


def test_mouth_offset_in_the_panel_shifts_the_mouth_by_whole_frames(window):
    wait_until(lambda: not window.controller.preparing and window.session is not None)
    channel = next(c for c in ("jaw", "open", "spread") if c not in window.model.state.keyframes)  # keyframes
    before = window.controller.controls.channel(channel).copy()  # stay at their times: compare a free channel
    spin = window.sources.mouth_offset
    spin.setValue(200.0)  # 200 ms at 25 fps: 5 frames later
    assert window.model.state.settings.mouth_offset_ms == 200.0
    wait_until(lambda: not window.controller.preparing and window.session is not None
               and window.session.settings.mouth_offset_ms == 200.0)
    after = window.controller.controls.channel(channel)
    lags = range(-8, 9)
    err = [float(np.mean(np.abs(after[8 + lag: len(after) - 8 + lag] - before[8: len(before) - 8]))) for lag in lags]
    assert float(before.max()) > 0.2  # the speech opens the mouth
    assert list(lags)[int(np.argmin(err))] == 5 and min(err) < 0.02, err
    window.model.undo_stack.undo()
    assert spin.value() == 0.0


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


def test_recent_menu_lists_projects_and_disables_missing_ones(qapp, dirs, tmp_path):
    from studio.app.project import PROJECT_SUFFIX

    w = _new_window()
    try:
        kept = tmp_path / f"kept{PROJECT_SUFFIX}"
        assert w.save_project_to(kept)
        w.settings.add_recent(tmp_path / f"moved{PROJECT_SUFFIX}")  # listed, but no longer on disk
        w._update_recent_menu()
        acts = {a.text(): a for a in w.recent_menu.actions() if a.text()}
        assert acts[f"moved{PROJECT_SUFFIX} (missing)"].isEnabled() is False
        assert acts[f"kept{PROJECT_SUFFIX}"].isEnabled() and acts[f"kept{PROJECT_SUFFIX}"].toolTip() == str(kept)
        acts["Clear list"].trigger()
        assert w.settings.recent == [] and not w.recent_menu.isEnabled()
    finally:
        _close(w)


def test_models_dialog_lists_the_store(qapp, dirs):
    from studio.gui.views.models_dialog import ModelsDialog
    from studio.models.store import list_models

    w = _new_window()
    try:
        dialog = ModelsDialog(w)
        models = list_models()
        assert dialog.table.rowCount() == len(models) >= 8
        names = {dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())}
        assert "stylegan2-ffhq-config-f" in names
        states = {dialog.table.item(r, 1).text() for r in range(dialog.table.rowCount())}
        assert states == {m.state for m in models}  # nothing installed in the test's data dir
        dialog.show()
        QApplication.processEvents()
        state_right = dialog.table.columnViewportPosition(1) + dialog.table.columnWidth(1)
        assert state_right <= dialog.table.viewport().width()  # the State column is in view, not off to the side
        assert "href" in dialog.links.text()  # where to download what is missing
        # Import…: runs off the UI thread and reports what the store said
        bad = dirs / "not_a_checkpoint.pt"
        bad.write_bytes(b"definitely not a checkpoint")
        dialog.import_file(bad)
        wait_until(lambda: dialog.worker is None)
        assert dialog.message.isVisible() and "not_a_checkpoint.pt" in dialog.message.plain_text()
        assert dialog.import_btn.isEnabled()
        dialog.close()
    finally:
        _close(w)


def test_preview_quality_sets_the_frame_size(window, qtbot):
    window.seek(0.5)
    try:
        window.quality.setCurrentIndex(window.quality.findData("full"))
        qtbot.waitUntil(lambda: window.preview.image is not None and window.preview.image.width() == 624, timeout=WAIT_MS)
        window.quality.setCurrentIndex(window.quality.findData("preview"))
        qtbot.waitUntil(lambda: window.preview.image.width() == window.settings.preview_max_side == 512, timeout=WAIT_MS)
    finally:
        window.quality.setCurrentIndex(window.quality.findData("preview"))


def test_playback_follows_the_audio_clock_when_they_drift(qapp):
    from studio.gui.playback import Transport

    class FakePlayer:  # stands in for QMediaPlayer: the audio position is what the sound card has played
        def __init__(self):
            self.position_ms, self.playing = 0, False

        def setPosition(self, ms):  # noqa: N802 - Qt API
            self.position_ms = ms

        def play(self):
            self.playing = True

        def pause(self):
            self.playing = False

        def isPlaying(self):  # noqa: N802
            return self.playing

        def position(self):
            return self.position_ms

    t = Transport(max_drift_s=0.08)
    t.duration = 10.0
    t._player = FakePlayer()
    t.seek(2.0)
    t.play()
    assert t._player.playing and t._player.position_ms == 2000
    t._player.position_ms = 2050  # within the tolerance: the clock keeps the playhead
    t._tick()
    assert t.position == pytest.approx(2.0, abs=0.03)
    t._player.position_ms = 2600  # the audio ran ahead (e.g. the UI thread was busy): jump to the audio
    t._tick()
    assert t.position == pytest.approx(2.6, abs=0.01)
    t.pause()
    assert not t._player.playing and not t.playing


def test_job_worker_drives_jobs_and_plain_functions(qapp, qtbot):
    """A long job's events become signals (notices with their level) and its returned value is the result;
    a plain function's return value is the result too; a job's error is one message."""
    from studio.core.errors import InputError
    from studio.core.events import Notice, Progress
    from studio.gui.workers import JobWorker

    def job(cancel):
        yield Progress("load", 0.5, "half")
        yield Notice("heads up")
        yield Notice("for information", level="note")
        return "result"

    def run(factory):
        worker = JobWorker(factory, min_interval_s=0.0)
        seen = {"notice": [], "ok": [], "failed": []}
        worker.notice.connect(lambda text, level: seen["notice"].append((text, level)))
        worker.finished_ok.connect(seen["ok"].append)
        worker.failed.connect(lambda m, h: seen["failed"].append(m))
        with qtbot.waitSignal(worker.finished, timeout=10_000):
            worker.start()
        qapp.processEvents()
        return seen

    seen = run(job)
    assert seen == {"notice": [("heads up", "warning"), ("for information", "note")], "ok": ["result"], "failed": []}
    assert run(lambda cancel: 41 + 1)["ok"] == [42]

    def bad(cancel):
        raise InputError("cannot read x", "give another file")
        yield  # a generator

    assert run(bad)["failed"] == ["cannot read x"]
