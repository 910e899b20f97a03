"""Provenance marks on every export: C2PA Content Credentials and the invisible watermark (issue 20)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import load_rgb, sample
from studio.app.batch import BatchQueue, JobSpec, run_batch
from studio.app.project import Project, ProjectState
from studio.cli import main
from studio.core.errors import ConfigError, OutputError
from jobutil import notices, run_job
from studio.core.events import Returning, drive
from studio.engine.pipeline import RenderRequest, render
from studio.engine.settings import RenderSettings
from studio.media import credentials as cred
from studio.media._common import ffmpeg_exe
from studio.media.audio import load_audio
from studio.media.video import FrameEncoder
from studio.app.provenance import detect_mark
from studio.media.video import mean_luma
from studio.media.watermark import WatermarkEmbedder, detect_in_mean, payload_bits

PHOTO = sample("images/woman_brown_hair_624px.jpg")


def _speech(dst: Path, seconds: float = 3.0) -> Path:
    clip = load_audio(sample("audio/english_short_16k_mono.wav"), sample_rate=16000)
    sf.write(dst, clip.samples[: int(seconds * 16000)], 16000, subtype="PCM_16")
    return dst


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """One 3 s lite export of a sample photo with real speech, through the render pipeline."""
    folder = tmp_path_factory.mktemp("provenance")
    audio = _speech(folder / "speech.wav")
    done = drive(render(RenderRequest(image=PHOTO, audio=audio, output=folder / "talk.mp4")))
    return done, audio


# ---------------------------------------------------------------------------------------------- C2PA

def test_an_export_carries_valid_content_credentials(export):
    done, audio = export
    report = cred.read_credentials(done.output)
    assert report.state == "own", report.failures  # valid, and signed with this computer's key
    assert report.actions[0] == "c2pa.created"
    assert report.source_type == cred.TRAINED_ALGORITHMIC_MEDIA and report.synthetic
    assert report.generator.startswith(cred.GENERATOR)
    assert report.engine == "lite"
    assert report.mark_id == done.mark_id
    roles = {role: (title, digest) for title, role, digest in report.ingredients}
    assert roles["identity"] == (PHOTO.name, _sha256(PHOTO))
    assert roles["speech"] == (audio.name, _sha256(audio))
    assert done.signed_by and "Talking Head Studio" in done.signed_by


def _mdat_offset(data: bytes) -> tuple[int, int]:
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            header = 16
        if kind == b"mdat":
            return pos + header, pos + size
        pos += size
    raise AssertionError("no mdat box")


def test_one_changed_byte_in_the_media_fails_validation(export, tmp_path):
    done, _ = export
    data = bytearray(done.output.read_bytes())
    start, end = _mdat_offset(bytes(data))
    data[(start + end) // 2] ^= 0x01
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    report = cred.read_credentials(tampered)
    assert report.state == "invalid"
    assert "assertion.bmffHash.mismatch" in report.failures


def test_reading_an_untrusted_file_never_goes_online(export, tmp_path):
    """A manifest may point at a remote copy of itself: reading must not contact that address."""
    import http.server
    import threading

    import c2pa

    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        key = cred.signing_key()
        chain, pem = key.load()
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, pem, None))
        plain = tmp_path / "plain.mp4"
        _ffmpeg("-i", str(export[0].output), "-c", "copy", "-map_metadata", "-1", str(plain))
        remote = tmp_path / "remote.mp4"
        definition = cred.ContentCredentials(engine="lite", key=key).manifest("remote.mp4")
        with signer, c2pa.Builder(definition) as builder:
            builder.set_no_embed()
            builder.set_remote_url(f"http://127.0.0.1:{server.server_port}/manifest.c2pa")
            with open(plain, "rb") as src, open(remote, "wb") as dst:
                builder.sign(signer, "video/mp4", src, dst)
        report = cred.read_credentials(remote)
    finally:
        server.shutdown()
    assert hits == []
    assert report.state in ("remote", "absent", "invalid")


def test_a_crafted_manifest_store_is_reported_not_raised():
    weird = {"active_manifest": "m", "manifests": {"m": {
        "assertions": [{"label": cred.RENDER_ASSERTION, "data": ["not", "a", "dict"]},
                       {"label": "c2pa.actions.v2", "data": {"actions": "created"}}, "junk", 7],
        "ingredients": [{"title": 3, "metadata": "x"}, None], "claim_generator_info": "x",
        "signature_info": ["x"]}}, "validation_state": "Valid", "validation_results": {"activeManifest": {
            "failure": [{"code": 5}, "x"]}}}
    report = cred._report(weird, own_serial="1")
    assert report.state == "valid" and report.engine is None and report.mark_id is None
    assert report.ingredients == (("", "", ""),)
    assert cred._report({"manifests": []}).state == "invalid"


def test_a_key_that_does_not_match_its_certificate_is_refused_before_rendering(tmp_path):
    one = cred.create_local_key(tmp_path / "one")
    two = cred.create_local_key(tmp_path / "two")
    mixed = cred.SigningKey(one.key_path, two.chain_path)
    with pytest.raises(ConfigError, match="does not belong"):
        mixed.check()
    one.check()
    assert one.describe()["common_name"].startswith("Talking Head Studio (key ")  # no user or host name


def test_the_signing_key_is_private_and_not_silently_replaced(export, tmp_path):
    key = cred.signing_key()
    assert key is not None  # the export made one in the (test) config folder
    assert stat.S_IMODE(os.stat(key.key_path).st_mode) == 0o600
    made = cred.create_local_key(tmp_path / "keys")
    assert stat.S_IMODE(os.stat(made.key_path).st_mode) == 0o600
    info = made.describe()
    assert info["local"] and "self-signed" in info["issuer"] and info["common_name"].startswith("Talking Head Studio")
    with pytest.raises(OutputError, match="already exists"):
        cred.create_local_key(tmp_path / "keys")
    before = made.key_path.read_bytes()
    cred.create_local_key(tmp_path / "keys", overwrite=True)
    assert made.key_path.read_bytes() != before


def test_a_key_that_cannot_sign_leaves_no_file(tmp_path):
    good = cred.create_local_key(tmp_path / "keys")
    chain = good.chain_path.read_bytes()
    only_ca = chain[chain.index(b"-----BEGIN", 10):]  # the authority's certificate, not the key's
    bad_chain = tmp_path / "bad-chain.pem"
    bad_chain.write_bytes(only_ca)
    credentials = cred.ContentCredentials(engine="lite", key=cred.SigningKey(good.key_path, bad_chain))
    out = tmp_path / "out" / "video.mp4"
    out.parent.mkdir()
    frame = load_rgb("images/taylor_256px.jpg")
    with pytest.raises((ConfigError, OutputError)):
        with FrameEncoder(out, width=256, height=256, fps=25, watermark=7, credentials=credentials) as enc:
            for _ in range(5):
                enc.write(frame)
    assert list(out.parent.iterdir()) == []


def test_signing_can_be_turned_off_and_is_recorded(tmp_path):
    audio = _speech(tmp_path / "a.wav", 1.0)
    settings = RenderSettings().with_values(content_credentials="off")
    assert settings.encode.content_credentials is False
    assert RenderSettings.from_dict(settings.to_dict()) == settings
    done, events = run_job(render(RenderRequest(image=sample("images/woman_dark_hair_474px.png"), audio=audio,
                                                output=tmp_path / "o.mp4", settings=settings)))
    assert any("Content Credentials are off" in m for m in notices(events))
    assert done.signed_by is None
    assert cred.read_credentials(done.output).state == "absent"
    assert detect_mark(done.output).mark_id == done.mark_id  # the watermark is always there


def test_projects_and_the_batch_queue_record_what_was_applied(tmp_path):
    project = Project(ProjectState(settings=RenderSettings().with_values(content_credentials=False)))
    path = project.save(tmp_path / "p.talkproj")
    assert Project.load(path).state.settings.encode.content_credentials is False
    audio = _speech(tmp_path / "a.wav", 1.0)
    queue = BatchQueue(tmp_path / "out")
    queue.add([JobSpec(sample("images/woman_dark_hair_474px.png"), audio, tmp_path / "out" / "v.mp4")])
    runner = Returning(run_batch(queue))
    for _ in runner:
        pass
    job = queue.jobs()[0]
    assert job.status == "done", job.error
    assert job.mark_id == f"{detect_mark(job.output).mark_id:08x}"
    assert job.signed_by and "Talking Head Studio" in job.signed_by


# ---------------------------------------------------------------------------------------------- watermark

def test_the_mark_is_invisible_by_psnr_and_in_flat_regions():
    frame = load_rgb("images/obama_official.jpg")[:1136, :910]
    marked = WatermarkEmbedder(910, 1136, 0xC0FFEE).apply(frame.copy())
    diff = marked.astype(np.float32) - frame
    psnr = 10 * np.log10(255**2 / np.mean(diff**2))
    assert psnr >= 42.0, psnr
    assert np.abs(diff).max() <= 6
    # a plain wall and a smooth gradient (where a low-frequency pattern would show) get the 0.5-level floor of
    # the contrast masking: under 0.75 levels RMS, never more than 2 levels
    plain = np.full((768, 1024, 3), 128, np.uint8)
    ramp = np.linspace(20, 235, 1024)[None, :, None].repeat(768, 0).repeat(3, 2).astype(np.uint8)
    for flat in (plain, ramp):
        change = WatermarkEmbedder(1024, 768, 0xC0FFEE).apply(flat.copy()).astype(np.float32) - flat
        assert np.sqrt(np.mean(change**2)) < 0.75 and np.abs(change).max() <= 2


def test_payload_has_header_id_and_crc():
    bits = payload_bits(0xDEADBEEF)
    assert bits.size == 56
    assert int("".join(map(str, bits[8:40])), 2) == 0xDEADBEEF
    other = payload_bits(0xDEADBEEE)
    assert not np.array_equal(bits[40:], other[40:])
    with pytest.raises(ValueError):
        payload_bits(2**32)


@pytest.mark.parametrize("name, args", [
    ("crf28", ["-c:v", "libx264", "-crf", "28", "-preset", "veryfast"]),
    ("480p", ["-vf", "scale=-2:480", "-c:v", "libx264", "-crf", "23", "-preset", "veryfast"]),
    ("crop10", ["-vf", "crop=trunc(iw*0.9/2)*2:trunc(ih*0.9/2)*2", "-c:v", "libx264", "-crf", "23"]),
    ("excerpt", ["-ss", "0.7", "-t", "1.5", "-c:v", "libx264", "-crf", "23"]),
])
def test_the_mark_survives_what_happens_on_the_way_to_a_viewer(export, tmp_path, name, args):
    done, _ = export
    changed = tmp_path / f"{name}.mp4"
    _ffmpeg("-i", str(done.output), *args, str(changed))
    assert cred.read_credentials(changed).state == "absent"  # the manifest is gone ...
    found = detect_mark(changed)
    assert found.found and found.mark_id == done.mark_id  # ... the mark is not
    assert found.confidence > 0.999


@pytest.mark.parametrize("video", ["grid_bbaf2n.mpg", "hdtf_katie_hill.mp4", "voxceleb2_00086.mp4",
                                   "woman_700px_30fps.mp4"])
def test_real_videos_carry_no_mark(video):
    assert not detect_mark(sample(f"video/{video}"), max_seconds=6).found


def test_a_still_photo_has_no_mark_and_tiny_videos_are_refused():
    gray = load_rgb("images/man_grey_hair_3511px.jpg").mean(axis=2).astype(np.float32)
    assert not detect_in_mean(gray[::3, ::3]).found
    from studio.core.errors import InputError

    with pytest.raises(InputError, match="too small"):
        detect_in_mean(np.zeros((64, 300), np.float32))


# ---------------------------------------------------------------------------------------------- verify

def test_verify_cli_exit_status_and_report(export, tmp_path, capsys):
    done, _ = export
    assert main(["verify", str(done.output)]) == 0
    text = capsys.readouterr().out
    assert "Content Credentials: valid" in text and f"id {done.mark_id:08x}" in text
    assert main(["verify", str(sample("video/grid_bbaf2n.mpg"))]) == 1
    assert "no synthetic-media mark" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "missing.mp4")]) == 2
    assert "could not be verified" in capsys.readouterr().out
    assert main(["verify", "--json", str(done.output), str(sample("video/grid_bbaf2n.mpg"))]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["marked"] for r in lines] == [True, False]
    assert lines[0]["watermark"]["mark_id"] == f"{done.mark_id:08x}"


def test_keys_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TALKSTUDIO_CONFIG_DIR", str(tmp_path / "cfg"))
    assert main(["keys", "show"]) == 1
    assert main(["keys", "create"]) == 0
    assert "SELF-SIGNED" in capsys.readouterr().out
    assert main(["keys", "create"]) == 2  # refuses to replace it silently
    assert main(["keys", "show"]) == 0
    assert "self-signed local key" in capsys.readouterr().out


def test_mean_luma_of_an_export_has_its_size(export):
    done, _ = export
    mean, n = mean_luma(done.output)
    assert mean.shape == (done.size[1], done.size[0]) and n == done.n_frames
