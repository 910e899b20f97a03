"""Tests for studio.media: image/audio loading, frame timing, the MP4 encoder, probing and reading.

Real sample media come from ``../shared/samples`` (see its MANIFEST.md); synthetic files are built
in ``tmp_path``. Everything runs on the CPU in a few seconds.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from conftest import same_path
from studio.core.errors import AudioError, ConfigError, ImageError, InputError, OutputError
from studio.media.audio import (
    AudioClip,
    frame_count,
    is_silent,
    load_audio,
    resample,
    rms_envelope,
    write_wav,
)
from studio.media.image import load_image
from studio.media.video import FrameEncoder, count_video_frames, probe_media, read_video_frames

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples"
needs_samples = pytest.mark.skipif(
    not (SAMPLES / "MANIFEST.md").is_file(), reason=f"sample media not found at {SAMPLES}"
)

GENERATOR = "Talking Head Studio 0.1.0 (lite engine)"
SPEECH = "audio/english_short_16k_mono.wav"


def _manifest_rows(folder: str) -> list[tuple[str, str]]:
    """(relative path, description) for each file of ``folder`` listed in the samples MANIFEST."""
    manifest = SAMPLES / "MANIFEST.md"
    if not manifest.is_file():
        return []
    pattern = re.compile(rf"^\| `({folder}/[^`]+)` \| ([^|]+) \|", re.MULTILINE)
    return pattern.findall(manifest.read_text(encoding="utf-8"))


def _sample_params(folder: str, parse) -> list:
    rows = _manifest_rows(folder)
    if not rows:  # keeps parametrisation non-empty; the test is skipped anyway
        return [pytest.param(None, None, marks=needs_samples)]
    return [pytest.param(rel, parse(desc), id=Path(rel).name, marks=needs_samples) for rel, desc in rows]


def _image_size(desc: str) -> tuple[int, int]:
    w, h = re.match(r"(\d+)x(\d+)", desc).groups()
    return int(w), int(h)


def _audio_seconds(desc: str) -> float:
    return float(re.match(r"([\d.]+) s;", desc).group(1))


def _ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *args], check=True)


def _assert_user_error(info: pytest.ExceptionInfo, path: Path | str) -> None:
    """A StudioError must name the file and say what to do."""
    assert str(path) in info.value.message
    assert info.value.hint


# ------------------------------------------------------------------------------------------------
# Images


@pytest.mark.parametrize(("rel", "size"), _sample_params("images", _image_size))
def test_sample_images_load_as_rgb(rel: str, size: tuple[int, int]) -> None:
    img = load_image(SAMPLES / rel)
    width, height = size
    assert img.shape == (height, width, 3)
    assert img.dtype == np.uint8
    assert img.flags.c_contiguous and img.flags.writeable


@needs_samples
@pytest.mark.parametrize("name", ["alex_lacamoire.png", "lin_manuel_miranda.png"])
def test_rgba_sample_pngs_come_out_rgb(name: str) -> None:
    path = SAMPLES / "images" / name
    with Image.open(path) as im:
        assert im.mode == "RGBA"
        expected = np.asarray(im.convert("RGB"))  # these PNGs are fully opaque
    np.testing.assert_array_equal(load_image(path), expected)
    np.testing.assert_array_equal(load_image(path, background=(0, 0, 0)), expected)


def test_alpha_is_composited_over_background(tmp_path: Path) -> None:
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[:, :3, 3] = 255  # left half opaque
    rgba[:, 3:, 3] = 128  # right half ~50 % transparent
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)

    white = load_image(path)
    assert white.shape == (4, 6, 3)
    np.testing.assert_array_equal(white[0, 0], [255, 0, 0])
    np.testing.assert_allclose(white[0, 5], [255, 127, 127], atol=1)
    black = load_image(path, background=(0, 0, 0))
    np.testing.assert_allclose(black[0, 5], [128, 0, 0], atol=1)


def test_palette_transparency_and_gray_alpha(tmp_path: Path) -> None:
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((0, 0), 1)
    pal.save(tmp_path / "pal.png", transparency=0)  # index 0 (red) is transparent
    out = load_image(tmp_path / "pal.png", background=(10, 20, 30))
    np.testing.assert_array_equal(out[0, 0], [0, 0, 255])
    np.testing.assert_array_equal(out[1, 1], [10, 20, 30])

    Image.new("LA", (3, 3), (100, 0)).save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_image(tmp_path / "la.png", background=(7, 8, 9))[1, 1], [7, 8, 9])


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored 60 wide x 40 high with a red top-left block; orientation 6 = "rotate 90 deg clockwise
    # to display", so the displayed image is 40 wide x 60 high with the block at the top right.
    stored = np.full((40, 60, 3), 255, np.uint8)
    stored[:20, :30] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)

    img = load_image(path).astype(int)
    assert img.shape == (60, 40, 3)
    expected = np.rot90(stored, k=-1).astype(int)
    # Compare away from the colour edges, where JPEG chroma subsampling rings.
    np.testing.assert_allclose(img[3:27, 23:37], expected[3:27, 23:37], atol=12)  # red, top right
    np.testing.assert_allclose(img[3:57, 3:17], expected[3:57, 3:17], atol=12)  # white, left
    np.testing.assert_allclose(img[33:57, 23:37], expected[33:57, 23:37], atol=12)  # white, bottom right


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32768, 65535]], np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")
    img = load_image(path)
    assert img.shape == (1, 4, 3)
    np.testing.assert_array_equal(img[0, :, 0], [0, 1, 128, 255])
    assert (img == img[..., :1]).all()  # gray: three equal channels


def test_sixteen_bit_rgb_png_from_opencv(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    bgr = np.zeros((8, 8, 3), np.uint16)
    bgr[..., 2] = 65535  # red in OpenCV's BGR order
    bgr[..., 1] = 32896  # 128 * 257
    path = tmp_path / "rgb48.png"
    assert cv2.imwrite(str(path), bgr)
    np.testing.assert_array_equal(load_image(path)[0, 0], [255, 128, 0])


def test_float_tiff_and_grayscale(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "f.tif")[0, :, 2], [0, 128, 255])

    Image.fromarray(np.array([[0, 77, 255]], np.uint8), "L").save(tmp_path / "gray.jpg", quality=100)
    gray = load_image(tmp_path / "gray.jpg")
    assert gray.shape == (1, 3, 3)
    assert (gray == gray[..., :1]).all()


def test_cmyk_and_webp(tmp_path: Path) -> None:
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    np.testing.assert_allclose(load_image(tmp_path / "cmyk.jpg")[0, 0], [255, 0, 0], atol=3)
    Image.new("RGB", (6, 4), (0, 200, 0)).save(tmp_path / "green.webp", lossless=True)
    np.testing.assert_array_equal(load_image(tmp_path / "green.webp")[0, 0], [0, 200, 0])


def _bad_image(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.jpg"
    if kind == "text":
        path.write_text("this is not a photo\n")
    elif kind == "empty":
        path.touch()
    elif kind == "truncated":
        buf = tmp_path / "full.jpg"
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf)
        path.write_bytes(buf.read_bytes()[:1500])
    elif kind == "gif":
        path = tmp_path / "anim.gif"
        Image.new("RGB", (4, 4)).save(path)
    elif kind == "folder":
        path = tmp_path / "photos.jpg"
        path.mkdir()
    elif kind == "missing":
        path = tmp_path / "nope.jpg"
    return path


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("text", "not a supported image"),
        ("empty", "empty"),
        ("truncated", "corrupt or truncated"),
        ("gif", "GIF images are not supported"),
        ("folder", "folder"),
        ("missing", "not found"),
    ],
)
def test_bad_images_raise_image_error(tmp_path: Path, kind: str, words: str) -> None:
    path = _bad_image(tmp_path, kind)
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert words in info.value.message
    _assert_user_error(info, path)
    if kind in ("text", "truncated", "gif"):
        assert "JPEG" in info.value.hint and "PNG" in info.value.hint


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_image(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    Image.new("RGB", (2, 2)).save(path)
    path.chmod(0)
    with pytest.raises(ImageError, match="permission denied"):
        load_image(path)


def test_permission_denied_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Works as root too (where chmod cannot make a file unreadable).
    path = tmp_path / "secret.png"
    Image.new("RGB", (2, 2)).save(path)
    real_open = Path.open

    def deny(self: Path, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(ImageError, match="permission denied") as info:
        load_image(path)
    _assert_user_error(info, path)
    with pytest.raises(AudioError, match="permission denied"):
        load_audio(path)


def test_background_must_be_rgb_bytes(tmp_path: Path) -> None:
    Image.new("RGB", (2, 2)).save(tmp_path / "a.png")
    with pytest.raises(ValueError):
        load_image(tmp_path / "a.png", background=(0, 0, 256))


# ------------------------------------------------------------------------------------------------
# Audio loading


@pytest.mark.parametrize(("rel", "seconds"), _sample_params("audio", _audio_seconds))
def test_sample_audio_loads_mono_16k(rel: str, seconds: float) -> None:
    clip = load_audio(SAMPLES / rel)
    assert clip.sample_rate == 16000
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert abs(clip.duration - seconds) <= 0.05
    assert clip.num_samples == clip.samples.shape[0]
    assert float(np.abs(clip.samples).max()) <= 1.0
    assert same_path(clip.source, SAMPLES / rel)  # ../shared may be a symlink, which the code may resolve
    assert not is_silent(clip)


@needs_samples
@pytest.mark.parametrize(("name", "seconds"), [("grid_bbaf2n.mpg", 2.98), ("voxceleb2_00086.mp4", 5.2)])
def test_audio_track_of_sample_videos(name: str, seconds: float) -> None:
    clip = load_audio(SAMPLES / "video" / name, sample_rate=22050)
    assert clip.sample_rate == 22050
    assert abs(clip.duration - seconds) <= 0.1
    assert not is_silent(clip)


def test_stereo_is_mixed_down_and_resampled(tmp_path: Path) -> None:
    sr = 44100
    t = np.arange(sr) / sr
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "stereo24.wav"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), sr, subtype="PCM_24")
    clip = load_audio(path)
    assert clip.num_samples == 16000
    assert np.abs(clip.samples).max() == pytest.approx(0.25, abs=0.01)


def test_video_without_audio_track(tmp_path: Path) -> None:
    path = tmp_path / "silent_film.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-t", "0.4", "-pix_fmt", "yuv420p",
            str(path))  # fmt: skip
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert "no audio" in info.value.message
    _assert_user_error(info, path)


@pytest.mark.parametrize("frames", [0, 100])  # 0 samples, and 100 samples = 6 ms at 16 kHz
def test_empty_wav_is_an_error(tmp_path: Path, frames: int) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(frames, np.float32), 16000, subtype="PCM_16")
    with pytest.raises(AudioError, match="empty") as info:
        load_audio(path)
    _assert_user_error(info, path)


@pytest.mark.parametrize("kind", ["random", "zero_bytes", "text", "missing", "folder"])
def test_bad_audio_files(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "speech.wav"
    if kind == "random":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    elif kind == "zero_bytes":
        path.touch()
    elif kind == "text":
        path.write_text("[section]\nkey = 'value'\n" * 20)
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(AudioError) as info:
        load_audio(path)
    _assert_user_error(info, path)


def test_silent_audio_loads_and_is_silent(tmp_path: Path) -> None:
    path = tmp_path / "quiet.wav"
    rng = np.random.default_rng(2)
    sf.write(path, 0.0005 * rng.standard_normal(16000), 16000)  # about -66 dBFS
    clip = load_audio(path)
    assert is_silent(clip)
    tone = AudioClip(0.1 * np.sin(2 * np.pi * 200 * np.arange(8000) / 16000), 16000)  # -23 dBFS
    assert not is_silent(tone)
    assert is_silent(tone, threshold_dbfs=-10.0)


def test_write_wav_round_trip_and_resample(tmp_path: Path) -> None:
    samples = (0.8 * np.sin(np.linspace(0, 60, 24000))).astype(np.float32)
    path = write_wav(tmp_path / "out.wav", AudioClip(samples, 24000))
    assert sf.info(path).subtype == "PCM_16"
    back = load_audio(path, sample_rate=24000)
    np.testing.assert_allclose(back.samples, samples, atol=1.5 / 32768)
    assert resample(samples, 24000, 16000).shape == (16000,)
    with pytest.raises(OutputError):
        write_wav(tmp_path / "missing" / "out.wav", back)


# ------------------------------------------------------------------------------------------------
# Frame timing


def test_frame_count() -> None:
    assert frame_count(2.0, 25) == 50
    assert frame_count(2.001, 25) == 51
    assert frame_count(0.0, 25) == 0
    assert frame_count(1.0, 29.97) == 30
    assert frame_count(60.0, 29.97) == 1799


@pytest.mark.parametrize(("fps", "exact"), [(25, Fraction(25)), (29.97, Fraction(30000, 1001))])
def test_rms_envelope_has_no_drift(fps: float, exact: Fraction) -> None:
    sr = 16000
    n_frames = frame_count(70.0, fps)
    target = n_frames - 5  # ~70 s in: any per-frame rounding error would have piled up by now
    signal = np.zeros(int(70 * sr), np.float32)
    # A tone burst in the middle half of frame `target`, placed by time, not by sample formula.
    start = round(float((target + Fraction(1, 4)) / exact) * sr)
    stop = round(float((target + Fraction(3, 4)) / exact) * sr)
    signal[start:stop] = 0.5
    env = rms_envelope(signal, sr, fps=fps, n_frames=n_frames)
    assert env.shape == (n_frames,) and env.dtype == np.float32
    assert env[target] > 0.3
    assert env[target - 1] < 1e-4 and env[target + 1] < 1e-4
    assert int(np.argmax(env)) == target


def test_rms_envelope_zero_pads_the_end() -> None:
    sr, fps = 16000, 25  # 640 samples per frame
    env = rms_envelope(np.ones(960, np.float32), sr, fps=fps, n_frames=4)
    np.testing.assert_allclose(env, [1.0, math.sqrt(0.5), 0.0, 0.0], atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Encoding


def _frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """Solid colour background with a moving white bar (large flat areas survive yuv420p)."""
    out = []
    for k in range(n):
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = (200, 30, 60)
        x = (4 * k) % (width - 8)
        frame[:, x : x + 8] = 255
        out.append(frame)
    return out


@pytest.fixture(scope="module")
def speech_2s() -> AudioClip:
    if not (SAMPLES / SPEECH).is_file():
        pytest.skip(f"sample media not found at {SAMPLES}")
    clip = load_audio(SAMPLES / SPEECH)
    return AudioClip(clip.samples[: 2 * clip.sample_rate], clip.sample_rate, clip.source)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory, speech_2s: AudioClip) -> Path:
    folder = tmp_path_factory.mktemp("encode")
    temp_dir = folder / "systemp"
    temp_dir.mkdir()
    out = folder / "talking head.mp4"
    fps, width, height = 25, 160, 120
    metadata = {"comment": "made by a test\nsecond line", "synthetic": "true", "generator": GENERATOR}
    old_tempdir = tempfile.tempdir
    tempfile.tempdir = str(temp_dir)  # the soundtrack WAV goes here: check that it is cleaned up
    try:
        encoder = FrameEncoder(
            out, width=width, height=height, fps=fps, audio=speech_2s, metadata=metadata
        )
        with encoder as enc:
            for frame in _frames(frame_count(speech_2s.duration, fps), width, height):
                enc.write(frame)
        assert enc.frames_written == 50 and enc.closed
    finally:
        tempfile.tempdir = old_tempdir
    assert list(temp_dir.iterdir()) == []
    return out


def test_encoder_writes_valid_mp4(encoded: Path, speech_2s: AudioClip) -> None:
    # no partial file left behind
    assert sorted(p.name for p in encoded.parent.iterdir()) == ["systemp", "talking head.mp4"]
    info = probe_media(encoded)
    assert (info.has_video, info.has_audio) == (True, True)
    assert (info.video_codec, info.audio_codec, info.pix_fmt) == ("h264", "aac", "yuv420p")
    assert (info.width, info.height, info.fps) == (160, 120, 25.0)
    assert abs(info.duration - speech_2s.duration) <= 1 / 25 + 0.03
    assert info.metadata["synthetic"] == "true"
    assert info.metadata["generator"] == GENERATOR
    assert info.metadata["comment"] == "made by a test\nsecond line"
    assert count_video_frames(encoded) == 50
    soundtrack = load_audio(encoded)
    assert abs(soundtrack.duration - speech_2s.duration) <= 0.05
    assert not is_silent(soundtrack)


def test_encoded_colours_round_trip(encoded: Path) -> None:
    meta, frames = read_video_frames(encoded)
    assert (meta.width, meta.height, meta.fps, meta.n_frames) == (160, 120, 25.0, 50)
    with frames:
        decoded = [next(frames) for _ in range(3)]
    expected = _frames(3, 160, 120)
    for got, want in zip(decoded, expected):
        assert got.shape == (120, 160, 3) and got.dtype == np.uint8 and got.flags.writeable
        # flat areas away from the bar edges: BT.709 in, BT.709 out
        np.testing.assert_allclose(got[:, 60:150].astype(int), want[:, 60:150].astype(int), atol=6)


def test_encoder_ntsc_rate(tmp_path: Path) -> None:
    out = tmp_path / "ntsc.mp4"
    with FrameEncoder(out, width=64, height=48, fps=29.97, preset="ultrafast") as enc:
        for frame in _frames(30, 64, 48):
            enc.write(frame)
    info = probe_media(out)
    assert info.fps == pytest.approx(29.97)
    assert not info.has_audio
    assert info.duration == pytest.approx(30 * 1001 / 30000, abs=0.02)


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_abort_leaves_nothing(
    tmp_path: Path, speech_2s: AudioClip, exc_type: type[BaseException]
) -> None:
    out = tmp_path / "never.mp4"
    with pytest.raises(exc_type):
        with FrameEncoder(out, width=64, height=48, fps=25, audio=speech_2s) as enc:
            for frame in _frames(5, 64, 48):
                enc.write(frame)
            raise exc_type("stop")
    assert enc.closed
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_replaced_only_on_success(tmp_path: Path) -> None:
    out = tmp_path / "video.mp4"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with FrameEncoder(out, width=64, height=48, fps=25) as enc:
            enc.write(_frames(1, 64, 48)[0])
            raise RuntimeError
    assert out.read_bytes() == b"old"
    with FrameEncoder(out, width=64, height=48, fps=25) as enc:
        enc.write(_frames(1, 64, 48)[0])
    assert probe_media(out).video_codec == "h264"
    assert [p.name for p in tmp_path.iterdir()] == ["video.mp4"]


def test_output_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist") as info:
        FrameEncoder(tmp_path / "no" / "such" / "out.mp4", width=64, height=48, fps=25)
    _assert_user_error(info, tmp_path / "no" / "such")


def test_output_path_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a folder"):
        FrameEncoder(tmp_path, width=64, height=48, fps=25)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_output_folder_not_writable_proc() -> None:
    with pytest.raises(OutputError, match="not writable") as info:
        FrameEncoder("/proc/talkstudio-test.mp4", width=64, height=48, fps=25)
    _assert_user_error(info, "/proc")
    assert not Path("/proc/talkstudio-test.mp4").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="chmod does not stop root")
def test_output_folder_not_writable_chmod(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            FrameEncoder(locked / "out.mp4", width=64, height=48, fps=25)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(
    "options",
    [
        {"width": 65, "height": 48},
        {"width": 64, "height": 47},
        {"width": 0, "height": 48},
        {"width": 64, "height": 48, "fps": 0},
        {"width": 64, "height": 48, "crf": 60},
        {"width": 64, "height": 48, "preset": "turbo"},
        {"width": 64, "height": 48, "metadata": {"a=b": "c"}},
    ],
)
def test_bad_encoder_options(tmp_path: Path, options: dict) -> None:
    with pytest.raises(ConfigError):
        FrameEncoder(tmp_path / "out.mp4", **{"fps": 25, **options})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (np.zeros((48, 64), np.uint8), "shape"),
        (np.zeros((64, 48, 3), np.uint8), "shape"),
        (np.zeros((48, 64, 4), np.uint8), "shape"),
        (np.zeros((48, 64, 3), np.float32), "dtype"),
        ([[0]], "numpy"),
    ],
)
def test_wrong_frames_are_rejected(tmp_path: Path, frame: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        with FrameEncoder(tmp_path / "out.mp4", width=64, height=48, fps=25) as enc:
            enc.write(frame)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_no_frames_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="no video frames"):
        with FrameEncoder(tmp_path / "out.mp4", width=64, height=48, fps=25):
            pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("disk_full", [False, True])
def test_encoder_death_is_reported(tmp_path: Path, disk_full: bool) -> None:
    frame = _frames(1, 160, 120)[0]
    with pytest.raises(OutputError) as info:
        with FrameEncoder(tmp_path / "out.mp4", width=160, height=120, fps=25) as enc:
            enc.write(frame)
            enc._proc.kill()  # simulate ffmpeg dying (e.g. the disk filling up)
            enc._proc.wait()
            if disk_full:
                enc._stderr.append("[out#0/mp4] Error writing trailer: No space left on device")
            for _ in range(10):
                enc.write(frame)
    assert ("disk full" in info.value.message) == disk_full
    assert "ffmpeg" in info.value.message or disk_full
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# Probing and reading


@needs_samples
def test_probe_sample_videos() -> None:
    grid = probe_media(SAMPLES / "video" / "grid_bbaf2n.mpg")
    assert (grid.video_codec, grid.audio_codec) == ("mpeg1video", "mp2")
    assert (grid.width, grid.height, grid.fps, grid.audio_sample_rate) == (360, 288, 25.0, 44100)
    assert grid.duration == pytest.approx(3.0, abs=0.05)
    vox = probe_media(SAMPLES / "video" / "voxceleb2_00086.mp4")
    assert (vox.video_codec, vox.audio_codec, vox.width) == ("h264", "aac", 224)
    assert vox.audio_channels == "mono"
    m4a = probe_media(SAMPLES / "audio" / "english_ack_48k_mono.m4a")
    assert (m4a.has_video, m4a.has_audio, m4a.audio_sample_rate) == (False, True, 48000)


def test_unclosed_encoder_is_discarded(tmp_path: Path) -> None:
    enc = FrameEncoder(tmp_path / "out.mp4", width=64, height=48, fps=25)
    enc.write(_frames(1, 64, 48)[0])
    proc = enc._proc
    with pytest.warns(ResourceWarning, match="never closed"):
        del enc
    assert proc.poll() is not None
    assert list(tmp_path.iterdir()) == []


def test_probe_rotation_and_multiline_tags(tmp_path: Path) -> None:
    plain, rotated = tmp_path / "plain.mp4", tmp_path / "rotated.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-t", "0.2", "-pix_fmt", "yuv420p",
            "-metadata", "comment=line one\nline two", str(plain))  # fmt: skip
    _ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated))
    info = probe_media(rotated)
    assert (info.width, info.height, abs(info.rotation)) == (48, 64, 90.0)
    assert info.metadata["comment"] == "line one\nline two"
    meta, frames = read_video_frames(rotated)
    with frames:
        assert (meta.width, meta.height) == (48, 64)
        assert next(frames).shape == (64, 48, 3)


@needs_samples
def test_read_sample_video_frames() -> None:
    path = SAMPLES / "video" / "voxceleb2_00086.mp4"
    meta, frames = read_video_frames(path)
    assert (meta.width, meta.height, meta.fps) == (224, 224, 25.0)
    n = 0
    for frame in frames:
        assert frame.shape == (224, 224, 3) and frame.dtype == np.uint8
        n += 1
    assert n == count_video_frames(path) == 130  # MANIFEST: 130 frames

    meta, frames = read_video_frames(path, size=(112, 96))
    with frames:
        assert (meta.width, meta.height) == (112, 96)
        assert next(frames).shape == (96, 112, 3)


def test_read_and_probe_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_video_frames(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_text("hello")
    with pytest.raises(InputError) as info:
        probe_media(junk)
    _assert_user_error(info, junk)
    with pytest.raises(InputError):
        count_video_frames(junk)
    wav = tmp_path / "speech.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    with pytest.raises(InputError, match="no video track"):
        read_video_frames(wav)


def test_media_layer_imports_no_torch_or_qt() -> None:
    code = (
        "import sys, studio.media.image, studio.media.audio, studio.media.video\n"
        "bad = [m for m in ('torch', 'PySide6') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
