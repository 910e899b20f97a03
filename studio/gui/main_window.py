"""The studio's main window: preview in the centre, dockable panels, menus, status bar.

It wires the document (:class:`~studio.gui.commands.DocumentModel`), the session controller (prepare and
preview workers), the transport (playback) and the views together. Views never talk to each other: they
edit the document through commands and observe it, or they emit seek requests that the window routes to
the transport, whose position drives every playhead and the preview.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (QApplication, QComboBox, QDockWidget, QFileDialog, QFrame, QLabel, QMainWindow,
                               QMessageBox, QProgressBar, QScrollArea, QToolBar, QWidget)

from studio import __version__
from studio.app.analysis import WaveformPyramid, phone_segments
from studio.media.kinds import AUDIO_SUFFIXES, VIDEO_SUFFIXES
from studio.app.project import PROJECT_SUFFIX, Autosaver, Project, Recovery, find_recoveries
from studio.app.settings import Settings, load_settings, save_settings
from studio.core.errors import StudioError
from studio.engine.pipeline import Session
from studio.gui import commands
from studio.gui.commands import DocumentModel
from studio.gui.controller import SessionController
from studio.gui.playback import Transport
from studio.gui.views.export_dialog import ExportDialog
from studio.gui.views.identity import IdentityPanel
from studio.gui.views.models_dialog import ModelsDialog
from studio.gui.views.preview import PreviewView
from studio.gui.views.sources import SourcesPanel
from studio.gui.views.timeline import TimelineView
from studio.gui.views.trajectory import TrajectoryView
from studio.gui.views.verify_dialog import VerifyDialog
from studio.gui.workers import JobWorker

log = logging.getLogger(__name__)

APP_TITLE = "Talking Head Studio"
#: the smallest size of a form panel's dock (it scrolls below that): with them the window fits 1024x640
MIN_PANEL_W, MIN_PANEL_H = 240, 90
PROJECT_FILTER = f"Talking Head Studio project (*{PROJECT_SUFFIX})"
AUDIO_FILTER = "Speech (" + " ".join(f"*{s}" for s in sorted(AUDIO_SUFFIXES | VIDEO_SUFFIXES)) + ")"


def _load_waveform(path: Path):
    """Job: decode the speech (16 kHz mono) and build its waveform pyramid; returns (pyramid, the truncation
    of a cut-short WAV file or None, see :func:`~studio.media.audio.wav_truncation`)."""
    from studio.media.audio import load_audio

    from studio.media.audio import wav_truncation

    def job(cancel):
        clip = load_audio(path, sample_rate=16000)
        cancel.raise_if_cancelled()
        return WaveformPyramid(clip.samples, clip.sample_rate), wav_truncation(path)

    return job


class MainWindow(QMainWindow):
    """Talking Head Studio's main window.

    Args:
        settings: user settings (default: read from the config dir); saved again on close.
        interactive: ask before discarding changes / offer recovery with message boxes (False in tests).
        check_models: ask the model store (which imports torch) while building the window; False leaves the
            neural engine "checking…" until ``identity.refresh_models_in_background()`` (what ``run`` does,
            so that the window shows before torch loads).
    """

    def __init__(self, *, settings: Settings | None = None, interactive: bool = True,
                 check_models: bool = True) -> None:
        super().__init__()
        self.setObjectName("MainWindow")
        self.settings = settings or load_settings()
        self.interactive = interactive
        self.model = DocumentModel(parent=self)
        self.controller = SessionController(self.model, parent=self)
        self.transport = Transport(parent=self)
        self.autosaver = Autosaver(self.model.project, self.settings.autosave_interval_s)
        self.export_dialog: ExportDialog | None = None
        self.batch_dialog = None  # BatchDialog, created on first use
        self._wave_worker: JobWorker | None = None
        self._wave_source: Path | None = None
        self.frames_shown = 0

        self.preview = PreviewView()
        self.setCentralWidget(self.preview)
        self.identity = IdentityPanel(self.model, check_models=check_models)
        self.sources = SourcesPanel(self.model)
        self.timeline = TimelineView()
        self.trajectory = TrajectoryView()
        self.docks = {
            "identity": self._dock("Identity", self.identity, Qt.DockWidgetArea.LeftDockWidgetArea, scroll=True),
            "sources": self._dock("Pose && emotion", self.sources, Qt.DockWidgetArea.LeftDockWidgetArea, scroll=True),
            "timeline": self._dock("Timeline", self.timeline, Qt.DockWidgetArea.BottomDockWidgetArea),
            "trajectory": self._dock("Trajectory", self.trajectory, Qt.DockWidgetArea.RightDockWidgetArea),
        }
        self._sized = False

        self._build_status_bar()
        self._build_actions()
        self._build_menus_and_toolbar()
        self._connect()
        self._restore_window()

        self.autosave_timer = QTimer(self, interval=int(self.settings.autosave_interval_s * 1000))
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start()
        self._apply_quality()
        self._update_title()

    # -- construction ------------------------------------------------------------------------------

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea, *, scroll: bool = False) -> QDockWidget:
        """A dock holding ``widget``; ``scroll``: inside a scroll area (a form panel keeps its layout when the
        dock is shorter than the form, so the window fits a 1280x720 screen)."""
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title.split()[0].lower()}")
        if scroll:
            area_widget = QScrollArea()
            area_widget.setObjectName(f"scroll-{title.split()[0].lower()}")
            area_widget.setWidget(widget)
            area_widget.setWidgetResizable(True)
            area_widget.setFrameShape(QFrame.Shape.NoFrame)
            area_widget.setMinimumSize(MIN_PANEL_W, MIN_PANEL_H)
            dock.setWidget(area_widget)
        else:
            dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        return dock

    def _build_status_bar(self) -> None:
        self.status_label = QLabel("Ready")
        self.status_progress = QProgressBar()
        self.status_progress.setRange(0, 1000)
        self.status_progress.setMaximumWidth(220)
        self.status_progress.hide()
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.status_progress)

    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        if tip:
            act.setToolTip(tip)
            act.setStatusTip(tip)
        act.triggered.connect(slot)
        return act

    def _build_actions(self) -> None:
        K = QKeySequence.StandardKey
        self.act_new = self._action("&New project", self.new_project, K.New)
        self.act_open = self._action("&Open project…", self.open_project_dialog, K.Open)
        self.act_save = self._action("&Save project", self.save_project, K.Save)
        self.act_save_as = self._action("Save project &as…", self.save_project_as, K.SaveAs)
        self.act_import_photo = self._action("Import &photo or video…", self.identity.open_dialog, "Ctrl+I")
        self.act_import_audio = self._action("Import &speech…", self.import_audio_dialog, "Ctrl+Shift+I")
        self.act_export = self._action("&Export video…", self.show_export_dialog, "Ctrl+E")
        self.act_batch = self._action("&Batch dubbing…", self.show_batch_dialog,
                                      tip="Dub many photos/videos x speech tracks into videos (resumable queue)")
        self.act_verify = self._action("&Verify videos…", self.show_verify_dialog,
                                       tip="Check videos for Content Credentials (C2PA) and the invisible watermark")
        self.act_quit = self._action("&Quit", self.close, K.Quit)
        self.act_undo = self.model.undo_stack.createUndoAction(self, "&Undo")
        self.act_undo.setShortcut(K.Undo)
        self.act_redo = self.model.undo_stack.createRedoAction(self, "&Redo")
        self.act_redo.setShortcut(K.Redo)
        self.act_play = self._action("&Play / pause", self.transport.toggle, Qt.Key.Key_Space)
        self.act_prev = self._action("Previous frame", lambda: self.step(-1), Qt.Key.Key_Left)
        self.act_next = self._action("Next frame", lambda: self.step(+1), Qt.Key.Key_Right)
        self.act_in = self._action("Set &in point", lambda: self.timeline.set_edge(0), Qt.Key.Key_I)
        self.act_out = self._action("Set &out point", lambda: self.timeline.set_edge(1), Qt.Key.Key_O)
        self.act_about = self._action("&About", self.show_about)
        self.act_models = self._action("&Models…", self.show_models)

    def _build_menus_and_toolbar(self) -> None:
        mb = self.menuBar()
        file = mb.addMenu("&File")
        file.setToolTipsVisible(True)
        for act in (self.act_new, self.act_open):
            file.addAction(act)
        self.recent_menu = file.addMenu("Open &recent")
        for act in (self.act_save, self.act_save_as):
            file.addAction(act)
        file.addSeparator()
        for act in (self.act_import_photo, self.act_import_audio):
            file.addAction(act)
        file.addSeparator()
        for act in (self.act_export, self.act_batch, self.act_verify):
            file.addAction(act)
        file.addSeparator()
        file.addAction(self.act_quit)
        edit = mb.addMenu("&Edit")
        edit.addAction(self.act_undo)
        edit.addAction(self.act_redo)
        edit.addSeparator()
        edit.addAction(self._action("Clear all keyframes", self.clear_keyframes))
        play = mb.addMenu("&Playback")
        for act in (self.act_play, self.act_prev, self.act_next, self.act_in, self.act_out):
            play.addAction(act)
        self.view_menu = mb.addMenu("&View")
        for dock in self.docks.values():
            self.view_menu.addAction(dock.toggleViewAction())
        self.view_menu.addSeparator()
        self.act_reset_layout = self._action("&Reset layout", self.reset_layout,
                                             tip="Put every panel back where it starts, sized for this window")
        self.view_menu.addAction(self.act_reset_layout)
        help_menu = mb.addMenu("&Help")
        help_menu.addAction(self.act_models)
        help_menu.addAction(self.act_about)

        tb = QToolBar("Main toolbar")
        tb.setObjectName("toolbar-main")
        tb.setMovable(False)
        stack = self.model.undo_stack
        tb_undo = self._action("Undo", stack.undo, tip="Undo the last edit (Ctrl+Z)")
        tb_redo = self._action("Redo", stack.redo, tip="Redo (Ctrl+Shift+Z)")
        tb_undo.setEnabled(False)
        tb_redo.setEnabled(False)
        stack.canUndoChanged.connect(tb_undo.setEnabled)
        stack.canRedoChanged.connect(tb_redo.setEnabled)
        for act in (self.act_open, self.act_save, tb_undo, tb_redo):
            tb.addAction(act)
        tb.addSeparator()
        tb.addAction(self.act_play)
        tb.addSeparator()
        tb.addWidget(QLabel(" Preview: "))
        self.quality = QComboBox()
        self.quality.addItem("Preview quality", "preview")
        self.quality.addItem("Full quality", "full")
        self.quality.setCurrentIndex(max(0, self.quality.findData(self.settings.preview_quality)))
        self.quality.setToolTip("Preview quality renders display-sized frames; full quality shows every pixel")
        self.quality.currentIndexChanged.connect(self._quality_changed)
        tb.addWidget(self.quality)
        tb.addSeparator()
        tb.addAction(self.act_export)
        self.addToolBar(tb)
        self.view_menu.addSeparator()
        self.view_menu.addAction(tb.toggleViewAction())
        self._update_recent_menu()

    def _connect(self) -> None:
        m, c, t = self.model, self.controller, self.transport
        m.changed.connect(self._on_doc_changed)
        m.undo_stack.indexChanged.connect(self._sync_dirty)
        self.timeline.seek_requested.connect(self.seek)
        self.timeline.range_edited.connect(self.set_range)
        self.timeline.audio_dropped.connect(self.set_audio)
        self.timeline.play_toggled.connect(t.toggle)
        self.trajectory.seek_requested.connect(self.seek)
        self.trajectory.keyframe_set.connect(self.set_keyframe)
        self.trajectory.clear_requested.connect(self.clear_keyframes)
        t.position_changed.connect(self._on_position)
        t.playing_changed.connect(self._on_playing)
        c.session_changed.connect(self._on_session)
        c.controls_changed.connect(self._on_controls)
        c.latents_changed.connect(lambda summary: self.trajectory.set_latents(summary, c.controls.fps))
        c.busy.connect(self._on_busy)
        c.progress.connect(self._on_progress)
        c.problem.connect(self._on_problem)
        c.notice.connect(self.show_notice)
        c.renderer.frame_ready.connect(self._on_frame)
        c.renderer.cache_changed.connect(self._on_cache_changed)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        QTimer.singleShot(0, self.transport.warm_up)
        if not self._sized and not self.settings.window_state:  # default layout, once the window has a size
            self._sized = True
            QTimer.singleShot(0, self._default_layout)

    def _default_layout(self) -> None:
        """Dock sizes for a first start: preview ~40 % of the width, timeline ~22 % of the height."""
        w, h = self.width(), self.height()
        horizontal, vertical = Qt.Orientation.Horizontal, Qt.Orientation.Vertical
        self.resizeDocks([self.docks["identity"], self.docks["trajectory"]], [int(w * 0.23), int(w * 0.36)], horizontal)
        self.resizeDocks([self.docks["timeline"]], [int(h * 0.22)], vertical)
        self.resizeDocks([self.docks["identity"], self.docks["sources"]], [int(h * 0.42), int(h * 0.36)], vertical)

    # -- window state --------------------------------------------------------------------------------

    def reset_layout(self) -> None:
        """View > Reset layout: every dock visible, docked where it starts, sized for the current window."""
        areas = {"identity": Qt.DockWidgetArea.LeftDockWidgetArea, "sources": Qt.DockWidgetArea.LeftDockWidgetArea,
                 "timeline": Qt.DockWidgetArea.BottomDockWidgetArea,
                 "trajectory": Qt.DockWidgetArea.RightDockWidgetArea}
        for name, dock in self.docks.items():
            dock.setFloating(False)
            self.addDockWidget(areas[name], dock)
            dock.show()
        self.splitDockWidget(self.docks["identity"], self.docks["sources"], Qt.Orientation.Vertical)
        self._default_layout()

    def _restore_window(self) -> None:
        s = self.settings
        if s.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(s.window_geometry.encode()))
        else:
            self.resize(1400, 900)
        if s.window_state:
            self.restoreState(QByteArray.fromBase64(s.window_state.encode()))
        self._fit_to_screen()

    def _fit_to_screen(self) -> None:
        """Keep the window inside the screen's available area (a layout saved on a larger monitor, or the
        1400x900 default on a 1280x720 laptop, would otherwise hang off its edges)."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is None:
            return
        avail = screen.availableGeometry()
        w, h = min(self.width(), avail.width()), min(self.height(), avail.height())
        if (w, h) != (self.width(), self.height()):
            self.resize(w, h)
        x = min(max(self.x(), avail.left()), avail.right() - w + 1)
        y = min(max(self.y(), avail.top()), avail.bottom() - h + 1)
        if (x, y) != (self.x(), self.y()):
            self.move(x, y)

    def _store_window(self) -> None:
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64()).decode()
        self.settings.window_state = bytes(self.saveState().toBase64()).decode()

    def _update_title(self) -> None:
        p = self.model.project
        name = p.path.name if p.path else "Untitled"
        self.setWindowTitle(f"{name}[*] — {APP_TITLE}")
        self.setWindowModified(p.dirty)

    def _sync_dirty(self, _index: int = 0) -> None:
        self.model.project.dirty = not self.model.undo_stack.isClean() or self._recovered
        self._update_title()

    _recovered = False

    def show_status(self, text: str, *, error: bool = False) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color:#ff8a8a;" if error else "")

    def show_notice(self, text: str, level: str = "warning") -> None:
        """A notice from a job: warnings in amber with a "warning:" prefix, notes plain."""
        self.status_label.setText(f"warning: {text}" if level == "warning" else text)
        self.status_label.setStyleSheet("color:#ffc66d;" if level == "warning" else "")

    # -- document ------------------------------------------------------------------------------------

    def _on_doc_changed(self, changed: frozenset[str]) -> None:
        state = self.model.state
        if "*" in changed or "audio" in changed:
            self._load_waveform(state.audio)
        if "*" in changed or "range_s" in changed:
            self.timeline.set_range(state.range_s)
            self.transport.range_s = state.range_s
            self._sync_render_range()
        if "*" in changed:
            self.autosaver = Autosaver(self.model.project, self.settings.autosave_interval_s)
        self._update_title()

    def _load_waveform(self, path: Path | None) -> None:
        if path == self._wave_source:
            return
        self._wave_source = path
        if self._wave_worker is not None:
            self._wave_worker.cancel()
        if path is None:
            self._wave_worker = None
            self.timeline.set_waveform(None)
            self.timeline.clear_message()
            self.transport.set_media(None, 0.0)
            return
        worker = JobWorker(_load_waveform(path), name="waveform", parent=self)
        worker.finished_ok.connect(lambda res, w=worker, p=path: self._on_waveform(w, p, *res))
        worker.failed.connect(lambda msg, hint, w=worker: self._on_waveform_failed(w, msg, hint))
        worker.finished.connect(worker.deleteLater)
        self._wave_worker = worker
        worker.start()

    def _on_waveform(self, worker: JobWorker, path: Path, pyramid: WaveformPyramid,
                     cut: tuple[float, float] | None = None) -> None:
        if worker is not self._wave_worker:
            return
        self.timeline.set_waveform(pyramid)
        self.transport.set_media(path, pyramid.duration)
        self.timeline.set_range(self.model.state.range_s)
        if cut is not None:
            self.timeline.show_message(
                f"{path.name} is cut short: its header announces {cut[0]:.1f} s, only {cut[1]:.1f} s are there",
                "the video covers what is there; copy or download the file again for the rest", kind="warning")
        else:
            self.timeline.clear_message()

    def _on_waveform_failed(self, worker: JobWorker, message: str, hint: str) -> None:
        """The new speech could not be read: the old waveform goes (it is not what the project now names) and
        the problem stays above the timeline until dismissed or another speech loads."""
        if worker is not self._wave_worker:
            return
        self.timeline.set_waveform(None)
        self.transport.set_media(None, 0.0)
        self.timeline.show_message(message, hint)
        self.show_status(f"{message} — {hint}" if hint else message, error=True)

    def set_range(self, range_s: tuple[float, float] | None) -> None:
        """Set or clear the in/out range (an undoable edit)."""
        self.model.push(commands.set_range(self.model, range_s))

    def set_keyframe(self, channel: str, time_s: float, value: float) -> None:
        """Override ``channel`` at ``time_s`` seconds with ``value`` (an undoable edit)."""
        self.model.push(commands.set_keyframe(self.model, channel, time_s, value))

    def clear_keyframes(self) -> None:
        self.model.push(commands.clear_keyframes(self.model))

    def _on_problem(self, message: str, hint: str) -> None:
        self.show_status(f"{message} — {hint}" if hint else message, error=True)

    def set_audio(self, path: Path) -> None:
        """Replace the speech (an undoable edit)."""
        self.model.push(commands.set_audio(self.model, Path(path)))

    # -- session, playhead and preview ---------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        return self.controller.session

    def _on_session(self, session: Session | None) -> None:
        if session is None:
            self.timeline.set_cached([], 25.0)
            self.trajectory.set_track(None, {})
            self.trajectory.set_latents(None)
            self.timeline.set_phones([])
            self.preview.clear()
            return
        controls = self.controller.controls
        self.timeline.set_phones(phone_segments(session.mouth.phones, controls.visemes, controls.fps))
        self.trajectory.set_track(controls, self.model.state.keyframes)
        self.trajectory.set_latents(session.latent_summary(), controls.fps)  # computed by the prepare worker
        self._sync_render_range()
        self._on_cache_changed()
        w, h = session.size
        self.show_status(f"Ready: {w}×{h}, {session.n_frames} frames at {controls.fps:g} fps")
        self._on_position(self.transport.position)

    def _sync_render_range(self) -> None:
        """Render-ahead stops at the out point of the play range (the transport stops there)."""
        controls, range_s = self.controller.controls, self.model.state.range_s
        stop = None if controls is None or range_s is None else math.ceil(range_s[1] * controls.fps)
        self.controller.renderer.set_stop_frame(stop)

    def _on_cache_changed(self) -> None:
        controls = self.controller.controls
        frames = [] if controls is None else self.controller.renderer.cached_frames(self.controller.generation)
        self.timeline.set_cached(frames, controls.fps if controls is not None else 25.0)

    def _on_controls(self, controls) -> None:
        self.trajectory.set_track(controls, self.model.state.keyframes)
        self._on_cache_changed()
        self._on_position(self.transport.position)

    def current_frame(self, t: float | None = None) -> int:
        """Frame index at time ``t`` (default: the playhead); frame k shows [k/fps, (k+1)/fps)."""
        if self.session is None:
            return 0
        t = self.transport.position if t is None else t
        return min(max(int(t * self.controller.controls.fps + 1e-6), 0), self.session.n_frames - 1)

    def seek(self, t: float) -> None:
        """Move the playhead to ``t`` seconds."""
        self.transport.seek(t)

    def step(self, frames: int) -> None:
        fps = self.controller.controls.fps if self.controller.controls is not None else self.model.state.settings.fps
        self.seek((self.current_frame() + frames + 0.5) / fps)

    def _on_position(self, t: float) -> None:
        self.timeline.set_playhead(t)
        self.trajectory.set_playhead(t)
        if self.session is None:
            return
        k = self.current_frame(t)
        cached = self.controller.renderer.cached(self.controller.generation, k) if self.transport.playing else None
        if cached is not None:
            self._show(cached, k, 0.0)
        else:
            self.controller.renderer.request(k)

    def _on_frame(self, image, k: int, generation: int, seconds: float) -> None:
        if generation == self.controller.generation:
            self._show(image, k, seconds)

    def _show(self, image, k: int, seconds: float) -> None:
        fps = self.controller.controls.fps
        note = "cached" if seconds == 0 else f"{seconds * 1000:.0f} ms"
        self.frames_shown += 1
        self.preview.show_frame(image, k, f"frame {k} · {k / fps:.2f} s · {image.width()}×{image.height()} · {note}")

    def _on_playing(self, playing: bool) -> None:
        self.timeline.set_playing(playing)
        self.controller.renderer.set_playing(playing)
        if playing and not self.transport.has_sound:
            self.show_status("Playing without sound (no audio output device)")
        elif not playing and self.status_label.text().startswith("Playing without sound"):
            self.show_status("Stopped")

    def _on_busy(self, busy: bool) -> None:
        self.status_progress.setVisible(busy)
        self.preview.set_busy("Analysing…" if busy else "")
        if busy:
            self.show_status("Analysing the speech and preparing the face…")

    def _on_progress(self, fraction: float, _stage: str, message: str) -> None:
        self.status_progress.setValue(int(fraction / 0.4 * 1000) if fraction <= 0.4 else int(fraction * 1000))
        self.show_status(message[:1].upper() + message[1:] + "…")

    def _quality_changed(self) -> None:
        self.settings.preview_quality = self.quality.currentData()
        self._apply_quality()
        self._on_position(self.transport.position)

    def _apply_quality(self) -> None:
        full = self.settings.preview_quality == "full"
        self.controller.renderer.set_quality(None if full else self.settings.preview_max_side)
        self._on_cache_changed()

    # -- files ---------------------------------------------------------------------------------------

    def _dialog_dir(self) -> str:
        return self.settings.last_dir or str(Path.home())

    def _confirm_discard(self) -> bool:
        """True when it is fine to drop the current document (saved, discarded, or not interactive)."""
        if not self.model.project.dirty or not self.interactive:
            return True
        answer = QMessageBox.question(self, APP_TITLE, "Save the changes to this project first?",
                                      QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                                      | QMessageBox.StandardButton.Cancel)
        if answer == QMessageBox.StandardButton.Save:
            return self.save_project()
        return answer == QMessageBox.StandardButton.Discard

    def _set_project(self, project: Project, *, recovered: bool = False) -> None:
        self.transport.pause()
        self.autosaver.discard()
        self._recovered = recovered
        self.model.replace_project(project)
        self.transport.seek(0.0)
        self._update_title()

    def new_project(self) -> None:
        if self._confirm_discard():
            self._set_project(Project())

    def open_project_dialog(self) -> None:
        if not self._confirm_discard():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open project", self._dialog_dir(), PROJECT_FILTER)
        if path:
            self.open_project(Path(path), confirm=False)

    def open_project(self, path: Path, *, confirm: bool = True) -> bool:
        """Open a project file; errors are shown, not raised. Returns True on success."""
        if confirm and not self._confirm_discard():
            return False
        try:
            project = Project.load(path)
        except StudioError as exc:
            self._error("Cannot open the project", exc)
            return False
        self._set_project(project)
        self._remember(project.path)
        return True

    def save_project(self) -> bool:
        if self.model.project.path is None:
            return self.save_project_as()
        return self.save_project_to(self.model.project.path)

    def save_project_as(self) -> bool:
        start = str(self.model.project.path or Path(self._dialog_dir()) / f"untitled{PROJECT_SUFFIX}")
        path, _ = QFileDialog.getSaveFileName(self, "Save project", start, PROJECT_FILTER)
        return bool(path) and self.save_project_to(Path(path))

    def save_project_to(self, path: Path) -> bool:
        """Save the document to ``path`` (atomic); returns True on success."""
        try:
            saved = self.model.project.save(path)
        except StudioError as exc:
            self._error("Cannot save the project", exc)
            return False
        self._recovered = False
        self.model.undo_stack.setClean()
        self._remember(saved)
        self.show_status(f"Saved {saved}")
        self._update_title()
        return True

    def _remember(self, path: Path | None) -> None:
        if path is None:
            return
        self.settings.add_recent(path)
        self.settings.last_dir = str(Path(path).parent)
        self._update_recent_menu()
        self._save_settings()

    def _update_recent_menu(self) -> None:
        """Recent projects, newest first; a file that has since been moved or deleted is listed disabled."""
        self.recent_menu.clear()
        for text in self.settings.recent:
            exists = Path(text).is_file()
            act = self.recent_menu.addAction(Path(text).name if exists else f"{Path(text).name} (missing)")
            act.setToolTip(text)
            act.setStatusTip(text if exists else f"{text} no longer exists")
            act.setEnabled(exists)
            act.triggered.connect(lambda _=False, p=text: self.open_project(Path(p)))
        if self.settings.recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self.clear_recent)
        self.recent_menu.setEnabled(bool(self.settings.recent))

    def clear_recent(self) -> None:
        self.settings.recent.clear()
        self._update_recent_menu()
        self._save_settings()

    def import_audio_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import speech", self._dialog_dir(), AUDIO_FILTER)
        if path:
            self.set_audio(Path(path))

    def show_export_dialog(self) -> ExportDialog:
        if self.export_dialog is None:
            self.export_dialog = ExportDialog(self.model, self.controller, self)
            self.export_dialog.finished.connect(self._export_closed)
            self.export_dialog.exported.connect(lambda p: self.show_status(f"Exported {p}"))
        self.export_dialog.open()
        return self.export_dialog

    def _export_closed(self) -> None:
        if self.export_dialog is not None and self.export_dialog.worker is None:
            self.export_dialog.deleteLater()
            self.export_dialog = None

    def show_batch_dialog(self):
        """Open (or raise) the non-modal Batch dubbing dialog; its queue lives in the chosen output folder."""
        from studio.gui.views.batch_dialog import BatchDialog

        if self.batch_dialog is None:
            folder = (self.model.project.base_dir / "batch" if self.model.project.path
                      else Path.home() / "Talking Head Studio batch")
            self.batch_dialog = BatchDialog(folder, self)
        self.batch_dialog.show()
        self.batch_dialog.raise_()
        return self.batch_dialog

    def show_verify_dialog(self) -> VerifyDialog:
        """Open the non-modal *Verify videos* dialog (provenance marks of any video)."""
        dialog = VerifyDialog(self, start_dir=self._dialog_dir())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def show_models(self) -> None:
        dialog = ModelsDialog(self)
        dialog.imported.connect(self.identity.refresh_models_in_background)  # the engine choice, the PTI button
        dialog.open()

    def show_about(self) -> None:
        QMessageBox.about(self, f"About {APP_TITLE}",
                          f"<b>{APP_TITLE}</b> {__version__}<br>Lip-synced talking-head videos from one photo and "
                          "a speech recording (Alghamdi et al., ACM MM 2022), with the embedded lite engine.<br>"
                          "Every video it exports carries an invisible watermark and signed Content Credentials "
                          "(C2PA) that mark it as AI-generated; check any video with File › Verify videos….")

    def _error(self, title: str, exc: StudioError) -> None:
        self.show_status(f"{exc.message} — {exc.hint}" if exc.hint else exc.message, error=True)
        if self.interactive:
            QMessageBox.warning(self, title, f"{exc.message}\n\n{exc.hint}")

    # -- autosave and recovery -----------------------------------------------------------------------

    def autosave(self) -> Path | None:
        try:
            return self.autosaver.tick()
        except StudioError as exc:
            log.warning("autosave failed: %s", exc)
            return None

    def offer_recovery(self, recoveries: list[Recovery] | None = None) -> bool:
        """Offer to recover the newest autosave a crash left behind; True when one was loaded."""
        recoveries = find_recoveries() if recoveries is None else recoveries
        if not recoveries:
            return False
        rec = recoveries[0]
        when = datetime.fromtimestamp(rec.saved_at).strftime("%Y-%m-%d %H:%M")
        what = rec.project.name if rec.project else "an untitled project"
        if self.interactive:
            answer = QMessageBox.question(self, "Recover unsaved work",
                                          f"The studio did not close cleanly. Recover the changes to {what} "
                                          f"autosaved at {when}?")
            if answer != QMessageBox.StandardButton.Yes:
                rec.autosave.unlink(missing_ok=True)
                return False
        project = rec.load()
        rec.autosave.unlink(missing_ok=True)
        self._set_project(project, recovered=True)
        self.model.project.dirty = True
        self._update_title()
        self.show_status(f"Recovered {what} from the autosave of {when}")
        return True

    # -- closing -------------------------------------------------------------------------------------

    def _save_settings(self) -> None:
        try:
            save_settings(self.settings)
        except StudioError as exc:
            log.warning("cannot save settings: %s", exc)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        if not self._confirm_discard():
            event.ignore()
            return
        self.transport.pause()
        if self.export_dialog is not None:
            self.export_dialog.close()
        self.controller.shutdown()
        self.autosaver.discard()
        self._store_window()
        self._save_settings()
        super().closeEvent(event)


def main_window_for(project: Path | None = None, *, interactive: bool = True) -> MainWindow:
    """A main window, optionally with a project opened."""
    window = MainWindow(interactive=interactive)
    if project is not None:
        window.open_project(Path(project), confirm=False)
    return window


def active_window() -> MainWindow | None:  # pragma: no cover - convenience for debugging
    return next((w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)), None)
