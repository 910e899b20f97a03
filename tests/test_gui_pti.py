"""The identity panel's one-click personalisation (PTI) runs the tuner in a worker, with progress and Cancel."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6.QtWidgets")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from conftest import sample  # noqa: E402
from test_invert import tiny_store  # noqa: E402,F401  (fixture)


def _panel(qtbot):
    from studio.gui.app import make_app
    from studio.gui.commands import DocumentModel
    from studio.gui.views.identity import IdentityPanel

    make_app()
    model = DocumentModel()
    panel = IdentityPanel(model)
    qtbot.addWidget(panel)
    return model, panel


def test_pti_button_explains_what_is_missing(tiny_store, qtbot):  # noqa: F811
    _, panel = _panel(qtbot)
    assert not panel.pti.isEnabled()
    assert "stylegan2-ffhq-config-f.pt" in panel.pti.toolTip()


def test_one_click_pti_writes_a_person_file(tiny_store, qtbot, monkeypatch):  # noqa: F811
    from studio.gui import commands
    from studio.models.store import import_model

    for name in ("stylegan2-ffhq-config-f.pt", "e4e_ffhq_encode.pt", "alexnet-owt-7be5be79.pth"):
        import_model(tiny_store / name)
    # a short run: the tiny generator needs few steps to show the flow end to end
    from studio.engine.neural import pti

    original = pti.tune_person
    monkeypatch.setattr(pti, "tune_person", lambda **kw: original(**kw, steps=3, projection_steps=2))
    model, panel = _panel(qtbot)
    assert panel.pti.isEnabled()
    model.push(commands.set_identity(model, sample("images/taylor_256px.jpg")))
    qtbot.mouseClick(panel.pti, Qt.MouseButton.LeftButton)
    assert panel.pti.text().startswith("Cancel") and not panel.pti_progress.isHidden()
    qtbot.waitUntil(lambda: panel._pti_worker is None, timeout=120_000)
    assert panel.person is not None and panel.person.exists()
    assert "personalised in" in panel.notice.text()
    # the document now renders the neural engine with the tuned generator; a new photo drops it
    assert model.state.value("person") == panel.person
    model.push(commands.set_value(model, "engine", "neural", "neural"))
    assert model.state.render_settings().engine.person == panel.person
    model.push(commands.set_identity(model, sample("images/woman_brown_hair_624px.jpg")))
    assert model.state.value("person") is None
    assert panel.pti.text() == "Personalize (PTI)" and panel.pti_progress.isHidden()
