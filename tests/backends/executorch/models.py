"""Tiny models for the ExecuTorch tests, importable by --arch: shapes chosen so every MAC is easy to count by hand."""

import torch
import torch.nn.functional as F
from torch import nn


class MatMul(nn.Module):
    """torch.matmul as a module, so a forward hook sees its operands (a hook cannot see a bare function call)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class DepthwiseMatmulNet(nn.Module):
    """stem conv -> depthwise 5x5 -> pointwise -> Gram matrix of the feature maps (matmul of two activations) -> fc."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 5, padding=2, groups=8)
        self.pointwise = nn.Conv2d(8, 16, 1)
        self.gram = MatMul()
        self.head = nn.Linear(16 * 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pointwise(F.relu(self.depthwise(F.relu(self.stem(x))))).flatten(2)  # [1, 16, 640]
        return self.head(self.gram(y, y.transpose(1, 2)).flatten(1))


class InputGainConvGaze(nn.Module):
    """A gaze model whose first conv's weights scale with the image's mean brightness. XNNPACK takes only constant
    conv weights, so this conv (almost all the MACs) stays with ExecuTorch's portable kernels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, stride=2)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.conv.weight * (1.0 + x.mean())
        y = F.relu(F.conv2d(x, weight, self.conv.bias, stride=2))
        return F.normalize(self.head(y.mean((2, 3))), dim=1)


class SharedTowerGaze(nn.Module):
    """One conv tower called on both halves of the image (ITracker's shared eye tower): two calls, one weight."""

    def __init__(self):
        super().__init__()
        self.tower = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1))
        self.head = nn.Linear(2 * 8 * 10 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = x[..., :32], x[..., 32:]
        return F.normalize(self.head(torch.cat([self.tower(left).flatten(1), self.tower(right).flatten(1)], 1)), dim=1)


class ExpectationHeadGaze(nn.Module):
    """L2CS-style: conv features, two linear heads of bin scores, each angle the softmax expectation over 12 bin
    centres (tests/zoo/models.py's L2CSBins in miniature). Output (B, 2) pitch and yaw in radians."""

    def __init__(self, bins: int = 12):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc_pitch, self.fc_yaw = nn.Linear(16, bins), nn.Linear(16, bins)
        self.register_buffer("centres", torch.deg2rad(torch.linspace(-16.5, 16.5, bins)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return torch.cat([(F.softmax(fc(f), dim=1) * self.centres).sum(1, keepdim=True)
                          for fc in (self.fc_pitch, self.fc_yaw)], dim=1)
