"""edgekit.torch_module.torch_runner: the reference runs a convolutional module as a channels-last copy, with the
outputs of the module as it came, and a module that cannot run so as it came."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgekit.torch_module import torch_runner


class ConvNet(nn.Module):
    """Conv -> ReLU -> flatten -> linear; records the layout its conv wrote and whether flattening used .view()."""

    def __init__(self, view: bool = False):
        super().__init__()
        self.conv, self.fc, self.view = nn.Conv2d(1, 8, 3, 2, 1), nn.Linear(8 * 10 * 16, 3), view
        self.layouts: list[bool] = []

    def forward(self, x):
        y = torch.relu(self.conv(x))
        self.layouts.append(y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous())
        return self.fc(y.view(len(y), -1) if self.view else y.flatten(1))


def eager(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.from_numpy(x)).double().numpy()


def images(n: int) -> np.ndarray:
    return np.random.default_rng(3).standard_normal((n, 1, 20, 32)).astype(np.float32)


def test_a_convolutional_reference_runs_channels_last_with_the_modules_outputs():
    torch.manual_seed(0)
    module = ConvNet().eval()
    x = images(4)
    expected = eager(module, x)
    run = torch_runner(module)
    got = np.concatenate([run({"image": x[i:i + 1]}) for i in range(len(x))])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert module.layouts == [False]  # the module itself ran once, above, as it came; the runner ran its copy
    assert next(module.parameters()).is_contiguous()  # and left the module's own weights as they were


def test_a_module_that_views_a_conv_output_runs_as_it_came():
    """y.view(n, -1) raises on a channels-last tensor: the runner falls back to the module itself, for good."""
    torch.manual_seed(0)
    module = ConvNet(view=True).eval()
    x = images(3)
    expected = np.concatenate([eager(module, x[i:i + 1]) for i in range(len(x))])  # batch 1, as the runner runs
    module.layouts.clear()
    run = torch_runner(module)
    got = np.concatenate([run({"image": x[i:i + 1]}) for i in range(len(x))])
    assert np.array_equal(got, expected)
    assert module.layouts == [False, False, False]  # every sample ran in the module's own layout
