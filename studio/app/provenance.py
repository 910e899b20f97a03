"""Verifying a video's provenance marks: its Content Credentials and the invisible watermark.

Used by ``talkstudio verify`` and the studio's *File › Verify…* dialog. A video counts as
*synthetic-marked* when either mark says so: a C2PA manifest that declares ``trainedAlgorithmicMedia``
(valid or not: a broken signature is reported, but the declaration is still there), or the studio's
watermark in the frames (which survives re-encoding, scaling, cropping and excerpts that strip the
manifest).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from studio.core.errors import StudioError
from studio.core.events import CancelToken, Job, ProgressMonitor
from studio.media.credentials import CredentialsReport, read_credentials
from studio.media.video import mean_luma
from studio.media.watermark import RELIABLE_SIDE, Detection, detect_in_mean

#: exit statuses of ``talkstudio verify``
MARKED, UNMARKED, ERROR = 0, 1, 2


@dataclass(frozen=True)
class Verification:
    """What :func:`verify` found in one file.

    Attributes:
        path: the file. credentials: its Content Credentials (None if reading them failed: see ``error``).
        watermark: the watermark search (None for a still image, or when it failed).
        error: a message when the file could not be examined at all.
    """

    path: Path
    credentials: CredentialsReport | None
    watermark: Detection | None
    error: str | None = None

    @property
    def marked(self) -> bool:
        """Either mark says the file is synthetic."""
        c2pa = self.credentials is not None and self.credentials.synthetic
        return c2pa or (self.watermark is not None and self.watermark.found)

    @property
    def status(self) -> int:
        """:data:`MARKED`, :data:`UNMARKED` or :data:`ERROR`."""
        if self.marked:
            return MARKED
        return ERROR if self.error else UNMARKED

    def lines(self) -> list[str]:
        """A human-readable summary, one fact per line."""
        out = []
        c = self.credentials
        if c is None:
            out.append("Content Credentials: could not be read")
        elif c.state == "absent":
            out.append("Content Credentials: none")
        elif c.state == "unsupported":
            out.append(f"Content Credentials: none (a {self.path.suffix or 'file'} file cannot carry them)")
        else:
            what = {"own": "valid, signed with this computer's own key",
                    "valid": "valid signature; the signer is not on a trust list",
                    "remote": "stored at a remote address that was not contacted (verify it with a C2PA reader "
                              "that may go online)",
                    "invalid": "INVALID — the file was changed after signing, or the manifest is damaged"}[c.state]
            out.append(f"Content Credentials: {what}")
            if c.signer:
                out.append(f"  signed by: {c.signer}" + (f" ({c.issuer})" if c.issuer else ""))
            if c.failures and c.state in ("invalid", "remote"):
                out.append(f"  problems: {', '.join(c.failures)}")
            if c.synthetic:
                out.append(f"  declares: AI-generated (trainedAlgorithmicMedia) by {c.generator or 'unknown software'}"
                           + (f", {c.engine} engine" if c.engine else ""))
            for title, role, digest in c.ingredients:
                out.append(f"  made from: {title} ({role or 'input'}, sha256 {digest[:16]}…)")
        w = self.watermark
        if w is None:
            out.append("Watermark: not examined")
        elif w.found:
            out.append(f"Watermark: found, id {w.mark_hex} ({w.frames} frames; chance of a false match "
                       f"{max(1.0 - w.confidence, 1e-12):.0e})")
            if c is not None and c.mark_id is not None and c.mark_id != w.mark_id:
                out.append(f"  the manifest records another watermark id ({c.mark_id:08x}): the frames and the "
                           "manifest come from different renders")
        else:
            out.append(f"Watermark: not found ({w.frames} frames examined)")
            if w.weak:
                out.append(f"  the video is small ({w.size[0]}x{w.size[1]}): below {RELIABLE_SIDE} pixels on a side "
                           "a mark may be too weak to read")
        if self.error:
            out.append(f"error: {self.error}")
        verdict = {MARKED: "synthetic (marked by Talking Head Studio)" if w is not None and w.found
                   else "synthetic (declared by its Content Credentials)",
                   UNMARKED: "no synthetic-media mark found (this does not prove the video is real)",
                   ERROR: "could not be verified"}[self.status]
        out.append(f"Verdict: {verdict}")
        return out


def detect_mark(path: str | os.PathLike[str], *, max_seconds: float = 20.0) -> Detection:
    """Look for the studio's watermark in the first ``max_seconds`` of a video file
    (:mod:`studio.media.watermark` describes the method).

    Raises:
        InputError: unreadable file, no video track, or frames under 96 pixels on a side.
    """
    mean, n = mean_luma(path, max_seconds=max_seconds)
    return detect_in_mean(mean, frames=n)


_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".heic", ".avif"}


def verify(path: str | os.PathLike[str], *, max_seconds: float = 20.0) -> Verification:
    """Examine one file's Content Credentials and look for the watermark in its first ``max_seconds`` (> 0).

    Never raises for a bad file: the problem is in :attr:`Verification.error`. Nothing is fetched from the
    network (a manifest stored remotely is reported as such).
    """
    path = Path(path)
    credentials: CredentialsReport | None = None
    watermark: Detection | None = None
    errors = []
    try:
        credentials = read_credentials(path)
    except StudioError as exc:
        errors.append(f"{exc.message} — {exc.hint}" if exc.hint else exc.message)
    except Exception as exc:  # noqa: BLE001 - an untrusted file must not stop the check of the others
        errors.append(f"cannot read the Content Credentials of {path.name}: {exc}")
    if path.suffix.lower() not in _IMAGE_SUFFIXES and path.is_file():
        try:
            watermark = detect_mark(path, max_seconds=max_seconds)
        except StudioError as exc:
            errors.append(f"{exc.message} — {exc.hint}" if exc.hint else exc.message)
        except Exception as exc:  # noqa: BLE001 - as above
            errors.append(f"cannot search {path.name} for the watermark: {exc}")
    elif not path.is_file():
        errors = [f"no such file: {path}"]
    return Verification(path, credentials, watermark, "; ".join(dict.fromkeys(errors)) or None)


def verify_files(paths: list[Path], *, max_seconds: float = 20.0, cancel: CancelToken | None = None,
                 monitor: ProgressMonitor | None = None) -> Job[list[Verification]]:
    """:func:`verify` each file in turn: a long job (Progress per file, cancellable between files) returning
    the list of :class:`Verification` (for the studio's *File › Verify…* dialog)."""
    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    out = []
    for i, path in enumerate(paths):
        cancel.raise_if_cancelled()
        yield monitor.event("verify", i, len(paths), f"checking {Path(path).name}")
        out.append(verify(path, max_seconds=max_seconds))
    yield monitor.event("verify", len(paths), len(paths), "done")
    return out


__all__ = ["ERROR", "MARKED", "UNMARKED", "Verification", "detect_mark", "verify", "verify_files"]
