"""PT2E quantization shared by the passes that apply edgekit's INT8 plan inside a torch.export converter (to_tflite
with litert-torch's quantizer, to_executorch with XNNPACK's): the plan, the graph rewrites that keep the quantizers
from miscompiling published architectures, and the prepare / calibrate / convert sweep.

The converter-specific parts (which quantizer, which ops it must treat specially) stay in each backend's folder.
"""

from __future__ import annotations

import dataclasses
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edgekit.errors import BadInputError, first_line
from edgekit.progress import step, track
from edgekit.quant.fake_quant import batched, observed_stats
from edgekit.quant.observers import observe
from edgekit.quant.plan import (ObserverTrial, QuantPlan, choose_observer, keep_float, observer_decision, observers_to_try,
                                target_distance, with_observer)
from edgekit.quant.torch_plan import (FakeQuantJudge, calibrate_observers, layer_table, mixed_precision,
                                      output_layer_names, range_observer_class)
from edgekit.quiet import quiet


# the ops that multiply-accumulate, as torch.export names them
WEIGHTED_MAC_OPS = ("conv1d", "conv2d", "convolution", "conv_transpose2d", "linear", "addmm")
MAC_OPS = WEIGHTED_MAC_OPS + ("mm", "bmm", "matmul", "baddbmm", "einsum")


def aten_name(node) -> str:
    return getattr(node.target, "__name__", "").split(".")[0] if node.op == "call_function" else ""


def node_location(node) -> str:
    """Where an exported op comes from: the full module path that calls it (torch.export's nn_module_stack) and the
    source line, e.g. `module fc_pitch (tests/zoo/models.py:145)` or `the top-level module (models.py:145)`."""
    stack = node.meta.get("nn_module_stack") or {}
    paths = [path for path, _ in stack.values() if path]
    module = "module " + paths[-1].replace("L['self'].", "") if paths else "the top-level module"
    trace = [line for line in (node.meta.get("stack_trace") or "").splitlines() if line.strip().startswith("File ")]
    # a non-strict export's trace ends inside torch (nn/modules/linear.py): the model's own line is the last one outside
    own = [line for line in trace if "site-packages" not in line and "/torch/" not in line]
    match = re.search(r'File "([^"]+)", line (\d+)', (own or trace)[-1]) if trace else None
    if match:
        file = Path(match.group(1))
        file = file.relative_to(Path.cwd()) if file.is_relative_to(Path.cwd()) else Path(file.name)
        return f"{module} ({file}:{match.group(2)})"
    return module


def in_module(name: str):
    """Node filter: the node runs inside module `name` (a full path, as the plan names layers)."""
    def inside(node) -> bool:
        return any(path.replace("L['self'].", "") == name for path, _ in (node.meta.get("nn_module_stack") or {}).values())
    return inside


def leave_float(node) -> None:
    """An op float by choice: no output quantization, and no op reading it quantizes that input (a consumer's input
    observer would otherwise become the op's INT8 output at conversion, with a scale LiteRT refuses)."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    node.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=None, _annotated=True)
    node.meta["edgekit_float_by_option"] = True
    for user in node.users:
        annotation = user.meta.get("quantization_annotation")
        if annotation is not None:
            annotation.input_qspec_map.pop(node, None)


def leave_float_until_stable(model, should_leave, mark: str) -> None:
    """leave_float every node `should_leave` picks, marked `mark`, until a sweep of the graph picks none: leaving one
    op float can make its neighbours qualify."""
    changed = True
    while changed:
        changed = False
        for node in model.graph.nodes:
            if should_leave(node):
                leave_float(node)
                node.meta[mark] = True
                changed = True


def read_as_int8(reader, node) -> bool:
    """`reader` quantizes `node`'s output as its input."""
    annotation = reader.meta.get("quantization_annotation")
    return annotation is not None and node in annotation.input_qspec_map


def _float_producer(node) -> bool:
    """Its output is float: edgekit left it float, or the quantizer annotated nothing of it (a softmax XNNPACKQuantizer
    has no pattern for; a model input). A conv whose ReLU carries the output quantization is annotated (its input and
    weight), so never counts: leaving the ReLU float would take the conv out of INT8."""
    return bool(node.meta.get("edgekit_float_by_option")) or (
        node.op in ("call_function", "placeholder") and "quantization_annotation" not in node.meta)


def _rounding_island(node) -> bool:
    """An op that is no conv, linear or matmul, that the quantizer gave INT8 inputs or output, whose every input but
    stored constants is float (_float_producer) and whose output no op reads as INT8: in INT8 it would only round
    float values (and its constants) to 8 bits and back."""
    annotation = node.meta.get("quantization_annotation")
    if annotation is None or node.meta.get("edgekit_float_by_option") or aten_name(node) in MAC_OPS \
            or (annotation.output_qspec is None and not annotation.input_qspec_map):
        return False
    inputs = [i for i in node.all_input_nodes if i.op != "get_attr"]
    return bool(inputs) and all(_float_producer(i) for i in inputs) \
        and not any(read_as_int8(user, node) for user in node.users)


def rounding_islands_left_float(model) -> None:
    """After annotation: every _rounding_island left float, to a fixed point (an L2CS head's expectation over a float
    softmax: its MUL quantized the probabilities and the bin centres, then its SUM read them in float)."""
    leave_float_until_stable(model, _rounding_island, "edgekit_rounding_island")


def rounding_island_decisions(prepared) -> list[str]:
    """One line per op rounding_islands_left_float left float."""
    return [f"{aten_name(node)} `{node.name}` in {node_location(node)} kept float: its inputs are float (an op the "
            "quantizer has no INT8 pattern for) and nothing reads it as INT8, so INT8 would only round it"
            for node in prepared.graph.nodes if node.meta.get("edgekit_rounding_island")]


def plan(options, module, args, ctx, inputs, tensors, isa_profile: str, weight_bits: int,
         float_macs_outside: int = 0) -> QuantPlan:
    """edgekit's plan for a PT2E quantizer: layers with MACs, observer ranges, keep_float, and mixed precision scored
    in torch with fake quantization. `options`: the pass's XnnpackInt8Options fields; `float_macs_outside`: float MACs
    that the backend's measured INT8 share counts but the plan's layers do not hold (recurrent_macs)."""
    result = QuantPlan(weights={"dtype": "int8", "bits": weight_bits, "scheme": "symmetric", "granularity": "per_output_channel"},
                       activations={"dtype": "int8", "scheme": "asymmetric", "granularity": "per_tensor",
                                    "observer": options.observer,
                                    **({"percentile": options.percentile} if options.observer == "percentile" else {})},
                       isa_profile=isa_profile, layers=layer_table(module, args),
                       calibration={"source": ctx.calib.meta.get("source"), "n": len(inputs), "digest": ctx.calib.digest()})
    result = keep_float(result, options.keep_float)
    outputs: list = []  # the float outputs on the calibration set, from the range sweep: the judge's reference
    with quiet():
        stats = observed_stats(module, batched(tensors), outputs=outputs)
    n = min(options.sensitivity_samples, len(inputs))
    float_outputs = np.concatenate(outputs)[:n]

    def judge_with(observer: str) -> tuple[dict, FakeQuantJudge]:
        ranges = {name: observe(s, observer, options.percentile) for name, s in stats.items()}
        return ranges, FakeQuantJudge(module, inputs.take(n), ctx.card, ranges, weight_bits, float_outputs=float_outputs)

    ranges, judge = judge_with(options.observer)
    decision = []
    if options.observer_search:
        observer, ranges, judge, decision = _choose_observer(result, options, judge_with, (ranges, judge))
        result = with_observer(result, observer, result.ranges, options.percentile)
    result = mixed_precision(result, judge, options.target_error_increase_deg, options.min_int8_mac_fraction,
                             options.mixed_precision, options.target_p95_diff_deg, options.target_max_diff_deg)
    if options.single_channel_convs == "float":  # after mixed precision: the MAC share it needed goes first
        result = single_channel_convs_float(result, module, options.min_int8_mac_fraction, float_macs_outside)
    if options.output_layers == "float":
        result = output_layers_float(result, module, args, options.min_int8_mac_fraction, float_macs_outside)
    return result.model_copy(update={"ranges": {name: [float(lo), float(hi)] for name, (lo, hi) in ranges.items()},
                                     "decisions": decision + result.decisions})


def single_channel_convs_float(plan: QuantPlan, module, min_int8_mac_fraction: float, float_macs_outside: int = 0) -> QuantPlan:
    """Convolutions over one input channel go float, smallest first, while at least min_int8_mac_fraction of the MACs
    (`float_macs_outside` counted as float too) stays INT8: XNNPACK's INT8 convolutions pad each kernel tap's input
    channels to 8, so such a conv does 8x its MACs (GazeResNet18's 1-channel 7x7 stem alone on AVX2 kernels: 0.81 ms
    INT8, 0.15 ms float: benchmarks/int8_ceiling.md; the models: benchmarks/single_channel_convs.md)."""
    modules = dict(module.named_modules())
    convs = [lp for lp in plan.layers if lp.op == "Conv" and getattr(modules.get(lp.name), "in_channels", None) == 1]
    return _float_while_share_holds(plan, convs, "float: one input channel, which XNNPACK's INT8 conv pads to 8 "
                                    "(single_channel_convs)", min_int8_mac_fraction, float_macs_outside)


def output_layers_float(plan: QuantPlan, module, args, min_int8_mac_fraction: float,
                        float_macs_outside: int = 0) -> QuantPlan:
    """Layers whose output is the model's output (a head regressing pitch and yaw) go float, smallest first, while
    min_int8_mac_fraction holds: XNNPACK's and LiteRT's INT8 fully connected and conv write INT8, so the output was
    rounded to 8 bits and clipped at its calibrated range; in float the layer reads its INT8 input dequantized
    (benchmarks/tflite_output_layers.md). onnx-int8 gets the same from an integer Gemm with a float output."""
    names = output_layer_names(module, args)
    return _float_while_share_holds(plan, [lp for lp in plan.layers if lp.name in names],
                                    "float: writes the model's output, which INT8 would round and clip at its calibrated "
                                    "range (output_layers)", min_int8_mac_fraction, float_macs_outside)


def _float_while_share_holds(plan: QuantPlan, candidates: list, reason: str, min_int8_mac_fraction: float,
                             float_macs_outside: int) -> QuantPlan:
    """The INT8 ones of `candidates` go float with `reason`, smallest first, while at least min_int8_mac_fraction of
    the MACs (`float_macs_outside` counted as float too) stays INT8."""
    total = sum(lp.macs for lp in plan.layers) + float_macs_outside

    def int8_share(p: QuantPlan) -> float:
        return sum(lp.macs for lp in p.layers if lp.int8) / total if total else 0.0

    for lp in sorted((lp for lp in candidates if lp.int8), key=lambda lp: lp.macs):
        candidate = plan.with_float({lp.name}, reason)
        if int8_share(candidate) < min_int8_mac_fraction:
            break
        plan = candidate
    return plan


def recurrent_macs(module, args) -> int:
    """Multiply-accumulates of the LSTM, GRU and RNN layers in one forward on `args`: not plan layers, but lowered to
    ExecuTorch they become float linear ops, which the program's INT8 share counts."""
    import torch

    gates = {torch.nn.LSTM: 4, torch.nn.GRU: 3, torch.nn.RNN: 1}
    total = 0

    def count(m, inputs, _out) -> None:
        nonlocal total
        x = inputs[0]
        if x.dim() == 2:  # unbatched: (steps, features)
            steps, batch = x.shape[0], 1
        else:
            steps, batch = (x.shape[1], x.shape[0]) if m.batch_first else (x.shape[0], x.shape[1])
        directions = 2 if m.bidirectional else 1
        for layer in range(m.num_layers):
            width = m.input_size if layer == 0 else m.hidden_size * directions
            total += batch * steps * directions * gates[type(m)] * m.hidden_size * (width + m.hidden_size)

    hooks = [m.register_forward_hook(count) for m in module.modules() if type(m) in gates]
    if hooks:
        with torch.no_grad():
            module(*args)
    for h in hooks:
        h.remove()
    return total


def _choose_observer(plan: QuantPlan, options, judge_with, first) -> tuple[str, dict, FakeQuantJudge, list[str]]:
    """Every observer's all-INT8 plan judged in torch fake quantization; quant.plan.choose_observer keeps one."""
    int8 = {lp.name for lp in plan.layers if lp.int8}
    trials, judges = [], {}
    candidates = observers_to_try(options.observer)
    for observer in track(candidates, description=f"observer choice: all-INT8 plans with {', '.join(candidates)} ranges"):
        ranges, judge = first if observer == options.observer else judge_with(observer)
        judges[observer] = (ranges, judge)
        increase, diff = judge.differences(int8)
        p95, largest = float(np.percentile(diff, 95)), float(diff.max())
        distance = target_distance(increase, p95, largest, options.target_error_increase_deg, options.target_p95_diff_deg,
                                   options.target_max_diff_deg)
        trials.append(ObserverTrial(observer, plan, increase, float(diff.mean()), largest, distance))
    chosen, why = choose_observer(trials)
    where = f"on {len(judge.truth)} calibration samples (torch fake quantization)"
    return (chosen.observer, *judges[chosen.observer], [observer_decision(chosen, why, options.observer, trials, where)])


def with_edgekit_observers(config, plan: QuantPlan, options):
    """A quantizer's QuantizationConfig whose activation ranges come from edgekit's observer: the plan's (chosen by
    the output when observer_search is on), else the pass's."""
    act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=range_observer_class().with_args(
        method=plan.activations.get("observer", options.observer), percentile=options.percentile, eps=2**-12))
    return dataclasses.replace(config, input_activation=act, output_activation=act)


# The global averages' own ranges are widened by this factor: fitted to the 512 calibration samples exactly, one of
# stn_gaze's 2,000 unseen images pooled beyond them and was clipped (largest difference from FP32 12.2 deg in LiteRT,
# against 7.2 with the shared range and 4.3 with 1.5x headroom); the range is still far narrower than the input's
AVERAGE_HEADROOM = 1.5


def averages_own_output_range(model, output_spec) -> None:
    """Every INT8 global average (an adaptive pool to 1x1, a mean) observes its own output, with AVERAGE_HEADROOM,
    instead of sharing its input's range, as litert-torch 0.10's and ExecuTorch 1.5's XNNPACK quantizers have it (their
    adaptive_avg_pool2d annotator and propagate_annotation's shared-observer ops); a view or flatten after it goes on
    sharing the pool's. The average of a feature map spans far less than the map, so the shared scale left the pooled
    features a few INT8 steps. Mean / largest difference from FP32 on 2,000 unseen images: GazeResNet18 0.395 / 1.328
    deg -> 0.257 / 0.914 in LiteRT, 0.396 / 1.328 -> 0.260 / 1.009 in ExecuTorch; MobileGaze (squeeze-and-excitation
    pools) 1.785 / 11.458 -> 1.238 / 6.678 and 1.812 / 21.001 -> 1.239 / 7.111 (LiteRT: benchmarks/int8_peers.md); both
    runtimes' MEAN rescales. A local pool (ITracker's 9x15 -> 3x5) keeps the shared range: with its own it was further
    from FP32 (0.362 / 1.294 -> 0.401 / 2.151 deg)."""
    import dataclasses

    from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

    spec, observer = output_spec, output_spec.observer_or_fake_quant_ctr.p  # partial(EdgekitRangeObserver, ...)
    if observer.func.__name__ == "EdgekitRangeObserver":
        spec = dataclasses.replace(output_spec, observer_or_fake_quant_ctr=observer.func.with_args(
            **{**observer.keywords, "headroom": AVERAGE_HEADROOM}))
    for node in model.graph.nodes:
        annotation = node.meta.get("quantization_annotation")
        if _global_average(node) and annotation is not None \
                and isinstance(annotation.output_qspec, SharedQuantizationSpec):
            annotation.output_qspec = spec


def _global_average(node) -> bool:
    name = aten_name(node)
    if name == "adaptive_avg_pool2d":
        size = node.args[1]
        return all(s == 1 for s in (size if isinstance(size, (list, tuple)) else [size]))
    return name == "mean"


def quantize(module, args, quantizer, samples: list[tuple], who: str, fallback: str, decisions_of=lambda prepared: [],
             fold_quantize: bool = False):
    """export, the graph rewrites below, prepare_pt2e, two calibration sweeps (ranges, then histograms), convert_pt2e;
    returns (the QDQ module, decision lines). `decisions_of(prepared)`: the converter's own lines about the prepared
    graph. `fallback`: the target a refusal suggests. `fold_quantize`: store INT8 weights as constants (ExecuTorch's
    lowering wants them so) rather than float weights with a quantize op (what litert-torch reads)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    decisions = []
    strict = True
    try:
        # strict (TorchDynamo) export records where each op came from, which the quantizers need to recognise
        # residual adds; non-strict left GazeResNet18's 8 adds in float (benchmarks/tflite.md)
        exported = export(module, args, who, strict=True).module()
    except BadInputError as exc:
        strict = False
        exported = export(module, args, who).module()
        decisions.append(f"strict torch.export failed ({exc}); exported non-strict: residual adds may stay float")
    decisions += unfuse_shared_conv_bn(exported) + relu_before_max_pool(exported)
    try:
        with quiet():
            with step("preparing PT2E quantization"):
                prepared = prepare_pt2e(exported, quantizer)
            decisions += decisions_of(prepared)
            twin = batched_twin(module, quantizer, samples, strict)
            if twin is not None and same_observers(twin[0], prepared):
                calibrate_observers(twin[0], twin[1], len(samples))
                copy_observers(twin[0], prepared)
            else:
                calibrate_observers(prepared, samples)
            with step("converting the calibrated PT2E model"), _without_qat_conv_bn_folding():
                return convert_pt2e(prepared, fold_quantize=fold_quantize), decisions
    except Exception as exc:
        raise BadInputError(f"{who}: PT2E INT8 quantization failed ({first_line(exc)}); fix: keep the failing "
                            f"layer float with keep_float, or use the {fallback} target") from None


@contextmanager
def _without_qat_conv_bn_folding():
    """convert_pt2e folds QAT conv-BN patterns (the ones prepare_qat_pt2e makes) whenever a BatchNorm is left in the
    graph, which unfuse_shared_conv_bn does for a pre-activation stem: matching them exports ~100 pattern graphs,
    15 s per convert. A graph from prepare_pt2e has no such pattern, so nothing would be folded: skip the search
    (the same artifact bytes, checked on the zoo's PreActResNetGaze for TFLite and ExecuTorch)."""
    from torchao.quantization.pt2e import quantize_pt2e

    search = quantize_pt2e._fold_conv_bn_qat
    quantize_pt2e._fold_conv_bn_qat = lambda model: model
    try:
        yield
    finally:
        quantize_pt2e._fold_conv_bn_qat = search


CALIBRATION_BATCH = 64


def batched_twin(module, quantizer, samples: list[tuple], strict: bool):
    """(the model exported and prepared again at a batch of up to CALIBRATION_BATCH samples, its batches), or None.

    The artifact's graph is exported at batch 1, so its observers would see the calibration set one sample per call
    (GazeResNet18: 1,024 calls, most of the PT2E time); an observer's statistics (min, max, histograms) are sums over
    samples, so a twin graph calibrated in batches gathers the same ones, which then move over (copy_observers). None
    where the model does not export at that batch (a view fixed at batch 1, say) or the samples do not stack."""
    import torch

    n = len(samples)
    size = max(b for b in range(1, min(CALIBRATION_BATCH, n) + 1) if n % b == 0)  # equal batches: one graph shape
    if size == 1 or any(t.shape[0] != 1 for s in samples for t in s):
        return None
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    try:
        batches = [tuple(torch.cat(parts) for parts in zip(*samples[i:i + size])) for i in range(0, n, size)]
        with step(f"torch.export at batch {size}, for calibration"), quiet():
            exported = torch.export.export(module, batches[0], strict=strict).module()
            unfuse_shared_conv_bn(exported), relu_before_max_pool(exported)
            return prepare_pt2e(exported, quantizer), batches
    except Exception:  # any failure here only costs speed: the batch-1 graph is calibrated instead
        return None


def _observers(prepared) -> list[tuple[object, object, str]]:
    """(observer's node, the observer, what it observes: the op, or the constant's name), in graph order."""
    def observed(node) -> str:
        source = node.args[0] if node.args and hasattr(node.args[0], "op") else None
        return "" if source is None else source.target if source.op == "get_attr" else aten_name(source) or source.op

    return [(node, prepared.get_submodule(node.target), observed(node)) for node in prepared.graph.nodes
            if node.op == "call_module" and hasattr(prepared.get_submodule(node.target), "calculate_qparams")]


def same_observers(twin, prepared) -> bool:
    """The twin graph has the same observers, in the same order, on the same ops and constants as the artifact's."""
    a, b = _observers(twin), _observers(prepared)
    return len(a) == len(b) and all(type(x[1]) is type(y[1]) and x[2] == y[2] for x, y in zip(a, b))


def copy_observers(twin, prepared) -> None:
    """Every activation observer's statistics from the calibrated twin into the artifact's graph, pair by pair; the
    observers of constants (weights) observe the artifact graph's own constants once."""
    import torch

    for (_, source, _), (node, target, _) in zip(_observers(twin), _observers(prepared)):
        if hasattr(source, "stats"):  # edgekit's activation observers: their ranges and histograms
            target.stats = source.stats
        elif node.args[0].op == "get_attr":
            with torch.no_grad():
                target(getattr_path(prepared, node.args[0].target))
        else:
            target.load_state_dict(source.state_dict())


def getattr_path(module, path: str):
    for part in path.split("."):
        module = getattr(module, part)
    return module


_BATCH_NORMS = ("_native_batch_norm_legit_no_training", "batch_norm")


def unfuse_shared_conv_bn(graph_module) -> list[str]:
    """Keep prepare_pt2e from folding a BatchNorm into a conv whose output has other consumers.

    torchao's _fuse_conv_bn_ (run by prepare_pt2e) folds every conv -> BatchNorm pair into the conv's weights without
    looking at the conv's other users, so they receive the normalised tensor too. In a pre-activation ResNet the stem
    conv feeds both the first block's BN and the identity shortcut: the shortcut carried BN(stem) and the INT8 model
    missed by 10 deg on average, 40 at worst. An aten.clone between the conv and that BN breaks the pattern: the BN
    stays float (as edgekit's fold_bn pass left it, for the same reason) and every consumer sees the conv's output."""
    import torch

    lines = []
    graph = graph_module.graph
    for node in list(graph.nodes):
        if aten_name(node) not in _BATCH_NORMS or not node.args:
            continue
        conv = node.args[0]
        if not (hasattr(conv, "op") and aten_name(conv) in ("conv1d", "conv2d", "conv3d", "conv_transpose1d",
                                                              "conv_transpose2d", "convolution") and len(conv.users) > 1):
            continue
        with graph.inserting_after(conv):
            copy = graph.call_function(torch.ops.aten.clone.default, (conv,))
        copy.meta = {k: v for k, v in conv.meta.items() if k in ("val", "tensor_meta", "nn_module_stack", "stack_trace")}
        node.replace_input_with(conv, copy)
        others = ", ".join(f"`{u.name}`" for u in conv.users if u is not copy)
        lines.append(f"BatchNorm `{node.name}` in {node_location(node)} kept float, not folded into the conv before it "
                     f"(`{conv.name}` in {node_location(conv)}): that conv's output also feeds {others}")
    if lines:
        graph_module.recompile()
    return lines


def relu_before_max_pool(graph_module) -> list[str]:
    """max_pool -> relu becomes relu -> max_pool (the same values: relu is monotonic and max pooling pads with -inf).

    LiteRT's INT8 MAX_POOL_2D needs one scale for its input and output, and litert-torch's converter fuses the relu
    after a max pool into the pool, whose output then carries the relu's scale: the conversion failed with `'tfl.max_pool_2d'
    op quantization parameters violate the same scale constraint`. With the relu first, it fuses into the conv
    before it (conv_relu) and the pool keeps one scale."""
    import torch

    lines = []
    graph = graph_module.graph
    for relu in list(graph.nodes):
        pool = relu.args[0] if aten_name(relu) in ("relu", "relu_") and relu.args else None
        if pool is None or not hasattr(pool, "op") or aten_name(pool) != "max_pool2d" or len(pool.users) != 1 \
                or len(relu.args) != 1 or relu.kwargs:
            continue
        with graph.inserting_before(pool):
            early = graph.call_function(torch.ops.aten.relu.default, (pool.args[0],))  # never in place: x may have other users
        early.meta = {k: v for k, v in pool.args[0].meta.items() if k in ("val", "tensor_meta")} | \
            {k: v for k, v in relu.meta.items() if k in ("nn_module_stack", "stack_trace", "source_fn_stack")}
        pool.replace_input_with(pool.args[0], early)
        relu.replace_all_uses_with(pool)
        graph.erase_node(relu)
        lines.append(f"relu in {node_location(early)} moved before the max pool `{pool.name}` (the same values): LiteRT's "
                     "INT8 max pool needs one scale for input and output")
    if lines:
        graph_module.recompile()
    return lines


_WEIGHTED = ("conv1d", "conv2d", "conv3d", "convolution", "linear", "addmm")


def unshare_weights(graph_module) -> None:
    """One weight node per conv or linear call: litert-torch's annotators skip a conv or linear whose weight node is
    already annotated, so a module called twice (ITracker's eye tower, shared by both eyes) was INT8 for the first
    call and float for the second (60% of MACs in INT8 where the plan had 100%)."""
    graph = graph_module.graph
    changed = False
    for node in list(graph.nodes):
        if node.op != "get_attr" or sum(aten_name(u) in _WEIGHTED for u in node.users) < 2:
            continue
        for user in list(node.users)[1:]:
            with graph.inserting_after(node):
                copy = graph.get_attr(node.target)
            copy.meta = dict(node.meta)
            user.replace_input_with(node, copy)
            changed = True
    if changed:
        graph_module.recompile()


def export(module, args, who: str, strict: bool = False):
    import torch

    try:
        with step(f"torch.export ({'strict' if strict else 'non-strict'})"), quiet():
            return torch.export.export(module, args, strict=strict)
    except Exception as exc:
        raise BadInputError(f"{who}: torch.export failed ({first_line(exc)}); fix: make the model exportable "
                            "(no data-dependent control flow) or use the onnx target") from None
