"""to_tflite: PyTorch -> .tflite with litert-torch (no TensorFlow), FP32, FP16 weights or full INT8.

Route chosen by measurement (benchmarks/tflite.md): litert-torch converts straight from torch.export;
onnx2tf needs TensorFlow (+2.5 GB, numpy 1.x pins) and tries to download calibration data.
- fp32: litert_torch.convert.
- fp16: FP32 model, weights cast to float16 by ai-edge-quantizer (DEQUANTIZE ops; compute stays float32).
- int8: edgekit's quantization plan applied through PT2E: per-channel symmetric INT8 weights, INT8
  activations whose ranges come from edgekit's observers, float layers chosen by mixed precision. The I/O
  is float32 (a QUANTIZE op in front) or int8 (the caller quantizes with the sidecar's scale and zero point).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from importlib import metadata
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from edgekit._optional import require
from edgekit.artifact import Artifact, Format
from edgekit.backends.onnx.export import load_torch_artifact
from edgekit.backends.tflite import graph as tflite_graph
from edgekit.errors import BadInputError, first_line
from edgekit.evalset import model_inputs
from edgekit.passes.int8_options import Int8Options
from edgekit.progress import step
from edgekit.quant.fake_quant import batched, input_ranges
from edgekit.quant.plan import QuantPlan, keep_float
from edgekit.quant.torch_plan import FakeQuantJudge, calibrate_observers, layer_table, mixed_precision, range_observer_class
from edgekit.quiet import quiet

WEIGHT_BITS = 8  # XNNPACK's signed int8 kernels widen before multiplying: no u8s8 saturation (see quant/plan.py)


class ToTFLite(Int8Options):
    name: ClassVar[str] = "to_tflite"
    version: ClassVar[int] = 1
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.torch, Format.exported_program})
    produces: ClassVar[Format] = Format.tflite
    summary: ClassVar[str] = "convert to a .tflite flatbuffer with litert-torch (FP32, FP16 weights or INT8 from edgekit's plan)"

    precision: Literal["fp32", "fp16", "int8"] = Field("fp32", description="fp16: float16 weights; int8: INT8 weights and activations")
    io: Literal["float", "int8"] = Field(
        "float", description="int8 models only: float32 I/O (QUANTIZE inside) or int8 I/O quantized by the caller")

    @model_validator(mode="after")
    def _int8_io_needs_int8(self) -> ToTFLite:
        """Refused when the recipe loads, not after the passes before it have run."""
        if self.io == "int8" and self.precision != "int8":
            raise ValueError(f"to_tflite io=int8 needs precision int8, got {self.precision}; fix: set precision: int8")
        return self

    def host_dependence(self) -> str | None:
        return ("activation ranges come from float32 calibration runs in torch, whose kernels depend on the CPU"
                if self.precision == "int8" else None)

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        import torch

        litert_torch = require("litert_torch", "the to_tflite pass")
        module = load_torch_artifact(src, trusted_arch=ctx.card.arch).eval()
        args = tuple(torch.zeros(s.shape) for s in ctx.card.inputs)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "model.tflite"
        meta: dict = {"precision": self.precision}
        notes = []
        if self.precision == "int8":
            edge, plan = self._int8(litert_torch, module, args, ctx)
            meta["quant_plan"] = plan
            notes += [f"to_tflite: {plan.int8_fraction('macs'):.1%} of planned MACs in INT8 ({WEIGHT_BITS}-bit per-channel "
                      f"weights, observer {self.observer})"] + plan.decisions
        else:
            edge = _convert(litert_torch, module, args)
        with step("writing the .tflite flatbuffer"), quiet():  # litert-torch prints its progress and op counts
            edge.export(str(path))
        model = tflite_graph.read(path)
        if self.precision == "fp16":
            model = tflite_graph.read_bytes(_cast_weights_fp16(path))
            notes.append("weights stored as float16 (ai-edge-quantizer float casting); CPU kernels compute in float32")
        if self.precision == "int8":
            if self.io == "float":
                tflite_graph.float_inputs(model)
            else:
                tflite_graph.int8_outputs(model, [_output_range(module, ctx)])
        tflite_graph.write(model, path)
        io = tflite_graph.io_details(tflite_graph.read(path))
        notes.append(f"converted with litert-torch {metadata.version('litert-torch')}; inputs "
                     f"{', '.join(i['dtype'] for i in io['inputs'])}, outputs {', '.join(o['dtype'] for o in io['outputs'])}")
        return Artifact.create(path, Format.tflite, src, **meta, io=io, notes=notes)

    def _int8(self, litert_torch, module, args, ctx):
        import torch
        from litert_torch.quantize import quant_config

        if ctx.calib is None:
            raise BadInputError("to_tflite precision=int8 needs a calibration set; fix: add `calibration:` to the recipe")
        inputs = model_inputs(ctx.card, ctx.calib)
        tensors = [torch.from_numpy(inputs.arrays[s.name]) for s in ctx.card.inputs]
        plan = self._plan(module, args, ctx, inputs, tensors)
        quantizer = self._quantizer(plan)
        converted, decisions = _quantize_pt2e(module, args, quantizer, [tuple(t[i:i + 1] for t in tensors)
                                                                        for i in range(len(inputs))])
        plan = plan.model_copy(update={"decisions": plan.decisions + decisions})
        edge = _convert(litert_torch, converted, args, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer),
                        original=module)
        return edge, plan

    def _plan(self, module, args, ctx, inputs, tensors):
        """edgekit's plan: layers with MACs, observer ranges, keep_float, mixed precision scored in torch."""
        plan = QuantPlan(weights={"dtype": "int8", "bits": WEIGHT_BITS, "scheme": "symmetric", "granularity": "per_output_channel"},
                         activations={"dtype": "int8", "scheme": "asymmetric", "granularity": "per_tensor", "observer": self.observer,
                                      **({"percentile": self.percentile} if self.observer == "percentile" else {})},
                         isa_profile="xnnpack", layers=layer_table(module, args),
                         calibration={"source": ctx.calib.meta.get("source"), "n": len(inputs), "digest": ctx.calib.digest()})
        plan = keep_float(plan, self.keep_float)
        with quiet():
            ranges = input_ranges(module, batched(tensors), self.observer, self.percentile)
        with step(f"float reference outputs on {min(self.sensitivity_samples, len(inputs))} calibration samples"):
            judge = FakeQuantJudge(module, inputs.take(self.sensitivity_samples), ctx.card, ranges, WEIGHT_BITS)
        plan = mixed_precision(plan, judge, self.target_error_increase_deg, self.min_int8_mac_fraction, self.mixed_precision,
                               self.target_p95_diff_deg, self.target_max_diff_deg)
        return plan.model_copy(update={"ranges": {name: [float(lo), float(hi)] for name, (lo, hi) in ranges.items()}})

    def _quantizer(self, plan):
        """litert-torch's PT2E quantizer (per-channel symmetric weights, INT8 activations) with edgekit's observers
        for activation ranges, and the plan's float layers left unannotated."""
        from litert_torch.quantize import pt2e_quantizer

        base = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
        act = dataclasses.replace(base.input_activation, observer_or_fake_quant_ctr=range_observer_class().with_args(
            method=self.observer, percentile=self.percentile, eps=2**-12))
        quantizer = _quantizer_class()().set_global(dataclasses.replace(base, input_activation=act, output_activation=act))
        for lp in plan.float_layers:
            quantizer.set_module_name(lp.name, None)
        return quantizer


# Ops whose INT8 output LiteRT accepts with one scale and zero point only (the TFLite 8-bit quantization spec).
# tflite/kernels/activations.cc refuses any other at prepare for SOFTMAX, LOGISTIC (1/256, -128) and LOG_SOFTMAX
# (16/256, 127); TANH's reference kernel takes any, but XNNPACK's QS8 tanh only the spec's (1/128, 0).
# Keyed by the aten op's name as torch.export writes it (softmax.int, _softmax.default, ...).
FIXED_OUTPUT_QPARAMS = {"softmax": (1 / 256, -128), "_softmax": (1 / 256, -128), "sigmoid": (1 / 256, -128),
                        "log_softmax": (16 / 256, 127), "_log_softmax": (16 / 256, 127), "tanh": (1 / 128, 0)}


def _aten_name(node) -> str:
    return getattr(node.target, "__name__", "").split(".")[0] if node.op == "call_function" else ""


@functools.cache
def _quantizer_class():
    """litert-torch's PT2EQuantizer with two things fixed for edgekit's plan.

    - Fixed-output ops: litert-torch 0.10 annotates only aten._softmax and aten.sigmoid with the fixed scale, but
      torch.export writes F.softmax as aten.softmax.int: the softmax took its consumer's observed range and LiteRT
      refused it at prepare (`output->params.scale not near 1.f / 256`). After litert-torch's own annotation and its
      propagation through view/permute/mean, every op in FIXED_OUTPUT_QPARAMS whose input is quantized gets the output
      quantization LiteRT requires (then propagated on the same way); one with a float input stays float.
    - set_module_name(name, None) leaves that module float, fixed-output ops included: litert-torch 0.10 asserts on
      None, and its module-name filter reads the name from nn_module_stack's keys ('L__self___fc_yaw' -> 'fc.yaw'),
      which torch 2.13 no longer writes, so no plan layer returned to float stayed float; edgekit matches the paths.
    Recurrent layers stay float (as to_coreml keeps the recurrence): litert-torch 0.10's GRU annotator also fails on a
    GRU called without an initial hidden state."""
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.pt2e_quantizer_utils import _is_annotated, propagate_annotation
    from torchao.quantization.pt2e.quantizer import FixedQParamsQuantizationSpec, QuantizationAnnotation

    def quantized_output(node) -> bool:
        annotation = node.meta.get("quantization_annotation") if hasattr(node, "meta") else None
        return annotation is not None and annotation._annotated and annotation.output_qspec is not None

    class EdgekitPT2EQuantizer(pt2e_quantizer.PT2EQuantizer):
        STATIC_OPS = [op for op in pt2e_quantizer.PT2EQuantizer.STATIC_OPS if op not in ("gru_io_only", "fixed_qparams")]

        def set_module_name(self, module_name, quantization_config):
            self.module_name_config[module_name] = quantization_config
            return self

        def _annotate_all_static_patterns(self, model, quantization_config, filter_fn=None):
            return model if quantization_config is None else super()._annotate_all_static_patterns(
                model, quantization_config, filter_fn)

        def _annotate_for_static_quantization_config(self, model):
            for name, config in self.module_name_config.items():
                self._annotate_all_static_patterns(model, config, _in_module(name))
            for module_type, config in self.module_type_config.items():
                self._annotate_all_static_patterns(model, config, pt2e_quantizer._get_module_type_filter(module_type))
            special = [_in_module(name) for name in self.module_name_config] + \
                [pt2e_quantizer._get_module_type_filter(t) for t in self.module_type_config]
            return self._annotate_all_static_patterns(model, self.global_config, lambda n: not any(f(n) for f in special))

        def annotate(self, model):
            _unshare_weights(model)
            model = super().annotate(model)
            if self.global_config is None or self.global_config.input_activation is None:
                return model  # dynamic quantization: no activation scales at all
            in_float_module = [_in_module(name) for name, config in self.module_name_config.items() if config is None]
            for node in model.graph.nodes:
                name = _aten_name(node)
                if name not in FIXED_OUTPUT_QPARAMS or _is_annotated([node]) or not quantized_output(node.args[0]) \
                        or any(f(node) for f in in_float_module):
                    continue
                scale, zero_point = FIXED_OUTPUT_QPARAMS[name]
                spec = FixedQParamsQuantizationSpec(dtype=torch.int8, scale=scale, zero_point=zero_point, quant_min=-128,
                                                    quant_max=127, qscheme=torch.per_tensor_affine)
                node.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=spec, _annotated=True)
            propagate_annotation(model)  # on through a view or permute after it, as litert-torch does for the others
            return model

    return EdgekitPT2EQuantizer


def _in_module(name: str):
    """Node filter: the node runs inside module `name` (a full path, as the plan names layers)."""
    def inside(node) -> bool:
        return any(path.replace("L['self'].", "") == name for path, _ in (node.meta.get("nn_module_stack") or {}).values())
    return inside


def node_location(node) -> str:
    """Where an exported op comes from: the full module path that calls it (torch.export's nn_module_stack) and the
    source line, e.g. `module fc_pitch (tests/zoo/models.py:145)` or `the top-level module (models.py:145)`."""
    stack = node.meta.get("nn_module_stack") or {}
    paths = [path for path, _ in stack.values() if path]
    module = "module " + paths[-1].replace("L['self'].", "") if paths else "the top-level module"
    trace = [line for line in (node.meta.get("stack_trace") or "").splitlines() if line.strip().startswith("File ")]
    match = re.search(r'File "([^"]+)", line (\d+)', trace[-1]) if trace else None
    if match:
        file = Path(match.group(1))
        file = file.relative_to(Path.cwd()) if file.is_relative_to(Path.cwd()) else Path(file.name)
        return f"{module} ({file}:{match.group(2)})"
    return module


def fixed_output_decisions(prepared) -> list[str]:
    """One line per op with a LiteRT-fixed INT8 output: quantized with that scale, or kept float and why."""
    lines = []
    for node in prepared.graph.nodes:
        name = _aten_name(node)
        if name not in FIXED_OUTPUT_QPARAMS:
            continue
        annotation = node.meta.get("quantization_annotation")
        op = f"{name.lstrip('_')} `{node.name}` in {node_location(node)}"
        if annotation is not None and annotation.output_qspec is not None:
            scale, zero = FIXED_OUTPUT_QPARAMS[name]
            lines.append(f"{op}: INT8 with the output quantization LiteRT requires (scale 1/{round(1 / scale)}, zero "
                         f"point {zero}), not the observed range")
        else:
            lines.append(f"{op} kept float: its input is float (no INT8 producer, or a float layer)")
    return lines


_RECURRENT = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}


def recurrent_decisions(graph_module) -> list[str]:
    """One line per recurrent layer: each stays float, and why (the plan lists conv and linear layers only, so without
    this line a float LSTM showed only in the measured INT8 share)."""
    return [f"{_RECURRENT[_aten_name(node)]} `{node.name}` in {node_location(node)} kept float: edgekit quantizes no "
            "recurrence for LiteRT (litert-torch 0.10 annotates none but a GRU's input and output, and that annotator fails "
            "on a GRU called without an initial hidden state); LiteRT runs its gates as float FULLY_CONNECTED ops"
            for node in graph_module.graph.nodes if _aten_name(node) in _RECURRENT]


def _quantize_pt2e(module, args, quantizer, samples: list[tuple]):
    """prepare_pt2e, two calibration sweeps (ranges, then histograms), convert_pt2e; returns the QDQ module."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    decisions = []
    try:
        # strict (TorchDynamo) export records where each op came from, which litert-torch's quantizer needs to
        # recognise residual adds; non-strict left GazeResNet18's 8 adds in float (benchmarks/tflite.md)
        exported = _export(module, args, strict=True).module()
    except BadInputError as exc:
        exported = _export(module, args).module()
        decisions.append(f"strict torch.export failed ({exc}); exported non-strict: residual adds may stay float")
    decisions += _unfuse_shared_conv_bn(exported) + _relu_before_max_pool(exported)
    try:
        with quiet():
            with step("preparing PT2E quantization"):
                prepared = prepare_pt2e(exported, quantizer)
            decisions += fixed_output_decisions(prepared) + recurrent_decisions(prepared)
            calibrate_observers(prepared, samples)
            with step("converting the calibrated PT2E model"):
                return convert_pt2e(prepared, fold_quantize=False), decisions
    except Exception as exc:
        raise BadInputError(f"to_tflite: PT2E INT8 quantization failed ({first_line(exc)}); fix: keep the failing "
                            "layer float with keep_float, or use the onnx-int8 target") from None


_BATCH_NORMS = ("_native_batch_norm_legit_no_training", "batch_norm")


def _unfuse_shared_conv_bn(graph_module) -> list[str]:
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
        if _aten_name(node) not in _BATCH_NORMS or not node.args:
            continue
        conv = node.args[0]
        if not (hasattr(conv, "op") and _aten_name(conv) in ("conv1d", "conv2d", "conv3d", "conv_transpose1d",
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


def _relu_before_max_pool(graph_module) -> list[str]:
    """max_pool -> relu becomes relu -> max_pool (the same values: relu is monotonic and max pooling pads with -inf).

    LiteRT's INT8 MAX_POOL_2D needs one scale for its input and output, and litert-torch's converter fuses the relu
    after a max pool into the pool, whose output then carries the relu's scale: the conversion failed with `'tfl.max_pool_2d'
    op quantization parameters violate the same scale constraint`. With the relu first, it fuses into the conv
    before it (conv_relu) and the pool keeps one scale."""
    import torch

    lines = []
    graph = graph_module.graph
    for relu in list(graph.nodes):
        pool = relu.args[0] if _aten_name(relu) in ("relu", "relu_") and relu.args else None
        if pool is None or not hasattr(pool, "op") or _aten_name(pool) != "max_pool2d" or len(pool.users) != 1 \
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


def _unshare_weights(graph_module) -> None:
    """One weight node per conv or linear call: litert-torch's annotators skip a conv or linear whose weight node is
    already annotated, so a module called twice (ITracker's eye tower, shared by both eyes) was INT8 for the first
    call and float for the second (60% of MACs in INT8 where the plan had 100%)."""
    graph = graph_module.graph
    changed = False
    for node in list(graph.nodes):
        if node.op != "get_attr" or sum(_aten_name(u) in _WEIGHTED for u in node.users) < 2:
            continue
        for user in list(node.users)[1:]:
            with graph.inserting_after(node):
                copy = graph.get_attr(node.target)
            copy.meta = dict(node.meta)
            user.replace_input_with(node, copy)
            changed = True
    if changed:
        graph_module.recompile()


def _export(module, args, strict: bool = False):
    import torch

    try:
        with step(f"torch.export ({'strict' if strict else 'non-strict'})"), quiet():
            return torch.export.export(module, args, strict=strict)
    except Exception as exc:
        raise BadInputError(f"to_tflite: torch.export failed ({first_line(exc)}); fix: make the model exportable "
                            "(no data-dependent control flow) or use the onnx target") from None


def _convert(litert_torch, module, args, original=None, **kwargs):
    try:
        with step("converting with litert-torch"), quiet():
            return litert_torch.convert(module, args, **kwargs)
    except Exception as exc:
        text = str(exc)
        match = re.search(r"Lowering not found: aten\.(\w+)", text)
        if match:
            op = match.group(1)
            where = op_location(original or module, args, op)
            raise BadInputError(f"to_tflite: operator aten.{op} (in module {where}) has no LiteRT lowering in litert-torch; "
                                "fix: replace that layer with supported ops, or use the onnx or coreml target") from None
        raise BadInputError(f"to_tflite: litert-torch failed ({first_line(exc)}); fix: check the model exports with "
                            "torch.export, or use the onnx target") from None


def op_location(module, args, op: str) -> str:
    """The module path that calls aten `op`, from torch.export's nn_module_stack."""
    try:
        with quiet():
            graph = _export(module, args).graph
    except BadInputError:
        return "unknown module"
    for node in graph.nodes:
        if node.op == "call_function" and getattr(node.target, "__name__", "").split(".")[0] == op:
            stack = node.meta.get("nn_module_stack") or {}
            paths = [path for path, _ in stack.values() if path]
            return paths[-1].replace("L['self'].", "") if paths else "(top level)"
    return "unknown module"


def _cast_weights_fp16(path: Path) -> bytes:
    quantizer = require("ai_edge_quantizer.quantizer", "FP16 TFLite weights")
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    q = quantizer.Quantizer(str(path))
    q.add_weight_only_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, 16, algorithm_key=AlgorithmName.FLOAT_CASTING)
    with quiet():
        return bytes(q.quantize(enable_progress_report=False).quantized_model)


def _output_range(module, ctx) -> tuple[float, float]:
    """Range of the model output over the calibration set: the int8 output's scale and zero point."""
    import torch

    inputs = model_inputs(ctx.card, ctx.calib)
    with torch.no_grad():
        out = module(*[torch.from_numpy(inputs.arrays[s.name]) for s in ctx.card.inputs]).numpy()
    return float(out.min()), float(out.max())
