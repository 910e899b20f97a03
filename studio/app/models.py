"""What the model store holds for the neural engine, and whether the neural engine can run (no Qt).

The store itself (manifest, import, verification, loading) is :mod:`studio.models.store`; this module
answers the studio's questions about it in user-facing words.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.core.errors import ModelError
from studio.core.paths import data_dir
from studio.engine.settings import ENGINE_NAMES
from studio.models import store


@dataclass(frozen=True)
class NeuralStatus:
    """Whether the neural engine can run, and if not, why (one line for the UI)."""

    available: bool
    reason: str


def model_statuses() -> list[store.ModelStatus]:
    """Every model of the manifest with its state in the user's store (see :func:`store.list_models`)."""
    return store.list_models()


def neural_status() -> NeuralStatus:
    """Available only when the engine is part of this version and the checkpoints of its default options
    (encoder "auto": the generator plus e4e, else pSp, else the LPIPS backbone for projection) are imported."""
    from studio.engine.neural.engine import NeuralOptions

    try:
        NeuralOptions().validate()
    except ModelError as exc:
        return NeuralStatus(False, f"not installed: {exc.message}")
    if "neural" not in ENGINE_NAMES:
        return NeuralStatus(False, "not available in this version of the studio (the lite engine is)")
    return NeuralStatus(True, "")


def pti_status() -> NeuralStatus:
    """Whether one-click personalisation (PTI) can run: the generator and LPIPS are imported (the encoder
    "auto" picks is used when there is one; without one, the pivot comes from projection alone)."""
    from studio.engine.neural.invert import required_models

    try:
        store.require(*required_models("auto", 1), feature="personalisation (PTI)")
    except ModelError as exc:
        return NeuralStatus(False, f"not installed: {exc.message}")
    return NeuralStatus(True, "")


def person_output_path(identity: Path, project_file: Path | None) -> Path:
    """Where a person's PTI result goes: beside the project when it is saved, else the user data dir."""
    folder = project_file.parent if project_file is not None else data_dir() / "persons"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{Path(identity).stem}.person.safetensors"
