"""The media file types the studio reads and writes, by suffix (lower case, with the dot).

One list for every module: the CLI, the studio's file dialogs and drops, batch folders, re-voicing,
source pickers and training all ask here.
"""

from __future__ import annotations

import os
from pathlib import Path

from studio.core.errors import ConfigError, OutputError

#: Photos (read with Pillow: EXIF orientation, alpha, 16-bit and greyscale are handled).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
#: Videos (decoded with the ffmpeg of imageio-ffmpeg): identities to re-voice, pose/emotion sources,
#: training data, and speech (their soundtrack).
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv"})
#: Speech recordings (soundfile for WAV/FLAC/OGG, ffmpeg for the rest).
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus", ".aiff", ".aif"})
#: Videos the studio writes (H.264 + AAC in an MP4-family container).
OUTPUT_SUFFIXES = (".mp4", ".m4v", ".mov")


def is_image(path: Path | str) -> bool:
    """True when ``path``'s suffix names a photo type of :data:`IMAGE_SUFFIXES`."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video(path: Path | str) -> bool:
    """True when ``path``'s suffix names a video type of :data:`VIDEO_SUFFIXES`."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_audio(path: Path | str) -> bool:
    """True when ``path``'s suffix names an audio type of :data:`AUDIO_SUFFIXES` (not a video's soundtrack)."""
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def file_filter(label: str, *suffix_sets) -> str:
    """A Qt file-dialog filter such as ``"Photos (*.jpg *.png)"`` of the union of ``suffix_sets``."""
    suffixes = sorted(set().union(*suffix_sets))
    return f"{label} (" + " ".join(f"*{s}" for s in suffixes) + ")"


def with_output_suffix(path: str) -> str:
    """``path`` with ``.mp4`` appended unless it already ends with one of :data:`OUTPUT_SUFFIXES`."""
    return path if path.lower().endswith(OUTPUT_SUFFIXES) else path + ".mp4"


def check_output_path(path: Path, suffixes: tuple[str, ...] = OUTPUT_SUFFIXES, *, what: str = "output",
                      overwrite: bool = True) -> Path:
    """The one check of a path the studio will write (a video by default), before any work is done.

    The studio writes a new file and renames it onto ``path`` (it never writes into an existing file), and
    only ever replaces a regular file: a symbolic link (dangling or not), a device, a FIFO or a socket at
    ``path`` is refused, as is an existing file when ``overwrite`` is false.

    Args:
        path: where the file goes. suffixes: the allowed suffixes (lower case, with the dot), e.g.
            ``(".safetensors",)`` for a person file. what: the file's name in messages ("person file").
        overwrite: whether an existing regular file may be replaced (the studio's save dialogs have asked;
            the command line needs ``--overwrite``).

    Returns:
        The path, ``~`` expanded and absolute.

    Raises:
        ConfigError: unsupported extension. OutputError: the path is a folder, a link or a special file, an
            existing file without ``overwrite``, or its folder is missing or not writable.
    """
    path = Path(path).expanduser().absolute()
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"unsupported {what} type {path.suffix or '(none)'!r} for {path}",
                          f"name the {what} with one of: {', '.join(suffixes)}")
    if path.is_symlink():
        raise OutputError(f"the {what} path is a symbolic link: {path}",
                          "give the path of a new file (the studio does not write through links)")
    if path.is_dir():
        raise OutputError(f"the {what} path is a folder: {path}",
                          f"give a file name such as out/{what.replace(' ', '_')}{suffixes[0]}")
    if path.exists() and not path.is_file():
        raise OutputError(f"the {what} path is not a regular file (a device, pipe or socket): {path}",
                          "give the path of a new file")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists", "pass --overwrite to replace it, or choose another name")
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}", "create it first or choose another folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder is not writable: {folder}", "choose a folder you can write to")
    return path


__all__ = ["AUDIO_SUFFIXES", "IMAGE_SUFFIXES", "OUTPUT_SUFFIXES", "VIDEO_SUFFIXES", "check_output_path", "file_filter", "is_audio",
           "is_image", "is_video", "with_output_suffix"]
