"""Read a trained (BN-folded) torch module as the graph of nodes a rate-coded SNN mirrors.

Conversion is exact only for ops that commute with summing over time (conv, linear, average pooling, flatten, add,
ReLU): everything else gets a one-line error naming the layer and the fix (max-pool, recurrences, several inputs).

Nodes, in execution order (fx's order is topological), each reading `inputs` (node indices; -1 is the image):
- conv / linear: synapses; `neuron` says what integrates their current: "if" (a ReLU follows), "integrator" (the
  regression output) or "none" (the current flows into a residual add, whose neuron sums both branches);
- scale: a per-channel synapse for an identity shortcut (its value, lambda_in / lambda_out, is set by conversion);
- add: a residual add; its neuron ("if" when a ReLU follows) integrates the summed branch currents;
- flatten, pool (average): parameter-free and linear, so they pass spikes (or the analog image) through unchanged in
  meaning.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from edgekit.errors import BadInputError

IMAGE = -1
WEIGHTED = ("conv", "linear", "scale")
PASSTHROUGH = ("flatten", "pool")

_MAXPOOL = ("max-pooling does not commute with summing spikes over time; fix: retrain with nn.AvgPool2d or a stride-2 conv, "
            "or distil the model into a sequential student (the distill pass; target loihi-distill)")
_RECURRENT = "recurrent layers are not rate-convertible; fix: convert the per-frame backbone only"
_WHY = {nn.MaxPool2d: _MAXPOOL, nn.AdaptiveMaxPool2d: _MAXPOOL, nn.GRU: _RECURRENT, nn.LSTM: _RECURRENT}
_ADD = (operator.add, torch.add, operator.iadd, "add", "add_")
_FLATTEN = (torch.flatten, "flatten", "view", "reshape")


@dataclass
class Node:
    name: str
    kind: str  # conv | linear | scale | add | flatten | pool
    inputs: list[int]
    module: nn.Module | None = None
    neuron: str = "none"  # if | integrator | none
    relu_name: str = ""  # the ReLU module (or node) after it: QCFS thresholds are keyed by it
    pool: dict = field(default_factory=dict)  # kind pool: kernel, stride, padding, or output_size (adaptive)


def spiking_graph(module: nn.Module, n_inputs: int) -> tuple[list[Node], bool]:
    """(nodes in execution order, whether the output is L2-normalised). Raises BadInputError on what cannot convert."""
    if n_inputs != 1:
        raise BadInputError(f"the model takes {n_inputs} inputs; to_snn converts single-input image models only; "
                            "fix: convert an image-only model (drop the head-pose input) or a per-frame backbone")
    import torch.fx

    bad = [(name, m) for name, m in module.named_modules() if any(isinstance(m, cls) for cls in _WHY)]
    if bad:  # the first layer that cannot convert, before tracing (recurrences often break the trace)
        _check_module(*bad[0])
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception as exc:
        raise BadInputError(f"to_snn cannot trace the model with torch.fx ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                            "fix: give a model whose forward is a plain graph of conv/linear/ReLU/add/pool layers") from None
    return _Builder(dict(module.named_modules())).build(graph)


class _Builder:
    def __init__(self, modules: dict[str, nn.Module]):
        self.modules, self.nodes, self.index = modules, [], {}  # index: fx node name -> node index
        self.pre_relu: set[str] = set()  # fx values taken before a ReLU: the IF node only carries the ReLU's output
        self.normalized, self.output = False, None

    def build(self, graph) -> tuple[list[Node], bool]:
        for fx in graph.nodes:
            if self.normalized and fx.op != "output":
                raise BadInputError(f"{fx.name}: operations after the final L2 normalisation cannot be converted; "
                                    "fix: end the model with linear (+ F.normalize)")
            if fx.op == "placeholder":
                self.index[fx.name] = IMAGE
            elif fx.op == "output":
                if not hasattr(fx.args[0], "name"):
                    raise BadInputError("the model returns several tensors; fix: return the gaze vector only")
                self.output = self._lookup(fx.args[0].name, "the output")
            elif fx.op == "call_module":
                self._module(fx, self.modules[fx.target])
            elif fx.op in ("call_function", "call_method"):
                self._function(fx)
            else:
                raise BadInputError(f"{fx.name} ({fx.op} {fx.target}) cannot be converted to a spiking network; "
                                    "fix: keep parameters inside conv/linear modules")
        self._check()
        return self.nodes, self.normalized

    def _src(self, fx) -> int:
        return self._lookup(fx.args[0].name, fx.name)

    def _lookup(self, name: str, reader: str) -> int:
        if name in self.pre_relu:
            raise BadInputError(f"{reader} reads {name} before its ReLU, which spiking neurons cannot provide (they emit "
                                "the ReLU's output only); fix: read the ReLU's output, or compute the branch separately")
        return self.index[name]

    def _append(self, fx_name: str, node: Node) -> None:
        for i in node.inputs:  # synapses and pools read spikes or the image, never a branch's raw current
            if i != IMAGE and self.nodes[i].neuron == "none" and self.nodes[i].kind not in PASSTHROUGH:
                raise BadInputError(f"{node.name} reads {self.nodes[i].name}, which has no ReLU after it; fix: every hidden "
                                    "conv/linear must end in ReLU (or feed a residual add followed by ReLU)")
        self.nodes.append(node)
        self.index[fx_name] = len(self.nodes) - 1

    def _module(self, fx, m: nn.Module) -> None:
        _check_module(fx.target, m)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            _check_weighted(fx.target, m)
            self._append(fx.name, Node(fx.target, "conv" if isinstance(m, nn.Conv2d) else "linear", [self._src(fx)], m))
        elif isinstance(m, nn.ReLU):
            self._relu(fx, fx.target)
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise BadInputError(f"layer {fx.target} (Flatten) must flatten from dim 1 to the end; fix: nn.Flatten()")
            self._passthrough(fx, "flatten")
        elif isinstance(m, nn.AvgPool2d):
            if m.ceil_mode or not m.count_include_pad or m.divisor_override:
                raise BadInputError(f"layer {fx.target} (AvgPool2d): ceil_mode, count_include_pad=False and divisor_override "
                                    "are not supported; fix: use the defaults")
            self._passthrough(fx, "pool", kernel=_pair(m.kernel_size), stride=_pair(m.stride or m.kernel_size),
                              padding=_pair(m.padding))
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            self._passthrough(fx, "pool", output_size=_pair(m.output_size))
        elif isinstance(m, (nn.Identity, nn.Dropout)):
            self.index[fx.name] = self._src(fx)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            raise BadInputError(f"layer {fx.target} ({type(m).__name__}) is not folded into a conv; fix: put fold_bn "
                                "before to_snn, or move the BatchNorm directly after a conv")
        else:
            raise BadInputError(f"layer {fx.target} ({type(m).__name__}) cannot be converted to a spiking network; "
                                "fix: use conv, linear, ReLU, average pooling, flatten and residual adds only")

    def _function(self, fx) -> None:
        fn = fx.target
        if fn in (F.relu, torch.relu) or fn in ("relu", "relu_"):
            self._relu(fx, fx.name)
        elif fn in _FLATTEN:
            if not _flattens_to_features(fx):
                raise BadInputError(f"{fx.name} ({fn if isinstance(fn, str) else fn.__name__}) must flatten channels, "
                                    "height and width into one axis; fix: use torch.flatten(x, 1) or x.view(x.size(0), -1)")
            self._passthrough(fx, "flatten")
        elif fn in _ADD:
            self._add(fx)
        elif fn is F.adaptive_avg_pool2d:
            self._passthrough(fx, "pool", output_size=_pair(fx.args[1] if len(fx.args) > 1 else fx.kwargs["output_size"]))
        elif fn in (torch.mean, "mean") and _global_mean(fx):
            self._passthrough(fx, "pool", output_size=(1, 1))
            if not (fx.kwargs.get("keepdim") or (len(fx.args) > 2 and fx.args[2])):
                self._passthrough(fx, "flatten", src=self.index[fx.name])
        elif fn is F.normalize:
            self.index[fx.name] = self._src(fx)
            self.normalized = True
        elif fn in (F.max_pool2d, F.adaptive_max_pool2d):
            raise BadInputError(f"{fx.name}: {_MAXPOOL}")
        else:
            raise BadInputError(f"{fx.name} ({getattr(fn, '__name__', fn)}) cannot be converted to a spiking network; "
                                "fix: use conv, linear, ReLU, average pooling, flatten, residual adds and a final F.normalize")

    def _passthrough(self, fx, kind: str, src: int | None = None, **pool) -> None:
        self._append(fx.name, Node(fx.name if fx.op != "call_module" else fx.target, kind,
                                   [self._src(fx) if src is None else src], pool=pool))

    def _relu(self, fx, where: str) -> None:
        src = self._src(fx)
        node = self.nodes[src] if src != IMAGE else None
        if node is None or node.kind in PASSTHROUGH or node.neuron != "none" or node.kind == "scale" \
                or any(src in n.inputs for n in self.nodes):  # a ReLU must be its layer's only reader
            raise BadInputError(f"{where}: a ReLU must directly follow a conv, linear or residual add; fix: reorder the model")
        node.neuron, node.relu_name = "if", where
        self.pre_relu |= {name for name, i in self.index.items() if i == src}
        self.index[fx.name] = src

    def _add(self, fx) -> None:
        if len(fx.args) != 2 or fx.kwargs or not all(hasattr(a, "name") for a in fx.args):
            raise BadInputError(f"{fx.name}: only the sum of two tensors converts (a residual add); fix: add two branches")
        inputs = []
        for arg in fx.args:
            j = self._lookup(arg.name, fx.name)
            branch = self.nodes[j] if j != IMAGE else None
            if branch is not None and branch.kind in ("conv", "linear") and branch.neuron == "none":
                inputs.append(j)  # a branch's current: summed into the add's neuron
            else:  # an identity shortcut: spikes (or the image) through a per-channel synapse, scaled at conversion
                self._append(f"{fx.name}.shortcut", Node(f"{fx.name}.shortcut", "scale", [j]))
                inputs.append(len(self.nodes) - 1)
        self.nodes.append(Node(fx.name, "add", inputs))
        self.index[fx.name] = len(self.nodes) - 1

    def _check(self) -> None:
        if not any(n.kind in ("conv", "linear") for n in self.nodes):
            raise BadInputError("the model has no conv or linear layer; fix: give a trained gaze CNN")
        last = self.nodes[self.output] if self.output not in (None, IMAGE) else None
        if last is None or last.kind not in ("conv", "linear", "add"):
            raise BadInputError("the model does not end in a linear layer; fix: end with a linear regression head")
        if last.neuron == "if":
            raise BadInputError(f"the last layer {last.name} is followed by ReLU; fix: end with a linear regression head")
        last.neuron = "integrator"
        users = {i: [] for i in range(len(self.nodes))}
        for k, n in enumerate(self.nodes):
            for i in n.inputs:
                if i != IMAGE:
                    users[i].append(k)
        for i, n in enumerate(self.nodes):
            if n.kind in PASSTHROUGH or n.neuron != "none":
                continue
            feeds_add = len(users[i]) == 1 and self.nodes[users[i][0]].kind == "add"
            if n.kind == "add" or not feeds_add:
                what = "residual add" if n.kind == "add" else "layer"
                raise BadInputError(f"{what} {n.name} has no ReLU after it; fix: every hidden conv/linear and residual add "
                                    "must end in ReLU to become IF neurons")
        if self.output != len(self.nodes) - 1 or users[self.output]:
            raise BadInputError(f"the output layer {last.name} is not the last operation; fix: end with a linear regression head")


def _flattens_to_features(fx) -> bool:
    """torch.flatten(x, 1) / x.flatten(1) (to the last dim), or x.view / x.reshape to two axes, one of them -1."""
    if fx.target in (torch.flatten, "flatten"):
        start = fx.args[1] if len(fx.args) > 1 else fx.kwargs.get("start_dim", 0)
        end = fx.args[2] if len(fx.args) > 2 else fx.kwargs.get("end_dim", -1)
        return start == 1 and end == -1
    shape = list(fx.args[1:])
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):  # x.view((n, -1))
        shape = list(shape[0])
    return len(shape) == 2 and -1 in shape  # (N, -1) or (-1, C*H*W): the walk's output check catches a wrong size


def _global_mean(fx) -> bool:
    dims = fx.args[1] if len(fx.args) > 1 else fx.kwargs.get("dim")
    return isinstance(dims, (tuple, list)) and sorted(d % 4 for d in dims) == [2, 3]


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) or v is None else [int(x) for x in v]


def _check_module(name: str, m: nn.Module) -> None:
    for cls, why in _WHY.items():
        if isinstance(m, cls):
            raise BadInputError(f"layer {name} ({type(m).__name__}): {why}")


def _check_weighted(name: str, m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d) and (m.groups != 1 or tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros"
                                     or isinstance(m.padding, str)):
        raise BadInputError(f"layer {name}: grouped, dilated, 'same' or non-zero padded convs are not supported by to_snn; "
                            "fix: use plain convs with integer zero padding")
