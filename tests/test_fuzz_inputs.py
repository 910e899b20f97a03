"""Property-based fuzzing (hypothesis) of the two text formats a user may be handed by someone else: the
project file and the batch jobs CSV. 10,000 generated documents each: every one either loads or is refused
with a StudioError (one clear message), none raises anything else, none takes over a second."""

from __future__ import annotations

import json
import string
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import sample
from studio.app.batch import CSV_COLUMNS, jobs_from_csv
from studio.app.project import ProjectState, read_project_file, state_to_dict
from studio.core.errors import StudioError

# each example is timed by the test itself (<= 1 s); hypothesis's own deadline would flake on a busy machine
FUZZ = settings(max_examples=10_000, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])

_scalars = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
            | st.sampled_from(["lite", "neural", "idle", "happy", "source", "1080p", "../../etc/passwd", "/etc",
                               "", "~", "nod", "auto"]))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                           max_size=4), max_leaves=12)


def _paths(d: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a nested dict (the places a mutation can hit)."""
    out = [prefix]
    if isinstance(d, dict):
        for k, v in d.items():
            out += _paths(v, prefix + (k,))
    return out


_VALID = state_to_dict(ProjectState(), Path("/tmp"))
_PATHS = _paths(_VALID)[1:]


@st.composite
def _project_text(draw) -> str:
    kind = draw(st.integers(0, 9))
    if kind == 0:  # anything at all
        return draw(st.text(max_size=200))
    if kind == 1:  # any JSON value
        return json.dumps(draw(_json))
    doc = json.loads(json.dumps(_VALID))
    for _ in range(draw(st.integers(1, 3))):  # a valid project with a few fields replaced
        path = draw(st.sampled_from(_PATHS))
        node = doc
        for k in path[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                break
        else:
            if draw(st.booleans()):
                node[path[-1]] = draw(_json)
            else:
                node.pop(path[-1], None)
    if draw(st.booleans()):
        doc[draw(st.sampled_from(["keyframes", "base_dir", "range_s", "schema_version", "zzz"]))] = draw(_json)
    text = json.dumps(doc)
    if kind == 9 and len(text) > 2:  # truncated
        text = text[: draw(st.integers(1, len(text) - 1))]
    return text


@pytest.mark.slow
@FUZZ
@given(text=_project_text())
def test_project_loader_never_crashes(tmp_path_factory, text):
    folder = tmp_path_factory.getbasetemp() / "a" / "b" / "c"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fuzz.talkproj"
    path.write_text(text, encoding="utf-8")
    t0 = time.monotonic()
    try:
        state, data = read_project_file(path)
    except StudioError as exc:
        assert exc.message
        return
    finally:
        assert time.monotonic() - t0 < 1.0, "a document took over a second"
    assert isinstance(state, ProjectState)
    state.settings.check_values()  # what loads is valid
    # a base_dir in the file never redirects its relative paths: they resolve against the file's own folder
    for key, p in (("identity", state.identity), ("audio", state.audio)):
        text_path = data.get(key)
        if isinstance(text_path, str) and text_path and not text_path.startswith(("/", "~")):
            assert p == (folder / text_path).resolve()


_cells = st.text(alphabet=string.printable + "\x00é…", max_size=30) | st.sampled_from(
    ["", str(sample("images/taylor_256px.jpg")), str(sample("audio/english_short_16k_mono.wav")), "../x.mp4",
     "/tmp/abs.mp4", "a/b.mp4", "25", "-1", "nan", "1e309", "happy:0.5", "happy:", "neural", "nod", "trim"])


@st.composite
def _csv_text(draw) -> str:
    header = draw(st.lists(st.sampled_from(list(CSV_COLUMNS) + ["junk", "", "Identity"]), min_size=1, max_size=8))
    if draw(st.booleans()):
        header = ["identity", "audio", *header]
    rows = draw(st.lists(st.lists(_cells, min_size=0, max_size=len(header) + 1), max_size=6))
    lines = [",".join(header)] + [",".join(json.dumps(c) if draw(st.booleans()) else c for c in r) for r in rows]
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n", "\n\n"]))


@pytest.mark.slow
@FUZZ
@given(text=_csv_text(), skip=st.booleans())
def test_jobs_csv_reader_never_crashes(tmp_path_factory, text, skip):
    base = tmp_path_factory.getbasetemp()
    path = base / "fuzz.csv"
    path.write_text(text, encoding="utf-8")
    out = base / "out"
    t0 = time.monotonic()
    try:
        specs = jobs_from_csv(path, out, skip_invalid=skip, problems=[])
    except StudioError as exc:
        assert exc.message
        return
    finally:
        assert time.monotonic() - t0 < 1.0, "a document took over a second"
    for spec in specs:  # what is accepted writes inside the output folder and reads existing files
        assert out.absolute() in spec.output.parents
        assert spec.identity.is_file() and spec.audio.is_file()
