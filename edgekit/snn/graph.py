"""Read a trained (BN-folded) torch module as the sequential layer list a rate-coded SNN can mirror.

Conversion is exact only for ops that commute with summing over time (conv, linear, flatten, ReLU); anything
else gets a one-line error naming the layer and the fix (max-pool, residual adds, several inputs, recurrences).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from edgekit.errors import BadInputError

_WHY = {
    nn.MaxPool2d: "max-pooling does not commute with summing spikes over time; fix: retrain with nn.AvgPool2d or a stride-2 conv",
    nn.AdaptiveMaxPool2d: "max-pooling does not commute with summing spikes over time; fix: retrain with average pooling or strided convs",
    nn.AvgPool2d: "average pooling is not supported by to_snn yet (netx cannot load it either); fix: use a stride-2 conv",
    nn.AdaptiveAvgPool2d: "global average pooling is not supported by to_snn yet (netx cannot load it); fix: flatten + linear or a strided conv",
    nn.GRU: "recurrent layers are not rate-convertible; fix: convert the per-frame backbone only",
    nn.LSTM: "recurrent layers are not rate-convertible; fix: convert the per-frame backbone only",
}


@dataclass
class Layer:
    """One weighted layer (conv or linear) and whether a ReLU follows it; flatten marks a conv -> linear step."""

    name: str
    kind: str  # conv | linear | flatten
    module: nn.Module | None = None
    relu: bool = False
    relu_name: str = ""  # the ReLU module (or node) after it: QCFS thresholds are keyed by it


def sequential_layers(module: nn.Module, n_inputs: int) -> tuple[list[Layer], bool]:
    """(layers in execution order, whether the output is L2-normalised). Raises BadInputError on what cannot convert."""
    if n_inputs != 1:
        raise BadInputError(f"the model takes {n_inputs} inputs; to_snn converts single-input image models only; "
                            "fix: convert an image-only model (drop the head-pose input) or a per-frame backbone")
    import torch.fx

    bad = [(name, m) for name, m in module.named_modules() if any(isinstance(m, cls) for cls in _WHY)]
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception as exc:
        if bad:  # recurrences often break the trace: name them instead
            _check_module(*bad[0])
        raise BadInputError(f"to_snn cannot trace the model with torch.fx ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                            "fix: give a model whose forward is a plain sequence of conv/linear/ReLU layers") from None
    adds = [n for n in graph.nodes if n.op in ("call_function", "call_method")
            and (n.target in (operator.add, torch.add, operator.iadd) or n.target in ("add", "add_"))]
    residual = (f"residual add at {adds[0].name} (after {adds[0].args[0]}): rate-coded residual blocks are not supported "
                "(netx cannot load them either); fix: use a sequential model such as TinyGaze") if adds else ""
    if bad:  # the first layer that cannot convert, and the residual blocks too (a recurrence's adds are its own)
        _check_module(*bad[0], also="" if isinstance(bad[0][1], (nn.GRU, nn.LSTM)) else residual)
    if adds:
        raise BadInputError(residual)
    modules = dict(module.named_modules())
    layers: list[Layer] = []
    normalized = False
    users: dict[str, int] = {}
    for node in graph.nodes:
        for arg in node.all_input_nodes:
            users[arg.name] = users.get(arg.name, 0) + 1
    for node in graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if normalized:
            raise BadInputError(f"{node.name}: operations after the final L2 normalisation cannot be converted; "
                                "fix: end the model with linear (+ F.normalize)")
        if node.op == "call_module":
            m = modules[node.target]
            _check_module(node.target, m)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                _check_weighted(node.target, m)
                layers.append(Layer(node.target, "conv" if isinstance(m, nn.Conv2d) else "linear", m))
            elif isinstance(m, nn.ReLU):
                _relu(layers, node.target)
            elif isinstance(m, nn.Flatten):
                _flatten(layers, node.target)
            elif isinstance(m, (nn.Identity, nn.Dropout)):
                continue
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                raise BadInputError(f"layer {node.target} ({type(m).__name__}) is not folded into a conv; fix: put fold_bn "
                                    "before to_snn, or move the BatchNorm directly after a conv")
            else:
                raise BadInputError(f"layer {node.target} ({type(m).__name__}) cannot be converted to a spiking network; "
                                    "fix: use conv, linear, ReLU and flatten only")
        elif node.op == "call_function" or node.op == "call_method":
            fn = node.target
            if fn in (F.relu, torch.relu) or fn in ("relu", "relu_"):
                _relu(layers, node.name)
            elif fn in (torch.flatten,) or fn in ("flatten", "view", "reshape"):
                _flatten(layers, node.name)
            elif fn is F.normalize:
                normalized = True
            elif fn in (F.max_pool2d, F.adaptive_max_pool2d):
                raise BadInputError(f"{node.name}: {_WHY[nn.MaxPool2d]}")
            else:
                raise BadInputError(f"{node.name} ({getattr(fn, '__name__', fn)}) cannot be converted to a spiking network; "
                                    "fix: use conv, linear, ReLU, flatten and a final F.normalize only")
        if users.get(node.name, 0) > 1:
            raise BadInputError(f"{node.name} feeds several layers (a branch or skip connection); fix: use a sequential model")
    weighted = [lay for lay in layers if lay.kind != "flatten"]
    if not weighted:
        raise BadInputError("the model has no conv or linear layer; fix: give a trained gaze CNN")
    if weighted[-1].relu:
        raise BadInputError(f"the last layer {weighted[-1].name} is followed by ReLU; fix: end with a linear regression head")
    if any(not lay.relu for lay in weighted[:-1]):
        bad = next(lay.name for lay in weighted[:-1] if not lay.relu)
        raise BadInputError(f"layer {bad} has no ReLU after it; fix: every hidden conv/linear must end in ReLU to become IF neurons")
    return layers, normalized


def _check_module(name: str, m: nn.Module, also: str = "") -> None:
    for cls, why in _WHY.items():
        if isinstance(m, cls):
            raise BadInputError(f"layer {name} ({type(m).__name__}): {why}" + (f"; the model also has a {also}" if also else ""))


def _check_weighted(name: str, m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d) and (m.groups != 1 or tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros"
                                     or isinstance(m.padding, str)):
        raise BadInputError(f"layer {name}: grouped, dilated, 'same' or non-zero padded convs are not supported by to_snn; "
                            "fix: use plain convs with integer zero padding")


def _relu(layers: list[Layer], where: str) -> None:
    if not layers or layers[-1].kind == "flatten" or layers[-1].relu:
        raise BadInputError(f"{where}: a ReLU must directly follow a conv or linear layer; fix: reorder the model")
    layers[-1].relu, layers[-1].relu_name = True, where


def _flatten(layers: list[Layer], where: str) -> None:
    if not layers or layers[-1].kind != "conv":
        raise BadInputError(f"{where}: flatten must follow a conv layer; fix: reorder the model")
    layers.append(Layer(where, "flatten"))
