"""D: the latent decoder with its PCA basis V, and the whole speech-to-latent model (E_A + D).

Seed paper, section 3.1.4 and eq. 1: the identity code w_I is projected onto a PCA basis V of W+, the
projection is concatenated with the speech code e_t, and D predicts h_t in the PCA subspace;
d_t = h_t V and w̄_t = w_I + d_t.

The paper's V comes from PCA of FFHQ mapped into W+. We cannot ship FFHQ, so :func:`pca_basis` computes
V from W+ codes sampled through the generator's own mapping network (optionally truncated), mixed with the
inverted frames of a prepared training set when there is one (those carry the per-layer variation of real
talking faces that mapped samples, being the same w on every layer, lack). V is stored inside the model
file, so a trained model always uses the basis it was trained with.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from studio.models.audio_encoder import AudioEncoder, count_parameters

PAPER_PARAMETERS = 29.68e6  # seed paper, Table 2


class LatentDecoder(nn.Module):
    """(PCA coordinates of w_I, e_t) -> h_t, plus the basis that maps h_t back to W+.

    Args:
        n_latent, style_dim: the W+ shape (18 x 512 for FFHQ 1024²).
        n_components: rows of V (the subspace dimension k).
        audio_dim: size of e_t. hidden: width of the two hidden layers (LeakyReLU 0.2).

    Buffers (stored with the weights): ``basis`` V (k, n_latent*style_dim), orthonormal rows;
    ``mean`` (n_latent*style_dim,) the PCA centre. The last layer starts at zero, so an untrained D
    predicts d_t = 0 (w̄_t = w_I).
    """

    def __init__(self, n_latent: int = 18, style_dim: int = 512, n_components: int = 512, audio_dim: int = 1024,
                 hidden: int = 1024) -> None:
        super().__init__()
        self.n_latent, self.style_dim, self.n_components = n_latent, style_dim, n_components
        dim = n_latent * style_dim
        if not 0 < n_components <= dim:
            raise ValueError(f"n_components must be in 1..{dim}, got {n_components}")
        self.register_buffer("basis", torch.eye(n_components, dim))
        self.register_buffer("mean", torch.zeros(dim))
        self.net = nn.Sequential(nn.Linear(n_components + audio_dim, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, n_components))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def set_basis(self, basis: torch.Tensor, mean: torch.Tensor) -> None:
        """Install V ((k, n_latent*style_dim), orthonormal rows) and the PCA centre.

        Raises:
            ValueError: wrong shapes.
        """
        if tuple(basis.shape) != tuple(self.basis.shape) or tuple(mean.shape) != tuple(self.mean.shape):
            raise ValueError(f"basis {tuple(basis.shape)} / mean {tuple(mean.shape)} do not match "
                             f"{tuple(self.basis.shape)} / {tuple(self.mean.shape)}")
        with torch.no_grad():
            self.basis.copy_(basis)
            self.mean.copy_(mean)

    def project(self, w: torch.Tensor) -> torch.Tensor:
        """(..., n_latent, style_dim) W+ codes -> (..., k) PCA coordinates (w - mean) V^T."""
        return (w.flatten(-2) - self.mean) @ self.basis.T

    def forward(self, w_identity: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Paper eq. 1.

        Args:
            w_identity: (B, n_latent, style_dim) one identity per sequence, or (B, T, n_latent, style_dim)
                one per frame (training: a random frame of each 5-frame window).
            e: (B, T, audio_dim) speech codes from :class:`AudioEncoder`.

        Returns:
            (w̄, h): w̄ (B, T, n_latent, style_dim) = w_I + h V; h (B, T, k).
        """
        if w_identity.dim() == 3:
            w_identity = w_identity[:, None].expand(-1, e.shape[1], -1, -1)
        p = self.project(w_identity)
        h = self.net(torch.cat([p, e], dim=-1))
        d = (h @ self.basis).reshape(*h.shape[:-1], self.n_latent, self.style_dim)
        return w_identity + d, h


class SpeechToLatent(nn.Module):
    """The paper's stage-one model: MFCC windows + identity code -> W+ trajectory.

    Args: see :class:`AudioEncoder` and :class:`LatentDecoder`.
    """

    def __init__(self, n_latent: int = 18, style_dim: int = 512, n_components: int = 512, n_mfcc: int = 12,
                 n_steps: int = 28, conv_channels: Sequence[int] = (64, 128, 256, 512), audio_dim: int = 512,
                 lstm_hidden: int = 1024, lstm_layers: int = 3, decoder_hidden: int = 1024) -> None:
        super().__init__()
        self.encoder = AudioEncoder(n_mfcc, n_steps, conv_channels, audio_dim, lstm_hidden, lstm_layers)
        self.decoder = LatentDecoder(n_latent, style_dim, n_components, lstm_hidden, decoder_hidden)

    def forward(self, mfcc: torch.Tensor, w_identity: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mfcc, n_steps) windows and (B[, T], n_latent, style_dim) w_I -> (B, T, n_latent, style_dim) w̄_t."""
        return self.decoder(w_identity, self.encoder(mfcc))[0]


def parameter_report(model: SpeechToLatent) -> dict[str, float]:
    """Trainable parameters of E_A and D and their sum beside the paper's 29.68 M (V is a buffer, not counted)."""
    ea, d = count_parameters(model.encoder), count_parameters(model.decoder)
    return {"E_A": ea, "D": d, "total": ea + d, "paper_total": PAPER_PARAMETERS,
            "ratio_to_paper": (ea + d) / PAPER_PARAMETERS}


@torch.no_grad()
def pca_basis(codes: torch.Tensor, n_components: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCA of W+ codes.

    Args:
        codes: (N, n_latent, style_dim) float W+ codes (N >= 2).
        n_components: k; when the codes span fewer directions, the basis is completed with orthonormal
            directions outside their span (explaining zero variance).

    Returns:
        (V, mean, explained): V (k, n_latent*style_dim) orthonormal rows sorted by variance,
        mean (n_latent*style_dim,), explained (k,) variance of each component.

    Raises:
        ValueError: fewer than two codes.
    """
    x = codes.reshape(codes.shape[0], -1).double()
    if x.shape[0] < 2:
        raise ValueError("PCA needs at least two codes")
    mean = x.mean(0)
    xc = x - mean
    _u, s, vh = torch.linalg.svd(xc, full_matrices=False)  # vh (min(N, D), D)
    explained = s ** 2 / (x.shape[0] - 1)
    k_data = min(n_components, vh.shape[0])
    basis = vh[:k_data]
    if k_data < n_components:  # complete with random directions orthogonal to the span
        gen = torch.Generator().manual_seed(0)
        extra = torch.randn(n_components - k_data, x.shape[1], generator=gen, dtype=torch.float64)
        full = torch.cat([basis, extra])
        q, _ = torch.linalg.qr(full.T)
        basis = q.T[:n_components]
        explained = torch.cat([explained[:k_data], explained.new_zeros(n_components - k_data)])
    return basis.float(), mean.float(), explained[:n_components].float()


@torch.no_grad()
def sample_w_plus(generator: nn.Module, n: int, *, truncation: float = 0.7, seed: int = 0,
                  batch: int = 1024) -> torch.Tensor:
    """(n, n_latent, style_dim) W+ codes from the mapping network (z ~ N(0, I), truncated toward w_avg).

    The generator must have ``style`` (mapping MLP), ``n_latent``, ``style_dim`` and ``latent_avg``
    (rosinality layout, :class:`studio.models.stylegan2.Generator`).
    """
    dev = next(generator.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    avg = getattr(generator, "latent_avg", None)
    out = []
    for start in range(0, n, batch):
        z = torch.randn(min(batch, n - start), generator.style_dim, generator=gen).to(dev)
        w = generator.style(z)
        if avg is not None and truncation != 1.0:
            w = avg.reshape(1, -1)[:, : w.shape[1]].to(w) + truncation * (w - avg.reshape(1, -1)[:, : w.shape[1]].to(w))
        out.append(w[:, None].expand(-1, generator.n_latent, -1).cpu())
    return torch.cat(out)


__all__ = ["LatentDecoder", "PAPER_PARAMETERS", "SpeechToLatent", "parameter_report", "pca_basis", "sample_w_plus"]
