"""Long jobs: events, returned results, and progress that never goes backwards, in every long job."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf

from conftest import sample
from jobutil import run_job
from studio.core.events import CancelToken, Notice, Progress, ProgressMonitor, Returning, drive
from studio.media.audio import load_audio
from test_invert import tiny_store  # noqa: F401  (fixture)
from test_speech_model import TINY_MODEL, tiny_dataset  # noqa: F401  (fixture)


def test_sub_monitors_share_a_floor():
    root = ProgressMonitor()
    late = root.sub(0.4, 0.8)
    assert late.event("x", 1, 2).fraction == pytest.approx(0.6)
    # a stage that reports an earlier range after a later one (what re-voicing and neural loading did)
    early = root.sub(0.0, 0.5)
    assert early.event("y", 1, 2).fraction == pytest.approx(0.6)
    assert root.sub(0.5, 1.0).sub(0.5, 1.0).event("z", 1, 1).fraction == 1.0
    assert root.reported == 1.0
    # another job has its own floor
    assert ProgressMonitor().event("a", 0, 1).fraction == 0.0
    with pytest.raises(ValueError):
        root.sub(0.6, 0.2)


def test_drive_returns_the_result_and_passes_the_events():
    def job():
        yield Progress("a", 0.5)
        yield Notice("careful")
        yield Notice("fyi", level="note")
        return 42

    seen = []
    assert drive(job(), on_progress=seen.append, on_notice=seen.append) == 42
    assert [type(e).__name__ for e in seen] == ["Progress", "Notice", "Notice"] and seen[2].level == "note"
    assert drive(job()) == 42  # no callbacks: events ignored

    def yields_its_result():
        yield Progress("a", 1.0)
        yield "result"

    with pytest.raises(TypeError, match="results are returned"):
        drive(yields_its_result())
    with pytest.raises(ValueError):
        Notice("x", level="info")

    run = Returning(job())
    assert len(list(run)) == 3 and run.result == 42


# ------------------------------------------------------------------------------------------ every long job

def _speech(tmp: Path, seconds: float) -> Path:
    clip = load_audio(sample("audio/english_short_16k_mono.wav"), sample_rate=16000)
    path = tmp / f"speech_{seconds:g}.wav"
    sf.write(path, clip.samples[: int(seconds * 16000)], 16000)
    return path


def _render(tmp: Path):
    from studio.engine.pipeline import RenderRequest, render

    return render(RenderRequest(image=sample("images/taylor_256px.jpg"), audio=_speech(tmp, 1.0),
                                output=tmp / "r.mp4"))


def _revoice(tmp: Path):
    from studio.engine.dub import DubSettings, dub_video

    return dub_video(_short_video(tmp), _speech(tmp, 1.0), tmp / "dub.mp4", DubSettings())


def _eval(tmp: Path):
    from studio.engine.eval.harness import run_eval

    return run_eval([sample("video/grid_bbaf2n.mpg")], tmp / "report", max_seconds=1.0)


def _neural_load(tmp: Path, monkeypatch, store_dir: Path):
    """Loading the neural engine when its directions must be discovered first (after the generator and the
    speech model have reported): the discovery's own sub-range starts below what was already reported."""
    from studio.engine.neural import directions as directions_mod
    from studio.engine.neural.engine import NeuralEngine, NeuralOptions
    from studio.models import store

    for name in ("stylegan2-ffhq-config-f.pt", "alexnet-owt-7be5be79.pth", "e4e_ffhq_encode.pt"):
        store.import_model(store_dir / name)

    def discover(generator, *, generator_sha256, monitor, **kw):
        for i in range(5):
            yield monitor.event("discover", i, 4, "sampling faces")
        return directions_mod.DirectionSet(generator_sha256=generator_sha256, directions={})

    monkeypatch.setattr(directions_mod, "discover_directions", discover)
    monkeypatch.setattr(directions_mod, "save_directions", lambda d: None)
    return NeuralEngine.load(NeuralOptions(discover_samples=8, device="cpu"))


def _pti(tmp: Path, store_dir: Path):
    from studio.engine.neural.pti import tune_person
    from studio.models import store

    for name in ("stylegan2-ffhq-config-f.pt", "alexnet-owt-7be5be79.pth", "e4e_ffhq_encode.pt"):
        store.import_model(store_dir / name)
    return tune_person(image=sample("images/woman_brown_hair_624px.jpg"), output=tmp / "p.safetensors",
                       encoder="e4e", steps=3, projection_steps=2, device="cpu")


def _train(tmp: Path, dataset):
    from studio.engine.neural.train import TrainConfig, train_audio

    cfg = TrainConfig(steps=6, batch=2, seq_len=10, lpips_net="alex", lpips_frames=1, lpips_size=64,
                      n_pca_samples=64, checkpoint_every=3, val_every=3, model=TINY_MODEL)
    (tmp / "m").mkdir()
    return train_audio(dataset.path, tmp / "m" / "model.safetensors", config=cfg, device="cpu")


def _short_video(tmp: Path) -> Path:
    video = tmp / "src.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(sample("video/grid_bbaf2n.mpg")),
                    "-t", "1.2", "-vf", "scale=180:144", "-an", str(video)], check=True)
    return video


def _batch_fractions(tmp: Path) -> list[float]:
    """A photo and a video identity shorter than the speech (its loop notice arrives mid-job)."""
    from studio.app.batch import BatchQueue, cross_product, run_batch

    queue = BatchQueue(tmp / "batch")
    identities = [sample("images/taylor_256px.jpg"), _short_video(tmp)]
    queue.add(cross_product(identities, [_speech(tmp, 2.0)], queue.output_dir))
    run = Returning(run_batch(queue, cancel=CancelToken()))
    events = list(run)
    assert run.result is not None and run.result.counts["done"] == 2, run.result
    notices = [ev for ev in events if ev.kind == "notice"]
    assert notices and all(ev.fraction > 0 for ev in notices), "a notice mid-job keeps the job's progress"
    return [ev.overall for ev in events]


JOBS = ["render", "revoice", "eval", "batch", "neural-load", "pti", "train"]


@pytest.mark.slow
@pytest.mark.parametrize("job", JOBS)
def test_every_long_job_reports_monotonic_progress(job, tmp_path, request, monkeypatch):
    if job == "batch":
        fractions = _batch_fractions(tmp_path)
    else:
        if job in ("neural-load", "pti"):
            store_dir = request.getfixturevalue("tiny_store")
            gen = _neural_load(tmp_path, monkeypatch, store_dir) if job == "neural-load" else _pti(tmp_path, store_dir)
        elif job == "train":
            dataset, root = request.getfixturevalue("tiny_dataset")
            monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(root / "data"))
            monkeypatch.setenv("TALKSTUDIO_MANIFEST", str(root / "manifest.toml"))
            gen = _train(tmp_path, dataset)
        else:
            gen = {"render": _render, "revoice": _revoice, "eval": _eval}[job](tmp_path)
        result, events = run_job(gen)
        assert result is not None
        fractions = [e.fraction for e in events if isinstance(e, Progress)]
    assert len(fractions) >= 3, fractions
    steps = np.diff(fractions)
    assert (steps >= 0).all(), f"progress went back from {fractions[int(np.argmin(steps))]:.3f} to " \
                               f"{fractions[int(np.argmin(steps)) + 1]:.3f}"
    assert 0.0 <= fractions[0] and fractions[-1] == pytest.approx(1.0)
