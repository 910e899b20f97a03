"""Draw the studio's application icon (our own drawing, no external artwork) into packaging/icons/.

    .venv/bin/python packaging/make_icons.py

Writes ``talkinghead-<N>.png`` for the freedesktop sizes (Linux ``.desktop`` entry, the window icon),
``talkinghead.ico`` (Windows executable) and ``talkinghead.icns`` (macOS app bundle). The motif: a head in
profile, in the studio's accent blue on its dark window colour, speaking three sound arcs. The files are
committed; run this again only after changing the drawing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

ICONS = Path(__file__).resolve().parent / "icons"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
MASTER = 1024  # drawn once at this size, then reduced with a good filter

BACKGROUND = (35, 38, 45, 255)   # the studio's window colour (#23262d)
BORDER = (58, 63, 75, 255)       # its group-box border (#3a3f4b)
ACCENT = (61, 127, 217, 255)     # its highlight (#3d7fd9)
WAVE = (111, 179, 255, 255)      # its link colour (#6fb3ff)


def draw_master(size: int = MASTER) -> Image.Image:
    """The icon at ``size`` px: rounded dark tile, a head in profile facing right, and sound arcs."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    u = size / 64  # the drawing is laid out on a 64-unit grid

    d.rounded_rectangle((2 * u, 2 * u, 62 * u, 62 * u), radius=12 * u, fill=BACKGROUND, outline=BORDER,
                        width=max(1, round(1.5 * u)))
    # head in profile (facing right): skull, face line with nose, lips and chin, then the neck
    head = [(14, 30), (15, 21), (20, 14), (28, 11), (35, 12), (40, 16), (42, 22), (42, 26), (45, 31),
            (42, 32), (42, 35), (44, 36.5), (42, 38), (43, 40), (41, 42), (39, 44), (35, 44.5), (33, 47),
            (33, 54), (18, 54), (19, 45), (15, 39)]
    d.polygon([(x * u, y * u) for x, y in head], fill=ACCENT)
    # eye
    d.ellipse((35 * u, 20.5 * u, 37.4 * u, 22.9 * u), fill=BACKGROUND)
    # three sound arcs in front of the mouth, growing outwards
    for i, radius in enumerate((5, 9, 13)):
        cx, cy = 44 * u, 37 * u
        r = radius * u
        d.arc((cx - r, cy - r, cx + r, cy + r), start=-40, end=40, fill=WAVE, width=round((2.6 - 0.3 * i) * u))
    return img


def render(size: int, master: Image.Image) -> Image.Image:
    """``master`` reduced to ``size`` px (Lanczos; fine detail is simply averaged away at 16 px)."""
    return master.resize((size, size), Image.Resampling.LANCZOS)


def main() -> int:
    """Write every icon file; returns the exit status."""
    ICONS.mkdir(parents=True, exist_ok=True)
    master = draw_master()
    for n in PNG_SIZES:
        render(n, master).save(ICONS / f"talkinghead-{n}.png", optimize=True)
    render(256, master).save(ICONS / "talkinghead.ico", sizes=[(n, n) for n in ICO_SIZES])
    render(1024, master).save(ICONS / "talkinghead.icns")
    for path in sorted(ICONS.iterdir()):
        print(f"wrote {path.relative_to(ICONS.parent.parent)} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
