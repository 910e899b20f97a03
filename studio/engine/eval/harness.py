"""`talkstudio eval`: render real talking videos from one of their frames and their own audio, compare frame by frame.

For each video: frame ``identity_frame`` is the identity photo and the video's soundtrack is the speech;
the render (lite or neural engine, at the video's own fps) is compared with the real frames, and so is a
*static baseline* (the identity frame repeated), so every number has a reference. Frames are streamed in
lockstep (real frame k, rendered frame k): memory does not grow with the video's length.

Optional networks from the model store (never downloaded, never faked): with ``syncnet-v2`` installed,
LSE-C / LSE-D (:mod:`studio.engine.eval.lse`) are computed for the real video, the render and the static
baseline; with ``inception-fid``, FID (:mod:`studio.engine.eval.fid`) between the real and the generated
aligned crops, per video and pooled over all videos. Without them the report says which file to import.

Results are written per video as soon as it is done, under a key made of the video's resolved path, size
and mtime, the engine and settings, the optional networks installed and the studio version, so an
interrupted run resumes where it stopped and a changed input or setting is evaluated again.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from studio import __version__
from studio.core.errors import ConfigError, FaceError, ImageError, InputError, ModelError, OutputError
from studio.core.fileio import atomic_write_bytes, atomic_write_text
from studio.core.events import CancelToken, Job, Notice, ProgressMonitor
from studio.engine.eval.metrics import (ARTICULATION_METRICS, CLOSED_GAP, INTERIOR_METRICS, OPEN_GAP, articulation,
                                        interior_difference, interior_stats, lip_gap, lmd, mouth_points,
                                        pearson, psnr, ssim)
from studio.engine.face.align import ffhq_alignment
from studio.engine.face.detect import FaceLandmarks, FaceTracker
from studio.engine.pipeline import check_settings, prepare
from studio.engine.settings import ENGINE_NAMES, RenderSettings

CROP = 256
FRAME_METRICS = ("psnr", "ssim", "lmd", "lip_gap_r") + ARTICULATION_METRICS + INTERIOR_METRICS
NETWORK_METRICS = ("lse_c", "lse_d", "lse_offset", "fid")
PROTOCOL = (
    "Identity = frame {identity_frame} of each real video, speech = its own soundtrack, rendered by the {engine} "
    "engine at the video's fps with pose '{pose}' and blinks '{blink}'. Real and generated frames are "
    "FFHQ-aligned to 256x256 with their own MediaPipe landmarks. PSNR (dB) and SSIM (Gaussian 11x11, sigma 1.5, "
    "per RGB channel) on those crops; LMD = mean distance of the 20 iBUG mouth points (48-67) in crop pixels "
    "after mean-centring; lip-gap r = Pearson correlation over time of the inner-lip opening / mouth width, real "
    "vs generated; gap err/static = mean |generated - real| lip gap over that of the static baseline; closure "
    "recall = share of the real frames with closed lips (gap < {closed}) where the render closes within +-2 "
    "frames; open range = 90th percentile of the generated gap over the real one (1 = the same range). Mouth "
    "ΔE and texture, on the frames where both mouths are open (gap > {open_gap}), inside the inner-lip contour at "
    "full resolution: CIE76 ΔE between the mean CIELAB colours of the brightest 30 % (the teeth), and the "
    "gradient energy of L (Sobel) of ours over the real one's (1 = as much detail; a flat band is well below 1). The "
    "mean row averages the videos; the pooled row computes lip-gap r and the articulation measures over the "
    "frames of all videos at once. The identity frame itself is left out of the averages; frames where either "
    "side has no face are counted ('no face': real / generated) and left out. 'static' repeats the identity frame. "
    "LSE-C/LSE-D: SyncNet v2 (syncnet_python) on 224x224 face crops resampled to 25 fps and 13 MFCCs of the "
    "16 kHz soundtrack (python_speech_features defaults, re-implemented), offset searched over +-15 frames; "
    "LSE-D = min of the mean distance curve, LSE-C = its median - min (Wav2Lip's protocol; face boxes from "
    "MediaPipe instead of S3FD). FID: pool3 features of the pytorch-fid Inception-v3 on the 256x256 aligned "
    "crops, real vs generated, per video; the mean row pools the frames of all videos. "
    "null in report.json = not computed (see 'Not computed') or undefined (no frames; PSNR of identical frames)."
)
#: optional metric -> model store name of the network it needs
OPTIONAL = {"LSE-C/LSE-D": "syncnet-v2", "FID": "inception-fid"}


@dataclass
class VideoResult:
    """Metrics of one video.

    Attributes:
        video: the video path. frames: frames evaluated. fps: its frame rate. identity_frame: the identity.
        metrics: ``metrics[method][name]``: methods "static" and the engine (psnr dB, ssim, lmd px at 256²,
            lip_gap_r, and lse_c, lse_d, lse_offset (25 fps frames), fid when the networks are installed;
            NaN = not computed), "real" (lse_* of the real video) and "reference" (A/V sync of the real video).
        series: per-frame values for the plots (``lmd_<method>``, ``gap_real``, ``gap_<engine>``, and the frame
            indices ``t_lmd``, ``t_gap``).
        settings: engine, pose, blink, max_seconds, seconds taken.
        no_face: frames without a detected face: ``{"real": n, <engine>: n}``.
        fid_features: ``.npz`` with this video's Inception features (for the pooled FID), or None.
        cache_key: hash of what the result depends on (see :func:`cache_key`).
    """

    video: str
    frames: int
    fps: float
    identity_frame: int
    metrics: dict[str, dict[str, float]]
    series: dict[str, list[float]] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)
    no_face: dict[str, int] = field(default_factory=dict)
    fid_features: str | None = None
    cache_key: str = ""

    @property
    def engine(self) -> str:
        return str(self.settings.get("engine", "lite"))


@dataclass
class EvalReport:
    """All videos of a run, their mean, what was not computed, and where the report files are."""

    results: list[VideoResult]
    mean: dict[str, dict[str, float]]
    unavailable: dict[str, str]
    markdown: Path
    json: Path


# --------------------------------------------------------------------------------------------
# Optional networks
# --------------------------------------------------------------------------------------------


@dataclass
class Networks:
    """The optional metric networks that are installed, loaded through the model store.

    Attributes:
        syncnet: :class:`~studio.models.syncnet.SyncNetV2` or None. inception:
            :class:`~studio.models.inception.FIDInceptionV3` or None. device: where they run.
        unavailable: metric -> why it is not computed. fingerprint: store name -> (size, mtime_ns) of
            the stored weights (part of the cache key).
    """

    syncnet: Any = None
    inception: Any = None
    device: str = "cpu"
    unavailable: dict[str, str] = field(default_factory=dict)
    fingerprint: dict[str, list[int]] = field(default_factory=dict)


def optional_metrics() -> dict[str, str]:
    """Optional metrics whose network is not installed: metric -> "unavailable (install FILE with
    `talkstudio models import`; ...)"."""
    from studio.models import store

    statuses = {s.name: s for s in store.list_models()}
    out = {}
    for metric, name in OPTIONAL.items():
        s = statuses[name]
        if s.installed:
            continue
        where = f"download it from {s.urls[0]}" if s.urls else "see model_store/README.md"
        state = "" if s.state == store.MISSING else f"; the stored copy is {s.state}: {s.detail}"
        out[metric] = (f"unavailable (install {s.file} with `talkstudio models import {s.file}`; {where}{state})")
    return out


def load_networks(device: str | None = None) -> Networks:
    """Load the installed optional networks (SyncNet v2, FID Inception) from the model store.

    The weights go through :mod:`studio.models.registry` (hash checked, every key and shape checked)
    into the module the manifest names. A stored file that fails to load is reported as unavailable,
    with the reason.
    """
    import torch

    from studio.models import registry, store

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    nets = Networks(device=dev, unavailable=optional_metrics())
    manifest = store.load_manifest()
    for metric, name in OPTIONAL.items():
        if metric in nets.unavailable:
            continue
        entry = manifest[name]
        try:
            loaded = store.load_weights(name, manifest=manifest)
            module = registry.build_module(entry.architecture, loaded.state, device=dev, source=entry.stored_file)
        except ModelError as exc:
            nets.unavailable[metric] = f"unavailable ({exc.message}; {exc.hint or 'import it again'})"
            continue
        st = loaded.path.stat()
        nets.fingerprint[name] = [st.st_size, st.st_mtime_ns]
        if name == "syncnet-v2":
            nets.syncnet = module
        else:
            nets.inception = module
    return nets


# --------------------------------------------------------------------------------------------
# One video
# --------------------------------------------------------------------------------------------


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
        self.rgb, self.points = rgb, face.points

    def interior(self) -> tuple[np.ndarray, float] | None:
        return interior_stats(self.rgb, self.points)


def _compare(real: _Frame, fake: _Frame) -> dict[str, float]:
    return {"psnr": psnr(real.crop, fake.crop), "ssim": ssim(real.crop, fake.crop), "lmd": lmd(real.mouth, fake.mouth)}


class _SyncStreams:
    """SyncNet face-crop streams of the real video and the render (the static baseline is one crop)."""

    def __init__(self, net, *, fps: float, device: str, engine: str, static_rgb: np.ndarray,
                 static_face: FaceLandmarks | None) -> None:
        from studio.engine.eval.lse import LipStream, face_box

        self.net, self.device, self.engine = net, device, engine
        self.fallback = face_box(static_face.points) if static_face is not None else (
            0.0, 0.0, float(static_rgb.shape[1]), float(static_rgb.shape[0]))
        self.static_crop = self._crop(static_rgb, static_face, None)
        self.streams = {"real": LipStream(net, fps=fps, device=device), engine: LipStream(net, fps=fps, device=device)}
        self.last_box: dict[str, tuple] = {}

    def _crop(self, rgb: np.ndarray, face: FaceLandmarks | None, who: str | None) -> np.ndarray:
        from studio.engine.eval.lse import face_box, syncnet_crop

        if face is not None:
            box = face_box(face.points)
            if who is not None:
                self.last_box[who] = box
        else:  # no face: the last box of this stream (else the identity's): the timing must not shift
            box = self.last_box.get(who, self.fallback)
        return syncnet_crop(rgb, box)

    def push(self, who: str, rgb: np.ndarray, face: FaceLandmarks | None) -> None:
        self.streams[who].push(self._crop(rgb, face, who))

    def scores(self, path: Path) -> dict[str, dict[str, float]]:
        import torch

        from studio.engine.eval.lse import SAMPLE_RATE, audio_embeddings, n_windows, sync_score
        from studio.media.audio import load_audio

        clip = load_audio(path, sample_rate=SAMPLE_RATE)
        lips = {who: s.embeddings() for who, s in self.streams.items()}
        frames_25 = self.streams["real"].frames_25
        w = n_windows(frames_25, len(clip.samples))
        aud = audio_embeddings(self.net, clip.samples, w, device=self.device)
        x = torch.from_numpy(np.repeat(self.static_crop[None], 5, axis=0)[None]).float().permute(0, 4, 1, 2, 3)
        with torch.inference_mode():
            static = self.net.forward_lip(x.to(self.device)).float().cpu().numpy()
        lips["static"] = np.repeat(static, w, axis=0)
        out = {}
        for who, emb in lips.items():
            s = sync_score(emb[:w], aud)
            out[who] = {"lse_c": s.lse_c, "lse_d": s.lse_d, "lse_offset": float(s.offset) if s.windows else math.nan}
        return out


def evaluate_video(path: Path, *, engine: str = "lite", identity_frame: int = 0, pose: str = "still",
                   blink: str = "off", max_seconds: float = 60.0, networks: Networks | None = None,
                   features_path: Path | None = None, cancel: CancelToken | None = None,
                   monitor: ProgressMonitor | None = None) -> Job[VideoResult]:
    """Evaluate one engine (and the static baseline) on one real talking video.

    Args:
        path: a video with a face and speech. engine: "lite" or "neural". identity_frame: which frame is
            the identity photo. pose, blink: render settings (default: still head, no blinks, the fairest
            comparison with a still identity). max_seconds: evaluate at most this much of the video.
        networks: the optional networks (:func:`load_networks`); None = none (LSE/FID left NaN).
        features_path: where to save the Inception features (``.npz``) for the pooled FID.

    Yields Progress and Notices; returns the :class:`VideoResult`.

    Raises:
        InputError: unreadable video, or identity frame beyond its end. FaceError: no face in it.
        ModelError: the neural engine's models are missing (named).
    """
    from studio.media.video import read_video_frames

    cancel = cancel or CancelToken()
    monitor = monitor or ProgressMonitor()
    networks = networks or Networks()
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
        settings = RenderSettings(fps=float(meta.fps)).with_values(engine=engine, pose=pose, blink=blink)
        try:
            session = yield from prepare(photo, path, settings, cancel=cancel, monitor=monitor.sub(0.0, 0.1))
        except (FaceError, ImageError) as exc:  # about the temp photo: say which video and frame it was
            raise type(exc)(f"{path}, frame {identity_frame}: {exc.message.replace(str(photo), 'the frame')}",
                            "choose another --identity-frame showing the face clearly, or another video") from None
        n = min(session.n_frames, int(meta.n_frames or session.n_frames), int(max_seconds * meta.fps))
        real_tracker, fake_tracker = FaceTracker(), FaceTracker()
        static = _Frame(session.identity.image, session.identity.face)
        methods = ("static", engine)
        per = {m: {"psnr": [], "ssim": [], "lmd": []} for m in methods}
        gaps = {"real": [], engine: [], "static": []}
        interiors: dict[str, list] = {m: [] for m in methods}  # (real, generated) stats of open-mouth frames
        static_interior = static.interior() if static.ok and static.gap > OPEN_GAP else None
        t_lmd, t_gap = [], []
        no_face = {"real": 0, engine: 0}
        sync = None
        if networks.syncnet is not None:
            sync = _SyncStreams(networks.syncnet, fps=float(meta.fps), device=networks.device, engine=engine,
                                static_rgb=session.identity.image, static_face=session.identity.face)
        feats = None
        if networks.inception is not None:
            from studio.engine.eval.fid import InceptionFeatures

            feats = {who: InceptionFeatures(networks.inception, device=networks.device) for who in ("real", engine)}
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
            real_face, fake_face = real_tracker.update(real_rgb), fake_tracker.update(fake_rgb)
            real, fake = _Frame(real_rgb, real_face), _Frame(fake_rgb, fake_face)
            no_face["real"] += not real.ok
            no_face[engine] += not fake.ok
            if sync is not None:
                sync.push("real", real_rgb, real_face)
                sync.push(engine, fake_rgb, fake_face)
            if feats is not None:
                if real.ok:
                    feats["real"].push(real.crop)
                if fake.ok:
                    feats[engine].push(fake.crop)
            if real.ok and fake.ok:
                gaps["real"].append(real.gap)
                gaps[engine].append(fake.gap)
                gaps["static"].append(static.gap)
                t_gap.append(k)
                if k != identity_frame and real.gap > OPEN_GAP:
                    mine = {engine: fake.interior() if fake.gap > OPEN_GAP else None, "static": static_interior}
                    theirs = real.interior()
                    for method, stats in mine.items():
                        if stats is not None and theirs is not None:
                            interiors[method].append((theirs, stats))
                if k != identity_frame:
                    t_lmd.append(k)
                    for method, frame in ((engine, fake), ("static", static)):
                        for name, value in _compare(real, frame).items():
                            per[method][name].append(value)
            if k % 10 == 0 or k == n - 1:
                yield render_mon.event("eval", k + 1, n, f"{path.name}: frame {k + 1}/{n}")
    metrics: dict[str, dict[str, float]] = {"reference": _av_sync(path, gaps["real"], float(meta.fps), t_gap)}
    for method in methods:
        m = {name: float(np.mean(v)) if v else math.nan for name, v in per[method].items()}
        m["lip_gap_r"] = pearson(gaps["real"], gaps[method]) if gaps["real"] else math.nan
        m.update(articulation(np.asarray(gaps["real"]), np.asarray(gaps[method]), np.asarray(gaps["static"]),
                              np.asarray(t_gap, dtype=np.int64)))
        m.update(interior_difference([a for a, _ in interiors[method]], [b for _, b in interiors[method]]))
        m["mouth_frames"] = float(len(interiors[method]))
        m.update({name: math.nan for name in NETWORK_METRICS})
        metrics[method] = m
    metrics["real"] = {name: math.nan for name in ("lse_c", "lse_d", "lse_offset")}
    if sync is not None:
        yield Notice(f"{path.name}: LSE-C/LSE-D (SyncNet)", level="note")
        for who, values in sync.scores(path).items():
            metrics[who].update(values)
    fid_file = None
    if feats is not None:
        from studio.engine.eval.fid import InceptionFeatures, fid_from_features

        real_f, gen_f = feats["real"].features(), feats[engine].features()
        static_f = np.zeros((0, real_f.shape[1]))
        if static.ok:  # one crop repeated: zero covariance
            one = InceptionFeatures(networks.inception, device=networks.device)
            one.push(static.crop)
            static_f = np.repeat(one.features(), max(len(real_f), 2), axis=0)
        metrics[engine]["fid"] = fid_from_features(real_f, gen_f)
        metrics["static"]["fid"] = fid_from_features(real_f, static_f)
        if features_path is not None:
            buf = io.BytesIO()
            np.savez(buf, real=real_f.astype(np.float32), generated=gen_f.astype(np.float32),
                     static=static_f[:1].astype(np.float32))
            atomic_write_bytes(features_path, buf.getvalue())
            fid_file = str(features_path)
    return VideoResult(video=str(path), frames=n, fps=float(meta.fps), identity_frame=identity_frame,
                       metrics=metrics,
                       series={f"lmd_{engine}": per[engine]["lmd"], "lmd_static": per["static"]["lmd"],
                               "gap_real": gaps["real"], f"gap_{engine}": gaps[engine], "gap_static": gaps["static"],
                               "t_lmd": t_lmd, "t_gap": t_gap},
                       settings={"engine": engine, "pose": pose, "blink": blink, "max_seconds": max_seconds},
                       no_face=no_face, fid_features=fid_file)


def _av_sync(path: Path, real_gaps: list[float], fps: float, frames: list[int] | None = None,
             max_lag_s: float = 0.8) -> dict[str, float]:
    """How well the *real* video's mouth follows its own soundtrack: the lag (frames; positive = the mouth
    lags the sound) that maximises the correlation of its lip gap with the audio's RMS, that correlation,
    and the one at lag 0. A reference whose best lag is far from 0 is out of sync, and no audio-driven
    method can match its mouth frame by frame.

    Args:
        real_gaps: lip gap of the frames with a face; frames: their frame indices (default 0, 1, ...), so
            frames without a face keep the timing. Lags leaving fewer than 10 pairs are not tried.
    """
    from studio.media.audio import load_audio, rms_envelope

    nan = {"av_lag_frames": math.nan, "av_r": math.nan, "av_r_lag0": math.nan}
    if len(real_gaps) < 10:
        return nan
    idx = np.arange(len(real_gaps)) if frames is None else np.asarray(frames, dtype=int)
    gaps = np.full(int(idx.max()) + 1, np.nan)
    gaps[idx] = real_gaps
    clip = load_audio(path)
    rms = rms_envelope(clip.samples, clip.sample_rate, fps=fps, n_frames=len(gaps))

    def r_at(lag: int) -> float | None:
        a, b = (gaps[lag:], rms[: len(rms) - lag]) if lag >= 0 else (gaps[:lag], rms[-lag:])
        ok = np.isfinite(a)
        return pearson(a[ok], b[ok]) if ok.sum() >= 10 else None

    best_lag, best_r = 0, -2.0
    for lag in range(-int(max_lag_s * fps), int(max_lag_s * fps) + 1):
        r = r_at(lag)
        if r is not None and r > best_r:
            best_lag, best_r = lag, r
    r0 = r_at(0)
    return {"av_lag_frames": float(best_lag), "av_r": float(best_r), "av_r_lag0": math.nan if r0 is None else r0}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _plot(result: VideoResult, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = Path(result.video).stem
    engine = result.engine
    s = result.series
    paths = []
    for name, t, series, ylabel in (
        ("lmd", s.get("t_lmd"), [(engine, s[f"lmd_{engine}"]), ("static baseline", s["lmd_static"])],
         "LMD (px at 256x256)"),
        ("lipgap", s.get("t_gap"), [("real", s["gap_real"]), (engine, s[f"gap_{engine}"])],
         "inner-lip gap / mouth width"),
    ):
        fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
        for label, values in series:
            x = np.asarray(t if t is not None and len(t) == len(values) else np.arange(len(values)), float)
            ax.plot(x / result.fps, values, label=label, lw=1.2)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{stem}: {ylabel}", fontsize=10)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"{stem}_{name}.png"
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return "inf" if math.isinf(v) else f"{v:.{digits}f}"


def _row(name: str, method: str, frames: str, no_face: str, m: dict[str, float], frame_metrics: bool = True) -> str:
    g = m.get
    if frame_metrics:
        cells = [_fmt(g("psnr"), 2), _fmt(g("ssim")), _fmt(g("lmd"), 2), _fmt(g("lip_gap_r"), 2),
                 _fmt(g("gap_err_ratio"), 2), _fmt(g("closure_recall"), 2), _fmt(g("open_range"), 2),
                 _fmt(g("mouth_de"), 1), _fmt(g("mouth_texture"), 2)]
    else:
        cells = ["—"] * 9
    off = g("lse_offset")
    lse_d = _fmt(g("lse_d"), 2) + ("" if off is None or math.isnan(off) else f" ({off:+.0f})")
    cells += [_fmt(g("lse_c"), 2), lse_d, _fmt(g("fid"), 1) if frame_metrics else "—"]
    return f"| {name} | {method} | {frames} | {no_face} | " + " | ".join(cells) + " |"


def markdown_table(results: list[VideoResult], mean: dict[str, dict[str, float]], unavailable: dict[str, str],
                   protocol: str) -> str:
    """The report's Markdown: one row per video and method (the real video's own LSE first), the mean,
    the reference A/V sync, and what was not computed (and how to install it)."""
    engine = results[0].engine if results else "lite"
    lines = ["# Talking Head Studio evaluation", "", f"Talking Head Studio {__version__}.", "", protocol, "",
             "| video | method | frames | no face (real/gen) | PSNR (dB) ↑ | SSIM ↑ | LMD ↓ | lip-gap r ↑ | "
             "gap err/static ↓ | closure recall ↑ | open range →1 | mouth ΔE ↓ | mouth texture →1 | LSE-C ↑ | "
             "LSE-D ↓ (offset) | FID ↓ |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        name = Path(r.video).name
        nf = f"{r.no_face.get('real', 0)}/{r.no_face.get(r.engine, 0)}" if r.no_face else "n/a"
        lines.append(_row(name, "real", str(r.frames), nf, r.metrics.get("real", {}), frame_metrics=False))
        for method in ("static", r.engine):
            lines.append(_row(name, method, str(r.frames), nf, r.metrics[method]))
    if "real" in mean:
        lines.append(_row("**mean**", "real", "", "", mean["real"], frame_metrics=False))
    for method in ("static", engine):
        if method in mean:
            lines.append(_row("**mean**", method, "", "", mean[method]))
    for method in ("static", engine):
        pooled = mean.get("pooled", {}).get(method)
        if pooled:
            lines.append(_row("**pooled**", method, "", "", pooled))
    lines += ["", "Reference A/V sync (real lip gap vs its own audio RMS; a best lag far from 0 means the real "
              "video is out of sync and frame-by-frame lip metrics cannot be won by any audio-driven method):", ""]
    for r in results:
        ref = r.metrics.get("reference", {})
        lines.append(f"- {Path(r.video).name}: best lag {_fmt(ref.get('av_lag_frames', math.nan), 0)} frames "
                     f"(r = {_fmt(ref.get('av_r', math.nan), 2)}; at lag 0 r = {_fmt(ref.get('av_r_lag0', math.nan), 2)})")
    if unavailable:
        lines += ["", "Not computed:", ""] + [f"- {k}: {v}" for k, v in unavailable.items()]
    return "\n".join(lines) + "\n"


def _json_safe(value: Any) -> Any:
    """``value`` with every NaN / ±inf float replaced by None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _from_json(data: dict[str, Any]) -> VideoResult:
    """A cached result (nulls back to NaN in the metrics)."""
    data = dict(data)
    data["metrics"] = {m: {k: (math.nan if v is None else v) for k, v in vals.items()}
                       for m, vals in data.get("metrics", {}).items()}
    return VideoResult(**data)


def cache_key(video: Path, *, engine: str, identity_frame: int, pose: str, blink: str, max_seconds: float,
              networks: dict[str, list[int]]) -> str:
    """SHA-256 (hex) of what a video's result depends on: the resolved path, size and mtime of the video,
    the engine and settings, the optional networks installed (stored size, mtime) and the studio version."""
    p = Path(video).resolve()
    st = p.stat()
    payload = {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "engine": engine,
               "identity_frame": identity_frame, "pose": pose, "blink": blink, "max_seconds": max_seconds,
               "networks": networks, "version": __version__, "metrics": FRAME_METRICS}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _engine_fingerprint(engine: str) -> dict[str, list[int]]:
    """For the neural engine: every installed model (size, mtime) - which encoder and mouth model "auto"
    picks depends on them."""
    if engine != "neural":
        return {}
    from studio.models import store

    return {s.name: [s.size or 0, s.path.stat().st_mtime_ns] for s in store.list_models() if s.installed}


def _mean(results: list[VideoResult], engine: str) -> dict[str, dict[str, float]]:
    """Mean over videos of each finite value (NaN when none); FID is pooled over all videos' frames."""
    mean: dict[str, dict[str, float]] = {}
    for method, names in (("real", ("lse_c", "lse_d")), ("static", FRAME_METRICS + ("lse_c", "lse_d")),
                          (engine, FRAME_METRICS + ("lse_c", "lse_d"))):
        mean[method] = {}
        for k in names:
            vals = [r.metrics.get(method, {}).get(k, math.nan) for r in results]
            vals = [v for v in vals if v is not None and math.isfinite(v)]
            mean[method][k] = float(np.mean(vals)) if vals else math.nan
    files = [r.fid_features for r in results]
    mean[engine]["fid"] = mean["static"]["fid"] = math.nan
    if results and all(f and Path(f).is_file() for f in files):
        from studio.engine.eval.fid import fid_from_features

        loaded = [np.load(f) for f in files]
        real = np.concatenate([d["real"] for d in loaded]).astype(np.float64)
        gen = np.concatenate([d["generated"] for d in loaded]).astype(np.float64)
        static = np.concatenate([np.repeat(d["static"], max(len(d["real"]), 1), axis=0) for d in loaded
                                 if len(d["static"])]).astype(np.float64) if any(len(d["static"]) for d in loaded) \
            else np.zeros((0, real.shape[1]))
        mean[engine]["fid"] = fid_from_features(real, gen)
        mean["static"]["fid"] = fid_from_features(real, static)
    mean["pooled"] = _pooled(results, engine)
    return mean


def _pooled(results: list[VideoResult], engine: str) -> dict[str, dict[str, float]]:
    """Lip-gap r and the articulation measures over the frames of all videos at once (frame indices offset
    per video so closures of different videos never match). Empty when a (cached) result lacks a series."""
    series = [r.series for r in results]
    keys = ("gap_real", f"gap_{engine}", "gap_static", "t_gap")
    if not series or not all(all(k in s for k in keys) for s in series):
        return {}
    offset, t = 0, []
    for s in series:
        t.append(np.asarray(s["t_gap"], dtype=np.int64) + offset)
        offset += int(max(s["t_gap"], default=0)) + 100
    real = np.concatenate([np.asarray(s["gap_real"], float) for s in series])
    static = np.concatenate([np.asarray(s["gap_static"], float) for s in series])
    frames = np.concatenate(t) if t else np.zeros(0, np.int64)
    out = {}
    for method, key in (("static", "gap_static"), (engine, f"gap_{engine}")):
        gen = np.concatenate([np.asarray(s[key], float) for s in series])
        out[method] = {"lip_gap_r": pearson(real, gen) if real.size else math.nan,
                       **articulation(real, gen, static, frames)}
    return out


def run_eval(videos: list[Path], report_dir: Path, *, engine: str = "lite", identity_frame: int = 0,
             pose: str = "still", blink: str = "off", max_seconds: float = 60.0, device: str | None = None,
             cancel: CancelToken | None = None) -> Job[EvalReport]:
    """Evaluate several videos, writing ``report_dir``/results/NAME-KEY.json per video (reused when its
    :func:`cache_key` matches: a killed run resumes), PNG plots, report.json (no NaN: null) and report.md.

    Args:
        engine: "lite" or "neural". device: where the optional networks run (default: CUDA if present).

    Raises:
        InputError: no videos, or a path that is not a file. ConfigError: unknown engine.
        ModelError: the neural engine's models are missing (each named, as `talkstudio render` does).
    """
    if engine not in ENGINE_NAMES:
        raise ConfigError(f"unknown engine {engine!r}", f"choose one of: {', '.join(ENGINE_NAMES)}")
    if not videos:
        raise InputError("no videos to evaluate", "give one or more talking-head videos with sound")
    if not isinstance(identity_frame, int) or identity_frame < 0:
        raise ConfigError(f"invalid identity frame {identity_frame!r}", "use a frame index from 0 (the first frame)")
    if not math.isfinite(max_seconds) or max_seconds <= 0:
        raise ConfigError(f"invalid --max-seconds {max_seconds!r}", "use a number of seconds above 0, e.g. 60")
    report_dir = Path(report_dir)
    if report_dir.exists() and not report_dir.is_dir():
        raise OutputError(f"the report folder is a file: {report_dir}", "give a folder (it is created if missing)")
    for v in videos:
        if not Path(v).is_file():
            raise InputError(f"video not found: {v}", "give existing video files")
    # names the neural engine's missing models
    check_settings(RenderSettings().with_values(engine=engine, pose=pose, blink=blink))
    cancel = cancel or CancelToken()
    created = [d for d in (report_dir, report_dir / "results") if not d.exists()]
    try:
        (report_dir / "results").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the report folder {report_dir}: {exc.strerror or exc}",
                          "choose a folder you can write to") from None
    try:
        return (yield from _run_eval(videos, report_dir, engine=engine, identity_frame=identity_frame, pose=pose,
                                     blink=blink, max_seconds=max_seconds, device=device, cancel=cancel))
    except BaseException:
        for d in reversed(created):  # a failed first run leaves no empty report folder behind
            try:
                d.rmdir()
            except OSError:
                pass  # not empty: results of the videos that did finish are kept (a rerun reuses them)
        raise


def _run_eval(videos: list[Path], report_dir: Path, *, engine: str, identity_frame: int, pose: str, blink: str,
              max_seconds: float, device: str | None, cancel: CancelToken) -> Job[EvalReport]:
    monitor = ProgressMonitor()
    networks = load_networks(device)
    fingerprint = {**networks.fingerprint, **_engine_fingerprint(engine)}
    results = []
    for i, video in enumerate(videos):
        key = cache_key(Path(video), engine=engine, identity_frame=identity_frame, pose=pose, blink=blink,
                        max_seconds=max_seconds, networks=fingerprint)
        cache = report_dir / "results" / f"{Path(video).stem}-{key[:16]}.json"
        if cache.is_file():
            try:
                data = json.loads(cache.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                data = {}
            if data.get("cache_key") == key and (not data.get("fid_features") or Path(data["fid_features"]).is_file()):
                results.append(_from_json(data))
                yield Notice(f"{Path(video).name}: reusing {cache}", level="note")
                continue
        sub = monitor.sub(i / len(videos), (i + 1) / len(videos))
        t0 = time.perf_counter()
        features = ((report_dir / "results" / f"{Path(video).stem}-{key[:16]}.fid.npz").resolve()
                    if networks.inception is not None else None)
        result = yield from evaluate_video(Path(video), engine=engine, identity_frame=identity_frame, pose=pose,
                                           blink=blink, max_seconds=max_seconds, networks=networks,
                                           features_path=features, cancel=cancel, monitor=sub)
        result.settings["seconds"] = round(time.perf_counter() - t0, 1)
        result.cache_key = key
        results.append(result)
        _plot(result, report_dir)
        atomic_write_text(cache, json.dumps(_json_safe(asdict(result)), allow_nan=False))
    mean = _mean(results, engine)
    unavailable = dict(networks.unavailable)
    protocol = PROTOCOL.format(identity_frame=identity_frame, engine=engine, pose=pose, blink=blink,
                               closed=CLOSED_GAP, open_gap=OPEN_GAP)
    md = report_dir / "report.md"
    js = report_dir / "report.json"
    atomic_write_text(md, markdown_table(results, mean, unavailable, protocol))
    payload = {"version": __version__, "engine": engine, "protocol": protocol, "mean": mean,
               "unavailable": unavailable,
               "videos": [{k: v for k, v in asdict(r).items() if k != "series"} for r in results]}
    atomic_write_text(js, json.dumps(_json_safe(payload), indent=2, allow_nan=False))
    return EvalReport(results=results, mean=mean, unavailable=unavailable, markdown=md, json=js)
