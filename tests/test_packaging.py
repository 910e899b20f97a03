"""The desktop app's fast parts: the frozen entry point's arguments, the start-up path without torch, the
background model check, the start-up report. (The bundle itself is checked by packaging/smoke.sh.)"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO


def _entry():
    spec = importlib.util.spec_from_file_location("talkstudio_entry", REPO / "packaging" / "entry.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundle_without_a_command_opens_the_studio():
    entry = _entry()
    assert entry.frozen_argv([]) == ["gui"]
    assert entry.frozen_argv(["-psn_0_12345"]) == ["gui"]  # old macOS Finder launch
    assert entry.frozen_argv(["render", "--image", "a.jpg"]) == ["render", "--image", "a.jpg"]
    assert entry.frozen_argv(["gui", "p.talkproj"]) == ["gui", "p.talkproj"]


def test_the_studio_window_imports_no_torch():
    """The window must appear before torch loads: nothing on the GUI's import path may import it."""
    code = ("import sys, studio.gui.app, studio.gui.main_window; "
            "print(sorted(m for m in ('torch', 'mediapipe', 'lpips', 'pocketsphinx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_identity_panel_checks_the_models_after_the_window(qtbot, tmp_path, monkeypatch):
    pytest.importorskip("pytestqt")
    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path))  # an empty model store
    from studio.gui.app import make_app
    from studio.gui.commands import DocumentModel
    from studio.gui.views.identity import IdentityPanel

    make_app()
    panel = IdentityPanel(DocumentModel(), check_models=False)
    qtbot.addWidget(panel)
    neural = panel.engine.model().item(1)
    assert "checking" in panel.engine.itemText(1) and not neural.isEnabled() and not panel.pti.isEnabled()
    panel.refresh_models_in_background()
    # polled: waitSignal on a QThread's `finished` can miss the wake-up of its event loop
    qtbot.waitUntil(lambda: "checking" not in panel.engine.itemText(1), timeout=120_000)
    assert panel.engine.itemText(1) == "neural (not installed)"
    assert not neural.isEnabled() and "not installed" in neural.toolTip()
    assert not panel.pti.isEnabled() and "stylegan2-ffhq-config-f.pt" in panel.pti.toolTip()
    panel.wait_for_models()


def test_startup_report_counts_from_the_launchers_clock(monkeypatch, capsys):
    from studio.gui import startup

    monkeypatch.setenv("TALKSTUDIO_STARTUP_T0", f"{time.time() - 3.0:.3f}")
    assert 2.9 < startup.elapsed_since_start() < 10.0
    monkeypatch.setenv("TALKSTUDIO_STARTUP_T0", "soon")
    monkeypatch.delenv("TALKSTUDIO_STARTUP_LOG", raising=False)
    assert 0.0 <= startup.elapsed_since_start() < 24 * 3600  # falls back to the process start
    assert "ignoring TALKSTUDIO_STARTUP_T0" in capsys.readouterr().err


def test_a_failed_model_check_leaves_neural_disabled_with_the_reason(qtbot, monkeypatch):
    pytest.importorskip("pytestqt")
    from studio.gui.app import make_app
    from studio.gui.commands import DocumentModel
    from studio.gui.views import identity

    def broken():
        raise RuntimeError("torch cannot load")

    monkeypatch.setattr(identity, "_model_statuses", broken)
    make_app()
    panel = identity.IdentityPanel(DocumentModel(), check_models=False)
    qtbot.addWidget(panel)
    panel.refresh_models_in_background()
    qtbot.waitUntil(lambda: "torch cannot load" in panel.engine.model().item(1).toolTip(), timeout=30_000)
    panel.wait_for_models()
    assert not panel.engine.model().item(1).isEnabled() and not panel.pti.isEnabled()
