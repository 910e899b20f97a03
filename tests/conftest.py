"""Shared fixtures: the real sample media in ../shared/samples and small helpers."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The tests' own user config (settings, the C2PA signing key made on the first export): never the real one.
if "TALKSTUDIO_CONFIG_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _CONFIG = tempfile.mkdtemp(prefix="talkstudio-test-config-")
    os.environ["TALKSTUDIO_CONFIG_DIR"] = _CONFIG
    atexit.register(shutil.rmtree, _CONFIG, ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"
RESOURCES = REPO / "resources"


def sample(rel: str) -> Path:
    """Path of a file in ../shared/samples, skipping the test when the samples are not there."""
    path = SAMPLES / rel
    if not path.exists():
        pytest.skip(f"sample media not available: {path} (tests need ../shared/samples beside the repo)")
    return path


def same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name the same file once symlinks are followed.

    Compare paths with this, not ``==``, whenever the code may have resolved one of them: the samples are
    reached through ``../shared``, which may be a symlink, so the path the code resolved and the one the test
    passed in can differ in text."""
    return Path(a).resolve() == Path(b).resolve()


def resolved_paths(value):
    """``value`` with every path inside it resolved (symlinks followed), for comparing whole documents whose
    paths the code may have resolved (a project reopened from its relative paths) with ``==``.

    Walks dataclasses (compared fields, as a (type name, {field: value}) pair), mappings, lists and tuples;
    a ``Path``, or a ``str`` naming an absolute path that exists (e.g. a pose video), counts as a path."""
    if isinstance(value, Path):
        return value.resolve()
    if isinstance(value, str):
        return str(Path(value).resolve()) if os.path.isabs(value) and os.path.exists(value) else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value).__name__, {f.name: resolved_paths(getattr(value, f.name))
                                      for f in dataclasses.fields(value) if f.compare}
    if isinstance(value, Mapping):
        return {k: resolved_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [resolved_paths(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


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
