"""to_executorch: PyTorch -> ExecuTorch program (.pte) with the XNNPACK delegate, FP32 or INT8 from edgekit's plan.

- fp32: torch.export -> to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()]) -> to_executorch.
- int8: edgekit's quantization plan applied through PT2E with ExecuTorch's XNNPACKQuantizer: per-channel symmetric
  INT8 weights, INT8 activations whose ranges come from edgekit's observers, float layers chosen by mixed precision
  (edgekit.quant.pt2e, shared with to_tflite). The program keeps float32 I/O: quantize/dequantize run inside.

Recurrent layers: single-layer, unidirectional ones are unrolled first (edgekit.passes.recurrent) into linear/sigmoid/
tanh ops that XNNPACK runs (in INT8 too); stacked or bidirectional ones stay aten.lstm / aten.gru, which ExecuTorch's
lowering decomposes into the same kind of ops (float in an INT8 program: the quantizer never sees their linears).

A failure names the op and the module that calls it (edgekit.quant.pt2e.node_location), as to_tflite does.
"""

from __future__ import annotations

import functools
import math
import re
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from edgekit._optional import require
from edgekit.artifact import Artifact, Format
from edgekit.backends.executorch import program as pte
from edgekit.backends.onnx.export import load_torch_artifact
from edgekit.errors import BadInputError, first_line
from edgekit.evalset import model_inputs
from edgekit.passes.int8_options import XnnpackInt8Options
from edgekit.passes.recurrent import unroll_recurrent
from edgekit.progress import step
from edgekit.quant import pt2e
from edgekit.quant.pt2e import WEIGHTED_MAC_OPS, aten_name, in_module, node_location
from edgekit.quiet import quiet

WEIGHT_BITS = 8  # XNNPACK's signed int8 kernels widen before multiplying (quant/plan.py ISA_PROFILES["xnnpack"])
WHO = "to_executorch"


class ToExecuTorch(XnnpackInt8Options):
    name: ClassVar[str] = "to_executorch"
    # 2: INT8 unshares weights and keeps the plan's float layers; stacked RNNs lowered; 3: output_layers float;
    # 4: ops that would round only float values stay float (pt2e.rounding_islands_left_float)
    version: ClassVar[int] = 4
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.torch, Format.exported_program})
    produces: ClassVar[Format] = Format.pte
    summary: ClassVar[str] = "lower to an ExecuTorch .pte with the XNNPACK delegate (FP32, or INT8 from edgekit's plan)"

    precision: Literal["fp32", "int8"] = Field("fp32", description="int8: INT8 weights and activations (PT2E, XNNPACKQuantizer)")

    def host_dependence(self) -> str | None:
        return ("activation ranges come from float32 calibration runs in torch, whose kernels depend on the CPU"
                if self.precision == "int8" else None)

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        import torch

        require("executorch.exir", "the to_executorch pass")
        module = load_torch_artifact(src, trusted_arch=ctx.card.arch).eval()
        module, unrolled, decomposed = unroll_recurrent(module, skip_unsupported=True)
        args = tuple(torch.zeros(s.shape) for s in ctx.card.inputs)
        meta: dict = {"precision": self.precision}
        notes = []
        if unrolled:
            notes.append(f"recurrent layers {', '.join(unrolled)} unrolled into linear/sigmoid/tanh ops over the "
                         f"{ctx.card.image_input.shape[1]}-step window (ExecuTorch has no GRU/LSTM kernel)")
        if decomposed:
            float_note = " (float in this INT8 program)" if self.precision == "int8" else ""
            notes.append(f"stacked or bidirectional recurrent layers {', '.join(decomposed)} lowered by torch's own "
                         f"GRU/LSTM decomposition{float_note}")
        if self.precision == "int8":
            module, plan = self._int8(module, args, ctx)
            meta["quant_plan"] = plan
            notes += [f"to_executorch: {plan.int8_fraction('macs'):.1%} of planned MACs in INT8 ({WEIGHT_BITS}-bit "
                      f"per-channel weights, observer {plan.activations['observer']})"] + plan.decisions
        program = _lower(module, args)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "model.pte"
        with step("writing the .pte program"):
            path.write_bytes(program.buffer)
        graph = pte.read(path)
        if self.precision == "int8":
            _check_int8_share(graph, module, plan, self.min_int8_mac_fraction)
        notes.append(f"lowered with executorch {metadata.version('executorch')}: {graph.delegated_share():.1%} of MACs in "
                     f"{len(graph.delegates)} XNNPACK delegate call(s); portable kernels: "
                     + (", ".join(f"{op} x{n}" for op, n in graph.portable_ops().items()) or "none"))
        return Artifact.create(path, Format.pte, src, **meta, io=graph.io(), notes=notes)

    def _int8(self, module, args, ctx):
        """The QDQ module of edgekit's plan, quantized by XNNPACKQuantizer with edgekit's observers."""
        import torch
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config

        if ctx.calib is None:
            raise BadInputError("to_executorch precision=int8 needs a calibration set; fix: add `calibration:` to the recipe")
        inputs = model_inputs(ctx.card, ctx.calib)
        tensors = [torch.from_numpy(inputs.arrays[s.name]) for s in ctx.card.inputs]
        plan = pt2e.plan(self, module, args, ctx, inputs, tensors, "xnnpack", WEIGHT_BITS,
                         float_macs_outside=pt2e.recurrent_macs(module, args))  # lowered to float linear ops
        base = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
        quantizer = _quantizer_class()().set_global(pt2e.with_edgekit_observers(base, plan, self))
        # XNNPACKQuantizer.set_module_name asserts on a None config (executorch 1.5): the plan's float layers are
        # left out with its node filter instead
        in_float_layer = [in_module(lp.name) for lp in plan.float_layers]
        quantizer.set_filter_function(lambda node: not any(inside(node) for inside in in_float_layer))
        samples = [tuple(t[i:i + 1] for t in tensors) for i in range(len(inputs))]
        converted, decisions = pt2e.quantize(module, args, quantizer, samples, WHO, "onnx-int8", fold_quantize=True,
                                             decisions_of=pt2e.rounding_island_decisions)
        return converted, plan.model_copy(update={"decisions": plan.decisions + decisions})


@functools.cache
def _quantizer_class():
    """XNNPACKQuantizer, with one weight node per conv / linear call before annotation (pt2e.unshare_weights): a module
    called twice (ITracker's eye tower) otherwise had its first call float and its second INT8 with a float bias,
    and XNNPACK refused that program when the runtime loaded it ("Failed to create depthwise convolution node").
    Global averages (a pool to 1x1, a mean) observe their own output range (pt2e.averages_own_output_range). An op it
    quantizes whose inputs are all float and whose output nothing reads as INT8 stays float
    (pt2e.rounding_islands_left_float: an L2CS head's expectation over a softmax, which it does not quantize)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    class UnsharedWeightsXNNPACKQuantizer(XNNPACKQuantizer):
        # without the QAT-only conv-BN patterns: prepare_pt2e fuses each conv -> BatchNorm it can before annotating
        # (torchao's quantize_pt2e), and a pair it leaves (a conv whose output has other readers) is no match either,
        # so in edgekit's PTQ graphs they matched nothing; their search exported 24 pattern graphs, 6.5 s per compile
        SUPPORTED_PATTERNS = [p for p in XNNPACKQuantizer.SUPPORTED_PATTERNS if not p.is_qat]

        def transform_for_annotation(self, model):
            pt2e.unshare_weights(model)
            return super().transform_for_annotation(model)

        def annotate(self, model):
            model = super().annotate(model)
            pt2e.averages_own_output_range(model, self.global_config.output_activation)
            pt2e.rounding_islands_left_float(model)
            return model

    return UnsharedWeightsXNNPACKQuantizer


def _lower(module, args):
    """torch.export (non-strict, as the FP32 ONNX export), XNNPACK partitioning and lowering, ExecuTorch program."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    exported = pt2e.export(module, args, WHO)
    try:
        with step("lowering to ExecuTorch with the XNNPACK partitioner"), quiet(), \
                _only_matchable_xnnpack_patterns(exported.graph):
            return to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
    except Exception as exc:
        raise BadInputError(f"{WHO}: ExecuTorch could not lower {_failing_op(exc, exported.graph)} "
                            f"({first_line(exc, 200)}); fix: replace that layer with supported ops, or use the onnx "
                            "target") from None


# XNNPACK's lowering turns a decomposed bilinear upsample and a decomposed masked SDPA back into its own ops by matching
# pattern graphs, which it exports and lowers on first use in each process (1.4 s and 1.0 s here, a fifth of a cold
# TinyGaze compile). A model whose exported graph calls neither op cannot hold their decomposition (unless written out
# by hand, which then runs as the ops it is written in): for it the patterns are left empty, the program the same.
# module -> (its getter, what the getter returns when empty, the op a graph must call for the patterns to match)
_PATTERNS_NEEDING = {"bilinear_2d": ("get_graphs_dict", dict, "upsample_bilinear2d"),
                     "sdpa": ("get_graphs", list, "scaled_dot_product")}


@contextmanager
def _only_matchable_xnnpack_patterns(graph):
    """While lowering `graph`: the XNNPACK pattern graphs of ops the graph never calls, empty."""
    import importlib

    called = {aten_name(node) for node in graph.nodes}
    swapped = []
    for name, (getter, empty, op) in _PATTERNS_NEEDING.items():
        if not any(op in c for c in called):
            module = importlib.import_module(f"executorch.backends.xnnpack.partition.graphs.{name}")
            swapped.append((module, getter, getattr(module, getter)))
            setattr(module, getter, empty)
    try:
        yield
    finally:
        for module, getter, original in swapped:
            setattr(module, getter, original)


def _failing_op(exc: Exception, graph) -> str:
    """`aten.<op> `node` in module <path> (file:line)` for the first op an ExecuTorch error names, else `the model`.
    Lowering decomposes ops, so the op it names may carry a suffix the exported graph's lacks (max_pool2d in the
    graph, max_pool2d_with_indices in the error): a graph op matches the op itself or the op plus a `_` suffix."""
    ops = re.findall(r"aten(?:::|\.)(\w+)", str(exc))
    for op in ops:
        node = next((n for n in graph.nodes if aten_name(n) and f"{op}_".startswith(f"{aten_name(n)}_")), None)
        if node is not None:
            return f"aten.{op} `{node.name}` in {node_location(node)}"
    return f"aten.{ops[0]}" if ops else "the model"


def _check_int8_share(graph: pte.Program, converted, plan, min_fraction: float) -> None:
    """Refuse an INT8 program whose measured INT8 share of conv and linear MACs (as lowered) misses
    min_int8_mac_fraction though the plan met it, naming the float conv and linear ops: the quantizer or the lowering
    left a layer float that the plan had in INT8. A gate failure would say only `int8_macs 0.695<0.9`. Matmuls of two
    activations are not in that share (backends.base.weight_int8_share): XNNPACK's batch matmul is FP32-only."""
    share, _ = graph.int8_share()
    if share >= min_fraction or plan.int8_fraction("macs") < min_fraction:
        return  # met, or mixed precision itself chose this (its decisions say why)
    in_float_layer = [in_module(lp.name) for lp in plan.float_layers]
    float_ops = [n for n in converted.graph.nodes if aten_name(n) in WEIGHTED_MAC_OPS and not _computes_int8(n)
                 and not any(f(n) for f in in_float_layer)]
    first = f"aten.{aten_name(float_ops[0])} `{float_ops[0].name}` in {node_location(float_ops[0])}" if float_ops \
        else "conv or linear ops the plan left INT8"
    more = f" and {len(float_ops) - 1} more" if len(float_ops) > 1 else ""
    raise BadInputError(f"{WHO}: only {share:.1%} of conv and linear MACs run in INT8 (min_int8_mac_fraction "
                        f"{min_fraction:g}): {first}{more} compute in float, though the plan had them in INT8; fix: keep "
                        f"those layers float with keep_float and set to_executorch's min_int8_mac_fraction and the gate "
                        f"to {math.floor(share * 100) / 100:g} or lower, or use the onnx-int8 or tflite-int8 target")


def _computes_int8(node) -> bool:
    """In the converted graph: XNNPACK's batch matmul is FP32-only (executorch 1.5), and convert_pt2e feeds a conv or
    linear that XNNPACKQuantizer annotated from dequantize nodes, its activation and its weight alike."""
    def dequantized(arg) -> bool:
        return hasattr(arg, "op") and aten_name(arg).startswith("dequantize")
    return aten_name(node) not in ("bmm", "matmul") and len(node.args) > 1 and all(map(dequantized, node.args[:2]))
