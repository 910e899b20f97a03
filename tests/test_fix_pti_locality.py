"""PTI's locality regulariser follows upstream (danielroich/PTI, ``criteria/localitly_regulizer.py``):

* ``get_morphed_w_code`` normalises the direction with ONE L2 norm over the whole W+ code, so the morphed code
  lies exactly ``regulizer_alpha`` (30) from the pivot -- not ``alpha`` per layer (alpha * sqrt(n_latent));
* the regulariser's losses are weighted ``regulizer_l2_lambda = regulizer_lpips_lambda = 0.1``
  (``configs/hyperparameters.py``).
"""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from test_invert import TINY_G

from studio.engine.neural import pti
from studio.engine.neural.pti import TuneConfig, TuneResult, tune
from studio.models.stylegan2 import Generator


def _upstream_morph(new_w_code: torch.Tensor, fixed_w: torch.Tensor, alpha: float) -> torch.Tensor:
    """PTI's ``Space_Regulizer.get_morphed_w_code``, verbatim."""
    interpolation_direction = new_w_code - fixed_w
    interpolation_direction_norm = torch.norm(interpolation_direction, p=2)
    direction_to_move = alpha * interpolation_direction / interpolation_direction_norm
    return fixed_w + direction_to_move


def test_morphed_code_lies_alpha_from_the_pivot_in_global_l2():
    g = torch.Generator().manual_seed(0)
    pivot = torch.randn(1, 18, 512, generator=g, dtype=torch.float64)
    # a different direction (and length) on every layer, as for a W+ pivot and a mapped W code
    target = pivot + torch.randn(1, 18, 512, generator=g, dtype=torch.float64) * torch.linspace(0.1, 5, 18)[:, None]
    out = pti._morphed(pivot, target, 30.0)
    assert out.shape == (1, 18, 512)
    moved = float((out - pivot).norm(p=2))  # one norm over the whole W+ code
    assert moved == pytest.approx(30.0, rel=1e-9), moved
    torch.testing.assert_close(out, _upstream_morph(target, pivot, 30.0), rtol=0, atol=1e-12)
    # the step is along the straight line to the target
    d = (target - pivot).flatten()
    cos = float(torch.dot((out - pivot).flatten(), d) / (moved * d.norm()))
    assert cos == pytest.approx(1.0, abs=1e-12)


class _RecordingScaler(torch.amp.GradScaler):
    losses: ClassVar[list[float]] = []

    def scale(self, outputs):
        _RecordingScaler.losses.append(float(outputs.detach()))
        return super().scale(outputs)


def _run(job) -> TuneResult:
    """The job's TuneResult, whether it is returned (studio.core.events convention) or yielded."""
    while True:
        try:
            ev = next(job)
        except StopIteration as stop:
            assert isinstance(stop.value, TuneResult)
            return stop.value
        if isinstance(ev, TuneResult):
            return ev


def _one_lpips(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A stand-in LPIPS: 1 for any pair (keeps the graph so backward works)."""
    return (a - b).mean(dim=(1, 2, 3), keepdim=True) * 0 + 1.0


def test_tune_morphs_alpha_away_and_weights_the_regulariser_0_1(monkeypatch):
    torch.manual_seed(0)
    gen = Generator(**TINY_G).eval()
    with torch.no_grad():
        gen.set_latent_avg(gen.mean_latent(64, seed=0))
    pivot = torch.randn(1, gen.n_latent, gen.style_dim)
    target = torch.zeros(1, 3, gen.size, gen.size)
    rendered: list[torch.Tensor] = []
    render = pti._render

    def spy(g, w):
        rendered.append(w.detach().clone())
        return render(g, w)

    monkeypatch.setattr(pti, "_render", spy)
    monkeypatch.setattr(torch.amp, "GradScaler", _RecordingScaler)
    _RecordingScaler.losses = []
    cfg = TuneConfig(steps=1, lpips_threshold=-1.0, l2_weight=0.0, lpips_weight=0.0, locality_weight=1.0)
    res = _run(tune(gen, [target], [pivot], _one_lpips, config=cfg))
    assert res.steps == 1
    morphed = [w for w in rendered if not torch.equal(w, pivot)]
    assert morphed, "the regulariser rendered no morphed code"
    for w in morphed:
        assert float((w - pivot).norm(p=2)) == pytest.approx(30.0, rel=1e-5)
    # step 0: tuned == original, so the regulariser's L2 is 0 and its (stand-in) LPIPS is 1 -> loss 0.1 * 1
    assert _RecordingScaler.losses == [pytest.approx(0.1, abs=1e-6)]
    # PTI's defaults: regulizer_l2_lambda = regulizer_lpips_lambda = 0.1, regulizer_alpha = 30
    assert TuneConfig().locality_l2_weight == 0.1 and TuneConfig().locality_lpips_weight == 0.1
    assert TuneConfig().locality_alpha == 30.0
