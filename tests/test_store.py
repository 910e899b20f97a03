"""studio.models.store: manifest, import (identify, verify, check, store as safetensors), verify, require, load.

A tiny manifest with stand-in architectures (from test_registry) drives everything; the model dir
is a tmp dir through TALKSTUDIO_DATA_DIR. One test uses the real StyleGAN2 generator at 64x64 when
``studio.models.stylegan2`` exists.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import textwrap
from pathlib import Path

import pytest
import torch

from studio.core.errors import ModelError
from studio.core.paths import model_dir
from studio.models import registry, store
from test_registry import (  # noqa: F401 - allow_test_architectures is an autouse fixture
    TinyEncoder,
    TinyGenerator,
    _Payload,
    allow_test_architectures,
    assert_same_tensors,
    psp_ckpt,
    rosinality_ckpt,
)

TINY_MANIFEST = """
schema_version = 1

[models.gen]
file = "stylegan2-ffhq-config-f.pt"
kind = "generator"
title = "tiny generator"
urls = ["https://example.org/stylegan2-ffhq-config-f.pt"]
sha256 = "{gen_sha}"
license = "test"
needed_for = ["render --engine neural"]
layout = "rosinality"
architecture = {{ class = "test_registry:TinyGenerator", kwargs = {{ style_dim = 8, n_mlp = 2 }} }}
signature = {{ "style.1.weight" = [8, 8], "input.input" = [1, 4, 4, 4] }}

[models.psp]
file = "psp_ffhq_encode.pt"
kind = "encoder"
title = "tiny pSp"
urls = ["https://example.org/psp_ffhq_encode.pt"]
license = "test"
needed_for = ["render --engine neural"]
layout = "psp"
architecture = {{ class = "test_registry:TinyEncoder", kwargs = {{ n_styles = 3 }} }}
signature = {{ "input_layer.0.weight" = [8, 3, 3, 3], "styles.2.linear.weight" = [8, 8] }}
match_opts = {{ encoder_type = "GradualStyleEncoder" }}

[models.e4e]
file = "e4e_ffhq_encode.pt"
kind = "encoder"
title = "tiny e4e"
urls = ["https://example.org/e4e_ffhq_encode.pt"]
license = "test"
needed_for = ["render --engine neural"]
layout = "psp"
architecture = {{ class = "test_registry:TinyEncoder", kwargs = {{ n_styles = 3 }} }}
signature = {{ "input_layer.0.weight" = [8, 3, 3, 3], "styles.2.linear.weight" = [8, 8] }}
match_opts = {{ encoder_type = "Encoder4Editing" }}

[models.sync]
file = "syncnet_v2.model"
kind = "syncnet"
title = "signature-only model"
urls = ["https://example.org/syncnet_v2.model"]
license = "test"
needed_for = ["eval"]
layout = "plain"
signature = {{ "netcnnaud.0.weight" = [4, 1, 3, 3] }}
"""


def write_manifest(path: Path, *, gen_sha: str = "") -> store.Manifest:
    path.write_text(TINY_MANIFEST.format(gen_sha=gen_sha), encoding="utf-8")
    return store.load_manifest(path)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A tmp data dir, a tiny manifest, no cached hashes."""
    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(store, "_VERIFIED", {})
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    return downloads, write_manifest(tmp_path / "manifest.toml")


def store_files() -> list[str]:
    """Everything in the model dir (temporaries included)."""
    folder = model_dir()
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


def test_shipped_manifest_is_complete_and_consistent():
    man = store.load_manifest(store.DEFAULT_MANIFEST)
    names = {e.file for e in man}
    assert {"stylegan2-ffhq-config-f.pt", "psp_ffhq_encode.pt", "e4e_ffhq_encode.pt", "alexnet-owt-7be5be79.pth",
            "vgg16-397923af.pth", "syncnet_v2.model", "pt_inception-2015-12-05-6726825d.pth"} <= names
    for entry in man:
        assert entry.kind in store.KINDS and entry.license and entry.needed_for and entry.signature
        # every public checkpoint says where to download it; the speech-to-latent model is trained locally
        assert entry.urls or entry.kind == "audio_model"
        assert not entry.sha256 or len(entry.sha256) == 64
        # torch.hub names carry the sha256 prefix: the manifest must agree with the file name
        if entry.sha256_prefix:
            assert entry.sha256_prefix in entry.file
            assert not entry.sha256 or entry.sha256.startswith(entry.sha256_prefix)
    gen = man["stylegan2-ffhq-config-f"]
    assert gen.layout.state_key == "g_ema" and gen.layout.extra == ("latent_avg",)
    assert dict(gen.architecture.kwargs) == {"size": 1024, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2}
    assert man["psp-ffhq-encode"].layout.prefix == "encoder."
    assert man["e4e-ffhq-encode"].layout.extra == ("latent_avg", "opts")
    # the trained model's signature is that of the paper-size SpeechToLatent that `train audio` writes
    shapes = registry.expected_shapes(registry.Architecture("studio.models.latent_decoder:SpeechToLatent", {}))
    assert all(shapes[k] == v for k, v in man["speech-to-latent"].signature.items())


def test_shipped_signatures_match_their_architectures():
    """Every signature key/shape exists in the architecture (built on the meta device: no memory)."""
    man = store.load_manifest(store.DEFAULT_MANIFEST)
    checked = 0
    for entry in man:
        if entry.architecture is None:
            continue
        try:
            shapes = registry.expected_shapes(entry.architecture)
        except ModelError as exc:  # studio.models.stylegan2 / encoders not written yet
            assert "not available in this version" in exc.message
            continue
        assert {k: shapes.get(k) for k in entry.signature} == dict(entry.signature), entry.name
        checked += 1
    assert checked >= 3  # the torchvision backbones at least


def test_newer_manifest_schema_is_a_clear_error(tmp_path):
    path = tmp_path / "manifest.toml"
    path.write_text("schema_version = 2\n[models]\n")
    with pytest.raises(ModelError, match="schema_version 2, newer than this studio understands") as err:
        store.load_manifest(path)
    assert "update" in err.value.hint


def test_older_manifest_is_migrated(tmp_path):
    path = tmp_path / "manifest.toml"
    path.write_text(textwrap.dedent("""
        [models.gen]
        file = "g.pt"
        kind = "generator"
        url = "https://example.org/g.pt"
        license = "test"
        layout = "rosinality"
    """))
    man = store.load_manifest(path)
    assert man.schema_version == store.MANIFEST_SCHEMA_VERSION
    assert man["gen"].urls == ("https://example.org/g.pt",) and man["gen"].architecture is None


def test_manifest_rejects_unknown_kind_and_bad_hash(tmp_path):
    path = tmp_path / "manifest.toml"
    base = 'schema_version = 1\n[models.x]\nfile = "x.pt"\nlicense = "t"\nlayout = "plain"\n'
    path.write_text(base + 'kind = "vocoder"\n')
    with pytest.raises(ModelError, match="unknown kind 'vocoder'"):
        store.load_manifest(path)
    path.write_text(base + 'kind = "encoder"\nsha256 = "abc"\n')
    with pytest.raises(ModelError, match="malformed sha256"):
        store.load_manifest(path)


def test_manifest_env_override(tmp_path, monkeypatch):
    write_manifest(tmp_path / "m.toml")
    monkeypatch.setenv(store.MANIFEST_ENV, str(tmp_path / "m.toml"))
    assert set(store.load_manifest().entries) == {"gen", "psp", "e4e", "sync"}


# --------------------------------------------------------------------------------------------
# Import and load
# --------------------------------------------------------------------------------------------


def test_import_rosinality_generator_and_load_it_back(env, tmp_path):
    downloads, man = env
    gen = TinyGenerator()
    ckpt = rosinality_ckpt(gen)
    src = save(ckpt, downloads / "stylegan2-ffhq-config-f.pt")

    status = store.import_model(src, manifest=man)
    assert status.state == store.INSTALLED and status.path == tmp_path / "data" / "models" / "gen.safetensors"
    assert store_files() == ["gen.safetensors", "index.json"]
    assert src.exists()  # the download is left alone

    index = json.loads((model_dir() / "index.json").read_text())
    assert index["schema_version"] == store.INDEX_SCHEMA_VERSION
    record = index["models"]["gen"]
    assert record["source_file"] == "stylegan2-ffhq-config-f.pt"
    assert record["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert record["stored_sha256"] == hashlib.sha256(status.path.read_bytes()).hexdigest()
    assert record["imported_at"] and "recorded at import" in record["verified_by"]

    loaded = store.load("gen", manifest=man)
    assert isinstance(loaded.module, TinyGenerator) and not loaded.module.training
    assert_same_tensors(loaded.module.state_dict(), gen.state_dict())
    assert torch.equal(loaded.extras["latent_avg"], ckpt["latent_avg"])
    assert loaded.source_sha256 == record["source_sha256"]
    assert store.model_path("gen", manifest=man) == status.path


def test_import_identifies_psp_and_e4e_by_content_and_opts(env):
    downloads, man = env
    enc = TinyEncoder()
    psp = save(psp_ckpt(enc, encoder_type="GradualStyleEncoder"), downloads / "download (1).pt")
    e4e = save(psp_ckpt(TinyEncoder(), encoder_type="Encoder4Editing"), downloads / "download (2).pt")
    assert store.import_model(psp, manifest=man).name == "psp"
    assert store.import_model(e4e, manifest=man).name == "e4e"
    loaded = store.load("psp", manifest=man)
    assert_same_tensors(loaded.module.state_dict(), enc.state_dict())
    assert loaded.extras["opts"]["encoder_type"] == "GradualStyleEncoder"
    assert loaded.extras["latent_avg"].shape == (3, 8)


def test_import_without_opts_is_ambiguous_until_named(env):
    downloads, man = env
    src = save(psp_ckpt(encoder_type=None), downloads / "encoder.pt")
    with pytest.raises(ModelError, match="could be any of: psp, e4e") as err:
        store.import_model(src, manifest=man)
    assert "--name" in err.value.hint
    assert store.import_model(src, name="e4e", manifest=man).installed


def test_import_unknown_file_says_what_it_is(env):
    downloads, _man = env
    src = save({"conv.weight": torch.zeros(2, 2)}, downloads / "something.pth")
    with pytest.raises(ModelError, match="plain state dict of 1 tensors.*matches no model in the manifest"):
        store.import_model(src, manifest=_man)


def test_encoder_given_as_generator_is_refused_with_a_pointer(env):
    downloads, man = env
    src = save(psp_ckpt(), downloads / "psp_ffhq_encode.pt")
    with pytest.raises(ModelError) as err:
        store.import_model(src, name="gen", manifest=man)
    assert "is a pSp/e4e checkpoint" in err.value.message
    assert "not a rosinality StyleGAN2 checkpoint" in err.value.message
    assert "(expected for gen)" in err.value.message
    assert err.value.hint == "it looks like psp: import it with --name psp"
    assert store_files() == []


def test_e4e_named_as_psp_is_refused_by_opts(env):
    downloads, man = env
    src = save(psp_ckpt(encoder_type="Encoder4Editing"), downloads / "e4e_ffhq_encode.pt")
    expected = "is not psp: opts.encoder_type is 'Encoder4Editing', expected 'GradualStyleEncoder'"
    with pytest.raises(ModelError, match=expected):
        store.import_model(src, name="psp", manifest=man)


def test_wrong_shapes_are_named_and_nothing_is_written(env):
    downloads, man = env
    src = save(rosinality_ckpt(TinyGenerator(channels=6)), downloads / "stylegan2-ffhq-config-f.pt")
    with pytest.raises(ModelError) as err:
        store.import_model(src, manifest=man)
    msg = err.value.message
    assert "does not match gen (test_registry:TinyGenerator(style_dim=8, n_mlp=2))" in msg
    assert "input.input: expected (1, 4, 4, 4), got (1, 6, 4, 4)" in msg
    assert "rosinality" in err.value.hint
    assert store_files() == []


def test_missing_and_unexpected_keys_are_named(env):
    downloads, man = env
    ckpt = rosinality_ckpt()
    del ckpt["g_ema"]["conv1.conv.modulation.bias"]
    ckpt["g_ema"]["to_rgb1.conv.weight"] = torch.zeros(1, 3, 4, 1, 1)
    src = save(ckpt, downloads / "stylegan2-ffhq-config-f.pt")
    with pytest.raises(ModelError) as err:
        store.import_model(src, manifest=man)
    assert "1 missing key(s): conv1.conv.modulation.bias" in err.value.message
    assert "1 unexpected key(s): to_rgb1.conv.weight" in err.value.message


def test_published_sha256_mismatch_is_refused(env, tmp_path):
    downloads, _ = env
    man = write_manifest(tmp_path / "pinned.toml", gen_sha="ab" * 32)
    src = save(rosinality_ckpt(), downloads / "stylegan2-ffhq-config-f.pt")
    expected = "stylegan2-ffhq-config-f.pt has sha256 .* expected abababababababab...: corrupt or different file"
    with pytest.raises(ModelError, match=expected) as err:
        store.import_model(src, manifest=man)
    assert "https://example.org/stylegan2-ffhq-config-f.pt" in err.value.hint
    assert store_files() == []


def test_published_sha256_identifies_a_renamed_file(env, tmp_path):
    downloads, _ = env
    src = save(rosinality_ckpt(), downloads / "renamed.pt")
    man = write_manifest(tmp_path / "pinned.toml", gen_sha=hashlib.sha256(src.read_bytes()).hexdigest())
    status = store.import_model(src, manifest=man)
    assert status.name == "gen"
    assert json.loads(store.index_path().read_text())["models"]["gen"]["verified_by"] == "published sha256"


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_damaged_download_is_refused_and_nothing_is_written(env, damage):
    downloads, man = env
    src = save(rosinality_ckpt(), downloads / "stylegan2-ffhq-config-f.pt")
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    expected = "is truncated or corrupt" if damage == "truncated" else r"is empty \(0 bytes\)"
    with pytest.raises(ModelError, match=expected):
        store.import_model(src, manifest=man)
    assert store_files() == []


def test_pickle_with_code_is_refused_on_import(env):
    downloads, man = env
    marker = downloads / "pwned"
    payload = {"g_ema": TinyGenerator().state_dict(), "latent_avg": _Payload(marker)}
    src = save(payload, downloads / "stylegan2-ffhq-config-f.pt")
    with pytest.raises(ModelError, match="contains code or unsupported objects"):
        store.import_model(src, manifest=man)
    assert not marker.exists() and store_files() == []


def _fail_index_commit(monkeypatch) -> None:
    """Make committing index.json fail as on a full disk (after the weights were renamed in place)."""
    real_commit = registry.commit

    def failing_commit(tmp, path):
        if Path(path).name == "index.json":
            raise OSError(28, "No space left on device")
        real_commit(tmp, path)

    monkeypatch.setattr(registry, "commit", failing_commit)


def test_failed_write_leaves_nothing_behind(env, monkeypatch):
    downloads, man = env
    src = save(rosinality_ckpt(), downloads / "stylegan2-ffhq-config-f.pt")
    _fail_index_commit(monkeypatch)
    with pytest.raises(ModelError, match="cannot write to the model folder .*No space left on device"):
        store.import_model(src, manifest=man)
    assert store_files() == []
    assert store.list_models(manifest=man)[0].state == store.MISSING


def test_failed_reimport_keeps_the_previous_model(env, monkeypatch):
    downloads, man = env
    first = TinyGenerator()
    store.import_model(save(rosinality_ckpt(first), downloads / "stylegan2-ffhq-config-f.pt"), manifest=man)
    before = {name: (model_dir() / name).read_bytes() for name in store_files()}
    _fail_index_commit(monkeypatch)
    with pytest.raises(ModelError, match="cannot write to the model folder"):
        store.import_model(save(rosinality_ckpt(), downloads / "newer.pt"), name="gen", manifest=man)
    assert {name: (model_dir() / name).read_bytes() for name in store_files()} == before
    store._VERIFIED.clear()
    assert_same_tensors(store.load("gen", manifest=man).module.state_dict(), first.state_dict())


def test_signature_only_model_imports_but_has_no_module(env):
    downloads, man = env
    weights = {"netcnnaud.0.weight": torch.randn(4, 1, 3, 3), "netcnnaud.0.bias": torch.randn(4)}
    src = save(weights, downloads / "syncnet_v2.model")
    assert store.import_model(src, manifest=man).name == "sync"
    loaded = store.load_weights("sync", manifest=man)
    assert loaded.module is None
    assert_same_tensors(dict(loaded.state), weights)
    with pytest.raises(ModelError, match="no module is defined"):
        store.load("sync", manifest=man)
    bad = save({"netcnnaud.0.weight": torch.randn(4, 2, 3, 3)}, downloads / "other.model")
    with pytest.raises(ModelError, match=r"does not match sync: netcnnaud.0.weight has shape \(4, 2, 3, 3\)"):
        store.import_model(bad, name="sync", manifest=man)


# --------------------------------------------------------------------------------------------
# Status, verify, require
# --------------------------------------------------------------------------------------------


def test_list_models_and_verify_detect_corruption(env):
    downloads, man = env
    store.import_model(save(rosinality_ckpt(), downloads / "stylegan2-ffhq-config-f.pt"), manifest=man)
    statuses = {s.name: s for s in store.list_models(manifest=man)}
    assert statuses["gen"].installed and statuses["gen"].size == statuses["gen"].path.stat().st_size
    assert statuses["psp"].state == store.MISSING and statuses["psp"].size is None
    assert statuses["gen"].license == "test" and statuses["gen"].needed_for == ("render --engine neural",)
    assert [s.state for s in store.verify(manifest=man)][:1] == [store.INSTALLED]

    # flip bytes in the middle of the stored tensors (same size: only the hash can tell)
    path = statuses["gen"].path
    data = bytearray(path.read_bytes())
    middle = len(data) - 64
    data[middle:middle + 16] = bytes(b ^ 0x55 for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))
    verified = {s.name: s for s in store.verify(manifest=man)}
    assert verified["gen"].state == store.CORRUPT and "differs from the imported" in verified["gen"].detail
    store._VERIFIED.clear()
    with pytest.raises(ModelError, match="gen.safetensors has sha256 .*: corrupt or different file") as err:
        store.load("gen", manifest=man)
    assert "talkstudio models import" in err.value.hint


def test_truncated_stored_file_is_reported_corrupt(env):
    downloads, man = env
    status = store.import_model(save(rosinality_ckpt(), downloads / "stylegan2-ffhq-config-f.pt"), manifest=man)
    status.path.write_bytes(status.path.read_bytes()[:100])
    assert store.list_models(manifest=man)[0].state == store.CORRUPT
    with pytest.raises(ModelError, match="not installed: stylegan2-ffhq-config-f.pt \\(tiny generator, corrupt\\)"):
        store.load("gen", manifest=man)


def test_require_names_exactly_the_missing_files(env):
    downloads, man = env
    store.import_model(save(rosinality_ckpt(), downloads / "stylegan2-ffhq-config-f.pt"), manifest=man)
    with pytest.raises(ModelError) as err:
        store.require("gen", "psp", "e4e", feature="the neural engine", manifest=man)
    msg, hint = err.value.message, err.value.hint
    assert msg == ("the neural engine needs 2 model files that are not installed: "
                   "psp_ffhq_encode.pt (tiny pSp), e4e_ffhq_encode.pt (tiny e4e)")
    assert "stylegan2" not in msg
    assert "https://example.org/psp_ffhq_encode.pt" in hint and "talkstudio models import" in hint
    assert str(model_dir()) in hint
    assert store.require("gen", feature="x", manifest=man) == [model_dir() / "gen.safetensors"]


def test_require_points_at_a_downloaded_but_unimported_file(env):
    _downloads, man = env
    model_dir().mkdir(parents=True)
    (model_dir() / "psp_ffhq_encode.pt").write_bytes(b"x")
    with pytest.raises(ModelError) as err:
        store.require("psp", feature="the neural engine", manifest=man)
    assert "1 model file that is not installed: psp_ffhq_encode.pt" in err.value.message
    assert f"`talkstudio models import {model_dir() / 'psp_ffhq_encode.pt'}`" in err.value.hint


def test_unknown_model_name(env):
    _downloads, man = env
    with pytest.raises(ModelError, match="unknown model 'stylegan3'") as err:
        store.require("stylegan3", feature="x", manifest=man)
    assert "gen, psp, e4e, sync" in err.value.hint


def test_newer_index_schema_is_a_clear_error(env):
    _downloads, man = env
    model_dir().mkdir(parents=True)
    store.index_path().write_text(json.dumps({"schema_version": 99, "models": {}}))
    with pytest.raises(ModelError, match="schema_version 99, newer than this studio understands"):
        store.list_models(manifest=man)


def test_reimport_replaces_the_stored_model(env):
    downloads, man = env
    first, second = TinyGenerator(), TinyGenerator()
    store.import_model(save(rosinality_ckpt(first), downloads / "stylegan2-ffhq-config-f.pt"), manifest=man)
    store.import_model(save(rosinality_ckpt(second), downloads / "again.pt"), name="gen", manifest=man)
    assert store_files() == ["gen.safetensors", "index.json"]
    assert_same_tensors(store.load("gen", manifest=man).module.state_dict(), second.state_dict())


# --------------------------------------------------------------------------------------------
# The real generator
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("studio.models.stylegan2") is None,
                    reason="studio.models.stylegan2 is not written yet")
def test_real_stylegan2_generator_roundtrip(env, tmp_path):
    """A rosinality-layout checkpoint of the real Generator at 64x64 imports, checks and rebuilds."""
    from studio.models.stylegan2 import Generator

    downloads, _ = env
    kwargs = {"size": 64, "style_dim": 64, "n_mlp": 2}
    gen = Generator(**kwargs)
    manifest = tmp_path / "real.toml"
    manifest.write_text(textwrap.dedent("""
        schema_version = 1
        [models.sg2]
        file = "sg2.pt"
        kind = "generator"
        license = "test"
        layout = "rosinality"
        [models.sg2.architecture]
        class = "studio.models.stylegan2:Generator"
        kwargs = { size = 64, style_dim = 64, n_mlp = 2 }
    """))
    man = store.load_manifest(manifest)
    assert registry.expected_shapes(man["sg2"].architecture) == {k: tuple(v.shape) for k, v in gen.state_dict().items()}
    latent_avg = torch.randn(64)
    src = save({"g_ema": gen.state_dict(), "latent_avg": latent_avg}, downloads / "sg2.pt")
    store.import_model(src, manifest=man)
    loaded = store.load("sg2", manifest=man)
    assert isinstance(loaded.module, Generator)
    assert_same_tensors(loaded.module.state_dict(), gen.state_dict())
    assert torch.equal(loaded.extras["latent_avg"], latent_avg)
    if "latent_avg" in loaded.module._buffers:  # the Generator's non-persistent buffer is filled in
        assert torch.equal(loaded.module.latent_avg, latent_avg)
