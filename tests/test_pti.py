"""Pivotal Tuning Inversion: tuning, early stop, bit-exact person deltas, refusal, cancel, video pivots.

Tiny generator (64², 64 channels) and LPIPS with a random backbone on CPU; the end-to-end tests import tiny
checkpoints of the public layouts into a throw-away model store (as tests/test_invert.py does).
"""

from __future__ import annotations

import pytest
import torch

from conftest import load_rgb, sample
from jobutil import fractions, run_job
from studio.core.errors import Cancelled, ModelError
from studio.core.events import CancelToken, Progress, drive
from studio.engine.face.align import ffhq_alignment
from studio.engine.face.detect import detect_faces
from studio.engine.neural.invert import to_tensor
from studio.engine.neural.perceptual import build_lpips
from studio.engine.neural.project import ProjectionConfig, ProjectionResult, project
from studio.engine.neural.pti import (TuneConfig, TuneResult, apply_delta, load_person, make_delta, preview_path,
                                      read_person, save_person, tune, tune_person)
from studio.models.stylegan2 import Generator
from test_invert import TINY_G, tiny_store  # noqa: F401  (fixture)

SHA = "a" * 64


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    g = Generator(**TINY_G).eval()
    with torch.no_grad():
        g.set_latent_avg(g.mean_latent(256, seed=0))
    lp = build_lpips("alex", random_backbone=True)
    rgb = load_rgb("images/woman_brown_hair_624px.jpg")
    face = detect_faces(rgb)[0]
    target = to_tensor(ffhq_alignment(face.points, size=64).crop(rgb), torch.device("cpu"))
    res, _ = run_job(project(g, target, lp, config=ProjectionConfig(steps=10, mean_latent_samples=500)))
    assert isinstance(res, ProjectionResult)
    return g, lp, target, res.w_plus


def test_tuning_beats_the_pivot_alone_and_leaves_the_base_untouched(setup):
    g, lp, target, pivot = setup
    before = {k: v.clone() for k, v in g.state_dict().items()}
    res, _ = run_job(tune(g, [target], [pivot], lp, config=TuneConfig(steps=20, lr=3e-3, lpips_threshold=0.0)))
    assert isinstance(res, TuneResult)
    assert res.steps == 20 and not res.stopped_early and len(res.history) == 20
    assert res.final_l2 < 0.5 * res.initial_l2
    assert res.final_lpips < 0.8 * res.initial_lpips
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())
    assert not any(p.requires_grad for p in res.generator.parameters())


def test_early_stop_at_the_lpips_threshold(setup):
    g, lp, target, pivot = setup
    res, _ = run_job(tune(g, [target], [pivot], lp, config=TuneConfig(steps=50, lpips_threshold=10.0)))
    assert res.stopped_early and res.steps == 1


def test_locality_regulariser_runs(setup):
    g, lp, target, pivot = setup
    res, _ = run_job(tune(g, [target], [pivot], lp, config=TuneConfig(steps=3, locality_weight=1.0,
                                                                       lpips_threshold=0)))
    assert res.steps == 3 and res.final_l2 < res.initial_l2 * 1.5


def test_person_delta_round_trip_is_bit_exact_and_bound_to_its_base(setup, tmp_path):
    g, lp, target, pivot = setup
    res, _ = run_job(tune(g, [target], [pivot], lp, config=TuneConfig(steps=5, lr=3e-3, lpips_threshold=0)))
    delta = make_delta(g, res.generator)
    assert delta and not any(k.startswith("style.") or k.startswith("noises.") for k in delta)
    path = tmp_path / "anna.safetensors"
    save_person(path, delta, pivots=[pivot], base_sha256=SHA, steps=res.steps, final_lpips=res.final_lpips,
                final_l2=res.final_l2, preview_png_bytes=b"\x89PNG fake")
    assert preview_path(path) == tmp_path / "anna.preview.png" and preview_path(path).read_bytes() == b"\x89PNG fake"
    tuned, pivots, meta = load_person(path, g, SHA)
    assert meta["base_sha256"] == SHA and int(meta["steps"]) == 5 and meta["delta_encoding"] == "values"
    assert torch.equal(pivots[0], pivot)
    for k, v in res.generator.state_dict().items():
        assert torch.equal(tuned.state_dict()[k], v), k
    with torch.no_grad():
        assert torch.equal(tuned(pivot, noise_mode="const", precision="fp32"),
                           res.generator(pivot, noise_mode="const", precision="fp32"))
    assert torch.equal(apply_delta(g, delta).state_dict()["convs.0.conv.weight"],
                       res.generator.state_dict()["convs.0.conv.weight"])
    with pytest.raises(ModelError, match="another generator") as err:
        load_person(path, g, "b" * 64)
    assert "tune" in err.value.hint


def test_not_a_person_file_and_newer_schema_are_refused(setup, tmp_path):
    from safetensors.torch import save_file

    g = setup[0]
    other = tmp_path / "w.safetensors"
    save_file({"w_plus": torch.zeros(1, 10, 64)}, str(other), metadata={"generator_sha256": SHA})
    with pytest.raises(ModelError, match="not a person file"):
        load_person(other, g, SHA)
    newer = tmp_path / "new.safetensors"
    save_file({"pivot.0": torch.zeros(1, 10, 64)}, str(newer),
              metadata={"talkstudio.kind": "pti-person", "talkstudio.person_schema_version": "99",
                        "base_sha256": SHA})
    with pytest.raises(ModelError, match="version 99") as err:
        read_person(newer)
    assert "update" in err.value.hint.lower()


def _import_tiny(tiny_store):
    from studio.models.store import import_model

    for name in ("stylegan2-ffhq-config-f.pt", "e4e_ffhq_encode.pt", "alexnet-owt-7be5be79.pth"):
        import_model(tiny_store / name)


def test_tune_person_from_a_photo_end_to_end(tiny_store):  # noqa: F811
    from studio.models import store

    _import_tiny(tiny_store)
    out = tiny_store / "person.safetensors"
    result, events = run_job(tune_person(image=sample("images/woman_brown_hair_624px.jpg"), output=out,
                                         encoder="e4e", steps=3, projection_steps=2))
    seen = fractions(events)
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert result.path == out and out.exists() and result.preview.exists() and result.pivots == 1
    base = store.load("stylegan2-ffhq-config-f")
    tuned, pivots, meta = load_person(out, base.module, base.source_sha256)
    assert meta["base_sha256"] == base.source_sha256 and len(pivots) == 1 and int(meta["steps"]) == result.steps
    assert sorted(p.name for p in tiny_store.iterdir() if p.name.startswith((".person", "person"))) == [
        "person.preview.png", "person.safetensors"]


def test_cancel_leaves_no_file(tiny_store):  # noqa: F811
    _import_tiny(tiny_store)
    folder = tiny_store / "out"
    folder.mkdir()
    token = CancelToken()
    seen = 0

    def on_progress(ev: Progress) -> None:
        nonlocal seen
        if ev.stage == "tune":
            seen += 1
            if seen == 3:
                token.cancel()

    with pytest.raises(Cancelled):
        drive(tune_person(image=sample("images/woman_brown_hair_624px.jpg"), output=folder / "p.safetensors",
                          encoder="e4e", steps=50, projection_steps=0, cancel=token), on_progress=on_progress)
    assert seen >= 3 and list(folder.iterdir()) == []


def test_video_source_gives_one_pivot_per_sampled_frame(tiny_store):  # noqa: F811
    _import_tiny(tiny_store)
    out = tiny_store / "vox.safetensors"
    result, _ = run_job(tune_person(video=sample("video/voxceleb2_00086.mp4"), output=out, encoder="e4e", frames=3,
                                    steps=2, projection_steps=0))
    assert result.pivots == 3 and result.steps <= 2
    _delta, pivots, meta = read_person(out)
    assert len(pivots) == 3 and meta["n_pivots"] == "3"
    assert not torch.equal(pivots[0], pivots[2])  # different frames, different codes


def test_tune_command_line(tiny_store, capsys):  # noqa: F811
    from studio.cli import main

    rc = main(["tune", "--image", str(sample("images/taylor_256px.jpg")), "--output", str(tiny_store / "t.safetensors")])
    assert rc == 2 and "stylegan2-ffhq-config-f.pt" in capsys.readouterr().err  # nothing imported yet
    _import_tiny(tiny_store)
    rc = main(["tune", "--image", str(sample("images/taylor_256px.jpg")), "--output", str(tiny_store / "t.safetensors"),
               "--steps", "2", "--projection-steps", "2", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "LPIPS" in out and (tiny_store / "t.safetensors").exists()
