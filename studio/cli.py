"""``talkstudio``: the command line front end of the studio's engine.

Errors a user can act on print one line on stderr (``error: what happened — what to do``) and exit with
status 2 (130 when cancelled); nothing is left behind at the output path.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from studio import __version__
from studio.core.errors import Cancelled, StudioError
from studio.core.termination import Terminated, termination_raises


def _number(kind: type, what: str, example: str):
    """An argparse type converting to ``kind`` with a clear message."""
    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: give a number such as {example}") from None
    convert.__name__ = what
    return convert


def _positive_seconds(text: str) -> float:
    """A finite duration > 0 in seconds, for argparse."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"invalid seconds {text!r}: give a duration above 0 such as 20")
    return value


def _emotion(text: str) -> tuple[str, float | None]:
    from studio.core.errors import ConfigError
    from studio.engine.sources.settings import parse_emotion

    try:
        return parse_emotion(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{exc.message}: {exc.hint}") from None


class _Parser(argparse.ArgumentParser):
    """argparse with the studio's one-line error format (usage stays available through --help)."""

    def error(self, message: str):  # type: ignore[override]
        print(f"error: {message} — see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(2)


def _add_render_settings(p: argparse.ArgumentParser, *, photos_only: str = "") -> None:
    """The options of :class:`~studio.engine.settings.RenderSettings` (render and batch): one declaration,
    with the choices and defaults of the settings themselves. ``photos_only``: a note for batch help."""
    from studio.engine.settings import ENCODER_CHOICES, ENGINE_NAMES, MOUTH_MODES, X264_PRESETS, RenderSettings
    from studio.engine.sources.settings import BLINK_MODES, EMOTIONS, POSE_PRESETS

    d = RenderSettings()
    p.add_argument("--engine", default=d.engine.name, choices=ENGINE_NAMES,
                   help="rendering engine: lite (embedded, CPU) or neural (needs the model store; default: lite)")
    p.add_argument("--fps", type=_number(float, "fps", "25 or 29.97"), default=d.fps,
                   help=f"frame rate, 1-120 (default: {d.fps:g}){photos_only}")
    p.add_argument("--seed", type=_number(int, "seed", "0"), default=d.sources.seed,
                   help="seed of blinks and idle head motion (default: 0)")
    p.add_argument("--face-index", type=_number(int, "face index", "0"), default=d.face_index,
                   help="which face to animate when there are several, 0 = largest (default: 0)")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--transcript", metavar="TEXT", help="what is said (English); aligns visemes exactly")
    t.add_argument("--transcript-file", type=Path, metavar="FILE", help="read the transcript from a text file")
    p.add_argument("--pose-source", "--pose", dest="pose_source", default=d.sources.pose,
                   metavar="VIDEO|" + "|".join(POSE_PRESETS),
                   help=f"head motion: copied from a video, or a preset (default: {d.sources.pose}){photos_only}")
    p.add_argument("--pose-intensity", type=_number(float, "pose intensity", "1"), default=d.sources.pose_intensity,
                   metavar="X", help="scale of the head motion, 0 = still, up to 3 (default: 1)")
    p.add_argument("--emotion", default=(d.sources.emotion, None), type=_emotion, metavar="NAME[:INTENSITY]",
                   help=f"expression preset: {', '.join(EMOTIONS)}, with an optional intensity 0-1 (default: "
                        f"neutral at {d.sources.emotion_intensity:g}; e.g. happy:0.7){photos_only}")
    p.add_argument("--emotion-source", type=Path, metavar="FILE",
                   help="copy the expression of a photo or video instead of a preset")
    p.add_argument("--blink", default=d.sources.blink, choices=BLINK_MODES,
                   help="automatic blinks, none, or those of the pose/emotion source video (default: auto)")
    n = p.add_argument_group("neural engine")
    n.add_argument("--person", type=Path, metavar="PERSON.safetensors",
                   help="a PTI person file from `talkstudio tune`: its tuned generator and pivot are used")
    n.add_argument("--encoder", default=d.engine.encoder, choices=ENCODER_CHOICES,
                   help="image encoder E_I: auto = e4e if installed, else pSp, else optimisation-based projection "
                        "(slower; needs the LPIPS backbone); none = projection alone (default: auto)")
    n.add_argument("--projection-steps", type=_number(int, "projection steps", "100"),
                   default=d.engine.projection_steps, metavar="N",
                   help="optimisation steps refining the encoder's code (needs the LPIPS backbone; default: 0); "
                        "without an encoder, the projection's steps (0 = 450)")
    n.add_argument("--mouth", default=d.engine.mouth, choices=MOUTH_MODES,
                   help="what drives the mouth: the trained speech-to-latent model when installed (auto), "
                        "only that model, or mouth directions discovered in the generator (default: auto)")
    p.add_argument("--mouth-offset-ms", type=_number(float, "mouth offset", "40"), default=d.mouth_offset_ms,
                   metavar="MS", help="shift the mouth against the sound, -500..500 ms; positive = later (default: 0)")
    p.add_argument("--mouth-intensity", type=_number(float, "mouth intensity", "1.2"), default=d.mouth_intensity,
                   metavar="X", help="how far the mouth opens, spreads and rounds, 0..2 (default: 1)")
    p.add_argument("--crf", type=_number(int, "crf", "18"), default=d.encode.crf,
                   help="x264 quality 0-51, lower is better (default: 18)")
    p.add_argument("--preset", default=d.encode.preset, choices=X264_PRESETS,
                   help=f"x264 speed preset (default: {d.encode.preset})")
    p.add_argument("--content-credentials", choices=["on", "off"], default="on",
                   help="sign a C2PA manifest (Content Credentials) into the video (default: on; the invisible "
                        "watermark is always embedded)")


MAX_TRANSCRIPT_BYTES = 1 << 20  # 1 MiB of text is hours of speech


def _settings_from_args(args: argparse.Namespace):
    """The :class:`~studio.engine.settings.RenderSettings` of parsed :func:`_add_render_settings` options
    (file paths made absolute against the working folder).

    Raises:
        InputError: the transcript file cannot be read, is not a regular file or is larger than 1 MiB.
        ConfigError: a value that :meth:`RenderSettings.check_values` rejects.
    """
    from studio.engine.settings import RenderSettings

    transcript = args.transcript
    if args.transcript_file is not None:
        from studio.core.fileio import read_text_bounded

        transcript = read_text_bounded(args.transcript_file, what="transcript file", max_bytes=MAX_TRANSCRIPT_BYTES,
                                       hint="give a UTF-8 text file (at most 1 MiB) with what is said")
    from studio.engine.sources.settings import is_pose_preset

    def absolute(path: Path | None) -> Path | None:  # a batch queue outlives the working folder
        return None if path is None else Path(path).expanduser().absolute()

    emotion, level = args.emotion
    pose = args.pose_source if is_pose_preset(args.pose_source) else str(absolute(Path(args.pose_source)))
    values = dict(engine=args.engine, fps=args.fps, seed=args.seed, face_index=args.face_index,
                  transcript=transcript or None, pose=pose, pose_intensity=args.pose_intensity,
                  emotion=emotion, emotion_source=absolute(args.emotion_source), blink=args.blink, crf=args.crf,
                  preset=args.preset, person=absolute(args.person), encoder=args.encoder,
                  projection_steps=args.projection_steps, mouth=args.mouth, mouth_offset_ms=args.mouth_offset_ms,
                  mouth_intensity=args.mouth_intensity, content_credentials=args.content_credentials == "on")
    if level is not None:
        values["emotion_intensity"] = level
    settings = RenderSettings().with_values(**values)
    settings.check_values()
    return settings


def _add_neural_options(p: argparse.ArgumentParser) -> None:
    """Options shared by the commands that invert a face with the neural models (invert, tune)."""
    from studio.engine.settings import ENCODER_CHOICES

    p.add_argument("--encoder", default="auto", choices=ENCODER_CHOICES,
                   help="image encoder: auto = e4e if installed, else pSp, else projection alone (slower); "
                        "none = projection alone (default: auto)")
    p.add_argument("--face-index", type=int, default=0, help="which face when there are several, 0 = largest")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from studio.engine.settings import ENGINE_NAMES

    parser = _Parser(
        prog="talkstudio",
        description="Talking Head Studio: lip-synced talking-head videos from one photo and a speech recording.",
    )
    parser.add_argument("--version", action="version", version=f"talkstudio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    r = sub.add_parser("render", help="render a photo + speech into a lip-synced MP4",
                       description="Animate the face in PHOTO to speak SPEECH and write an H.264/AAC MP4.")
    r.add_argument("--image", required=True, type=Path, metavar="PHOTO",
                   help="identity photo (JPEG, PNG, WebP, BMP, TIFF)")
    r.add_argument("--audio", required=True, type=Path, metavar="SPEECH",
                   help="speech (WAV, FLAC, OGG, MP3, M4A/AAC, or a video file's audio track)")
    r.add_argument("--output", required=True, type=Path, metavar="OUT.mp4", help="video to write")
    r.add_argument("--overwrite", action="store_true", help="replace OUT.mp4 if it exists (default: refuse)")
    _add_render_settings(r)
    r.add_argument("--quiet", action="store_true", help="no progress bar")

    g = sub.add_parser("gui", help="open the studio (desktop editor)",
                       description="Open Talking Head Studio's desktop editor, optionally with a project.")
    g.add_argument("project", nargs="?", type=Path, metavar="PROJECT.talkproj", help="project to open")

    v = sub.add_parser("verify", help="check videos for the studio's provenance marks (C2PA + watermark)",
                       description="Per file: whether Content Credentials are present and valid (and who signed "
                                   "them), and whether the invisible watermark is in the frames (it survives "
                                   "re-encoding, scaling, cropping and excerpts). Exit status: 0 every file is "
                                   "marked as synthetic, 1 a file carries no mark, 2 a file could not be examined.")
    v.add_argument("files", nargs="+", type=Path, metavar="FILE")
    v.add_argument("--seconds", type=_positive_seconds, default=20.0,
                   help="how much of each video to search for the watermark (default: 20 s)")
    v.add_argument("--json", action="store_true", help="print one JSON object per file instead of text")

    k = sub.add_parser("keys", help="the key that signs Content Credentials (C2PA) into every export",
                       description="Every export is signed with a C2PA manifest. Without a key of your own, the "
                                   "studio makes a local self-signed one on first use. A self-signed key proves "
                                   "that a file is unchanged since it was signed, not who made it; to sign as "
                                   "your organisation, set TALKSTUDIO_SIGNING_KEY and TALKSTUDIO_SIGNING_CHAIN "
                                   "to a key and certificate chain from a CA on the C2PA trust list.")
    ksub = k.add_subparsers(dest="keys_command", metavar="ACTION", parser_class=_Parser)
    ksub.required = True
    kc = ksub.add_parser("create", help="make a local self-signed ES256 signing key (mode 0600)")
    kc.add_argument("--overwrite", action="store_true", help="replace the existing key")
    ksub.add_parser("show", help="where the signing key is and what its certificate says")

    m = sub.add_parser("models", help="list, import and verify the neural models in the model store",
                       description="The model store holds the checkpoints the neural engine can use "
                                   "(model_store/manifest.toml); weights live in the user data dir.")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION", parser_class=_Parser)
    msub.required = True
    msub.add_parser("list", help="every model: installed or missing, size, license, what needs it")
    mi = msub.add_parser("import", help="verify a downloaded checkpoint and store it (as safetensors)")
    mi.add_argument("file", type=Path, metavar="FILE", help="the checkpoint you downloaded")
    mi.add_argument("--name", help="manifest name, when the file cannot be identified by itself")
    mi.add_argument("--verbose", action="store_true",
                    help="when the keys or shapes do not match, list every missing key, unexpected key and wrong "
                         "shape (the error names the first few)")
    msub.add_parser("verify", help="re-hash every stored model against the store's index")
    mp = msub.add_parser("path", help="where a model's weights live (or the store folder)")
    mp.add_argument("name", nargs="?", help="manifest name (default: print the store folder)")

    inv = sub.add_parser("invert", help="invert a photo into StyleGAN2's W+ and reconstruct it (neural models)",
                         description="Align the face, encode it (e4e/pSp) and/or project it into W+, render it "
                                     "with the generator and paste it back; prints LPIPS/PSNR.")
    inv.add_argument("--image", required=True, type=Path, metavar="PHOTO")
    inv.add_argument("--output", required=True, type=Path, metavar="RECON.png", help="photo with the generated face")
    inv.add_argument("--latent", type=Path, metavar="OUT.safetensors",
                     help="also save the W+ code (w_plus, 1 x n_latent x 512) and, when projection ran, its "
                          "optimised noise maps (noise.0 .. noise.N-1), so the reconstruction can be rendered "
                          "again exactly (studio.engine.neural.invert.load_latent / render_latent)")
    inv.add_argument("--steps", type=int, default=100,
                     help="projection steps after the encoder, or of the projection alone without one (default 100)")
    _add_neural_options(inv)

    tn = sub.add_parser("tune", help="tune the generator on a person (Pivotal Tuning Inversion; neural models)",
                        description="Invert a photo, or frames of a video, into W+ pivots and fine-tune StyleGAN2 on "
                                    "them (PTI). Writes PERSON.safetensors (changed weights + pivots, tied to the "
                                    "installed generator) and PERSON.preview.png beside it.")
    src = tn.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", type=Path, metavar="PHOTO")
    src.add_argument("--video", type=Path, metavar="VIDEO")
    tn.add_argument("--output", required=True, type=Path, metavar="PERSON.safetensors")
    tn.add_argument("--steps", type=int, default=350, help="max tuning steps (default 350; stops at LPIPS 0.06)")
    tn.add_argument("--frames", type=int, default=16, help="video frames to invert (default 16)")
    tn.add_argument("--projection-steps", type=int, default=450, help="projection steps per pivot (default 450)")
    tn.add_argument("--locality", type=float, default=0.0, help="PTI locality regularisation weight (default 0: off)")
    _add_neural_options(tn)

    tr = sub.add_parser("train", help="train the paper's speech-to-latent model (E_A + D) on your talking videos",
                        description="Stage one of the seed paper: `prepare` inverts every frame of a folder of "
                                    "talking videos into W+ and computes MFCC windows (resumable); `audio` trains the "
                                    "audio encoder and latent decoder (resumable) and writes a model file to import "
                                    "with `talkstudio models import`.")
    trs = tr.add_subparsers(dest="train_command", metavar="STAGE", parser_class=_Parser)
    trs.required = True
    tp = trs.add_parser("prepare", help="align, invert (E_I) and featurise a folder of talking videos")
    tp.add_argument("videos", type=Path, metavar="VIDEOS_DIR", help="folder of talking-head videos (searched recursively; "
                    "a sub-folder per speaker, or SPEAKER_*.mp4 names)")
    tp.add_argument("--output", required=True, type=Path, metavar="DATASET", help="dataset folder (resumes if present)")
    tp.add_argument("--encoder", default="e4e", choices=["e4e", "psp"], help="image encoder E_I (default: e4e)")
    tp.add_argument("--held-out", type=float, default=0.2, metavar="FRACTION",
                    help="share of speakers held out for validation (default: 0.2)")
    tp.add_argument("--quiet", action="store_true", help="no progress bar")
    ta = trs.add_parser("audio", help="train E_A + D (stage one) on a prepared dataset")
    ta.add_argument("dataset", type=Path, metavar="DATASET")
    ta.add_argument("--output", required=True, type=Path, metavar="MODEL.safetensors")
    ta.add_argument("--steps", type=int, default=20000, help="optimisation steps (default: 20000)")
    ta.add_argument("--batch", type=int, default=8, help="sequences per step (default: 8)")
    ta.add_argument("--seq-len", type=int, default=25, help="frames per sequence (default: 25 = 1 s)")
    ta.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default: 2e-4, the paper's)")
    ta.add_argument("--lpips-weight", type=float, default=1.0,
                    help="weight of the LPIPS term (paper: 1; 0 trains on the latent loss alone, much faster on a CPU)")
    ta.add_argument("--lpips-net", default="vgg", choices=["vgg", "alex"], help="LPIPS backbone (paper: vgg)")
    ta.add_argument("--preset", default="paper", choices=["paper", "small"],
                    help="model size: paper (~31 M parameters) or small (for CPU training; default: paper)")
    ta.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default: 500)")
    ta.add_argument("--val-every", type=int, default=500, help="steps between validations (default: 500)")
    ta.add_argument("--seed", type=int, default=0)
    ta.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start over")
    ta.add_argument("--quiet", action="store_true", help="no progress bar")

    b = sub.add_parser("batch", help="dub many identities x speech tracks into videos (resumable queue)",
                       description="Render every job of a CSV (columns identity,audio,output,video_fit and any render "
                                   "setting by name: engine,fps,pose,emotion,seed,blink,transcript,emotion_source,"
                                   "pose_intensity,...; blank = the options' value), or every identity x speech pair "
                                   "of two folders, into "
                                   "DIR/IDENTITY__SPEECH.mp4. A video identity is re-voiced: its frames are kept and "
                                   "only the mouth follows the new speech. The queue is kept in "
                                   "DIR/.talkstudio-batch.sqlite: --resume continues a killed or paused batch.")
    b.add_argument("jobs", nargs="?", type=Path, metavar="JOBS.csv", help="jobs file (CSV with a header row)")
    b.add_argument("--output-dir", required=True, type=Path, metavar="DIR", help="folder of the videos and the queue")
    b.add_argument("--identities", type=Path, metavar="DIR", help="folder of photos and videos (with --audio)")
    b.add_argument("--audio", type=Path, metavar="DIR", help="folder of speech files (with --identities)")
    b.add_argument("--resume", action="store_true", help="continue the batch queued in --output-dir")
    b.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: never)")
    b.add_argument("--retry-failed", action="store_true", help="also re-run jobs that failed before")
    _add_render_settings(b, photos_only=" (photos; a video identity keeps its own)")
    b.add_argument("--video-fit", default="loop", choices=["loop", "trim"],
                   help="video identities shorter than the speech: loop with a crossfade, or trim the speech "
                        "(a longer video is always cut at the speech's end; default: loop)")
    b.add_argument("--skip-invalid", action="store_true",
                   help="run the valid rows of JOBS.csv and list the others (default: list them all and run none)")
    b.add_argument("--report", type=Path, metavar="REPORT.json", help="JSON report (default: DIR/batch-report.json)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.add_argument("--cluster", default="local", metavar="local|auto|ray://HOST:PORT",
                   help="where the jobs run: this process (local, the default); a Ray cluster: `auto` joins the one "
                        "RAY_ADDRESS names or starts a local one with --workers processes, `ray://HOST:PORT` "
                        "connects to a running cluster (needs `pip install 'talking-head-studio[cluster]'`; inputs "
                        "and outputs on a file system every node sees)")
    b.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes of the local Ray instance that --cluster auto starts (default: all cores)")

    e = sub.add_parser("eval", help="measure lip sync and image quality on real talking videos",
                       description="Render each real video from one of its frames and its own soundtrack, then "
                                   "compare with the real frames (PSNR, SSIM, LMD, lip-gap correlation; LSE-C/LSE-D "
                                   "with syncnet_v2.model and FID with pt_inception-2015-12-05-6726825d.pth "
                                   "imported by `talkstudio models import`), beside a static baseline. Writes "
                                   "report.md, report.json and plots to DIR.")
    e.add_argument("videos", nargs="+", type=Path, metavar="VIDEO", help="talking-head videos with sound")
    e.add_argument("--report", required=True, type=Path, metavar="DIR", help="report folder (created)")
    e.add_argument("--engine", default="lite", choices=ENGINE_NAMES,
                   help="engine to evaluate: lite, or neural (needs its models in the model store; default: lite)")
    e.add_argument("--identity-frame", type=int, default=0, help="frame used as the identity photo (default: 0)")
    e.add_argument("--pose-source", default="still", help="head motion while rendering (default: still)")
    e.add_argument("--max-seconds", type=float, default=60.0, help="evaluate at most this much of each video")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _fail(exc: StudioError) -> int:
    msg = f"error: {exc.message}"
    if exc.hint:
        msg += f" — {exc.hint}"
    print(msg, file=sys.stderr)
    return exc.exit_code


def _cmd_render(args: argparse.Namespace) -> int:
    from studio.engine.pipeline import RenderRequest, render
    from studio.media.kinds import check_output_path

    check_output_path(args.output, overwrite=args.overwrite)
    request = RenderRequest(image=args.image, audio=args.audio, output=args.output,
                            settings=_settings_from_args(args))
    done = _consume(render(request), quiet=args.quiet)
    fps_render = done.n_frames / max(done.timings["render"], 1e-9)
    print(f"wrote {done.output} ({done.size[0]}x{done.size[1]}, {done.n_frames} frames at {done.fps:g} fps, "
          f"{done.duration_s:.2f} s; rendered at {fps_render:.0f} fps, total {done.timings['total']:.1f} s)")
    signed = f"Content Credentials signed by {done.signed_by}" if done.signed_by else "no Content Credentials"
    print(f"  marked as synthetic: watermark id {done.mark_id:08x}; {signed} (check with `talkstudio verify`)")
    return 0


def _consume(job, *, quiet: bool):
    """Drive a long job (:func:`studio.core.events.drive`): a progress bar with ETA on a terminal, notices on
    stderr; return the job's result."""
    from studio.core.events import drive

    if not quiet and sys.stderr.isatty():
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description:<10}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                   TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn())
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("start", total=1.0, detail="")
            return drive(job, on_progress=lambda ev: bar.update(task, completed=ev.fraction, description=ev.stage,
                                                                 detail=ev.message),
                         on_notice=lambda ev: bar.console.print(
                             f"[{'yellow' if ev.level == 'warning' else 'cyan'}]{ev.level}:[/] {ev.message}"))
    return drive(job, on_notice=lambda ev: print(f"{ev.level}: {ev.message}", file=sys.stderr))


def _cmd_batch(args: argparse.Namespace) -> int:
    from studio.cli_batch import run_batch_command

    return run_batch_command(args, _settings_from_args(args))


def _cmd_eval(args: argparse.Namespace) -> int:
    from studio.engine.eval.harness import run_eval

    report = _consume(run_eval(args.videos, args.report, engine=args.engine, identity_frame=args.identity_frame,
                               pose=args.pose_source, max_seconds=args.max_seconds), quiet=args.quiet)
    print(report.markdown.read_text(encoding="utf-8"))
    print(f"report: {report.markdown} and {report.json}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    import json

    from studio.app.provenance import verify

    worst = 0
    for i, path in enumerate(args.files):
        result = verify(path, max_seconds=args.seconds)
        worst = max(worst, result.status)
        if args.json:
            c, w = result.credentials, result.watermark
            print(json.dumps({
                "file": str(path), "status": result.status, "marked": result.marked, "error": result.error,
                "content_credentials": None if c is None else {
                    "state": c.state, "signer": c.signer, "issuer": c.issuer, "failures": list(c.failures),
                    "generator": c.generator, "digital_source_type": c.source_type, "engine": c.engine,
                    "mark_id": None if c.mark_id is None else f"{c.mark_id:08x}",
                    "ingredients": [{"title": t, "role": r, "sha256": h} for t, r, h in c.ingredients]},
                "watermark": None if w is None else {
                    "found": w.found, "mark_id": w.mark_hex, "confidence": w.confidence, "frames": w.frames}}))
            continue
        if i:
            print()
        print(path)
        for line in result.lines():
            print(f"  {line}")
    return worst


def _cmd_keys(args: argparse.Namespace) -> int:
    from studio.media.credentials import create_local_key, key_dir, signing_key

    if args.keys_command == "create":
        key = create_local_key(overwrite=args.overwrite)
        info = key.describe()
        print(f"created a local signing key: {key.key_path} (mode 0600) and its certificate chain {key.chain_path}")
        print(f"  subject: {info['subject']}\n  valid until: {info['not_after']}")
        print("  it is SELF-SIGNED: it proves that a file is unchanged since it was signed, not who made it; others "
              "see the signer as not trusted")
        return 0
    key = signing_key()
    if key is None:
        print(f"no signing key yet (it would live in {key_dir()}); one is created on the first export, or run "
              "`talkstudio keys create`")
        return 1
    info = key.describe()
    print(f"key: {info['key']}\nchain: {info['chain']}\nsubject: {info['subject']}\nissuer: {info['issuer']}\n"
          f"valid until: {info['not_after']}\n" + ("self-signed local key" if info["local"] else "issued by a CA"))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from studio.core.paths import model_dir
    from studio.models import store

    if args.models_command == "path":
        print(store.model_path(args.name) if args.name else model_dir())
        return 0
    if args.models_command == "import":
        from studio.models.registry import StateMismatchError

        try:
            status = store.import_model(args.file, name=args.name)
        except StateMismatchError as exc:
            if args.verbose:
                print(exc.details(), file=sys.stderr)
            elif exc.truncated:
                n = len(exc.missing) + len(exc.unexpected) + len(exc.wrong_shape)
                exc.hint = f"{exc.hint}; add --verbose to list all {n} mismatches"
            raise
        print(f"imported {args.file} as {status.name}: {status.path} ({status.detail})")
        return 0
    statuses = store.verify() if args.models_command == "verify" else store.list_models()
    print(f"model store: {model_dir()}")
    for st in statuses:
        size = f"{st.size / 1e6:.1f} MB" if st.size else "-"
        print(f"\n{st.name:<26} {st.state:<9} {size:>9}  {st.file}")
        print(f"    needed for: {', '.join(st.needed_for) or '-'}")
        print(f"    license: {st.license}")
        if st.state != "installed":
            if st.pending:
                print(f"    found {st.pending}: run `talkstudio models import {st.pending}`")
            elif st.detail:
                print(f"    {st.detail}")
            if st.urls:
                print(f"    download: {st.urls[0]}")
    return 1 if any(st.state == "corrupt" for st in statuses) else 0


def _cmd_invert(args: argparse.Namespace) -> int:
    import cv2

    from studio.core.errors import OutputError
    from studio.core.fileio import atomic_write_bytes
    from studio.engine.neural.invert import invert_photo, save_latent
    from studio.media.kinds import check_output_path

    check_output_path(args.output, (".png",), what="reconstruction")
    if args.latent is not None:
        check_output_path(args.latent, (".safetensors",), what="latent file")
    result = _consume(invert_photo(args.image, encoder=args.encoder, steps=args.steps, face_index=args.face_index),
                      quiet=args.quiet)
    ok, png = cv2.imencode(".png", result.composite[:, :, ::-1])
    if not ok:  # never write an empty or truncated PNG
        raise OutputError(f"cannot encode the reconstruction {args.output.name} as PNG "
                          f"({result.composite.shape[1]}x{result.composite.shape[0]} image)",
                          "check that OpenCV was installed with PNG support, then try again")
    atomic_write_bytes(args.output, png.tobytes())
    if args.latent is not None:
        save_latent(args.latent, result)
    print(f"wrote {args.output} ({result.method}): LPIPS {result.lpips:.3f}, PSNR {result.psnr:.2f} dB "
          f"on the aligned {result.crop.shape[0]}px crop")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from studio.engine.neural.pti import TuneConfig, tune_person

    result = _consume(tune_person(image=args.image, video=args.video, output=args.output,
                                  encoder=args.encoder, steps=args.steps,
                                  frames=args.frames, projection_steps=args.projection_steps,
                                  config=TuneConfig(locality_weight=args.locality), face_index=args.face_index),
                      quiet=args.quiet)
    print(f"wrote {result.path} ({result.pivots} pivot(s), {result.steps} steps): LPIPS "
          f"{result.initial_lpips:.3f} -> {result.final_lpips:.3f}, L2 {result.initial_l2:.4f} -> "
          f"{result.final_l2:.4f}; preview {result.preview}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from studio.engine.neural.train import TrainConfig, prepare_dataset, train_audio

    if args.train_command == "prepare":
        ds = _consume(prepare_dataset(args.videos, args.output, encoder=args.encoder, held_out_fraction=args.held_out),
                      quiet=args.quiet)
        print(f"dataset {ds.path}: {ds.frames} frames from {ds.videos + ds.skipped} videos ({ds.skipped} prepared "
              f"before, {len(ds.failed)} failed); train speakers: {', '.join(ds.train_speakers) or '-'}; held out: "
              f"{', '.join(ds.held_out_speakers) or '-'}")
        return 1 if ds.failed and not ds.videos and not ds.skipped else 0
    cfg = TrainConfig(steps=args.steps, batch=args.batch, seq_len=args.seq_len, lr=args.lr,
                      lambda_lpips=args.lpips_weight, lpips_net=args.lpips_net, preset=args.preset,
                      checkpoint_every=args.checkpoint_every, val_every=args.val_every, seed=args.seed)
    res = _consume(train_audio(args.dataset, args.output, config=cfg, resume=not args.restart), quiet=args.quiet)
    print(f"wrote {res.path} after {res.steps} steps: loss {res.first_loss:.4g} -> {res.final_loss:.4g}, validation "
          f"latent MSE {res.val_latent:.4g}, LMD {res.val_lmd:.2f} px; logs in {res.checkpoint.parent}; install it "
          f"with `talkstudio models import {res.path}`")
    return 0


def _cmd_gui(args: argparse.Namespace) -> int:
    try:
        from studio.gui.app import run  # PySide6 loads only for this command
    except ImportError as exc:  # PySide6 missing or its system libraries absent
        print(f"error: cannot start the studio's window: {exc} — install the GUI dependencies "
              "(PySide6, pyqtgraph) or use `talkstudio render`", file=sys.stderr)
        return 2
    return run(args.project)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``talkstudio`` console script; returns the process exit status."""
    args = build_parser().parse_args(argv)
    # imageio-ffmpeg logs the life of the ffmpeg children we start and stop ourselves ("We had to kill
    # ffmpeg to stop it." when a video is closed early on a busy machine): not the user's business. Its
    # errors still reach us as exceptions, which become the one-line messages below.
    logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)
    if args.command == "gui":  # Qt runs its own event loop; a termination signal ends it as before
        return _cmd_gui(args)
    try:
        with termination_raises():
            return _dispatch(args)
    except Cancelled as exc:
        return _fail(exc)
    except Terminated as exc:
        print(f"error: stopped by {exc.signal_name} — the unfinished output and its temporary files were removed",
              file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: cancelled — no output was written", file=sys.stderr)
        return Cancelled.exit_code
    except StudioError as exc:
        return _fail(exc)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the parsed command (any but ``gui``); returns its exit status."""
    commands = {"render": _cmd_render, "eval": _cmd_eval, "batch": _cmd_batch, "models": _cmd_models,
                "invert": _cmd_invert, "tune": _cmd_tune, "train": _cmd_train, "verify": _cmd_verify,
                "keys": _cmd_keys}
    command = commands.get(args.command)
    return 2 if command is None else command(args)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
