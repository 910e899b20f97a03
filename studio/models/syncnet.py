"""SyncNet v2: the audio-visual synchronisation network behind the LSE-C / LSE-D lip-sync metrics.

Chung & Zisserman, "Out of time: automated lip sync in the wild" (ACCV workshops 2016); the released
``syncnet_v2.model`` of https://github.com/joonson/syncnet_python (class ``S`` in its SyncNetModel.py),
which Wav2Lip (Prajwal et al. 2020) and most talking-head papers use for LSE-C / LSE-D.

This is our own implementation of that layout: the module tree, parameter names and shapes are the
upstream ones (``netcnnaud.*``, ``netfcaud.*``, ``netcnnlip.*``, ``netfclip.*``), so the published state
dict loads strictly; ``tests/test_eval_networks.py`` holds the full key/shape list.

Two streams map to a common 1024-d embedding space where in-sync pairs are close (Euclidean):

* audio: ``(N, 1, 13, 20)`` float32: 13 MFCC coefficients x 20 frames at 100 Hz (0.2 s), values as
  python_speech_features.mfcc computes them on int16-scaled 16 kHz samples (see
  :mod:`studio.engine.eval.lse`) -> ``(N, 1024)``;
* lips: ``(N, 3, 5, 224, 224)`` float32: 5 consecutive 25 fps face crops, BGR channel order (upstream
  reads frames with OpenCV), pixel values 0..255 unnormalised -> ``(N, 1024)``.
"""

from __future__ import annotations

import torch
from torch import nn

#: Embedding size of the released checkpoint (``num_layers_in_fc_layers`` upstream).
EMBED_DIM = 1024
#: Input sizes (upstream SyncNetInstance: 5 video frames at 25 fps <-> 20 MFCC frames at 100 Hz).
LIP_FRAMES, LIP_SIZE = 5, 224
MFCC_COEFFS, MFCC_FRAMES = 13, 20


def _conv2d_bn(cin: int, cout: int, kernel: tuple[int, int], padding: tuple[int, int]) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size=kernel, stride=1, padding=padding), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


def _conv3d_bn(cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int] = (1, 1, 1),
               padding: tuple[int, int, int] = (0, 0, 0)) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, kernel_size=kernel, stride=stride, padding=padding), nn.BatchNorm3d(cout),
            nn.ReLU(inplace=True)]


def _head(dim: int) -> nn.Sequential:
    """512 -> 512 (BN, ReLU) -> ``dim``: the fully connected part of either stream."""
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNetV2(nn.Module):
    """SyncNet v2 (syncnet_python ``S``): audio and lip streams to 1024-d embeddings.

    Args:
        embed_dim: size of the embedding (1024 in the released checkpoint).

    The Sequential indices (and thus the state dict keys) are those of upstream, pooling layers
    included: ``netcnnaud.{0,4,8,11,14,18}`` convolutions with BatchNorm at ``+1``;
    ``netcnnlip.{0,4,8,11,14,18}`` 3-D convolutions with BatchNorm3d at ``+1``; ``netfcaud`` /
    ``netfclip`` ``.0`` Linear 512->512, ``.1`` BatchNorm1d, ``.3`` Linear 512->embed_dim.
    """

    def __init__(self, embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.embed_dim = int(embed_dim)
        self.netcnnaud = nn.Sequential(
            *_conv2d_bn(1, 64, (3, 3), (1, 1)),                       # 0-2
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),          # 3
            *_conv2d_bn(64, 192, (3, 3), (1, 1)),                     # 4-6
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),          # 7
            *_conv2d_bn(192, 384, (3, 3), (1, 1)),                    # 8-10
            *_conv2d_bn(384, 256, (3, 3), (1, 1)),                    # 11-13
            *_conv2d_bn(256, 256, (3, 3), (1, 1)),                    # 14-16
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),          # 17
            *_conv2d_bn(256, 512, (5, 4), (0, 0)),                    # 18-20
        )
        self.netfcaud = _head(self.embed_dim)
        self.netfclip = _head(self.embed_dim)
        self.netcnnlip = nn.Sequential(
            *_conv3d_bn(3, 96, (5, 7, 7), (1, 2, 2)),                                 # 0-2
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),                    # 3
            *_conv3d_bn(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)),                    # 4-6
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # 7
            *_conv3d_bn(256, 256, (1, 3, 3), padding=(0, 1, 1)),                      # 8-10
            *_conv3d_bn(256, 256, (1, 3, 3), padding=(0, 1, 1)),                      # 11-13
            *_conv3d_bn(256, 256, (1, 3, 3), padding=(0, 1, 1)),                      # 14-16
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),                    # 17
            *_conv3d_bn(256, 512, (1, 6, 6)),                                         # 18-20
        )

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """Audio embedding.

        Args:
            mfcc: ``(N, 1, 13, 20)`` float32 MFCC windows (coefficients x 100 Hz frames).

        Returns:
            ``(N, embed_dim)`` float32.
        """
        if mfcc.ndim != 4 or tuple(mfcc.shape[1:]) != (1, MFCC_COEFFS, MFCC_FRAMES):
            raise ValueError(f"audio input must be (N, 1, {MFCC_COEFFS}, {MFCC_FRAMES}), got {tuple(mfcc.shape)}")
        mid = self.netcnnaud(mfcc)  # (N, 512, 1, 1)
        return self.netfcaud(mid.flatten(1))

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        """Lip (face) embedding.

        Args:
            frames: ``(N, 3, 5, 224, 224)`` float32, BGR, 0..255: five consecutive 25 fps face crops.

        Returns:
            ``(N, embed_dim)`` float32.
        """
        if frames.ndim != 5 or tuple(frames.shape[1:]) != (3, LIP_FRAMES, LIP_SIZE, LIP_SIZE):
            raise ValueError(f"lip input must be (N, 3, {LIP_FRAMES}, {LIP_SIZE}, {LIP_SIZE}), "
                             f"got {tuple(frames.shape)}")
        mid = self.netcnnlip(frames)  # (N, 512, 1, 1, 1)
        return self.netfclip(mid.flatten(1))

    def forward(self, mfcc: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(forward_aud(mfcc), forward_lip(frames))``."""
        return self.forward_aud(mfcc), self.forward_lip(frames)
