"""Read a trained (BN-folded) torch module as the graph of nodes a rate-coded SNN mirrors.

Conversion is exact only for ops that commute with summing over time (conv, linear, average pooling, flatten, add,
ReLU): everything else gets a one-line error naming the module path (with the model's source line for functional ops
and failed traces), the construct and the fix (max-pool, recurrences, attention, other activations, softmax heads,
pre-activation BatchNorm, several inputs, data-dependent control flow).

Nodes, in execution order (fx's order is topological), each reading `inputs` (node indices; -1 is the image):
- conv / linear: synapses; `neuron` says what integrates their current: "if" (a ReLU follows), "integrator" (the
  regression output) or "none" (the current flows into a residual add, whose neuron sums both branches);
- scale: a per-channel synapse for an identity shortcut (its value, lambda_in / lambda_out, is set by conversion);
- add: a residual add; its neuron ("if" when a ReLU follows) integrates the summed branch currents;
- flatten, pool (average): parameter-free and linear, so they pass spikes (or the analog image) through unchanged in
  meaning.
"""

from __future__ import annotations

import linecache
import operator
import os
import re
import traceback
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
_ACTIVATION = ("IF neurons rate-code ReLU only (a spike rate cannot go negative or bend like {what}); fix: retrain with "
               "nn.ReLU, or distil the model into a ReLU student (the distill pass; target loihi-distill)")
_ATTENTION = ("attention and LayerNorm multiply and divide activations, which summing spikes over time cannot do; fix: "
              "convert a convolutional gaze model, or distil this one into a sequential CNN student (the distill pass; "
              "target loihi-distill)")
_SOFTMAX = ("a softmax over bins (a classification / softmax-expectation head) is not rate-convertible; fix: retrain with "
            "a linear regression head (2 outputs, pitch/yaw in radians, or 3, a gaze vector), or distil into one")
_SOFTMAXES = (F.softmax, torch.softmax, "softmax", F.log_softmax, torch.log_softmax, "log_softmax")
_CAT = (torch.cat, torch.concat, "cat")
_ACTIVATIONS = (nn.Hardswish, nn.Hardsigmoid, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU, nn.PReLU,
                nn.ReLU6, nn.Mish, nn.Softplus)
_ACTIVATION_FNS = (F.hardswish, F.hardsigmoid, F.gelu, F.silu, torch.sigmoid, torch.tanh, F.leaky_relu, F.elu, F.relu6,
                   "sigmoid", "tanh")
_WHY = {nn.MaxPool2d: _MAXPOOL, nn.AdaptiveMaxPool2d: _MAXPOOL, nn.GRU: _RECURRENT, nn.LSTM: _RECURRENT,
        nn.RNN: _RECURRENT, nn.LayerNorm: _ATTENTION, nn.MultiheadAttention: _ATTENTION}
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


def _op(fx) -> str:
    """How the model spelled an fx node: torch.flatten(...), x.view(...), or the module path."""
    if fx.op == "call_module":
        return f"layer {fx.target}"
    if fx.op == "call_method":
        return f"x.{fx.target}()"
    fn = fx.target
    mod = getattr(fn, "__module__", "") or ""
    prefix = "F." if mod.endswith("functional") else "torch." if mod.startswith("torch") else ""
    return f"{prefix}{getattr(fn, '__name__', fn)}()"


def spiking_graph(module: nn.Module, n_inputs: int, input_names: list[str] | None = None) -> tuple[list[Node], bool]:
    """(nodes in execution order, whether the output is L2-normalised). Raises BadInputError on what cannot convert,
    in one line naming the module path, the construct and the fix."""
    if n_inputs != 1:  # the input first: a second input means redesigning the model, whatever else it holds
        try:
            graph = trace(module)
        except BadInputError:
            graph = None
        also = [f"layer {name} ({type(m).__name__})" for name, m in module.named_modules()
                if any(isinstance(m, cls) for cls in _WHY)]
        raise BadInputError(extra_input_error(graph, n_inputs, input_names)
                            + (f" (also not convertible: {', '.join(also[:3])})" if also else ""))
    bad = [(name, m) for name, m in module.named_modules() if any(isinstance(m, cls) for cls in _WHY)]
    if bad:  # the first layer that cannot convert, before tracing (recurrences often break the trace)
        _check_module(*bad[0])
    # recording every node's stack imports torch._dynamo (1.6-2.5 s per process here): the first trace records none,
    # and only a graph that does not convert is traced again so that the error can name the model's source line
    try:
        return _Builder(dict(module.named_modules())).build(trace(module, stack_traces=False))
    except BadInputError:
        return _Builder(dict(module.named_modules())).build(trace(module))


def _tracer(stack_traces: bool = True):
    """torch.fx's symbolic tracer that records, for every node, the module whose forward created it (its path) and,
    with stack_traces, the stack (the model's source line), and on a failure the innermost module it was tracing."""
    import torch.fx

    class Tracer(torch.fx.Tracer):
        def __init__(self):
            super().__init__()
            self.record_stack_traces = stack_traces
            self.paths: list[str] = []
            self.failed_in: str | None = None

        def call_module(self, m, forward, args, kwargs):
            self.paths.append(self.path_of_module(m))
            try:
                return super().call_module(m, forward, args, kwargs)
            except Exception:
                if self.failed_in is None:
                    self.failed_in = self.paths[-1]
                raise
            finally:
                self.paths.pop()

        def create_node(self, *args, **kwargs):
            node = super().create_node(*args, **kwargs)
            node.meta["edgekit_path"] = self.paths[-1] if self.paths else ""
            return node

    return Tracer()


def trace(module: nn.Module, stack_traces: bool = True):
    """The fx graph of `module`; a failed trace is one line naming the module path, the source line and a fix.
    stack_traces: record each node's stack (where() then names the model's source line)."""
    import torch.fx

    tracer = _tracer(stack_traces)
    try:
        graph = tracer.trace(module)
    except Exception as exc:  # noqa: BLE001 - any tracing failure becomes the one-line error below
        where = tracer.failed_in or ""
        owner = type(module.get_submodule(where)).__name__ if where else type(module).__name__
        line = _user_frame(exc.__traceback__)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if isinstance(exc, torch.fx.proxy.TraceError) or "symbolically traced variables" in msg:
            why = ("its forward branches or loops on the input's values or size, which a fixed spiking graph cannot do; "
                   "fix: remove the data-dependent control flow (use fixed shapes: torch.flatten(x, 1) instead of "
                   "x.size(0), no `if` on tensors)")
        else:
            why = (f"{type(exc).__name__}: {msg[:160]}; fix: give a model whose forward is a plain graph of "
                   "conv/linear/ReLU/add/average-pool layers")
        raise BadInputError(f"module {where or '(top level)'} ({owner}) cannot be traced by torch.fx"
                            f"{' at ' + line if line else ''}: {why}") from None
    return graph


_NOT_THE_MODEL = (os.path.dirname(os.path.abspath(torch.__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _source(filename: str, lineno: int, func: str) -> str:
    """path:line in func, the path relative to the working folder when it lies below it."""
    rel = os.path.relpath(filename)
    return f"{filename if rel.startswith('..') else rel}:{lineno} in {func}"


def _user_frame(tb) -> str:
    """path:line in func (`code`) of the innermost traceback frame outside torch and edgekit: the model's own line."""
    found = ""
    for frame in traceback.extract_tb(tb):
        if frame.filename.startswith("<") or os.path.abspath(frame.filename).startswith(_NOT_THE_MODEL):
            continue
        code = (frame.line or linecache.getline(frame.filename, frame.lineno)).strip()
        found = f"{_source(frame.filename, frame.lineno, frame.name)} (`{code[:80]}`)"
    return found


def where(fx) -> str:
    """A node's place for error messages: the module whose forward made it, and the model's source line."""
    path, line = fx.meta.get("edgekit_path", ""), ""
    for text in reversed((getattr(fx, "stack_trace", None) or "").splitlines()):
        m = re.match(r'\s*File "([^"]+)", line (\d+), in (\S+)', text)
        if m and not os.path.abspath(m.group(1)).startswith(_NOT_THE_MODEL):
            line = _source(m.group(1), m.group(2), m.group(3))
            break
    return ", ".join(p for p in (f"in module {path}" if path else "in the top-level forward", line) if p)


def extra_input_error(graph, n_inputs: int, names: list[str] | None) -> str:
    """Where the second (third, ...) input enters: the op reading it and the layer that op feeds."""
    places = [n for n in graph.nodes if n.op == "placeholder"] if graph is not None else []
    extra = places[1] if len(places) > 1 else None
    label = (names[1] if names and len(names) > 1 else (extra.target if extra is not None else "the second input"))
    enters = ""
    if extra is not None and extra.users:
        op = next(iter(extra.users))
        what = op.target if isinstance(op.target, str) else getattr(op.target, "__name__", str(op.target))
        reader = next((u for u in op.users if u.op == "call_module"), None)
        if op.op == "call_module":
            enters = f" enters layer {op.target}" + (f" ({where(op).split(', ', 1)[1]})" if ", " in where(op) else "")
        else:
            enters = (f" enters through {what} ({where(op)})" + (f" into layer {reader.target}" if reader is not None else ""))
    fix = ("retrain without the head-pose input (image only) and correct for head pose on the host" if "pose" in label
           else "convert a single-image model (one eye crop), or fuse the inputs' predictions on the host")
    return (f"the model takes {n_inputs} inputs: input {label}{enters}; to_snn converts single-input image models only "
            f"(the spiking network has one input population, the image); fix: {fix}")


class _Builder:
    def __init__(self, modules: dict[str, nn.Module]):
        self.modules, self.nodes, self.index = modules, [], {}  # index: fx node name -> node index
        self.pre_relu: set[str] = set()  # fx values taken before a ReLU: the IF node only carries the ReLU's output
        self.normalized, self.output = False, None

    def build(self, graph) -> tuple[list[Node], bool]:
        for fx in graph.nodes:
            if self.normalized and fx.op != "output":
                raise BadInputError(f"{_op(fx)} ({where(fx)}) after the final F.normalize cannot be converted; "
                                    "fix: end the model with linear (+ F.normalize)")
            if fx.op == "placeholder":
                self.index[fx.name] = IMAGE
            elif fx.op == "output":
                if not hasattr(fx.args[0], "name"):
                    raise BadInputError("the model returns several tensors (a tuple or dict from forward); fix: return "
                                        "the gaze output only")
                self.output = self._lookup(fx.args[0].name, "the output")
            elif fx.op == "call_module":
                self._module(fx, self.modules[fx.target])
            elif fx.op in ("call_function", "call_method"):
                self._function(fx)
            else:
                raise BadInputError(f"parameter {fx.target} used directly ({where(fx)}) cannot be converted to a "
                                    "spiking network (such as a learned position embedding); fix: keep parameters "
                                    "inside conv/linear modules")
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
            self._batchnorm(fx, m)
        elif isinstance(m, _ACTIVATIONS):
            raise BadInputError(f"layer {fx.target} ({type(m).__name__}): " + _ACTIVATION.format(what=type(m).__name__))
        else:
            raise BadInputError(f"layer {fx.target} ({type(m).__name__}) cannot be converted to a spiking network; "
                                "fix: use conv, linear, ReLU, average pooling, flatten and residual adds only")

    def _function(self, fx) -> None:
        fn = fx.target
        if fn in (F.relu, torch.relu) or fn in ("relu", "relu_"):
            self._relu(fx, fx.name)
        elif fn in _FLATTEN:
            if not _flattens_to_features(fx):
                raise BadInputError(f"{_op(fx)} ({where(fx)}) must flatten channels, height and width into one axis "
                                    "(token sequences and other reshapes do not convert); fix: use torch.flatten(x, 1) "
                                    "or x.view(x.size(0), -1)")
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
            raise BadInputError(f"{_op(fx)} ({where(fx)}): {_MAXPOOL}")
        elif fn in _SOFTMAXES:
            raise BadInputError(f"{_op(fx)} ({where(fx)}{self._after(fx)}): {_SOFTMAX}")
        elif fn in _ACTIVATION_FNS:
            raise BadInputError(f"{_op(fx)} ({where(fx)}): " + _ACTIVATION.format(what=_op(fx)))
        elif fn in _CAT:
            raise BadInputError(f"{_op(fx)} ({where(fx)}): concatenating feature maps or extra inputs does not convert "
                                "(netx and the simulator run one path into each layer); fix: sum branches with a "
                                "residual add instead, or feed one input")
        else:
            raise BadInputError(f"{_op(fx)} ({where(fx)}) cannot be converted to a spiking network; "
                                "fix: use conv, linear, ReLU, average pooling, flatten, residual adds and a final F.normalize")

    def _after(self, fx) -> str:
        """`, after layer X`: the weighted layer an op reads (directly or through passthrough nodes)."""
        arg = fx.args[0] if fx.args and hasattr(fx.args[0], "name") else None
        i = self.index.get(arg.name) if arg is not None else None
        while i is not None and i != IMAGE and self.nodes[i].kind in PASSTHROUGH:
            i = self.nodes[i].inputs[0]
        return f", after layer {self.nodes[i].name}" if i not in (None, IMAGE) else ""

    def _batchnorm(self, fx, m: nn.Module) -> None:
        """A BatchNorm left after fold_bn: one that reads a conv fold_bn did not fold, or a pre-activation BatchNorm
        (it reads a residual sum, the image or a ReLU's output), which no conv's weights can absorb."""
        src = self._src(fx) if fx.args and hasattr(fx.args[0], "name") and fx.args[0].name not in self.pre_relu else None
        node = self.nodes[src] if src not in (None, IMAGE) else None
        shared = src not in (None, IMAGE) and len(fx.args[0].users) > 1
        if node is not None and node.kind in ("conv", "linear") and node.neuron == "none" and not shared:
            raise BadInputError(f"layer {fx.target} ({type(m).__name__}) after {node.name} is not folded into it; fix: "
                                "put fold_bn before to_snn (a conv whose output has other readers cannot be folded)")
        reads = ("the residual sum " + node.name if node is not None and node.kind == "add" else
                 f"{node.name}'s output, which the residual shortcut also reads," if shared else
                 "the image" if src == IMAGE else f"the output of {node.name}" if node is not None else "a branch")
        raise BadInputError(f"layer {fx.target} ({type(m).__name__}) normalises {reads} before its ReLU (pre-activation "
                            "BatchNorm): it follows no conv, so it cannot be folded into one; fix: use post-activation "
                            "blocks (conv -> BatchNorm -> ReLU, then the residual add) or distil the model (the distill "
                            "pass; target loihi-distill)")

    def _passthrough(self, fx, kind: str, src: int | None = None, **pool) -> None:
        self._append(fx.name, Node(fx.name if fx.op != "call_module" else fx.target, kind,
                                   [self._src(fx) if src is None else src], pool=pool))

    def _relu(self, fx, name: str) -> None:
        place = where(fx)
        src = self._src(fx)
        node = self.nodes[src] if src != IMAGE else None
        if node is None or node.kind in PASSTHROUGH or node.neuron != "none" or node.kind == "scale" \
                or any(src in n.inputs for n in self.nodes):  # a ReLU must be its layer's only reader
            raise BadInputError(f"{name} ({place}): a ReLU must directly follow a conv, linear or residual add; fix: "
                                "reorder the model")
        node.neuron, node.relu_name = "if", name
        self.pre_relu |= {name for name, i in self.index.items() if i == src}
        self.index[fx.name] = src

    def _add(self, fx) -> None:
        if len(fx.args) != 2 or fx.kwargs or not all(hasattr(a, "name") for a in fx.args):
            raise BadInputError(f"{_op(fx)} ({where(fx)}): only the sum of two tensors converts (a residual add); "
                                "fix: add two branches")
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
        raise BadInputError(f"layer {name}: grouped, dilated, 'same' or non-zero padded convs are not supported by the spiking conversions (to_snn, to_sdnn); "
                            "fix: use plain convs with integer zero padding")
