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
    """c(w) s2 -> c(2w) s2 -> c(2w) -> c(4w) s2 -> c(4w) -> fc128 -> fc3 -> L2 normalise.

    As a distillation student of other models (passes/distill.py), `outputs` 2 gives pitch and yaw in radians (no
    normalisation) instead of a unit vector, and `extra_inputs` makes a TinyGazeWithInputs (see `tinygaze`).
    """

    def __init__(self, width: int = 16, in_channels: int = 1, input_size: tuple[int, int] = (40, 64), features: int = 128,
                 outputs: int = 3, extra_inputs: tuple[int, ...] = ()):
        super().__init__()
        if outputs not in (2, 3):
            raise ValueError(f"TinyGaze outputs {outputs}: 3 (unit vector) or 2 (pitch, yaw)")
        w = width
        self.extra_inputs = list(extra_inputs)
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, w, 2), conv_bn_relu(w, 2 * w, 2), conv_bn_relu(2 * w, 2 * w, 1),
            conv_bn_relu(2 * w, 4 * w, 2), conv_bn_relu(4 * w, 4 * w, 1), nn.Flatten(),
            nn.Linear(4 * w * _out_size(input_size[0], 3) * _out_size(input_size[1], 3), features), nn.ReLU())
        self.head = nn.Linear(features + sum(self.extra_inputs), outputs)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Gaze before normalisation (its length is regularised during training)."""
        return self.head(self.features(x))

    def _out(self, raw: torch.Tensor) -> torch.Tensor:
        return raw if self.head.out_features == 2 else F.normalize(raw, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._out(self.raw(x))


class TinyGazeWithInputs(TinyGaze):
    """TinyGaze taking a teacher's further inputs: each flat one (head pose) is concatenated to the features before
    the head, as MPIIGaze's networks do; one of size 0 in `extra_inputs` (a second image crop) is taken, not used.
    Its own class: torch.fx cannot trace a `*extras` forward, and plain TinyGaze must stay traceable (spiking targets)."""

    def forward(self, x: torch.Tensor, *extras: torch.Tensor) -> torch.Tensor:
        used = [e.flatten(1) for e, size in zip(extras, self.extra_inputs) if size]
        return self._out(self.head(torch.cat([self.features(x), *used], dim=1)))


def tinygaze(width: int = 16, in_channels: int = 1, input_size: tuple[int, int] = (40, 64), features: int = 128,
             outputs: int = 3, extra_inputs: tuple[int, ...] = ()) -> TinyGaze:
    """The `tinygaze` built-in: TinyGaze, or TinyGazeWithInputs when it takes further inputs."""
    cls = TinyGazeWithInputs if extra_inputs else TinyGaze
    return cls(width, in_channels, input_size, features, outputs, extra_inputs)
