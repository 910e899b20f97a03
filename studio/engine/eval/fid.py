"""FID (Heusel et al., NeurIPS 2017) between real and generated face crops, as mseitzer/pytorch-fid computes it.

Features: the FID Inception-v3's pool3 (2048-d) on each crop (:class:`studio.models.inception.FIDInceptionV3`:
RGB in [0, 1], resized to 299x299 bilinear, scaled to [-1, 1]). Statistics: the mean and the unbiased
covariance (``np.cov(rowvar=False)``) of each set. Distance::

    FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2))

with ``scipy.linalg.sqrtm``; when the product is singular enough that sqrtm returns non-finite values,
``eps * I`` (1e-6) is added to both covariances first, and a negligible imaginary part (numerical error) is
dropped, as pytorch-fid's ``calculate_frechet_distance`` does.

Few frames make a rank-deficient covariance, and FID is biased upwards for small sets: compare FIDs only
between methods evaluated on the same frames.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg

from studio.models.inception import FIDInceptionV3


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mu (D,), sigma (D, D))`` float64 of ``(N, D)`` features; N >= 2 (else ValueError)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need at least 2 feature vectors, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (squared units of the features).

    Args:
        mu1, mu2: ``(D,)`` means. sigma1, sigma2: ``(D, D)`` covariances (symmetric PSD).
        eps: diagonal offset used only when sqrtm of the product is not finite.

    Raises:
        ValueError: shapes differ, or sqrtm has a significant imaginary part (> 1e-3 on the diagonal).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes differ: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():  # few samples: singular covariances are expected, handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(s1.shape[0]) * eps
            covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm has an imaginary component {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID of two ``(N, 2048)`` feature sets (NaN when either has fewer than 2 rows)."""
    if len(real) < 2 or len(fake) < 2:
        return float("nan")
    return frechet_distance(*statistics(real), *statistics(fake))


class InceptionFeatures:
    """Batches ``(H, W, 3)`` uint8 RGB crops through the FID Inception-v3, keeping only the features.

    Args:
        net: the loaded :class:`FIDInceptionV3`. device: where it runs. batch: crops per forward pass.
    """

    def __init__(self, net: FIDInceptionV3, *, device: torch.device | str = "cpu", batch: int = 8) -> None:
        self.net, self.device, self.batch = net, torch.device(device), batch
        self._pending: list[np.ndarray] = []
        self._out: list[np.ndarray] = []

    def push(self, rgb: np.ndarray) -> None:
        """One crop, ``(H, W, 3)`` uint8 RGB."""
        self._pending.append(np.ascontiguousarray(rgb))
        if len(self._pending) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        x = torch.from_numpy(np.stack(self._pending)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        with torch.inference_mode():
            self._out.append(self.net(x).double().cpu().numpy())
        self._pending = []

    def features(self) -> np.ndarray:
        """``(N, 2048)`` float64 pool3 features of every pushed crop, in order."""
        self._flush()
        return np.concatenate(self._out) if self._out else np.zeros((0, 2048))
