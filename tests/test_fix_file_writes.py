"""Files the studio writes: the usual mode under the umask, no file from a failed PNG encode, and a person file
and its preview that appear together or not at all."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from studio.core.errors import ModelError, OutputError


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------------------------------------- a) modes
@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_staged_file_gets_the_mode_of_a_new_file_under_the_umask(tmp_path, umask022):
    from studio.models.registry import save_safetensors, staged_file

    with open(tmp_path / "plain.bin", "wb") as fh:  # the reference: a file made with open()
        fh.write(b"x")
    assert _mode(tmp_path / "plain.bin") == 0o644
    target = tmp_path / "weights.bin"
    with staged_file(target) as tmp:
        tmp.write_bytes(b"abc")
    assert target.read_bytes() == b"abc"
    assert _mode(target) == 0o644, oct(_mode(target))
    st = save_safetensors(tmp_path / "w.safetensors", {"a": torch.zeros(2)})
    assert _mode(st) == 0o644, oct(_mode(st))
    os.umask(0o077)  # a stricter umask is honoured too
    with staged_file(tmp_path / "private.bin") as tmp:
        tmp.write_bytes(b"abc")
    assert _mode(tmp_path / "private.bin") == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.bin", "private.bin", "w.safetensors",
                                                           "weights.bin"]


# ---------------------------------------------------------------------------------------------- b) CLI PNG
def test_invert_cli_fails_clearly_when_the_png_cannot_be_encoded(tmp_path, monkeypatch, capsys):
    import cv2

    from studio.cli import main
    from studio.engine.neural import invert

    def fake_invert_photo(*args, **kwargs):  # a long job: yields events (none here), returns its result
        yield from ()
        return invert.Inversion(w_plus=torch.zeros(1, 4, 8), noises=[], crop=np.zeros((8, 8, 3), np.uint8),
                               target=np.zeros((8, 8, 3), np.uint8), composite=np.zeros((16, 16, 3), np.uint8),
                               alignment=None, lpips=0.1, psnr=30.0, method="test", generator_sha256="a" * 64)

    monkeypatch.setattr(invert, "invert_photo", fake_invert_photo)
    monkeypatch.setattr(cv2, "imencode", lambda *a, **k: (False, np.zeros(0, np.uint8)))
    out, latent = tmp_path / "recon.png", tmp_path / "w.safetensors"
    photo = tmp_path / "face.jpg"
    photo.write_bytes(b"unused")
    rc = main(["invert", "--image", str(photo), "--output", str(out), "--latent", str(latent), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error:") and "PNG" in err and str(out.name) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.jpg"]  # no empty PNG, no latent, no temp file


# ---------------------------------------------------------------------------------------------- c) person
def _save(path, **kw):
    from studio.engine.neural.pti import save_person

    return save_person(path, {"conv.weight": torch.ones(2, 2)}, pivots=[torch.zeros(1, 4, 8)],
                       base_sha256="b" * 64, steps=3, final_lpips=0.1, final_l2=0.01,
                       preview_png_bytes=b"\x89PNG new", **kw)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), ModelError("disk full", "free some space")])
def test_failed_person_write_leaves_no_preview(tmp_path, monkeypatch, error):
    from studio.models import registry

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(registry, "save_safetensors", fail)
    with pytest.raises((KeyboardInterrupt, OutputError)):
        _save(tmp_path / "anna.safetensors")
    assert list(tmp_path.iterdir()) == []  # no orphan preview, no person file, no temporary file


def test_failed_person_write_keeps_the_previous_person_and_its_preview(tmp_path, monkeypatch):
    from studio.engine.neural.pti import preview_path, read_person
    from studio.models import registry

    path = tmp_path / "anna.safetensors"
    _save(path)
    preview = preview_path(path)
    old_person, old_preview = path.read_bytes(), preview.read_bytes()

    def fail(*args, **kwargs):
        raise ModelError(f"cannot write {path}: No space left on device", "check free disk space")

    monkeypatch.setattr(registry, "save_safetensors", fail)
    with pytest.raises(OutputError, match="No space left"):
        _save(path)
    assert path.read_bytes() == old_person and preview.read_bytes() == old_preview
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anna.preview.png", "anna.safetensors"]
    assert read_person(path)[2]["steps"] == "3"


def test_failed_preview_write_leaves_no_person_file(tmp_path):
    from studio.engine.neural.pti import preview_path

    path = tmp_path / "anna.safetensors"
    preview_path(path).mkdir()  # the preview cannot be written (a folder is in its way)
    with pytest.raises(OutputError):
        _save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["anna.preview.png"]  # no person file, no temporary file
    assert list(preview_path(path).iterdir()) == []


def test_person_and_preview_are_both_written(tmp_path):
    from studio.engine.neural.pti import preview_path, read_person

    path = _save(tmp_path / "anna.safetensors")
    assert preview_path(path).read_bytes() == b"\x89PNG new"
    delta, _pivots, meta = read_person(path)
    assert torch.equal(delta["conv.weight"], torch.ones(2, 2)) and meta["n_pivots"] == "1"
