"""Take docs/studio.png: the main window with a project loaded (run under Xvfb: see README).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshot.py
    xvfb-run -a -s "-screen 0 1280x720x24" .venv/bin/python docs/screenshot.py --size 1280x720 --out docs/studio_1280x720.png

``--size``: the window's size (default 1400x900); on a smaller screen it is fitted to the screen, as for a user.

Uses throwaway config/data dirs (the user's saved window layout is not applied), the sample photo and
speech from ../shared/samples (or the demo media in resources/), and waits for the preview before grabbing.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"
OUT = REPO / "docs" / "studio.png"


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1400x900", help="window size WxH (default 1400x900)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"PNG to write (default {OUT})")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    out = args.out
    tmp = Path(tempfile.mkdtemp(prefix="talkstudio-shot-"))
    for name in ("CONFIG", "DATA", "CACHE"):
        os.environ[f"TALKSTUDIO_{name}_DIR"] = str(tmp / name.lower())
    sys.path.insert(0, str(REPO))
    from PySide6.QtWidgets import QApplication

    from studio.gui.app import make_app
    from studio.gui.main_window import MainWindow

    photo = SAMPLES / "images" / "woman_brown_hair_624px.jpg"
    speech = SAMPLES / "audio" / "english_short_16k_mono.wav"
    if not photo.exists():
        photo, speech = REPO / "resources" / "obama_official.jpg", REPO / "resources" / "grid_bbaf2n.wav"
    app = make_app()
    window = MainWindow(interactive=False)
    window.resize(width, height)
    window.show()
    window.identity.set_identity(photo)
    window.set_audio(speech)

    def wait(cond, timeout=60.0):
        end = time.time() + timeout
        while not cond():
            if time.time() > end:
                raise TimeoutError("the studio did not get ready in time")
            app.processEvents()
            time.sleep(0.01)

    wait(lambda: window.session is not None and window.identity.info is not None)
    window.set_range((0.8, 3.6))
    window.set_keyframe("open", 2.2, 0.85)
    wait(lambda: not window.controller.preparing)
    window.seek(2.2)
    wait(lambda: window.preview.frame_index == window.current_frame())
    for _ in range(30):
        app.processEvents()
        time.sleep(0.02)
    image = window.grab().toImage()
    raw = tmp / "raw.png"
    image.save(str(raw))
    from PIL import Image

    Image.open(raw).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) \
        .save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB, {image.width()}x{image.height()})")
    window.close()
    QApplication.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
