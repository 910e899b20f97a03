"""Loading the identity photo: any common still-image file -> (H, W, 3) uint8 RGB.

Pillow does the decoding. The loader applies EXIF orientation, composites transparency over a
solid background, scales 16-bit and float images down to 8 bits (rather than clipping them) and
converts CMYK, so that everything downstream sees plain sRGB-ish 8-bit RGB.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from studio.core.errors import ImageError
from studio.media._common import check_input_file

#: Pillow format names accepted by :func:`load_image` ("JPEG" covers the multi-picture MPO files
#: that some cameras and phones write).
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")

#: File name extensions of the supported formats, for file dialogs.

_FORMATS_HINT = "use a JPEG, PNG, WebP, BMP or TIFF photo"

#: Photos are scaled down on load so that their longer side is at most this many pixels: the video is as large
#: as the photo, and 4096 px (16.8 MP square, 4K DCI wide) bounds what one frame costs in memory and time.
MAX_PHOTO_SIDE = 4096
#: The smallest photo side accepted, in pixels (a face needs more than this to be found at all).
MIN_PHOTO_SIDE = 32

#: Modes holding 16-bit unsigned samples (full range 0..65535).
_UINT16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})

#: Modes whose alpha channel must be composited over the background.
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})

#: Errors Pillow raises on corrupt, truncated or otherwise undecodable data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError)


def load_image(
    path: str | os.PathLike[str], *, background: tuple[int, int, int] = (255, 255, 255),
    max_side: int | None = MAX_PHOTO_SIDE, min_side: int = 1,
) -> np.ndarray:
    """Load a photo as an RGB array, upright and opaque (see :func:`load_photo`, which also returns the
    photo's own size)."""
    return load_photo(path, background=background, max_side=max_side, min_side=min_side)[0]


def load_photo(
    path: str | os.PathLike[str], *, background: tuple[int, int, int] = (255, 255, 255),
    max_side: int | None = MAX_PHOTO_SIDE, min_side: int = 1,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Load a photo as an RGB array, upright and opaque, at most ``max_side`` pixels on its longer side.

    Supported formats: JPEG (including MPO), PNG, WebP, BMP and TIFF. For multi-frame files the first
    frame is used.

    - The EXIF orientation tag is applied, so the result is the image as viewers display it.
    - Transparency (RGBA, LA, palette images with a transparent colour) is composited over
      ``background``.
    - Grayscale and bilevel images are expanded to three equal channels.
    - 16-bit images (``I;16*``) are scaled to 8 bits (``round(v / 257)``). 32-bit integer (``I``)
      images whose values fit in 0..65535 are treated as 16-bit; float (``F``) images in [0, 1]
      are multiplied by 255; other ``I``/``F`` images are stretched from their min..max to 0..255.
      (Pillow itself decodes 48/64-bit RGB(A) PNG and TIFF to 8 bits per channel.)
    - CMYK is converted to RGB through its embedded ICC profile when it has one. Embedded
      profiles of RGB images are not applied (pixels are returned as stored).

    - A larger photo is scaled down (Lanczos; a JPEG is decoded at a reduced DCT scale first, so a 100 MP
      JPEG never exists in memory at full size): memory and time per frame stay bounded for any photo.

    Args:
        path: the image file.
        background: RGB colour (three ints in 0..255) under transparent pixels.
        max_side: the longest side of the result in pixels (None: the photo's own size).
        min_side: the shortest side accepted, in pixels (:data:`MIN_PHOTO_SIDE` for a face photo).

    Returns:
        ((H, W, 3) uint8 C-contiguous, writable array, RGB, values 0..255; (width, height) of the photo as
        displayed, before any scaling).

    Raises:
        ImageError: the file is missing, a folder, unreadable or empty; it is not an image in a
            supported format; it is corrupt or truncated; it is too large to decode (over ~179 MP); or
            a side is under ``min_side`` pixels.
        ValueError: ``background`` is not three ints in 0..255, or ``max_side`` < MIN_PHOTO_SIDE.
    """
    bg = _check_background(background)
    if max_side is not None and max_side < MIN_PHOTO_SIDE:
        raise ValueError(f"max_side must be at least {MIN_PHOTO_SIDE}, got {max_side}")
    path = check_input_file(path, kind="image", error=ImageError)
    im, full = _open(path, max_side=max_side)
    with im:
        size = _displayed_size(im, full)
        if min(size) < min_side:
            raise ImageError(f"the photo is too small ({size[0]}x{size[1]} pixels): {path}",
                             f"use a photo at least {min_side} pixels on each side, with the face clearly "
                             "visible (a few hundred pixels across is best)")
        im = _upright(im)
        rgb = _to_rgb(im, bg, path)
        if max_side is not None and max(rgb.size) > max_side:
            scale = max_side / max(rgb.size)
            target = (max(1, round(rgb.size[0] * scale)), max(1, round(rgb.size[1] * scale)))
            rgb = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = np.array(rgb, dtype=np.uint8)  # np.array copies: writable and C-contiguous
    if out.ndim != 3 or out.shape[2] != 3 or out.shape[0] == 0 or out.shape[1] == 0:  # pragma: no cover
        raise ImageError(f"image has no pixels: {path}", _FORMATS_HINT)
    return out, size


def _displayed_size(im: Image.Image, full: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the image as viewers show it (EXIF orientations 5-8 swap the sides), given its stored
    size at full scale ``full`` (before a JPEG draft)."""
    w, h = full
    try:
        orientation = im.getexif().get(0x0112, 1)
    except _DECODE_ERRORS + (TypeError,):
        orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _check_background(background: tuple[int, int, int]) -> tuple[int, int, int]:
    values = tuple(background)
    if len(values) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in values):
        raise ValueError(f"background must be three ints in 0..255, got {background!r}")
    return tuple(int(v) for v in values)  # type: ignore[return-value]


def _open(path: Path, *, max_side: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Open and fully decode ``path`` with Pillow, turning every failure into an ImageError; returns the image
    and its stored (width, height) at full scale. A JPEG larger than ``max_side`` is decoded at the smallest
    DCT scale (1/2, 1/4, 1/8) that still covers it."""
    try:
        with warnings.catch_warnings():
            # Photos up to 2 * MAX_IMAGE_PIXELS (~179 MP) are fine; beyond, Pillow raises.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path, formats=SUPPORTED_FORMATS)
            try:
                full = im.size
                if max_side is not None and im.format == "JPEG" and max(full) > max_side:
                    scale = max_side / max(full)
                    im.draft("RGB", (int(np.ceil(full[0] * scale)), int(np.ceil(full[1] * scale))))
                im.load()  # decode now, so that truncated data fails here
            except BaseException:
                im.close()
                raise
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"image is too large to load safely: {path}",
            f"resize it to under {2 * Image.MAX_IMAGE_PIXELS // 1_000_000} megapixels",
        ) from exc
    except UnidentifiedImageError as exc:
        detected = _detect_format(path)
        what = f"{detected} images are not supported" if detected else "not a supported image file"
        raise ImageError(f"{what}: {path}", _FORMATS_HINT) from exc
    except PermissionError as exc:
        raise ImageError(
            f"image file is not readable (permission denied): {path}", "check the file's permissions"
        ) from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(
            f"cannot decode image (the file is corrupt or truncated): {path}",
            f"re-export or re-download the photo; {_FORMATS_HINT}",
        ) from exc
    if im.width == 0 or im.height == 0:
        im.close()
        raise ImageError(f"image has no pixels (size {im.width}x{im.height}): {path}", _FORMATS_HINT)
    return im, full


def _detect_format(path: Path) -> str | None:
    """Name of the format Pillow would recognise with every plugin enabled (e.g. "GIF"), if any."""
    try:
        with Image.open(path) as im:
            return im.format
    except Exception:  # any failure just means "not an image we know"
        return None


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a malformed EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(im)
    except _DECODE_ERRORS + (TypeError, ZeroDivisionError):
        return im


def _to_rgb(im: Image.Image, background: tuple[int, int, int], path: Path) -> Image.Image:
    """Convert any Pillow mode to an 8-bit RGB image (see :func:`load_image` for the rules)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, background)
        out.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return out
    if mode in _UINT16_MODES or mode in ("I", "F"):
        gray = _scale_to_uint8(np.asarray(im), sixteen_bit=mode in _UINT16_MODES)
        return Image.fromarray(gray).convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(im)
    try:
        return im.convert("RGB")
    except ValueError as exc:
        raise ImageError(f"unsupported colour mode {mode}: {path}", _FORMATS_HINT) from exc


def _scale_to_uint8(values: np.ndarray, *, sixteen_bit: bool) -> np.ndarray:
    """Map a single-channel 16-bit, 32-bit int or float array to uint8 without clipping."""
    if sixteen_bit:
        v = values.astype(np.uint32)
        return ((v * 255 + 32767) // 65535).astype(np.uint8)
    v = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
    if np.issubdtype(values.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        scaled = v * 255.0
    elif lo >= 0.0 and hi <= 65535.0:
        scaled = v / 257.0
    else:
        scaled = (v - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(v)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """CMYK -> RGB via the embedded ICC profile if there is a usable one, else Pillow's formula."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            intent = ImageCms.Intent.PERCEPTUAL
            converted = ImageCms.profileToProfile(
                im, src, srgb, outputMode="RGB", renderingIntent=intent
            )
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    return im.convert("RGB")
