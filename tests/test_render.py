"""End to end: `talkstudio render` on real photos and real speech, bad inputs, cancellation."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, load_rgb, pearson, sample
from studio.cli import main
from studio.core.errors import Cancelled
from studio.core.events import CancelToken, Progress
from studio.engine.face import topology as T
from studio.engine.face.detect import detect_faces
from jobutil import fractions, notices, run_job
from studio.engine.base import Done
from studio.engine.pipeline import RenderRequest, render
from studio.engine.settings import RenderSettings
from studio.media.audio import frame_count, load_audio, rms_envelope
from studio.media.video import count_video_frames, probe_media, read_video_frames


def _trimmed(src: Path, dst: Path, seconds: float) -> Path:
    clip = load_audio(src, sample_rate=16000)
    sf.write(dst, clip.samples[: int(seconds * 16000)], 16000, subtype="PCM_16")
    return dst


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Obama's portrait (910x1137) speaking a real English clip, rendered once through the CLI."""
    out = tmp_path_factory.mktemp("render") / "talk.mp4"
    audio = sample("audio/english_short_16k_mono.wav")
    rc = main(["render", "--image", str(sample("images/obama_official.jpg")), "--audio", str(audio),
               "--output", str(out), "--seed", "3", "--quiet"])
    assert rc == 0
    return out, audio


def test_output_is_a_valid_h264_aac_mp4(rendered):
    out, audio = rendered
    info = probe_media(out)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert info.pix_fmt.startswith("yuv420p")
    assert (info.width, info.height) == (910, 1136)  # the photo's size, rounded down to even
    duration = load_audio(audio).duration
    assert abs(info.duration - duration) <= 1 / 25 + 1e-3
    assert count_video_frames(out) == frame_count(duration, 25.0)
    assert info.metadata.get("synthetic") == "true"
    assert "Talking Head Studio" in info.metadata.get("generator", "")
    # faststart: the moov atom precedes the media data
    head = out.read_bytes()[:200_000]
    assert 0 <= head.find(b"moov") < head.find(b"mdat")


def _mouth_openings(video: Path) -> np.ndarray:
    meta, frames = read_video_frames(video)
    gaps = []
    with frames:
        for frame in frames:
            faces = detect_faces(frame)
            assert faces, "every output frame must still show a detectable face"
            p = faces[0].points
            gaps.append(T.inner_lip_gap(p) / T.mouth_width(p))
    return np.array(gaps)


def test_mouth_opening_tracks_the_speech(rendered):
    out, audio = rendered
    gaps = _mouth_openings(out)
    clip = load_audio(audio)
    rms = rms_envelope(clip.samples, clip.sample_rate, fps=25.0, n_frames=len(gaps))
    r = pearson(gaps, rms)
    assert r > 0.3, f"mouth opening vs RMS envelope: Pearson r = {r:.2f}"
    assert gaps.max() - gaps.min() > 0.15  # the mouth really opens and closes


def test_mouth_tracks_non_english_speech_on_another_face(tmp_path):
    audio = _trimmed(sample("audio/japanese_48k_s24_stereo.wav"), tmp_path / "ja.wav", 5.0)
    out = tmp_path / "ja.mp4"
    assert main(["render", "--image", str(sample("images/woman_brown_hair_624px.jpg")), "--audio", str(audio),
                 "--output", str(out), "--quiet"]) == 0
    gaps = _mouth_openings(out)
    clip = load_audio(audio)
    r = pearson(gaps, rms_envelope(clip.samples, clip.sample_rate, fps=25.0, n_frames=len(gaps)))
    assert r > 0.3, f"Japanese speech: Pearson r = {r:.2f}"


def test_pixels_far_from_the_face_are_unchanged(rendered):
    out, _ = rendered
    src = load_rgb("images/obama_official.jpg")[:1136]
    face = detect_faces(src)[0]
    x0, y0, x1, y1 = face.box
    # the bottom-left and bottom-right corners (suit, background) are far from the head
    far = np.zeros(src.shape[:2], bool)
    far[int(y1 + 1.2 * (y1 - y0)):, : int(x0 - 0.6 * (x1 - x0))] = True
    far[int(y1 + 1.2 * (y1 - y0)):, int(x1 + 0.6 * (x1 - x0)):] = True
    assert far.sum() > 20_000
    # every export carries the invisible watermark: the reference is the photo with the same mark
    from studio.media.credentials import read_credentials
    from studio.media.watermark import WatermarkEmbedder

    mark_id = read_credentials(out).mark_id
    assert mark_id is not None
    meta, frames = read_video_frames(out)
    with frames:
        for k, frame in enumerate(frames):
            if k % 10:
                continue
            marked = WatermarkEmbedder(meta.width, meta.height, mark_id).apply(src[:meta.height, :meta.width].copy())
            err = np.abs(frame[far].astype(int) - marked[far]).mean()
            assert err < 2.5, f"frame {k}: mean error {err:.2f} far from the face (only coding noise allowed)"


@pytest.mark.parametrize("fps", [30.0, 29.97])
def test_any_frame_rate_keeps_audio_and_video_in_step(tmp_path, fps):
    audio = _trimmed(sample("audio/english_radio_16k_stereo.wav"), tmp_path / "a.wav", 2.0)
    out = tmp_path / "v.mp4"
    done, events = run_job(render(RenderRequest(image=sample("images/taylor_256px.jpg"), audio=audio, output=out,
                                                settings=RenderSettings(fps=fps).with_values(pose_intensity=0.5))))
    assert isinstance(done, Done) and done.n_frames == frame_count(2.0, fps)
    info = probe_media(out)
    assert abs(info.fps - fps) < 0.01
    assert abs(info.duration - 2.0) <= 1 / fps + 1e-3
    fracs = fractions(events)
    assert fracs == sorted(fracs) and fracs[-1] == pytest.approx(1.0)


def test_silent_audio_renders_a_closed_mouth_with_a_warning(tmp_path):
    silent = tmp_path / "silence.wav"
    sf.write(silent, np.zeros(16000 * 2, np.float32), 16000)
    out = tmp_path / "s.mp4"
    _, events = run_job(render(RenderRequest(image=sample("images/woman_dark_hair_474px.png"), audio=silent,
                                             output=out)))
    assert any("silent" in m for m in notices(events))
    assert out.exists()
    gaps = _mouth_openings(out)
    assert gaps.max() < 0.08


def test_several_faces_use_the_largest_and_say_so(tmp_path, capsys):
    import cv2

    big = load_rgb("images/woman_brown_hair_624px.jpg")
    small = cv2.resize(load_rgb("images/alex_lacamoire.png"), (300, 279))
    canvas = np.full((624, 944, 3), 255, np.uint8)
    canvas[:, :624] = big
    canvas[100:379, 634:934] = small
    photo = tmp_path / "two.png"
    cv2.imwrite(str(photo), canvas[:, :, ::-1])
    audio = _trimmed(sample("audio/english_short_16k_mono.wav"), tmp_path / "a.wav", 1.0)
    assert main(["render", "--image", str(photo), "--audio", str(audio), "--output", str(tmp_path / "o.mp4"),
                 "--quiet"]) == 0
    assert "found 2 faces" in capsys.readouterr().err
    assert main(["render", "--image", str(photo), "--audio", str(audio), "--output", str(tmp_path / "p.mp4"),
                 "--face-index", "1", "--quiet"]) == 0
    assert (tmp_path / "p.mp4").exists()


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    import cv2

    good_img = str(sample("images/taylor_256px.jpg"))
    good_audio = str(_trimmed(sample("audio/english_short_16k_mono.wav"), tmp / "ok.wav", 1.0))
    (tmp / "notes.jpg").write_text("this is not a picture")
    cv2.imwrite(str(tmp / "wall.png"), np.full((300, 300, 3), 200, np.uint8))
    small = cv2.resize(load_rgb("images/taylor_256px.jpg"), (48, 48))
    canvas = np.full((400, 400, 3), 255, np.uint8)
    canvas[170:218, 170:218] = small[:, :, ::-1]
    cv2.imwrite(str(tmp / "tiny.png"), canvas)
    sf.write(tmp / "empty.wav", np.zeros(0, np.float32), 16000)
    (tmp / "noise.mp3").write_bytes(os.urandom(4000))
    out = str(tmp / "out" / "v.mp4")
    return {
        "missing image": (["--image", str(tmp / "nope.jpg"), "--audio", good_audio, "--output", out], "not found"),
        "not an image": (["--image", str(tmp / "notes.jpg"), "--audio", good_audio, "--output", out], "image"),
        "no face": (["--image", str(tmp / "wall.png"), "--audio", good_audio, "--output", out], "no face"),
        "face too small": (["--image", str(tmp / "tiny.png"), "--audio", good_audio, "--output", out], "face"),
        "missing audio": (["--image", good_img, "--audio", str(tmp / "nope.wav"), "--output", out], "not found"),
        "empty audio": (["--image", good_img, "--audio", str(tmp / "empty.wav"), "--output", out], "empty"),
        "undecodable audio": (["--image", good_img, "--audio", str(tmp / "noise.mp3"), "--output", out], "audio"),
        "unwritable folder": (["--image", good_img, "--audio", good_audio, "--output", "/proc/talk/v.mp4"],
                              "folder"),
        "missing folder": (["--image", good_img, "--audio", good_audio, "--output", str(tmp / "no" / "v.mp4")],
                           "does not exist"),
        "zero fps": (["--image", good_img, "--audio", good_audio, "--output", out, "--fps", "0"], "fps"),
        "huge fps": (["--image", good_img, "--audio", good_audio, "--output", out, "--fps", "1000"], "fps"),
        "bad extension": (["--image", good_img, "--audio", good_audio, "--output", str(tmp / "out" / "v.gif")],
                          "output"),
    }


def test_each_bad_input_gives_one_clear_error_and_no_file(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    for name, (args, expect) in _bad_inputs(tmp_path).items():
        rc = main(["render", *args, "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, f"{name}: exit status {rc}"
        assert len(err) == 1 and err[0].startswith("error: "), f"{name}: stderr was {err}"
        assert expect in err[0].lower(), f"{name}: {err[0]!r} does not mention {expect!r}"
        assert _leftovers(tmp_path / "out") == [], f"{name}: left files behind"


def test_malformed_options_are_one_line_errors(capsys):
    for args in (["render", "--image", "a.jpg", "--audio", "b.wav", "--output", "c.mp4", "--fps", "abc"],
                 ["render", "--image", "a.jpg"], []):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), err


def test_cancel_leaves_no_file(tmp_path):
    audio = _trimmed(sample("audio/english_60s_16k_mono.wav"), tmp_path / "long.wav", 8.0)
    out = tmp_path / "cancelled.mp4"
    token = CancelToken()
    events = render(RenderRequest(image=sample("images/taylor_256px.jpg"), audio=audio, output=out), cancel=token)
    with pytest.raises(Cancelled):
        for ev in events:
            if isinstance(ev, Progress) and ev.stage == "render" and ev.done > 20:
                token.cancel()
    assert _leftovers(tmp_path) == ["long.wav"]


def _tiled(src: Path, dst: Path, seconds: float) -> Path:
    """``src`` repeated end to end until it lasts ``seconds`` (16 kHz mono WAV)."""
    clip = load_audio(src, sample_rate=16000)
    sf.write(dst, np.resize(clip.samples, int(seconds * 16000)), 16000, subtype="PCM_16")
    return dst


#: The CLI's progress bar (rich; drawn only on a terminal) in the render stage: "render ━━╺━━ 15% frame 16/3000".
_RENDERING = re.compile(rb"render\b[^\r\n]*?frame (\d+)/(\d+)")


def _interrupt_while_rendering(args: list[str], timeout_s: float = 300.0) -> tuple[int, str, tuple[int, int]]:
    """Run ``python -m studio.cli ARGS`` on a pseudo-terminal, as from a shell, so that it draws its progress
    bar, and press Ctrl-C (SIGINT) as soon as the bar shows frames being rendered.

    Returns the exit status, everything the CLI printed and the (frame, frames) the bar showed at the signal."""
    import pty
    import select

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    env.update(TERM="xterm", COLUMNS="200", LINES="40")  # a terminal rich draws on, wide enough for the bar
    try:
        proc = subprocess.Popen([sys.executable, "-m", "studio.cli", *args], cwd=REPO, env=env,
                                stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    printed = bytearray()
    seen: tuple[int, int] | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:  # read until the CLI exits (and closes the terminal)
            if not select.select([master], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: no process holds the terminal any more
                chunk = b""
            if not chunk:
                break
            printed += chunk
            if seen is None and (m := _RENDERING.search(printed)):
                seen = int(m[1]), int(m[2])
                proc.send_signal(signal.SIGINT)
        else:
            proc.kill()
        rc = proc.wait(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = printed.decode("utf-8", "replace")
    assert seen is not None, f"the CLI never showed the render stage (exit status {rc}):\n{text[-3000:]}"
    return rc, text, seen


@pytest.mark.skipif(os.name != "posix", reason="needs a pseudo-terminal and SIGINT")
def test_ctrl_c_in_the_cli_leaves_no_file(tmp_path):
    # 2 min of speech, 3000 frames: the signal arrives within the first few, long before the render can end
    audio = _tiled(sample("audio/english_60s_16k_mono.wav"), tmp_path / "speech.wav", 120.0)
    folder = tmp_path / "out"
    folder.mkdir()
    rc, printed, (frame, frames) = _interrupt_while_rendering(
        ["render", "--image", str(sample("images/obama_official.jpg")), "--audio", str(audio),
         "--output", str(folder / "interrupted.mp4")])
    assert frames == 3000 and frame < frames
    assert rc == 130, printed[-3000:]
    assert "error: cancelled" in printed
    assert _leftovers(folder) == []  # neither the video nor its hidden .partial.mp4
