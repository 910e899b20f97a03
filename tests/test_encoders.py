"""H.264 encoder choice: ffmpeg's encoder list, the GPU check, and FrameEncoder's codec option."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.errors import ConfigError
from studio.media import video
from studio.media.video import FrameEncoder, available_h264_encoders, probe_media

LISTING = """Encoders:
 V..... = Video
 ------
 V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10 (codec h264)
 V....D h264_nvenc           NVIDIA NVENC H.264 encoder (codec h264)
 A....D aac                  AAC (Advanced Audio Coding)
"""


def test_parse_encoder_listing():
    assert video._parse_encoders(LISTING) == ["libx264", "h264_nvenc"]


def test_nvenc_needs_both_ffmpeg_and_a_gpu(monkeypatch):
    monkeypatch.setattr(video, "ffmpeg_encoders", lambda: frozenset({"libx264", "h264_nvenc"}))
    monkeypatch.setattr(video, "_cuda_available", lambda: False)
    assert available_h264_encoders() == ("libx264",)
    monkeypatch.setattr(video, "_cuda_available", lambda: True)
    assert available_h264_encoders() == ("libx264", "h264_nvenc")
    monkeypatch.setattr(video, "ffmpeg_encoders", lambda: frozenset({"libx264"}))
    assert available_h264_encoders() == ("libx264",)


def test_bundled_ffmpeg_has_libx264():
    assert "libx264" in video.ffmpeg_encoders()
    assert available_h264_encoders()[0] == "libx264"


def test_encoder_command_per_codec(tmp_path):
    x264 = video._encoder_command(tmp_path / "a.mp4", 64, 64, 25.0, None, 20, "veryfast", {}, None)
    assert x264[x264.index("-c:v") + 1] == "libx264" and "-crf" in x264
    nv = video._encoder_command(tmp_path / "a.mp4", 64, 64, 25.0, None, 20, "veryfast", {}, None, "h264_nvenc")
    assert nv[nv.index("-c:v") + 1] == "h264_nvenc" and nv[nv.index("-cq") + 1] == "20"
    assert nv[nv.index("-preset") + 1].startswith("p")


def test_unknown_codec_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown H.264 encoder"):
        FrameEncoder(tmp_path / "a.mp4", width=64, height=64, fps=25, codec="mpeg4")
    assert list(tmp_path.iterdir()) == []


def test_libx264_codec_writes_h264(tmp_path):
    out = tmp_path / "a.mp4"
    with FrameEncoder(out, width=64, height=48, fps=25, codec="libx264") as enc:
        for i in range(5):
            enc.write(np.full((48, 64, 3), i * 40, np.uint8))
    assert probe_media(out).video_codec == "h264"


@pytest.mark.skipif("h264_nvenc" not in available_h264_encoders(), reason="needs ffmpeg with NVENC and a CUDA GPU")
def test_nvenc_writes_h264(tmp_path):
    out = tmp_path / "nv.mp4"
    with FrameEncoder(out, width=256, height=256, fps=25, codec="h264_nvenc") as enc:
        for i in range(10):
            enc.write(np.full((256, 256, 3), i * 20, np.uint8))
    assert probe_media(out).video_codec == "h264"
