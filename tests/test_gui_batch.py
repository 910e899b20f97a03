"""The studio's Batch dubbing dialog driven with pytest-qt: drops, edits, Start/Cancel, shared queue with the CLI."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6.QtWidgets")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QProgressBar  # noqa: E402

from conftest import sample  # noqa: E402
from test_gui import drop_files  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Function.*QDragEnterEvent:DeprecationWarning")


@pytest.fixture
def media(tmp_path, monkeypatch):
    import cv2
    import soundfile as sf

    for name in ("CONFIG", "DATA", "CACHE"):
        monkeypatch.setenv(f"TALKSTUDIO_{name}_DIR", str(tmp_path / name.lower()))
    data, rate = sf.read(sample("audio/english_short_16k_mono.wav"), dtype="float32")
    one = tmp_path / "hello.wav"
    sf.write(one, data[: int(1.2 * rate)], rate)
    two = tmp_path / "later.wav"
    sf.write(two, data[int(2.0 * rate): int(3.0 * rate)], rate)
    wall = tmp_path / "wall.png"
    cv2.imwrite(str(wall), np.full((160, 160, 3), 90, np.uint8))
    notes = tmp_path / "notes.txt"
    notes.write_text("not media")
    long = tmp_path / "long.wav"
    d2, r2 = sf.read(sample("audio/english_radio_16k_stereo.wav"), dtype="float32")
    sf.write(long, d2[: 8 * r2], r2)
    return {"face": sample("images/taylor_256px.jpg"), "one": one, "two": two, "wall": wall, "notes": notes,
            "long": long, "out": tmp_path / "out"}


def test_batch_dialog_drop_edit_run_and_resume_from_cli(qtbot, media, capsys):
    from studio.app.batch import BatchQueue
    from studio.cli import main
    from studio.gui.views.batch_dialog import COL, BatchDialog

    dlg = BatchDialog(media["out"])
    qtbot.addWidget(dlg)
    dlg.show()
    dlg.fps.setCurrentIndex(dlg.fps.findData(12.0))
    # identities and speech in one drop: the cross product is queued, other files are refused with a warning
    assert drop_files(dlg, [media["face"], media["wall"], media["one"], media["two"], media["notes"]])
    assert dlg.table.rowCount() == 4
    assert "notes.txt" in dlg.message.plain_text()
    queue = BatchQueue(media["out"])
    assert sorted(j.output.name for j in queue.jobs()) == ["taylor_256px__hello.mp4", "taylor_256px__later.mp4",
                                                          "wall__hello.mp4", "wall__later.mp4"]
    # edit a row's output name in place; remove another row
    row = dlg.row_of(queue.jobs()[0].id)
    dlg.table.item(row, COL["Output"]).setText("renamed")
    assert queue.jobs()[0].output.name == "renamed.mp4"
    wall_later = next(j for j in queue.jobs() if j.output.name == "wall__later.mp4")
    dlg.table.selectRow(dlg.row_of(wall_later.id))
    assert dlg.remove_selected() == 1
    assert dlg.table.rowCount() == 3 and len(queue.jobs()) == 3

    # run it; Pause stops after the running job, Start goes on with the rest
    with qtbot.waitSignal(dlg.start_btn.clicked, timeout=1000):
        qtbot.mouseClick(dlg.start_btn, Qt.MouseButton.LeftButton)
    assert dlg.worker is not None and not dlg.start_btn.isEnabled() and dlg.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: "running" in [dlg.table.item(r, COL["Status"]).text()
                                          for r in range(dlg.table.rowCount())], timeout=60_000)
    qtbot.mouseClick(dlg.pause_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dlg.worker is None, timeout=120_000)
    assert "Paused: 1 done" in dlg.status.text()
    assert queue.counts()["done"] == 1 and queue.counts()["pending"] == 2
    assert dlg.start_btn.isEnabled()
    qtbot.mouseClick(dlg.start_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dlg.worker is None, timeout=120_000)
    jobs = {j.output.name: j for j in queue.jobs()}
    assert jobs["renamed.mp4"].status == "done" and jobs["taylor_256px__later.mp4"].status == "done"
    assert (media["out"] / "renamed.mp4").is_file()
    bad = jobs["wall__hello.mp4"]
    assert bad.status == "failed" and "no face" in bad.error
    r = dlg.row_of(bad.id)
    assert "no face" in dlg.table.item(r, COL["Error"]).text()
    assert "no face" in dlg.table.item(r, COL["Status"]).toolTip()
    assert dlg.table.item(r, COL["Status"]).text() == "failed"
    done_row = dlg.row_of(jobs["renamed.mp4"].id)
    assert isinstance(dlg.table.cellWidget(done_row, COL["Progress"]), QProgressBar)
    assert dlg.progress_of(jobs["renamed.mp4"].id) == 1000
    assert dlg.overall.value() == 1000 and "Finished: 2 done, 1 failed" in dlg.status.text()
    assert dlg.report is not None and dlg.report.report_path.is_file()
    # a local run has no node; a cluster's driver records one, and the dialog shows it with the output's marks
    assert dlg.table.item(done_row, COL["Node"]).text() == ""
    assert jobs["renamed.mp4"].mark_id in dlg.table.item(done_row, COL["Status"]).toolTip()
    queue.update(jobs["renamed.mp4"].id, node="render-box-3 (a1b2c3d4)")
    dlg.refresh()
    assert dlg.table.item(done_row, COL["Node"]).text() == "render-box-3 (a1b2c3d4)"
    queue.update(jobs["renamed.mp4"].id, node=None)

    # the CLI sees the same queue: nothing is redone, the failure is reported again
    capsys.readouterr()
    assert main(["batch", "--resume", "--output-dir", str(media["out"]), "--quiet"]) == 1
    after = {j.output.name: j for j in queue.jobs()}
    assert after["renamed.mp4"].attempts == 1 and after["renamed.mp4"].finished_at == jobs["renamed.mp4"].finished_at


def test_batch_dialog_cancel_then_cli_resumes(qtbot, media):
    from studio.app.batch import BatchQueue, partial_files, verify_output
    from studio.cli import main
    from studio.gui.views.batch_dialog import BatchDialog

    dlg = BatchDialog(media["out"])
    qtbot.addWidget(dlg)
    dlg.show()
    dlg.add_files([sample("images/woman_dark_hair_474px.png"), media["long"]])
    queue = BatchQueue(media["out"])
    (job,) = queue.jobs()
    dlg.start()
    # cancel once the video is being encoded (its temp file exists)
    qtbot.waitUntil(lambda: bool(partial_files(job.output)) and dlg.progress_of(job.id) > 0, timeout=120_000)
    t0 = time.perf_counter()
    qtbot.mouseClick(dlg.cancel_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dlg.worker is None, timeout=30_000)
    print(f"cancel took {time.perf_counter() - t0:.2f} s")
    job = queue.get(job.id)
    assert job.status == "cancelled" and not partial_files(job.output) and not job.output.exists()
    assert "Cancelled" in dlg.status.text()
    # and the command line finishes what the studio started
    assert main(["batch", "--resume", "--output-dir", str(media["out"]), "--quiet"]) == 0
    assert verify_output(job.output, expected_s=8.0, fps=25) is None


def test_file_menu_opens_the_batch_dialog(qtbot, tmp_path, monkeypatch):
    for name in ("CONFIG", "DATA", "CACHE"):
        monkeypatch.setenv(f"TALKSTUDIO_{name}_DIR", str(tmp_path / name.lower()))
    monkeypatch.setenv("HOME", str(tmp_path))
    from studio.gui.app import make_app
    from studio.gui.main_window import MainWindow

    make_app()
    window = MainWindow(interactive=False)
    qtbot.addWidget(window)
    assert window.act_batch.isEnabled()
    file_menu = window.menuBar().actions()[0].menu()
    assert window.act_batch in file_menu.actions()
    window.act_batch.trigger()
    dlg = window.batch_dialog
    assert dlg is not None and dlg.isVisible() and dlg.windowTitle() == "Batch dubbing"
    dlg.close()
