"""Contact sheet of lite-engine mouths and closed eyes at full resolution, before/after a change.

Renders, with the studio code found under ``--code`` (a checkout; default this one):
- three photos (closed lips; red lipstick with teeth showing; a smile with teeth) with the mouth half and fully
  open (``jaw``/``open`` 0.5 and 1), cropped around the mouth and shown at 2x;
- one re-voiced video (``voxceleb2_00086``, re-voiced with English speech), its frame with the widest mouth;
- the same three photos with both eyes closed, cropped around the left eye.

Usage (a "before" sheet from an older commit checked out in a worktree, then this one)::

    git worktree add /tmp/before <rev>
    .venv/bin/python docs/contact_sheet.py --code /tmp/before --out /tmp/before.png
    .venv/bin/python docs/contact_sheet.py --out /tmp/after.png
    .venv/bin/python docs/contact_sheet.py --combine /tmp/before.png /tmp/after.png --out docs/mouth_contact_sheet.jpg

``docs/mouth_contact_sheet.jpg`` is that sheet (JPEG, quality 88) for the change of issue 17 (before: commit b169a8f).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"
PHOTOS = ("woman_brown_hair_624px.jpg", "taylor_256px.jpg", "obama_official.jpg")
TILE = (360, 220)  # width, height of every tile


def _crop(rgb: np.ndarray, centre: np.ndarray, half_w: float, aspect: float) -> np.ndarray:
    x0, x1 = int(centre[0] - half_w), int(centre[0] + half_w)
    y0, y1 = int(centre[1] - half_w * aspect), int(centre[1] + half_w * aspect)
    pad = max(0, -x0, -y0, x1 - rgb.shape[1], y1 - rgb.shape[0])
    if pad:
        rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, x1, y0, y1 = x0 + pad, x1 + pad, y0 + pad, y1 + pad
    return cv2.resize(rgb[y0:y1, x0:x1], TILE, interpolation=cv2.INTER_CUBIC)


def render_column(out: Path) -> None:
    """One column of tiles (top to bottom: 3 photos x 2 openings, the re-voiced frame, 3 closed eyes)."""
    from studio.core.events import drive
    from studio.engine.dub import DubSettings, dub_video
    from studio.engine.eval.metrics import lip_gap
    from studio.engine.face.detect import FaceTracker, detect_faces
    from studio.engine.lite.engine import LiteEngine
    from studio.media.video import read_video_frames

    tiles, eyes = [], []
    for name in PHOTOS:
        rgb = cv2.imread(str(SAMPLES / "images" / name))[:, :, ::-1].copy()
        face = detect_faces(rgb)[0]
        eng = LiteEngine()
        ident = eng.prepare_photo(rgb, face)
        p = face.points
        centre, width = p[[61, 291]].mean(axis=0), float(np.linalg.norm(p[61] - p[291]))
        for amount in (0.5, 1.0):
            frame = eng.render_values(ident, {"jaw": amount, "open": amount}).copy()
            tiles.append(_crop(frame, centre + (0, 0.1 * width), 0.9 * width, TILE[1] / TILE[0]))
        closed = eng.render_values(ident, {"blink_l": 1.0, "blink_r": 1.0}).copy()
        eye = p[[33, 133, 159, 145]]
        eyes.append(_crop(closed, eye.mean(axis=0) - (0, 0.2 * np.ptp(eye[:, 0])), 1.0 * np.ptp(eye[:, 0]),
                          TILE[1] / TILE[0]))
    with tempfile.TemporaryDirectory() as tmp:
        speech = Path(tmp) / "speech.wav"
        subprocess.run([sys.executable, "-c", "import soundfile as sf; x, r = sf.read(%r); sf.write(%r, x[:int(3*r)], r)"
                        % (str(SAMPLES / "audio" / "english_short_16k_mono.wav"), str(speech))], check=True)
        dubbed = Path(tmp) / "dub.mp4"
        drive(dub_video(SAMPLES / "video" / "voxceleb2_00086.mp4", speech, dubbed, DubSettings(crf=12)))
        _, frames = read_video_frames(dubbed)
        tracker, best = FaceTracker(), (-1.0, None, None)
        with frames:
            for rgb in frames:
                face = tracker.update(rgb)
                if face is not None and lip_gap(face.points) > best[0]:
                    best = (lip_gap(face.points), rgb.copy(), face.points)
        _, rgb, p = best
        if rgb is None:
            raise SystemExit("no face found in the re-voiced video")
        width = float(np.linalg.norm(p[61] - p[291]))
        tiles.append(_crop(rgb, p[[61, 291]].mean(axis=0) + (0, 0.1 * width), 0.9 * width, TILE[1] / TILE[0]))
    _write(out, np.concatenate(tiles + eyes, axis=0)[:, :, ::-1])


def _write(out: Path, bgr: np.ndarray, flags: list[int] | None = None) -> None:
    """Encode by the file's suffix and write it whole or not at all."""
    from studio.core.fileio import atomic_write_bytes

    ok, data = cv2.imencode(out.suffix or ".png", bgr, flags or [])
    if not ok:
        raise SystemExit(f"cannot encode {out}")
    atomic_write_bytes(out, data.tobytes())


def combine(before: Path, after: Path, out: Path) -> None:
    """Side by side with a header row."""
    a, b = cv2.imread(str(before)), cv2.imread(str(after))
    if a is None or b is None:
        raise SystemExit(f"cannot read {before if a is None else after}")
    h = max(a.shape[0], b.shape[0])
    a, b = (cv2.copyMakeBorder(x, 0, h - x.shape[0], 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255)) for x in (a, b))
    head = np.full((36, a.shape[1] + b.shape[1] + 8, 3), 255, np.uint8)
    cv2.putText(head, "before", (10, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.putText(head, "after", (a.shape[1] + 18, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
    body = np.concatenate([a, np.full((a.shape[0], 8, 3), 255, np.uint8), b], axis=1)
    flags = [cv2.IMWRITE_JPEG_QUALITY, 88] if out.suffix.lower() in (".jpg", ".jpeg") else [cv2.IMWRITE_PNG_COMPRESSION, 9]
    _write(out, np.concatenate([head, body], axis=0), flags)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, default=REPO, help="checkout whose studio package renders (default: this)")
    ap.add_argument("--combine", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    sys.path.insert(0, str(args.code.resolve()))
    if args.combine:
        combine(*args.combine, args.out)
        return
    render_column(args.out)


if __name__ == "__main__":
    main()
