"""What the model store holds for the neural engine, and what of it is installed (no Qt, no torch).

The neural engine (StyleGAN2 generator, pSp/e4e encoders, LPIPS for PTI) is not part of this version;
the studio lists the files it will need in :func:`~studio.core.paths.model_dir` so the user knows what is
missing, and keeps the neural choices disabled until they are there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.core.paths import model_dir
from studio.engine.pipeline import ENGINES


@dataclass(frozen=True)
class ModelEntry:
    """One checkpoint of the model store: display name, file name, what it is for."""

    name: str
    file: str
    purpose: str

    def path(self) -> Path:
        return model_dir() / self.file

    @property
    def installed(self) -> bool:
        return self.path().is_file()


MODEL_STORE: tuple[ModelEntry, ...] = (
    ModelEntry("StyleGAN2 FFHQ config-f (1024²)", "stylegan2-ffhq-config-f.pt", "face generator (neural engine)"),
    ModelEntry("pSp encoder (FFHQ)", "psp_ffhq_encode.pt", "photo → W+ inversion"),
    ModelEntry("e4e encoder (FFHQ)", "e4e_ffhq_encode.pt", "photo → W+ inversion (editable)"),
    ModelEntry("LPIPS backbone (AlexNet)", "lpips_alex.pth", "perceptual loss for PTI personalisation"),
)


@dataclass(frozen=True)
class NeuralStatus:
    """Whether the neural engine can run, and if not, why (one line for the UI)."""

    available: bool
    reason: str


def neural_status() -> NeuralStatus:
    """The neural engine needs the engine code (a later version) and the StyleGAN2 checkpoint."""
    generator = MODEL_STORE[0]
    if not generator.installed:
        return NeuralStatus(False, "not installed: needs the StyleGAN2 checkpoint in the model store "
                                   f"({generator.path()})")
    if "neural" not in ENGINES:
        return NeuralStatus(False, "not available in this version of the studio (the lite engine is)")
    return NeuralStatus(True, "")
