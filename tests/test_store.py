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
bytes = {gen_bytes}
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


def write_manifest(path: Path, *, gen_sha: str = "", gen_bytes: int = 0) -> store.Manifest:
    path.write_text(TINY_MANIFEST.format(gen_sha=gen_sha, gen_bytes=gen_bytes), encoding="utf-8")
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
        # a full digest comes with its size (the two are stated together wherever a digest is known)
        assert not entry.sha256 or entry.bytes
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


def test_published_size_never_overrules_the_hash(env, tmp_path):
    """``bytes`` in the manifest: the hash decides. Right hash + another size in the manifest: accepted (the
    manifest is wrong); wrong hash + other size: refused by its size; no published hash: only noted."""
    downloads, _ = env
    src = save(rosinality_ckpt(), downloads / "stylegan2-ffhq-config-f.pt")
    size, digest = src.stat().st_size, hashlib.sha256(src.read_bytes()).hexdigest()
    man = write_manifest(tmp_path / "a.toml", gen_sha=digest, gen_bytes=size + 1)
    assert store.import_model(src, manifest=man).installed
    assert json.loads(store.index_path().read_text())["models"]["gen"]["verified_by"] == "published sha256"
    man = write_manifest(tmp_path / "b.toml", gen_sha="ab" * 32, gen_bytes=size + 1)
    with pytest.raises(ModelError, match=f"has {size} bytes, stylegan2-ffhq-config-f.pt has {size + 1}: "
                                         "corrupt or different file"):
        store.import_model(src, manifest=man)
    man = write_manifest(tmp_path / "c.toml", gen_sha="ab" * 32, gen_bytes=size)  # same size, other content
    with pytest.raises(ModelError, match="has sha256 .* expected abababababababab...: corrupt or different file"):
        store.import_model(src, manifest=man)
    man = write_manifest(tmp_path / "d.toml", gen_bytes=size - 1)
    assert store.import_model(src, manifest=man).installed
    verified = json.loads(store.index_path().read_text())["models"]["gen"]["verified_by"]
    assert verified.startswith("sha256 recorded at import") and f"{size} bytes, not the {size - 1} bytes" in verified


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


# --------------------------------------------------------------------------------------------
# A real pSp encoder through `talkstudio models import`
# --------------------------------------------------------------------------------------------

TINY_PSP_BLOCKS = [[32, 16, 1], [16, 24, 1], [24, 32, 1], [32, 48, 1]]
TINY_PSP_MANIFEST = f"""
schema_version = 1

[models.psp-ffhq-encode]
file = "psp_ffhq_encode.pt"
kind = "encoder"
title = "tiny pSp"
urls = ["https://example.org/psp_ffhq_encode.pt"]
license = "test"
needed_for = ["render --engine neural"]
layout = "psp"
state_key = "state_dict"
prefix = "encoder."
extra = ["latent_avg", "opts"]
architecture = {{ class = "studio.models.encoders:GradualStyleEncoder", kwargs = {{ n_styles = 10, style_dim = 32, blocks = {TINY_PSP_BLOCKS} }} }}
match_opts = {{ encoder_type = "GradualStyleEncoder" }}
"""


def test_real_psp_encoder_imports_through_the_cli_and_encodes_identically(tmp_path, monkeypatch, capsys):
    """A tiny real GradualStyleEncoder saved as upstream pSp saves it (``state_dict`` with encoder.* and
    decoder.* weights, ``latent_avg``, ``opts`` with encoder_type) -> `talkstudio models import` ->
    safetensors (encoder weights only) -> store.load: the same codes as the original module."""
    from safetensors import safe_open

    from studio.cli import main
    from studio.models.encoders import GradualStyleEncoder
    from studio.models.stylegan2 import Generator

    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(store.MANIFEST_ENV, str(tmp_path / "manifest.toml"))
    monkeypatch.setattr(store, "_VERIFIED", {})
    (tmp_path / "manifest.toml").write_text(TINY_PSP_MANIFEST)
    torch.manual_seed(0)
    enc = GradualStyleEncoder(n_styles=10, style_dim=32, blocks=TINY_PSP_BLOCKS).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as in trained weights
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    decoder = Generator(size=64, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=32)
    latent_avg = torch.randn(10, 32)
    state = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    opts = {"encoder_type": "GradualStyleEncoder", "start_from_latent_avg": True, "n_styles": 10,
            "output_size": 64, "learn_in_w": False, "checkpoint_path": None}
    src = save({"state_dict": state, "latent_avg": latent_avg, "opts": opts}, tmp_path / "download.pt")

    assert main(["models", "import", str(src)]) == 0  # identified by content (layout, opts.encoder_type)
    out = capsys.readouterr().out
    assert "as psp-ffhq-encode" in out and "imported from download.pt (sha256" in out
    stored = store.model_path("psp-ffhq-encode")
    with safe_open(str(stored), "pt") as fh:
        keys = set(fh.keys())
    assert keys == {*enc.state_dict(), "__extra__.latent_avg"}  # the decoder is not kept

    loaded = store.load("psp-ffhq-encode")
    assert isinstance(loaded.module, GradualStyleEncoder) and not loaded.module.training
    assert loaded.extras["opts"]["encoder_type"] == "GradualStyleEncoder"
    assert torch.equal(loaded.extras["latent_avg"], latent_avg)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        expected = enc.encode(images, latent_avg=latent_avg)
        got = loaded.module.encode(images, latent_avg=loaded.extras["latent_avg"])
    assert got.shape == (2, 10, 32) and torch.equal(got, expected)


# --------------------------------------------------------------------------------------------
# Key/shape mismatches: short message, full lists
# --------------------------------------------------------------------------------------------


def _mismatched_generator(downloads: Path) -> tuple[Path, dict, dict]:
    """A rosinality file whose g_ema has other shapes (style_dim 16, 6 channels) and half its keys renamed."""
    expected = TinyGenerator().state_dict()
    other = TinyGenerator(style_dim=16, channels=6).state_dict()
    keys = list(other)
    renamed = {(f"old.{k}" if i % 2 else k): v for i, (k, v) in enumerate(other.items())}
    assert len(keys) >= 8
    return save({"g_ema": renamed, "latent_avg": torch.randn(8)}, downloads / "stylegan2-ffhq-config-f.pt"), \
        expected, renamed


def test_mismatch_error_carries_every_missing_unexpected_and_wrong_shape(env):
    downloads, man = env
    src, expected, renamed = _mismatched_generator(downloads)
    with pytest.raises(registry.StateMismatchError) as err:
        store.import_model(src, manifest=man)
    exc = err.value
    assert isinstance(exc, ModelError)
    assert exc.missing == [k for k in expected if k not in renamed]
    assert exc.unexpected == [k for k in renamed if k not in expected]
    assert exc.wrong_shape == [(k, tuple(expected[k].shape), tuple(renamed[k].shape))
                               for k in expected if k in renamed and expected[k].shape != renamed[k].shape]
    assert exc.missing and exc.unexpected and exc.wrong_shape
    # the message stays short; the details list everything, one per line
    details = exc.details()
    for key in exc.missing + exc.unexpected + [k for k, _e, _g in exc.wrong_shape]:
        assert f"    {key}" in details
    assert f"{len(exc.missing)} missing key(s):" in details
    assert store_files() == []


def test_models_import_lists_all_mismatches_with_verbose(tmp_path, monkeypatch, capsys):
    from studio.cli import main

    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path / "data"))
    write_manifest(tmp_path / "manifest.toml")
    monkeypatch.setenv(store.MANIFEST_ENV, str(tmp_path / "manifest.toml"))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    # many keys: more than the message previews
    big = {f"extra.{i}": torch.zeros(1) for i in range(10)}
    state = {**TinyGenerator().state_dict(), **big}
    src = save({"g_ema": state, "latent_avg": torch.randn(8)}, downloads / "stylegan2-ffhq-config-f.pt")
    assert main(["models", "import", str(src)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "10 unexpected key(s)" in err[0] and "... and 4 more" in err[0]
    assert "add --verbose to list all 10 mismatches" in err[0] and "extra.9" not in err[0]
    assert main(["models", "import", str(src), "--verbose"]) == 2
    err = capsys.readouterr().err
    assert all(f"    extra.{i}\n" in err for i in range(10)) and "  10 unexpected key(s):" in err
    assert err.strip().splitlines()[-1].startswith("error: ") and "--verbose" not in err.splitlines()[-1]
    assert not (tmp_path / "data" / "models" / "gen.safetensors").exists()


# --------------------------------------------------------------------------------------------
# `talkstudio models list | verify | path`
# --------------------------------------------------------------------------------------------


@pytest.fixture
def cli_store(tmp_path, monkeypatch):
    """An isolated store (TALKSTUDIO_DATA_DIR, TALKSTUDIO_MANIFEST) with the tiny generator imported."""
    monkeypatch.setenv("TALKSTUDIO_DATA_DIR", str(tmp_path / "data"))
    write_manifest(tmp_path / "manifest.toml")
    monkeypatch.setenv(store.MANIFEST_ENV, str(tmp_path / "manifest.toml"))
    monkeypatch.setattr(store, "_VERIFIED", {})
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    store.import_model(save(rosinality_ckpt(), downloads / "stylegan2-ffhq-config-f.pt"))
    return tmp_path


def _model_blocks(out: str) -> dict[str, str]:
    """`models list` output split into one text block per model name."""
    blocks, name = {}, None
    for line in out.splitlines():
        if line and not line.startswith(" ") and not line.startswith("model store:"):
            name = line.split()[0]
            blocks[name] = line + "\n"
        elif name is not None:
            blocks[name] += line + "\n"
    return blocks


def test_models_list_cli(cli_store, capsys):
    from studio.cli import main

    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"model store: {cli_store / 'data' / 'models'}\n")
    blocks = _model_blocks(out)
    assert list(blocks) == ["gen", "psp", "e4e", "sync"]
    size = (cli_store / "data" / "models" / "gen.safetensors").stat().st_size
    assert "installed" in blocks["gen"] and f"{size / 1e6:.1f} MB" in blocks["gen"]
    assert "stylegan2-ffhq-config-f.pt" in blocks["gen"] and "download:" not in blocks["gen"]
    assert "needed for: render --engine neural" in blocks["gen"] and "license: test" in blocks["gen"]
    for name, file in (("psp", "psp_ffhq_encode.pt"), ("e4e", "e4e_ffhq_encode.pt"), ("sync", "syncnet_v2.model")):
        assert "missing" in blocks[name] and "not imported" in blocks[name]
        assert f"download: https://example.org/{file}" in blocks[name]
    assert "needed for: eval" in blocks["sync"]


def test_models_list_points_at_a_download_in_the_model_folder(cli_store, capsys):
    from studio.cli import main

    pending = cli_store / "data" / "models" / "e4e_ffhq_encode.pt"
    pending.write_bytes(b"x")
    assert main(["models", "list"]) == 0
    assert f"found {pending}: run `talkstudio models import {pending}`" in _model_blocks(
        capsys.readouterr().out)["e4e"]


def test_models_verify_cli_exit_status_follows_corruption(cli_store, capsys):
    from studio.cli import main

    assert main(["models", "verify"]) == 0
    assert "installed" in _model_blocks(capsys.readouterr().out)["gen"]
    path = cli_store / "data" / "models" / "gen.safetensors"
    data = bytearray(path.read_bytes())
    data[-40:-24] = bytes(b ^ 0x55 for b in data[-40:-24])  # same size: only the hash can tell
    path.write_bytes(bytes(data))
    assert main(["models", "list"]) == 0  # list only compares sizes
    capsys.readouterr()
    assert main(["models", "verify"]) == 1
    block = _model_blocks(capsys.readouterr().out)["gen"]
    assert "corrupt" in block and "differs from the imported" in block
    assert "download: https://example.org/stylegan2-ffhq-config-f.pt" in block


def test_models_path_cli(cli_store, capsys):
    from studio.cli import main

    assert main(["models", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(cli_store / "data" / "models")
    assert main(["models", "path", "psp"]) == 0  # where it will live, installed or not
    assert capsys.readouterr().out.strip() == str(cli_store / "data" / "models" / "psp.safetensors")
    assert main(["models", "path", "stylegan3"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "error: unknown model 'stylegan3'" in captured.err
    assert "gen, psp, e4e, sync" in captured.err
