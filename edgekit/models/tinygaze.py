"""TinyGaze: the default demo model (reference/gaze.md section 3).

Convolutions only (no pooling), BN+ReLU, 1x40x64 grayscale in, unit 3-D gaze out. Every layer maps
to Core ML, TFLite, ONNX and a rate-coded spiking network, and BN folds into the convolutions.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def _out_size(n: int, strides: int) -> int:
    for _ in range(strides):
        n = (n + 1) // 2
    return n


class TinyGaze(nn.Module):
    """c(w) s2 -> c(2w) s2 -> c(2w) -> c(4w) s2 -> c(4w) -> fc128 -> fc3 -> L2 normalise."""

    def __init__(self, width: int = 16, in_channels: int = 1, input_size: tuple[int, int] = (40, 64), features: int = 128):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, w, 2), conv_bn_relu(w, 2 * w, 2), conv_bn_relu(2 * w, 2 * w, 1),
            conv_bn_relu(2 * w, 4 * w, 2), conv_bn_relu(4 * w, 4 * w, 1), nn.Flatten(),
            nn.Linear(4 * w * _out_size(input_size[0], 3) * _out_size(input_size[1], 3), features), nn.ReLU())
        self.head = nn.Linear(features, 3)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Gaze before normalisation (its length is regularised during training)."""
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.raw(x), dim=-1)
