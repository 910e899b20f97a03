"""UI-thread latency of the studio (issue 19): prints one JSON line.

    QT_QPA_PLATFORM=offscreen python benchmarks/ui_latency.py [--speech-seconds 60] [--play-seconds 8]

A 10 ms timer on the UI thread records every gap between two ticks (wall clock) and the UI thread's own CPU
time in it (``time.thread_time``), while the studio:
- ``analysis``: loads a photo and ``--speech-seconds`` of speech (waveform, speech analysis, engine preparation);
- ``playback``: plays from the start for ``--play-seconds`` (the preview renders ahead; no sound device is
  needed), counting the frames shown against the frames due;
- ``export``: exports 4 s to an MP4 (preview quality settings, lite engine).
For each: the worst wall gap, its 99th percentile and the worst UI-thread CPU gap, in ms (a gap over 100 ms
is a visible hitch: the goal is none), and for playback the share of frames not shown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"


class Probe:
    def __init__(self) -> None:
        from PySide6.QtCore import QTimer

        self.gaps: list[float] = []
        self.cpu: list[float] = []
        self.timer = QTimer(interval=10)
        self.timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.gaps.clear()
        self.cpu.clear()
        self._wall, self._cpu = time.perf_counter(), time.thread_time()
        self.timer.start()

    def _tick(self) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        self.gaps.append(wall - self._wall)
        self.cpu.append(cpu - self._cpu)
        self._wall, self._cpu = wall, cpu

    def stop(self) -> dict:
        self.timer.stop()
        g = np.array(self.gaps or [0.0]) * 1000
        c = np.array(self.cpu or [0.0]) * 1000
        return {"worst_gap_ms": round(float(g.max()), 1), "p99_gap_ms": round(float(np.percentile(g, 99)), 1),
                "worst_ui_cpu_ms": round(float(c.max()), 1), "gaps_over_100ms": int((g > 100).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speech-seconds", type=float, default=60.0)
    ap.add_argument("--play-seconds", type=float, default=8.0)
    ap.add_argument("--decoder-in-thread", action="store_true",
                    help="decode phones in a worker thread of the studio's process (as before issue 19)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="talkstudio-ui-"))
    for name in ("CONFIG", "DATA", "CACHE"):
        os.environ[f"TALKSTUDIO_{name}_DIR"] = str(tmp / name.lower())
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(REPO))
    from studio.gui.app import make_app, start_decoder_process
    from studio.gui.main_window import MainWindow

    x, sr = sf.read(str(SAMPLES / "audio" / "english_60s_16k_mono.wav"), dtype="float32")
    speech = tmp / "speech.wav"
    sf.write(str(speech), np.resize(x, int(args.speech_seconds * sr)), sr, subtype="PCM_16")
    app = make_app()
    decoder = None if args.decoder_in_thread else start_decoder_process()  # as `talkstudio gui` does
    window = MainWindow(interactive=False)
    window.resize(1280, 720)
    window.show()

    def wait(cond, timeout=600.0):
        end = time.time() + timeout
        while not cond():
            if time.time() > end:
                raise TimeoutError("the studio did not get there in time")
            app.processEvents()
            time.sleep(0.002)

    out: dict[str, object] = {"speech_seconds": args.speech_seconds}
    probe = Probe()
    probe.start()
    window.identity.set_identity(SAMPLES / "images" / "woman_brown_hair_624px.jpg")
    window.set_audio(speech)
    wait(lambda: window.session is not None and not window.controller.preparing
         and window.preview.frame_index is not None)
    out["analysis"] = probe.stop()

    fps = window.controller.controls.fps
    window.seek(0.0)
    shown: list[int] = []
    original = window.preview.show_frame
    window.preview.show_frame = lambda image, k, overlay: (shown.append(k), original(image, k, overlay))
    probe.start()
    window.transport.play()
    t0 = time.perf_counter()
    wait(lambda: time.perf_counter() - t0 >= args.play_seconds)
    window.transport.pause()
    played = probe.stop()
    del window.preview.show_frame
    # the frames the playhead passed; a frame shown late or never counts as dropped
    last = int(args.play_seconds * fps)
    played["frames_due"] = last
    played["frames_shown"] = len({k for k in shown if 0 <= k < last})
    played["dropped_share"] = round(max(0.0, 1.0 - played["frames_shown"] / max(last, 1)), 3)
    out["playback"] = played

    window.set_range((0.0, 4.0))
    dialog = window.show_export_dialog()
    dialog.output.setText(str(tmp / "export.mp4"))
    probe.start()
    dialog.start_export()
    wait(lambda: dialog.result is not None and dialog.worker is None)
    out["export"] = probe.stop()
    dialog.close()
    window.close()
    app.processEvents()
    if decoder is not None:
        decoder.shutdown(wait=False, cancel_futures=True)
    out["decoder"] = "thread" if args.decoder_in_thread else "process"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
