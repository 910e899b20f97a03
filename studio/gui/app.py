"""``talkstudio gui``: start the studio (QApplication, dark theme, main window, crash recovery)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from studio import __version__
from studio.gui.runtime import freeze_heap, tune_for_ui


def apply_theme(app: QApplication) -> None:
    """Fusion style with a dark palette (the plots are dark too)."""
    app.setStyle("Fusion")
    pal = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#23262d", QPalette.ColorRole.WindowText: "#e4e7ec",
        QPalette.ColorRole.Base: "#1a1c21", QPalette.ColorRole.AlternateBase: "#262a31",
        QPalette.ColorRole.ToolTipBase: "#30343c", QPalette.ColorRole.ToolTipText: "#e4e7ec",
        QPalette.ColorRole.Text: "#e4e7ec", QPalette.ColorRole.Button: "#2c3038",
        QPalette.ColorRole.ButtonText: "#e4e7ec", QPalette.ColorRole.Highlight: "#3d7fd9",
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.Link: "#6fb3ff",
        QPalette.ColorRole.PlaceholderText: "#7d8594",
    }
    for role, color in roles.items():
        pal.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b7280"))
    app.setPalette(pal)
    app.setStyleSheet("QDockWidget::title{background:#2c3038;padding:4px 6px;}"
                      "QGroupBox{font-weight:bold;border:1px solid #3a3f4b;border-radius:4px;margin-top:10px;}"
                      "QGroupBox::title{subcontrol-origin:margin;left:8px;padding:0 4px;}")


def make_app(argv: Sequence[str] = ()) -> QApplication:
    """The QApplication (created once), named and themed, with the bindings' defects guarded."""
    from studio.gui.compat import guard_singleton_refcounts

    guard_singleton_refcounts()
    tune_for_ui()
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "talkstudio", *argv])
    app.setApplicationName("Talking Head Studio")
    app.setOrganizationName("TalkingHeadStudio")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("talkinghead-studio")  # ties the window to packaging/talkinghead-studio.desktop
    apply_theme(app)
    return app


def start_decoder_process():
    """A process for the speech analysis's phone decoder, so that it never holds this process's GIL (and the
    window) for a chunk's whole decoding: see :func:`studio.engine.audio.phonemes.run_decoder_in`. "spawn",
    not "fork": forking a process with Qt and worker threads is unsafe. Returns the executor (shut it down at
    exit); it starts its process on first use."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from studio.engine.audio import phonemes

    executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    phonemes.run_decoder_in(executor)
    return executor


def run(project: Path | None = None) -> int:
    """Open the studio (optionally with a project) and run the event loop; returns the exit status."""
    app = make_app()
    from studio.gui.main_window import MainWindow
    from studio.gui.startup import models_checked, watch_startup

    # the window first; torch (through the model store) loads in a worker while it is already usable
    window = MainWindow(check_models=False)
    window.show()
    decoder_process = start_decoder_process()
    app.aboutToQuit.connect(lambda: decoder_process.shutdown(wait=False, cancel_futures=True))
    freeze_heap()
    checker = window.identity.refresh_models_in_background()
    checker.finished.connect(freeze_heap)  # exempt torch's objects from the full collections as well
    checker.finished.connect(models_checked)
    watch_startup(app, window)
    if project is not None:
        window.open_project(project, confirm=False)
    else:
        window.offer_recovery()
    status = app.exec()
    window.identity.wait_for_models()
    return status
