"""E_A: the audio encoder of the speech-to-latent model (seed paper, section 3.1.3).

"The encoder network E_A consists of multiple convolutional layers followed by three LSTM layers": each
0.2 s MFCC window (12 coefficients x 28 steps, :mod:`studio.engine.audio.mfcc`) is encoded by a small 2-D
CNN into a vector, and three LSTM layers run over the sequence of windows so every e_t sees the speech
before it. The paper gives no layer sizes; ours (four 3x3 conv blocks 64-128-256-512, a 512-d projection,
LSTM width 1024) put E_A + D at about the paper's 29.68 M parameters (see :func:`parameter_report`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class AudioEncoder(nn.Module):
    """MFCC windows -> per-frame speech codes e_t.

    Args:
        n_mfcc, n_steps: window size (12 x 28 in the paper).
        conv_channels: output channels of the 3x3 conv blocks (BatchNorm + LeakyReLU 0.2); every block
            after the first halves the time axis, blocks from the third on also the coefficient axis.
        audio_dim: size of the per-window vector fed to the LSTM.
        lstm_hidden, lstm_layers: the recurrent part (3 layers in the paper).

    Input (B, T, n_mfcc, n_steps) float32; output (B, T, lstm_hidden) float32.
    """

    def __init__(self, n_mfcc: int = 12, n_steps: int = 28, conv_channels: Sequence[int] = (64, 128, 256, 512),
                 audio_dim: int = 512, lstm_hidden: int = 1024, lstm_layers: int = 3) -> None:
        super().__init__()
        self.n_mfcc, self.n_steps = n_mfcc, n_steps
        blocks: list[nn.Module] = []
        c_in, h, w = 1, n_mfcc, n_steps
        for i, c_out in enumerate(conv_channels):
            stride = (1, 1) if i == 0 else ((2, 2) if i >= 2 else (1, 2))
            blocks.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
                                        nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)))
            h, w = (h + 2 - 3) // stride[0] + 1, (w + 2 - 3) // stride[1] + 1
            c_in = c_out
        self.convs = nn.ModuleList(blocks)
        self.project = nn.Sequential(nn.Linear(c_in * h * w, audio_dim), nn.LeakyReLU(0.2))
        self.lstm = nn.LSTM(audio_dim, lstm_hidden, num_layers=lstm_layers, batch_first=True)
        self.out_dim = lstm_hidden

    def forward(self, mfcc: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """(B, T, n_mfcc, n_steps) MFCC windows -> (B, T, lstm_hidden) codes e_t.

        Raises:
            ValueError: the windows are not n_mfcc x n_steps.
        """
        if mfcc.dim() != 4 or tuple(mfcc.shape[2:]) != (self.n_mfcc, self.n_steps):
            raise ValueError(f"expected MFCC windows (B, T, {self.n_mfcc}, {self.n_steps}), got {tuple(mfcc.shape)}")
        b, t = mfcc.shape[:2]
        x = mfcc.reshape(b * t, 1, self.n_mfcc, self.n_steps)
        for block in self.convs:
            x = block(x)
        x = self.project(x.flatten(1)).reshape(b, t, -1)
        e, _ = self.lstm(x, state)
        return e


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["AudioEncoder", "count_parameters"]
