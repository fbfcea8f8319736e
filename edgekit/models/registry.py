"""Built-in gaze models by name: how to build each one and its default input and output spec."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from edgekit.errors import BadInputError
from edgekit.models.card import InputSpec, OutputSpec
from edgekit.models.resnet import GazeResNet18
from edgekit.models.temporal import TemporalGaze
from edgekit.models.tinygaze import tinygaze


@dataclass(frozen=True)
class Builtin:
    cls: Callable[..., nn.Module]  # a class, or a function choosing one by its arguments
    config: dict
    description: str
    temporal: bool = False
    defaults: dict = field(default_factory=dict)  # training defaults

    def input_spec(self, config: dict) -> InputSpec:
        h, w = config.get("input_size", (40, 64))
        if self.temporal:
            return InputSpec(name="frames", shape=[1, config.get("window", 10), 1, h, w], layout="NTCHW")
        return InputSpec(shape=[1, config.get("in_channels", 1), h, w])

    def output_spec(self, config: dict) -> OutputSpec:
        if self.temporal:
            return OutputSpec(name="gaze_future", shape=[1, config.get("horizons", 5), 3])
        return OutputSpec(shape=[1, 3])


BUILTINS: dict[str, Builtin] = {
    "tinygaze": Builtin(tinygaze, {"width": 16, "input_size": [40, 64]},
                        "TinyGaze: 5 conv+BN+ReLU layers, fc128, fc3; 1x40x64 gray (the default demo model)",
                        defaults={"n_train": 24000, "epochs": 8, "batch": 128, "lr": 3e-3}),
    "gazeresnet18": Builtin(GazeResNet18, {"in_channels": 1, "input_size": [64, 96]},
                            "GazeResNet18: standard ResNet-18 widths and blocks, 512-d features, 3-D out; 1x64x96 gray",
                            defaults={"n_train": 80000, "epochs": 15, "batch": 128, "lr": 2e-3}),
    "temporalgaze": Builtin(TemporalGaze, {"width": 16, "cell": "gru", "hidden": 64, "window": 10, "horizons": 5,
                                           "input_size": [40, 64], "feature_dim": 0},
                            "TemporalGaze: TinyGaze features + GRU over 10 frames, gaze at t+1..t+5",
                            temporal=True, defaults={"n_sequences": 800, "length": 120, "epochs": 20, "batch": 128, "lr": 1e-2}),
}


def builtin(name: str) -> Builtin:
    try:
        return BUILTINS[name.lower()]
    except KeyError:
        raise BadInputError(f"unknown built-in model {name!r}; fix: use one of {', '.join(BUILTINS)}") from None


def build(name: str, config: dict | None = None) -> nn.Module:
    """A freshly initialised built-in model; `config` overrides its default constructor arguments."""
    spec = builtin(name)
    kwargs = {**spec.config, **(config or {})}
    if "input_size" in kwargs:
        kwargs["input_size"] = tuple(kwargs["input_size"])
    return spec.cls(**kwargs)
