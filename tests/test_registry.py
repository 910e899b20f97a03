"""studio.models.registry: the one checkpoint reader (weights-only, strict keys/shapes, sha256).

Everything runs on tiny checkpoints made on the fly, in the upstream layouts (rosinality
``{"g_ema", "latent_avg"}``, pSp/e4e ``{"state_dict": {"encoder.*", "decoder.*"}, "latent_avg",
"opts"}``) and as safetensors. The stand-in modules below use rosinality / pSp key names; the
store tests import them from here.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from studio.core.errors import ModelError
from studio.models import registry
from studio.models.registry import Architecture

HERE = __name__  # "test_registry": the module the stand-in architectures are resolved from


# --------------------------------------------------------------------------------------------
# Stand-in modules with rosinality / pSp key names
# --------------------------------------------------------------------------------------------


class EqualLinear(nn.Module):
    """rosinality-style linear layer: ``weight`` (out, in), ``bias`` (out,)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))


class ModulatedConv(nn.Module):
    def __init__(self, channels: int, style_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, channels, 3, 3))
        self.modulation = EqualLinear(style_dim, channels)


class StyledConv(nn.Module):
    def __init__(self, channels: int, style_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv(channels, style_dim)


class TinyGenerator(nn.Module):
    """Keys like rosinality's ``g_ema``: style.N.weight, input.input, conv1.conv.*, noises.noise_0."""

    def __init__(self, style_dim: int = 8, n_mlp: int = 2, channels: int = 4, size: int = 4) -> None:
        super().__init__()
        self.style = nn.Sequential(nn.Identity(), *[EqualLinear(style_dim, style_dim) for _ in range(n_mlp)])
        self.input = ConstantInput(channels, size)
        self.conv1 = StyledConv(channels, style_dim)
        self.noises = nn.Module()
        self.noises.register_buffer("noise_0", torch.randn(1, 1, size, size))


class StyleBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU())
        self.linear = EqualLinear(channels, channels)


class TinyEncoder(nn.Module):
    """Keys like a pSp GradualStyleEncoder (``encoder.`` stripped): input_layer, styles, latlayer1."""

    def __init__(self, n_styles: int = 3, channels: int = 8) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))
        self.styles = nn.ModuleList([StyleBlock(channels) for _ in range(n_styles)])
        self.latlayer1 = nn.Conv2d(channels // 2, channels, 1)


def rosinality_ckpt(gen: nn.Module | None = None, **extra) -> dict:
    """A rosinality-style checkpoint dict: ``{"g_ema": state_dict, "latent_avg": (style_dim,)}``."""
    gen = gen or TinyGenerator()
    return {"g_ema": gen.state_dict(), "latent_avg": torch.randn(8), **extra}


def psp_ckpt(enc: nn.Module | None = None, *, encoder_type: str | None = "GradualStyleEncoder") -> dict:
    """A pSp/e4e-style checkpoint: encoder.* and decoder.* weights, latent_avg, opts (a plain dict)."""
    enc = enc or TinyEncoder()
    state = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in TinyGenerator().state_dict().items()})
    ckpt = {"state_dict": state, "latent_avg": torch.randn(3, 8)}
    if encoder_type is not None:
        ckpt["opts"] = {"encoder_type": encoder_type, "output_size": 1024, "start_from_latent_avg": True,
                        "learn_in_w": False, "checkpoint_path": None, "lpips_lambda": 0.8}
    return ckpt


def assert_same_tensors(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(autouse=True)
def allow_test_architectures(monkeypatch):
    """Let Architecture resolve the stand-ins defined here (autouse; test_store imports it too)."""
    monkeypatch.setattr(registry, "ARCHITECTURE_MODULES", (*registry.ARCHITECTURE_MODULES, HERE))


# --------------------------------------------------------------------------------------------
# Reading the upstream layouts
# --------------------------------------------------------------------------------------------


def test_rosinality_layout_roundtrip(tmp_path):
    gen = TinyGenerator()
    ckpt = rosinality_ckpt(gen)
    path = tmp_path / "stylegan2-ffhq-config-f.pt"
    torch.save(ckpt, path)

    state, extras = registry.load_state(path, layout="rosinality", expected=TinyGenerator())
    assert_same_tensors(state, gen.state_dict())
    assert "noises.noise_0" in state  # persistent buffers are part of the checked state
    assert torch.equal(extras["latent_avg"], ckpt["latent_avg"])
    # "auto" recognises the layout by its g_ema entry
    state_auto, _ = registry.load_state(path)
    assert_same_tensors(state_auto, state)


def test_rosinality_training_checkpoint_with_namespace_args(tmp_path):
    """rosinality train.py stores ``args`` as an argparse.Namespace; it is the one allowed class."""
    path = tmp_path / "050000.pt"
    ckpt = rosinality_ckpt(args=argparse.Namespace(size=1024, r1=10.0), g_optim={"state": {}, "param_groups": []})
    torch.save(ckpt, path)
    state, extras = registry.load_state(path, layout="rosinality")
    assert set(extras) == {"latent_avg"} and "style.1.weight" in state


def test_psp_layout_keeps_only_encoder_weights(tmp_path):
    enc = TinyEncoder()
    ckpt = psp_ckpt(enc)
    path = tmp_path / "psp_ffhq_encode.pt"
    torch.save(ckpt, path)

    state, extras = registry.load_state(path, layout="psp", expected=TinyEncoder())
    assert_same_tensors(state, enc.state_dict())
    assert not any(k.startswith(("decoder.", "encoder.")) for k in state)
    assert extras["opts"]["encoder_type"] == "GradualStyleEncoder"
    assert torch.equal(extras["latent_avg"], ckpt["latent_avg"])


def test_plain_state_dict_and_legacy_format(tmp_path):
    enc = TinyEncoder()
    path = tmp_path / "plain.pth"
    torch.save(enc.state_dict(), path, _use_new_zipfile_serialization=False)  # pre-1.6 torch format
    state, extras = registry.load_state(path, layout="plain")
    assert_same_tensors(state, enc.state_dict()) and extras == {}


def test_safetensors_roundtrip_with_architecture_and_extras(tmp_path):
    gen = TinyGenerator(style_dim=6)
    arch = Architecture(f"{HERE}:TinyGenerator", {"style_dim": 6})
    latent_avg = torch.randn(6)
    out = tmp_path / "gen.safetensors"
    opts = {"a": 1, "ns": argparse.Namespace(b=2)}
    registry.save_safetensors(out, gen.state_dict(), metadata={"talkstudio.source_file": "x.pt"},
                              architecture=arch, extras={"latent_avg": latent_avg, "opts": opts})
    assert [p.name for p in tmp_path.iterdir()] == ["gen.safetensors"]  # no temporary left

    state, extras = registry.load_state(out)
    assert_same_tensors(state, gen.state_dict())
    assert torch.equal(extras["latent_avg"], latent_avg)
    assert extras["opts"] == {"a": 1, "ns": {"b": 2}}
    ckpt = registry.read_checkpoint(out)
    assert ckpt.is_stored and ckpt.architecture == arch and ckpt.metadata["talkstudio.source_file"] == "x.pt"

    module = registry.build_module(ckpt.architecture, state)
    assert not module.training
    assert_same_tensors(module.state_dict(), gen.state_dict())


def test_save_safetensors_handles_shared_tensors(tmp_path):
    shared = torch.randn(4)
    registry.save_safetensors(tmp_path / "s.safetensors", {"a": shared, "b": shared}, architecture=None)
    state, _ = registry.load_state(tmp_path / "s.safetensors")
    assert torch.equal(state["a"], state["b"])


# --------------------------------------------------------------------------------------------
# Keys and shapes
# --------------------------------------------------------------------------------------------


def test_check_state_names_wrong_shapes_with_both_shapes():
    state = TinyGenerator(style_dim=8).state_dict()
    state["style.1.weight"] = torch.zeros(8, 5)
    with pytest.raises(ModelError) as err:
        registry.check_state(TinyGenerator(style_dim=8), state, source="g.pt", hint="expected a rosinality checkpoint")
    msg = err.value.message
    assert "g.pt does not match TinyGenerator" in msg
    assert "style.1.weight: expected (8, 8), got (8, 5)" in msg
    assert err.value.hint == "expected a rosinality checkpoint"


def test_check_state_names_missing_and_unexpected_keys():
    state = TinyGenerator().state_dict()
    del state["input.input"]
    state["mystery.weight"] = torch.zeros(1)
    with pytest.raises(ModelError) as err:
        registry.check_state(TinyGenerator(), state)
    assert "1 missing key(s): input.input" in err.value.message
    assert "1 unexpected key(s): mystery.weight" in err.value.message


def test_check_state_truncates_long_lists_with_a_count():
    expected = {f"layer{i}.weight": (2, 2) for i in range(20)}
    with pytest.raises(ModelError) as err:
        registry.check_state(expected, {})
    msg = err.value.message
    assert "20 missing key(s): layer0.weight" in msg and "... and 14 more" in msg


def test_expected_shapes_from_architecture_on_meta_device():
    arch = Architecture(f"{HERE}:TinyGenerator", {"style_dim": 8})
    assert registry.expected_shapes(arch) == {k: tuple(v.shape) for k, v in TinyGenerator().state_dict().items()}


def test_build_module_refuses_mismatched_state():
    arch = Architecture(f"{HERE}:TinyGenerator", {"style_dim": 8})
    with pytest.raises(ModelError, match=r"style\.1\.weight: expected \(8, 8\), got \(4, 4\)"):
        registry.build_module(arch, TinyGenerator(style_dim=4).state_dict())


# --------------------------------------------------------------------------------------------
# Refusals: damaged, empty, unsafe, wrong layout
# --------------------------------------------------------------------------------------------


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_torch_file_is_reported(tmp_path, legacy):
    path = tmp_path / "g.pt"
    torch.save(rosinality_ckpt(), path, _use_new_zipfile_serialization=not legacy)
    _truncate(path, 0.6)
    with pytest.raises(ModelError, match="g.pt is truncated or corrupt") as err:
        registry.load_state(path, layout="rosinality")
    assert "download it again" in err.value.hint


def test_truncated_safetensors_is_reported(tmp_path):
    path = tmp_path / "g.safetensors"
    registry.save_safetensors(path, TinyGenerator().state_dict())
    _truncate(path, 0.7)
    with pytest.raises(ModelError, match="g.safetensors is truncated or corrupt"):
        registry.load_state(path)


def test_empty_file_is_reported(tmp_path):
    path = tmp_path / "e4e_ffhq_encode.pt"
    path.write_bytes(b"")
    with pytest.raises(ModelError, match=r"e4e_ffhq_encode.pt is empty \(0 bytes\)"):
        registry.load_state(path)


def test_html_download_page_is_reported(tmp_path):
    path = tmp_path / "stylegan2-ffhq-config-f.pt"
    path.write_text("<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head></html>")
    with pytest.raises(ModelError, match="is a web page, not a checkpoint"):
        registry.load_state(path)


def test_nvidia_pickle_extension_is_refused_with_a_pointer(tmp_path):
    path = tmp_path / "stylegan2-ffhq-config-f.pkl"
    path.write_bytes(b"\x80\x04N.")
    with pytest.raises(ModelError, match="not a supported checkpoint file") as err:
        registry.load_state(path)
    assert "rosinality" in err.value.hint


def test_corrupted_bytes_in_the_middle_fail_the_hash_check(tmp_path):
    path = tmp_path / "g.pt"
    torch.save(rosinality_ckpt(), path)
    good = registry.sha256_of(path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 32] = bytes(b ^ 0xFF for b in data[middle:middle + 32])
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupt or different file"):
        registry.verify_sha256(path, good)


def test_wrong_layout_says_what_the_file_is(tmp_path):
    """A pSp checkpoint given where the rosinality generator is expected."""
    path = tmp_path / "psp_ffhq_encode.pt"
    torch.save(psp_ckpt(), path)
    with pytest.raises(ModelError) as err:
        registry.load_state(path, layout="rosinality")
    msg = err.value.message
    assert "psp_ffhq_encode.pt is a pSp/e4e checkpoint" in msg and "encoder_type='GradualStyleEncoder'" in msg
    assert "not a rosinality StyleGAN2 checkpoint" in msg


class _Payload:
    """Unpickling this would run ``os.system`` (or ``exec``); it must never be unpickled."""

    def __init__(self, marker: Path, via: str = "system") -> None:
        self.marker = marker
        self.via = via

    def __reduce__(self):
        if self.via == "exec":
            return (exec, (f"open({str(self.marker)!r}, 'w').close()",))
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["zip", "legacy", "raw-pickle"])
@pytest.mark.parametrize("via", ["system", "exec"])
def test_pickle_with_code_is_refused_and_never_run(tmp_path, how, via):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    payload = {"g_ema": {"w": torch.zeros(2)}, "latent_avg": _Payload(marker, via)}
    if how == "raw-pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=(how == "zip"))
    with pytest.raises(ModelError) as err:
        registry.load_state(path, layout="rosinality")
    assert "contains code or unsupported objects" in err.value.message
    assert via in err.value.message  # names the offending global (posix.system, builtins.exec)
    assert "will not be loaded" in err.value.message
    assert not marker.exists()


class _Harmless:
    pass


def test_pickle_with_arbitrary_class_is_refused(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(1), "obj": _Harmless()}, path)
    with pytest.raises(ModelError, match=r"contains code or unsupported objects \(test_registry\._Harmless\)"):
        registry.load_state(path)


def test_architecture_outside_model_packages_is_refused(tmp_path):
    with pytest.raises(ModelError, match="outside the allowed model packages"):
        Architecture("subprocess:Popen", {"args": ["true"]}).resolve()
    # a stored file whose header names foreign code cannot be built
    path = tmp_path / "evil.safetensors"
    registry.save_safetensors(path, {"w": torch.zeros(1)}, architecture=Architecture("os:system", {"command": "true"}))
    ckpt = registry.read_checkpoint(path)
    with pytest.raises(ModelError, match="outside the allowed model packages"):
        registry.build_module(ckpt.architecture, ckpt.extract()[0])


def test_architecture_must_be_a_module_class():
    with pytest.raises(ModelError, match="is not a model class"):
        Architecture(f"{HERE}:rosinality_ckpt").resolve()
    with pytest.raises(ModelError, match="not available in this version"):
        Architecture("studio.models.no_such_module:Generator").resolve()


# --------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------


def test_sha256_is_streamed_and_matches_hashlib(tmp_path):
    path = tmp_path / "big.bin"
    data = os.urandom(3 * (1 << 20) + 123)
    path.write_bytes(data)
    seen = []
    digest = registry.sha256_of(path, on_progress=lambda done, total: seen.append((done, total)))
    assert digest == hashlib.sha256(data).hexdigest()
    assert len(seen) == 4 and seen[-1] == (len(data), len(data))


def test_verify_sha256_accepts_a_published_prefix(tmp_path):
    path = tmp_path / "alexnet-owt-0000.pth"
    path.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    assert registry.verify_sha256(path, digest[:8]) == digest
    with pytest.raises(ModelError, match="expected 00000000: corrupt or different file"):
        registry.verify_sha256(path, "00000000")
