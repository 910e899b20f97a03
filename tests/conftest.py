"""Shared fixtures: the real sample media in ../shared/samples and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"
RESOURCES = REPO / "resources"


def sample(rel: str) -> Path:
    """Path of a file in ../shared/samples, skipping the test when the samples are not there."""
    path = SAMPLES / rel
    if not path.exists():
        pytest.skip(f"sample media not available: {path} (tests need ../shared/samples beside the repo)")
    return path


def load_rgb(rel: str) -> np.ndarray:
    from studio.media.image import load_image

    return load_image(sample(rel))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def parse_keys(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """``"key (d0, d1, ...)"`` lines (an upstream state-dict dump) -> [(key, shape), ...]."""
    out = []
    for line in text.strip().splitlines():
        key, shape = line.split(" ", 1)
        out.append((key, tuple(int(v) for v in shape.strip("()").split(",") if v.strip())))
    return out
