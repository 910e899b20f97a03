"""The neural engine: align -> E_I -> w_I -> (E_A -> D | W+ directions) -> w_t -> G -> paste-back.

Seed paper, section 3 and Figure 2. Per frame t the W+ code is

    w_t = w_I + d_t^speech + sum_c control_c(t) * direction_c

* w_I: the identity photo inverted by E_I (e4e or pSp, optionally refined by projection; with encoder
  "auto" and neither installed, by optimisation-based projection alone), or the pivot of a PTI person file
  (then G is the tuned generator, paper section 3.2.2).
* d_t^speech: with a trained speech-to-latent model installed (``talkstudio train audio``), E_A + D on the
  MFCC windows of the speech (paper eq. 1: d_t = h_t V), at 25 fps and resampled to the output rate;
  otherwise the viseme track of the lite engine (jaw/open/spread) drives the mouth directions discovered
  from G (:mod:`studio.engine.neural.directions`).
* the control track's head pose (yaw, pitch), blinks and expression (smile, brows, eyes) drive their
  directions on the layers that carry them (pose on the coarse layers).

G renders the aligned 1024² face (batched; fp16 on CUDA) and it is pasted back into the photo with a
feathered face mask, so everything outside the face stays the photo's own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from studio.core.errors import ConfigError, ModelError
from studio.core.events import CancelToken, Job, Notice, ProgressMonitor
from studio.core.tracks import ControlTrack
from studio.engine.base import frame_buffer
from studio.engine.settings import MOUTH_MODES, EngineSettings

AUDIO_MODEL = "speech-to-latent"


@dataclass(frozen=True)
class NeuralOptions:
    """Options of the neural engine.

    Attributes:
        encoder: E_I: "auto" (e4e if installed, else pSp, else optimisation-based projection alone, in W
            from the mean latent; a note says which), "e4e", "psp" or "none" (projection alone).
            projection_steps: optimisation steps refining E_I's code (0 = none), or the projection's steps
            without an encoder (0 = 450, PTI's); projection needs the LPIPS backbone. person: a PTI person
            file (``talkstudio tune``): its tuned generator and pivot are used (no encoder is needed).
            mouth: "auto" (the trained speech-to-latent model when installed, else the discovered
            directions), "audio-model" or "directions". batch: frames per generator pass (0 = 8 on CUDA,
            1 on CPU). device: "cuda"/"cpu" (default: CUDA when present).
        discover_samples: faces rendered to discover the directions the first time (per generator).
    """

    encoder: str = "auto"
    projection_steps: int = 0
    person: Path | None = None
    mouth: str = "auto"
    batch: int = 0
    device: str | None = None
    discover_samples: int = 96

    @classmethod
    def from_settings(cls, settings: EngineSettings) -> "NeuralOptions":
        """The options of a render's :class:`~studio.engine.settings.EngineSettings`."""
        return cls(encoder=settings.encoder, projection_steps=settings.projection_steps,
                   person=None if settings.person is None else Path(settings.person), mouth=settings.mouth)

    def encoder_choice(self, installed=None):
        """What ``encoder`` resolves to now (:func:`studio.engine.neural.invert.resolve_encoder`; "auto"
        reads the store). Raises ConfigError for an unknown encoder."""
        from studio.engine.neural.invert import resolve_encoder

        return resolve_encoder(self.encoder, installed=installed, projection_steps=self.projection_steps)

    def required_models(self, installed=None) -> list[str]:
        """Store names these options need: the generator; without a person file, the encoder "auto"
        resolves to, or the LPIPS backbone when projection alone inverts the face; the LPIPS backbone
        for projection steps; the speech-to-latent model for mouth="audio-model".

        Args:
            installed: installed store names (default: read from the store).
        """
        from studio.engine.neural.invert import ENCODERS, GENERATOR, LPIPS_BACKBONE

        names = [GENERATOR]
        if self.person is None:
            choice = self.encoder_choice(installed)
            if choice.encoder is not None:
                names.append(ENCODERS[choice.encoder])
            else:
                names.append(LPIPS_BACKBONE)
        if self.projection_steps > 0 and LPIPS_BACKBONE not in names:
            names.append(LPIPS_BACKBONE)
        if self.mouth == "audio-model":
            names.append(AUDIO_MODEL)
        return names

    def validate(self) -> None:
        """Raise :class:`ConfigError` / :class:`InputError` for a bad option, ModelError for missing models
        (named; with encoder "auto" and no encoder installed, the hint adds that importing e4e replaces the
        projection)."""
        from studio.core.errors import InputError
        from studio.engine.neural.invert import LPIPS_BACKBONE
        from studio.models import store

        installed = set(store.installed_names())
        choice = self.encoder_choice(installed)
        if self.mouth not in MOUTH_MODES:
            raise ConfigError(f"unknown mouth mode {self.mouth!r}", f"use one of: {', '.join(MOUTH_MODES)}")
        if self.projection_steps < 0 or self.batch < 0:
            raise ConfigError("projection steps and batch size cannot be negative", "use 0 or more")
        if self.person is not None and not Path(self.person).is_file():
            raise InputError(f"person file not found: {self.person}",
                             "create one with `talkstudio tune --image PHOTO --output PERSON.safetensors`")
        names = self.required_models(installed)
        try:
            store.require(*names, feature="the neural engine")
        except ModelError as exc:
            if (self.person is None and choice.requested == "auto" and choice.encoder is None
                    and self.projection_steps == 0 and LPIPS_BACKBONE not in installed):
                raise ModelError(exc.message, f"{exc.hint}; no image encoder is installed either, so the face "
                                              "would be inverted by projection, which needs the LPIPS backbone: "
                                              "importing the e4e encoder (e4e_ffhq_encode.pt) instead is faster"
                                 ) from None
            raise


@dataclass(frozen=True)
class NeuralIdentity:
    """The prepared identity of one render.

    Attributes:
        image: (H, W, 3) uint8 photo. alignment: photo -> aligned crop. mask: (S, S) float32 paste mask.
        w_identity: (n_latent, style_dim) float32 w_I (on the engine's device).
        speech: (n_frames, k) float32 h_t of the speech-to-latent model (d_t = h_t V, V = ``basis``
            (k, n_latent*style_dim)), or None when the mouth is driven by directions.
        mouth_source: what drives the mouth (for messages).
    """

    image: np.ndarray
    alignment: object
    mask: np.ndarray
    w_identity: torch.Tensor
    speech: torch.Tensor | None
    mouth_source: str
    basis: torch.Tensor | None = None
    notes: tuple[str, ...] = ()


class NeuralEngine:
    """The prepared generator, its directions and (optionally) the speech-to-latent model
    (implements :class:`~studio.engine.base.Engine`).

    Build it with :meth:`load`; then :meth:`prepare` per identity and speech, :meth:`render` for frames.
    """

    name = "neural"

    def __init__(self, generator: torch.nn.Module, generator_sha256: str, directions, *, options: NeuralOptions,
                 audio_model: torch.nn.Module | None = None, audio_extras: dict | None = None,
                 person_pivot: torch.Tensor | None = None, device: torch.device | None = None) -> None:
        self.generator = generator
        self.generator_sha256 = generator_sha256
        self.directions = directions
        self.options = options
        self.audio_model = audio_model
        self.audio_extras = audio_extras or {}
        self.person_pivot = person_pivot
        self.device = device or next(generator.parameters()).device
        self.batch_size = options.batch or (8 if self.device.type == "cuda" else 1)

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def check(cls, settings: EngineSettings) -> None:
        """Raise ConfigError / InputError for bad options and ModelError naming every missing model file
        (before any work; see :meth:`NeuralOptions.validate`)."""
        NeuralOptions.from_settings(settings).validate()

    @classmethod
    def load(cls, options: NeuralOptions | EngineSettings, *, cancel: CancelToken | None = None,
             monitor: ProgressMonitor | None = None) -> Job["NeuralEngine"]:
        """Load G (and the person's PTI delta), the directions (discovering them the first time) and the
        speech-to-latent model when installed. ``options``: the engine's options, or a render's
        :class:`~studio.engine.settings.EngineSettings`.

        Yields Progress (stage "load") and Notices; returns the engine.

        Raises:
            ModelError: missing/corrupt models, a person file or audio model made for another generator
                (with mouth="audio-model"), or no directions could be found. ConfigError. Cancelled.
        """
        from studio.engine.neural.directions import discover_directions, load_directions, save_directions
        from studio.engine.neural.invert import GENERATOR
        from studio.models import store

        cancel = cancel or CancelToken()
        monitor = monitor or ProgressMonitor()
        if isinstance(options, EngineSettings):
            options = NeuralOptions.from_settings(options)
        options.validate()
        if options.person is None and (note := options.encoder_choice().notice()) is not None:
            yield note  # which encoder "auto" picked (before a long projection starts)
        dev = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        yield monitor.event("load", 0, 3, "loading the generator")
        loaded = store.load(GENERATOR, device=dev)
        g, sha = loaded.module, loaded.source_sha256
        pivot = None
        if options.person is not None:
            from studio.engine.neural.pti import load_person

            g, pivots, _meta = load_person(options.person, g, sha)
            pivot = pivots[0].reshape(g.n_latent, g.style_dim).float()
            g = g.to(dev).eval()
        audio_model, extras = None, {}
        installed = AUDIO_MODEL in store.installed_names()
        if options.mouth != "directions" and installed:
            yield monitor.event("load", 1, 3, "loading the speech-to-latent model")
            am = store.load(AUDIO_MODEL, device=dev)
            owner = str(am.extras.get("generator_sha256", ""))
            if owner != sha:
                msg = (f"the installed speech-to-latent model was trained for another generator "
                       f"({owner[:12] or 'unknown'}…, this one is {sha[:12]}…)")
                if options.mouth == "audio-model":
                    raise ModelError(msg, "train it again for this generator with `talkstudio train audio`")
                yield Notice(msg + "; the mouth follows the discovered directions instead")
            else:
                audio_model, extras = am.module.eval(), dict(am.extras)
        elif options.mouth == "auto" and not installed:
            yield Notice("no trained speech-to-latent model is installed: the mouth follows the viseme track through "
                         "mouth directions discovered in the generator (`talkstudio train audio` trains the paper's "
                         "model)", level="note")
        directions = load_directions(sha)
        if directions is None:
            yield Notice(f"discovering edit directions for this generator (one time, {options.discover_samples} "
                         "sample faces; stored in the model store)", level="note")
            base = store.load(GENERATOR, device=dev).module if options.person is not None else g
            directions = yield from discover_directions(
                base, generator_sha256=sha, samples=options.discover_samples, batch=8 if dev.type == "cuda" else 2,
                cancel=cancel, monitor=monitor.sub(0.4, 0.95))
            save_directions(directions)
        yield monitor.event("load", 3, 3, "neural engine ready")
        return cls(g, sha, directions, options=options, audio_model=audio_model, audio_extras=extras,
                  person_pivot=pivot, device=dev)

    # ------------------------------------------------------------------------------------------ identity
    def prepare(self, identity, clip, controls: ControlTrack, *, cancel: CancelToken | None = None,
                monitor: ProgressMonitor | None = None) -> Job[NeuralIdentity]:
        """Invert the identity photo to w_I and run the speech-to-latent model on the speech.

        Args:
            identity: :class:`studio.engine.face.identity.Identity`. clip: the speech (AudioClip).
            controls: the control track (its fps and n_frames time the speech coefficients).

        Yields Progress (stage "invert") and Notices (what inverted the face, what drives the mouth);
        returns the :class:`NeuralIdentity`.
        """
        from studio.engine.face.align import ffhq_alignment
        from studio.engine.face.paste import face_mask
        from studio.engine.neural.invert import NeuralModels, invert_aligned

        cancel = cancel or CancelToken()
        monitor = monitor or ProgressMonitor()
        fps, n_frames = controls.fps, controls.n_frames
        g = self.generator
        align = ffhq_alignment(identity.face.points, size=g.size)
        mask = face_mask(align, identity.face.points)
        notes: list[str] = []
        if self.person_pivot is not None:
            w_id = self.person_pivot.to(self.device)
            notes.append("identity code: the PTI person's pivot")
        else:
            choice = self.options.encoder_choice()  # "auto" was announced by load()
            models = NeuralModels.load(choice.encoder, device=self.device, generator=g,
                                       generator_sha256=self.generator_sha256)
            # as `invert`: an encoder's W+ is refined in W+; without one, PTI's W projection from w_avg
            inv = yield from invert_aligned(models, identity.image, align, steps=self.options.projection_steps,
                                            cancel=cancel, monitor=monitor.sub(0.0, 0.8))
            w = inv.w_plus
            w_id = w.detach().reshape(g.n_latent, g.style_dim).float()
        speech = basis = None
        source = "discovered mouth directions driven by the viseme track"
        if self.audio_model is not None:
            speech = self.speech_coefficients(w_id, clip, fps=fps, n_frames=n_frames)
            basis = self.audio_model.decoder.basis
            source = "the trained speech-to-latent model (E_A + D)"
        yield monitor.event("invert", 1, 1, "identity ready")
        for note in notes:
            yield Notice(f"neural engine: {note}", level="note")
        yield Notice(f"neural engine: the mouth follows {source}", level="note")
        return NeuralIdentity(image=identity.image, alignment=align, mask=mask, w_identity=w_id, speech=speech,
                              mouth_source=source, basis=basis, notes=tuple(notes))

    @torch.no_grad()
    def speech_coefficients(self, w_identity: torch.Tensor, clip, *, fps: float, n_frames: int) -> torch.Tensor:
        """h_t of paper eq. 1 for the whole speech (d_t = h_t V with V the model's PCA basis).

        Args:
            w_identity: (n_latent, style_dim) w_I. clip: AudioClip. fps / n_frames: the output timing.

        Returns:
            (n_frames, k) float32 coefficients on the engine's device (the 25 fps model output linearly
            resampled to ``fps``; d_t is linear in h_t, so this resamples the trajectory).
        """
        from studio.engine.audio.mfcc import MfccConfig, mfcc_windows, resample_trajectory

        cfg = MfccConfig.from_dict(self.audio_extras.get("mfcc") or {})  # the features it was trained on
        n25 = max(1, int(np.ceil(clip.duration * cfg.fps - 1e-6)))
        feats = torch.from_numpy(mfcc_windows(clip.samples, clip.sample_rate, n25, cfg)).to(self.device)
        e = self.audio_model.encoder(feats[None])
        _w_bar, h = self.audio_model.decoder(w_identity[None].to(self.device), e)  # h: (1, n25, k)
        h = h[0].float().cpu().numpy()
        return torch.from_numpy(resample_trajectory(h, cfg.fps, fps, n_frames)).to(self.device)

    # ------------------------------------------------------------------------------------------ frames
    def control_offsets(self, ident: NeuralIdentity, controls: ControlTrack, frames: np.ndarray) -> torch.Tensor:
        """(len(frames), n_latent, style_dim) W+ offsets of the control track at these frame indices."""
        def ch(name: str) -> np.ndarray:
            return controls.values[frames, controls.channels.index(name)] if name in controls.channels else \
                np.zeros(len(frames), np.float32)

        values: dict[str, np.ndarray] = {
            "yaw": ch("yaw"), "pitch": ch("pitch"),
            "smile": ch("smile"), "brow": ch("brow") + 0.5 * ch("brow_inner"),
            # a blink closes the eyes well past the narrowest eyes of the sampled faces
            "eyes": ch("eyes") - 2.0 * 0.5 * (ch("blink_l") + ch("blink_r")),
        }
        if ident.speech is None:
            values["open"] = np.clip(np.maximum(ch("jaw"), ch("open")), 0.0, 1.5)
            values["spread"] = np.maximum(ch("spread"), 0.0)
            values["round"] = np.maximum(-ch("spread"), 0.0)
        off = self.directions.offset(values) if self.directions is not None and self.directions.directions else None
        n = len(frames)
        shape = (n, self.generator.n_latent, self.generator.style_dim)
        if off is None:
            off = torch.zeros(shape)
        elif off.dim() == 2:
            off = off[None].expand(shape)
        return off.to(self.device)

    def latents(self, ident: NeuralIdentity, controls: ControlTrack, frames: np.ndarray) -> torch.Tensor:
        """(len(frames), n_latent, style_dim) float32 W+ codes w_t of these frames."""
        w = ident.w_identity[None] + self.control_offsets(ident, controls, frames)
        if ident.speech is not None:
            idx = torch.as_tensor(np.minimum(frames, ident.speech.shape[0] - 1), device=self.device)
            w = w + (ident.speech[idx] @ ident.basis).reshape(w.shape)
        return w

    @torch.no_grad()
    def trajectory_summary(self, ident: NeuralIdentity, controls: ControlTrack, *, n_coefficients: int = 3,
                           chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """What the studio's trajectory viewer plots for the neural engine.

        Returns:
            (h, norms): h (T, n) float32 leading coefficients of the W+ displacement w_t - w_I in the speech
            model's PCA basis V (or, without it, in the orthonormalised direction basis); norms (T, n_latent)
            float32 Euclidean norm of the displacement on each W+ layer.
        """
        if ident.basis is not None:
            basis = ident.basis[:n_coefficients].to(self.device)
        else:
            vecs = [d.vector.reshape(-1) for d in self.directions.directions.values()] if self.directions else []
            if vecs:
                q, _ = torch.linalg.qr(torch.stack(vecs).T.double())
                basis = q.T[:n_coefficients].float().to(self.device)
            else:
                basis = torch.zeros(0, self.generator.n_latent * self.generator.style_dim, device=self.device)
        hs, norms = [], []
        for start in range(0, controls.n_frames, chunk):
            frames = np.arange(start, min(controls.n_frames, start + chunk))
            d = self.latents(ident, controls, frames) - ident.w_identity[None]
            hs.append((d.reshape(len(frames), -1) @ basis.T).cpu().numpy())
            norms.append(d.norm(dim=-1).cpu().numpy())
        h = np.concatenate(hs).astype(np.float32) if hs else np.zeros((0, basis.shape[0]), np.float32)
        if h.shape[1] < n_coefficients:  # fewer directions than coefficients asked for
            h = np.pad(h, ((0, 0), (0, n_coefficients - h.shape[1])))
        return h, (np.concatenate(norms).astype(np.float32) if norms else np.zeros((0, self.generator.n_latent)))

    def latent_summary(self, prepared: NeuralIdentity, controls: ControlTrack) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`trajectory_summary` with its defaults (the Engine interface's name for it)."""
        return self.trajectory_summary(prepared, controls)

    @torch.no_grad()
    def render(self, prepared: NeuralIdentity, controls: ControlTrack, frames, *,
               out: np.ndarray | None = None) -> np.ndarray:
        """Frames ``frames`` (indices into ``controls``) as (N, H, W, 3) uint8 RGB photos with the generated
        face pasted back (into ``out`` when given); G runs on at most :attr:`batch_size` frames at a time."""
        from studio.engine.face.paste import paste_back

        frames = np.asarray(frames, dtype=np.int64)
        h, w_px = prepared.image.shape[:2]
        out = frame_buffer(out, len(frames), h, w_px)
        for a in range(0, len(frames), self.batch_size):
            chunk = frames[a:a + self.batch_size]
            w = self.latents(prepared, controls, chunk)
            imgs = self.generator(w, input_space="w+", noise_mode="const")
            crops = ((imgs.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            for i, crop in enumerate(crops):
                out[a + i] = paste_back(prepared.image, crop, prepared.alignment, prepared.mask)
        return out


__all__ = ["AUDIO_MODEL", "MOUTH_MODES", "NeuralEngine", "NeuralIdentity", "NeuralOptions"]
