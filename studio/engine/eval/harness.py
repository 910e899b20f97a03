"""`talkstudio eval`: render real talking videos from their own first frame and audio, compare frame by frame.

For each video: frame ``identity_frame`` is the identity photo and the video's soundtrack is the speech;
the render (at the video's own fps) is compared with the real frames, and so is a *static baseline* (the
identity frame repeated), so every number has a reference. Frames are streamed in lockstep (real frame
k, rendered frame k): memory does not grow with the video's length. Results are written per video as
soon as it is done, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from studio import __version__
from studio.core.errors import InputError
from studio.core.fileio import atomic_write_text
from studio.core.paths import model_dir
from studio.core.progress import CancelToken, Progress, ProgressMonitor
from studio.engine.eval.metrics import lip_gap, lmd, mouth_points, pearson, psnr, ssim
from studio.engine.face.align import ffhq_alignment
from studio.engine.face.detect import FaceLandmarks, FaceTracker
from studio.engine.pipeline import Notice, Prepared, RenderSettings, prepare

CROP = 256
METHODS = ("static", "lite")
PROTOCOL = (
    "Identity = frame {identity_frame} of each real video, speech = its own soundtrack, rendered at the video's "
    "fps with pose '{pose}' and blinks '{blink}'. Real and generated frames are FFHQ-aligned to 256x256 with "
    "their own MediaPipe landmarks. PSNR (dB) and SSIM (Gaussian 11x11, sigma 1.5, per RGB channel) on those "
    "crops; LMD = mean distance of the 20 iBUG mouth points (48-67) in crop pixels after mean-centring; "
    "lip-gap r = Pearson correlation over time of the inner-lip opening / mouth width, real vs generated. "
    "The identity frame itself is left out of the averages. 'static' repeats the identity frame."
)
# optional networks: checkpoint file names in the model store (not shipped; never downloaded)
_OPTIONAL = {"LSE-C/LSE-D": "syncnet_v2.model", "FID": "pt_inception-2015-12-05-6726825d.pth"}


@dataclass
class VideoResult:
    """Metrics of one video: ``metrics[method][name]`` and per-frame series for the plots."""

    video: str
    frames: int
    fps: float
    identity_frame: int
    metrics: dict[str, dict[str, float]]
    series: dict[str, list[float]] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)


@dataclass
class EvalReport:
    """All videos of a run, their mean, and where the report files are."""

    results: list[VideoResult]
    mean: dict[str, dict[str, float]]
    unavailable: dict[str, str]
    markdown: Path
    json: Path


class _Frame:
    """One frame's aligned crop and crop-space mouth landmarks (None when no face was found)."""

    def __init__(self, rgb: np.ndarray, face: FaceLandmarks | None) -> None:
        self.ok = face is not None
        if face is None:
            return
        align = ffhq_alignment(face.points, size=CROP)
        self.crop = align.crop(rgb)
        self.mouth = align.to_crop(mouth_points(face.points))
        self.gap = lip_gap(face.points)


def _compare(real: _Frame, fake: _Frame) -> dict[str, float]:
    return {"psnr": psnr(real.crop, fake.crop), "ssim": ssim(real.crop, fake.crop), "lmd": lmd(real.mouth, fake.mouth)}


def optional_metrics() -> dict[str, str]:
    """Metrics whose networks are not installed: name -> why (the file the model store would need)."""
    return {name: f"unavailable: {fname} is not in the model store ({model_dir()})"
            for name, fname in _OPTIONAL.items() if not (model_dir() / fname).is_file()}


def evaluate_video(path: Path, *, identity_frame: int = 0, pose: str = "still", blink: str = "off",
                   max_seconds: float = 60.0, cancel: CancelToken | None = None,
                   monitor: ProgressMonitor | None = None) -> Iterator[Progress | Notice | VideoResult]:
    """Evaluate the lite engine (and the static baseline) on one real talking video.

    Args:
        path: a video with a face and speech. identity_frame: which frame is the identity photo.
        pose, blink: render settings (default: still head, no blinks, the fairest comparison with a still
            identity). max_seconds: evaluate at most this much of the video.

    Yields:
        Progress, Notices, then the :class:`VideoResult`.

    Raises:
        InputError: unreadable video, or identity frame beyond its end. FaceError: no face in it.
    """
    from studio.media.video import read_video_frames

    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    path = Path(path)
    meta, frames = read_video_frames(path)
    with frames, tempfile.TemporaryDirectory(prefix="talkstudio-eval-") as tmp:
        # the identity frame, as a lossless photo
        ident_rgb = None
        buffered = []  # the frames before the identity frame (usually none)
        for k, frame in enumerate(frames):
            if k == identity_frame:
                ident_rgb = frame
                break
            buffered.append(frame)
        if ident_rgb is None:
            raise InputError(f"{path} has no frame {identity_frame}", "choose a smaller --identity-frame")
        photo = Path(tmp) / "identity.png"
        cv2.imwrite(str(photo), ident_rgb[:, :, ::-1])
        settings = RenderSettings(fps=float(meta.fps), pose=pose, blink=blink)
        session = None
        for ev in prepare(photo, path, settings, cancel=cancel, monitor=monitor.sub(0.0, 0.1)):
            if isinstance(ev, Prepared):
                session = ev.session
            else:
                yield ev
        assert session is not None
        n = min(session.n_frames, int(meta.n_frames or session.n_frames), int(max_seconds * meta.fps))
        real_tracker, fake_tracker = FaceTracker(), FaceTracker()
        static = _Frame(session.identity.image, session.identity.face)
        per = {m: {"psnr": [], "ssim": [], "lmd": []} for m in METHODS}
        gaps = {"real": [], "lite": [], "static": []}
        render_mon = monitor.sub(0.1, 1.0)

        def real_frames() -> Iterator[np.ndarray]:
            yield from buffered
            yield ident_rgb
            yield from frames

        for k, real_rgb in enumerate(real_frames()):
            if k >= n:
                break
            cancel.raise_if_cancelled()
            real_rgb = real_rgb[: session.size[1], : session.size[0]]
            fake_rgb = session.render_frame(k)
            real = _Frame(real_rgb, real_tracker.update(real_rgb))
            fake = _Frame(fake_rgb, fake_tracker.update(fake_rgb))
            if real.ok and fake.ok:
                gaps["real"].append(real.gap)
                gaps["lite"].append(fake.gap)
                gaps["static"].append(static.gap)
                if k != identity_frame:
                    for method, frame in (("lite", fake), ("static", static)):
                        for name, value in _compare(real, frame).items():
                            per[method][name].append(value)
            if k % 10 == 0 or k == n - 1:
                yield render_mon.event("eval", k + 1, n, f"{path.name}: frame {k + 1}/{n}")
    metrics = {"reference": _av_sync(path, gaps["real"], float(meta.fps))}
    for method in METHODS:
        m = {name: float(np.mean(v)) if v else math.nan for name, v in per[method].items()}
        m["lip_gap_r"] = pearson(gaps["real"], gaps[method])
        metrics[method] = m
    yield VideoResult(video=str(path), frames=n, fps=float(meta.fps), identity_frame=identity_frame,
                      metrics=metrics,
                      series={"lmd_lite": per["lite"]["lmd"], "lmd_static": per["static"]["lmd"],
                              "gap_real": gaps["real"], "gap_lite": gaps["lite"]},
                      settings={"pose": pose, "blink": blink, "max_seconds": max_seconds})


def _av_sync(path: Path, real_gaps: list[float], fps: float, max_lag_s: float = 0.8) -> dict[str, float]:
    """How well the *real* video's mouth follows its own soundtrack: the lag (frames; positive = the mouth
    lags the sound) that maximises the correlation of its lip gap with the audio's RMS, that correlation,
    and the one at lag 0. A reference whose best lag is far from 0 is out of sync, and no audio-driven
    method can match its mouth frame by frame."""
    from studio.media.audio import load_audio, rms_envelope

    gaps = np.asarray(real_gaps)
    if len(gaps) < 10:
        return {"av_lag_frames": math.nan, "av_r": math.nan, "av_r_lag0": math.nan}
    clip = load_audio(path)
    rms = rms_envelope(clip.samples, clip.sample_rate, fps=fps, n_frames=len(gaps))
    best_lag, best_r = 0, -2.0
    for lag in range(-int(max_lag_s * fps), int(max_lag_s * fps) + 1):
        a, b = (gaps[lag:], rms[: len(rms) - lag]) if lag >= 0 else (gaps[:lag], rms[-lag:])
        r = pearson(a, b)
        if r > best_r:
            best_lag, best_r = lag, r
    return {"av_lag_frames": float(best_lag), "av_r": float(best_r), "av_r_lag0": pearson(gaps, rms)}


def _plot(result: VideoResult, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = Path(result.video).stem
    paths = []
    for name, series, ylabel in (
        ("lmd", [("lite", result.series["lmd_lite"]), ("static baseline", result.series["lmd_static"])],
         "LMD (px at 256x256)"),
        ("lipgap", [("real", result.series["gap_real"]), ("lite", result.series["gap_lite"])],
         "inner-lip gap / mouth width"),
    ):
        fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
        for label, values in series:
            ax.plot(np.arange(len(values)) / result.fps, values, label=label, lw=1.2)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{stem}: {ylabel}", fontsize=10)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"{stem}_{name}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def _fmt(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else (
        "inf" if math.isinf(v) else f"{v:.{digits}f}")


def markdown_table(results: list[VideoResult], mean: dict[str, dict[str, float]], unavailable: dict[str, str],
                   protocol: str) -> str:
    """The report's Markdown: one row per video and method, then the mean, then what was unavailable."""
    lines = ["# Talking Head Studio evaluation", "", f"Talking Head Studio {__version__}.", "", protocol, "",
             "| video | method | frames | PSNR (dB) ↑ | SSIM ↑ | LMD ↓ | lip-gap r ↑ |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        for method in METHODS:
            m = r.metrics[method]
            lines.append(f"| {Path(r.video).name} | {method} | {r.frames} | {_fmt(m['psnr'], 2)} | "
                         f"{_fmt(m['ssim'])} | {_fmt(m['lmd'], 2)} | {_fmt(m['lip_gap_r'], 2)} |")
    for method in METHODS:
        m = mean[method]
        lines.append(f"| **mean** | {method} | | {_fmt(m['psnr'], 2)} | {_fmt(m['ssim'])} | {_fmt(m['lmd'], 2)} | "
                     f"{_fmt(m['lip_gap_r'], 2)} |")
    lines += ["", "Reference A/V sync (real lip gap vs its own audio RMS; a best lag far from 0 means the real "
              "video is out of sync and frame-by-frame lip metrics cannot be won by any audio-driven method):", ""]
    for r in results:
        ref = r.metrics.get("reference", {})
        lines.append(f"- {Path(r.video).name}: best lag {_fmt(ref.get('av_lag_frames', math.nan), 0)} frames "
                     f"(r = {_fmt(ref.get('av_r', math.nan), 2)}; at lag 0 r = {_fmt(ref.get('av_r_lag0', math.nan), 2)})")
    if unavailable:
        lines += ["", "Not computed:", ""] + [f"- {k}: {v}" for k, v in unavailable.items()]
    return "\n".join(lines) + "\n"


def run_eval(videos: list[Path], report_dir: Path, *, identity_frame: int = 0, pose: str = "still",
             blink: str = "off", max_seconds: float = 60.0, cancel: CancelToken | None = None
             ) -> Iterator[Progress | Notice | EvalReport]:
    """Evaluate several videos, writing ``report_dir``/results/NAME.json per video (reused when it exists
    with the same settings: a killed run resumes), PNG plots, report.json and report.md.

    Raises:
        InputError: no videos, or a path that is not a file.
    """
    if not videos:
        raise InputError("no videos to evaluate", "give one or more talking-head videos with sound")
    for v in videos:
        if not Path(v).is_file():
            raise InputError(f"video not found: {v}", "give existing video files")
    cancel = cancel or CancelToken()
    report_dir = Path(report_dir)
    (report_dir / "results").mkdir(parents=True, exist_ok=True)
    monitor = ProgressMonitor()
    results = []
    wanted = {"pose": pose, "blink": blink, "max_seconds": max_seconds}
    for i, video in enumerate(videos):
        cache = report_dir / "results" / f"{Path(video).stem}.json"
        if cache.is_file():
            data = json.loads(cache.read_text(encoding="utf-8"))
            same = {k: data.get("settings", {}).get(k) for k in wanted} == wanted
            if same and data.get("identity_frame") == identity_frame:
                results.append(VideoResult(**data))
                yield Notice(f"{Path(video).name}: reusing {cache}")
                continue
        sub = monitor.sub(i / len(videos), (i + 1) / len(videos))
        t0 = time.perf_counter()
        for ev in evaluate_video(Path(video), identity_frame=identity_frame, pose=pose, blink=blink,
                                 max_seconds=max_seconds, cancel=cancel, monitor=sub):
            if isinstance(ev, VideoResult):
                ev.settings["seconds"] = round(time.perf_counter() - t0, 1)
                results.append(ev)
                _plot(ev, report_dir)
                atomic_write_text(cache, json.dumps(asdict(ev), allow_nan=True))
            else:
                yield ev
    mean = {m: {k: float(np.nanmean([r.metrics[m][k] for r in results if not math.isinf(r.metrics[m][k])]))
                for k in ("psnr", "ssim", "lmd", "lip_gap_r")} for m in METHODS}
    unavailable = optional_metrics()
    protocol = PROTOCOL.format(identity_frame=identity_frame, pose=pose, blink=blink)
    md = report_dir / "report.md"
    js = report_dir / "report.json"
    atomic_write_text(md, markdown_table(results, mean, unavailable, protocol))
    atomic_write_text(js, json.dumps({"version": __version__, "protocol": protocol, "mean": mean,
                                  "unavailable": unavailable,
                                  "videos": [{k: v for k, v in asdict(r).items() if k != "series"} for r in results]},
                                 indent=2, allow_nan=True))
    yield EvalReport(results=results, mean=mean, unavailable=unavailable, markdown=md, json=js)
