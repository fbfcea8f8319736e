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
from edgekit.passes.base import Pass
from edgekit.passes.int8_options import XnnpackInt8Options
from edgekit.progress import step
from edgekit.quant import pt2e
from edgekit.quant.pt2e import (MAC_OPS, aten_name, in_module, leave_float, leave_float_until_stable, node_location,
                                read_as_int8, unshare_weights)
from edgekit.quiet import quiet

WEIGHT_BITS = 8  # XNNPACK's signed int8 kernels widen before multiplying: no u8s8 saturation (see quant/plan.py)


class ToTFLite(XnnpackInt8Options):
    name: ClassVar[str] = "to_tflite"
    # 2: an INT8 max pool of a ReLU reads a zero pad (_zero_padded_max_pools); 3: output_layers float; 4: a softmax
    # after a float layer is read in float under fixed_output_ops auto / float
    version: ClassVar[int] = 4
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.torch, Format.exported_program})
    produces: ClassVar[Format] = Format.tflite
    summary: ClassVar[str] = "convert to a .tflite flatbuffer with litert-torch (FP32, FP16 weights or INT8 from edgekit's plan)"

    precision: Literal["fp32", "fp16", "int8"] = Field("fp32", description="fp16: float16 weights (the tflite-fp16 target "
                                                        "casts the FP32 conversion instead: tflite_fp16); int8: INT8 weights "
                                                        "and activations")
    io: Literal["float", "int8"] = Field(
        "float", description="int8 models only: float32 I/O (QUANTIZE inside) or int8 I/O quantized by the caller")
    # auto by default since 2026-12-05: of the zoo and built-in models only l2cs_bins has such an op that no MAC op
    # reads, and float brings it closer to FP32 (0.347 -> 0.326 deg mean difference over 10,000 unseen images, INT8 MAC
    # share still 1.0; benchmarks/int8_unseen_sets_tflite.md); where an INT8 matmul reads it (attention with
    # activation_matmuls: int8), float would move MACs out of INT8
    fixed_output_ops: Literal["auto", "int8", "float"] = Field(
        "auto", description="int8 models only: softmax, sigmoid, tanh and log_softmax in INT8 at the output scale LiteRT "
        "fixes (1/256 for softmax), or float with the ops that read them (benchmarks/tflite_fixed_output.md); auto: "
        "float where no INT8 conv, linear or matmul reads the op (an L2CS-style expectation over softmax bins, an "
        "attention's softmax while activation_matmuls is float), so no MACs leave INT8, else int8")
    # float by default since 2026-12-04: on the two zoo models with such adds, closer to FP32 on both the mean and the
    # largest difference over 2,000 unseen images (gaze_transformer 0.507 / 2.925 -> 0.437 / 2.251 deg,
    # preact_resnet_gaze 0.450 / 1.829 -> 0.394 / 1.828), no slower, no MACs moved; the other 8 have none
    adds_into_float_ops: Literal["int8", "float"] = Field(
        "float", description="int8 models only: an add whose every reader runs in float (a transformer's residual stream "
        "into LayerNorm, a pre-activation block's add into an unfolded BatchNorm) left float, the rounding to INT8 and "
        "back saved (litert-torch's own route leaves them float), or int8 (benchmarks/tflite_fixed_output.md)")

    # float by default since 2026-12-05: LiteRT 2.3 runs an INT8 BATCH_MATMUL only in its reference kernel (XNNPACK
    # delegates the float one), which took 60% of the zoo's transformer's INT8 time; with them float it ran 3.4x faster
    # (0.394 -> 0.115 ms, FP32 0.106) and closer to FP32 (0.437 -> 0.390 deg mean over 2,000 unseen images;
    # benchmarks/tflite_activation_matmuls.md). No stored weight is involved, so the artifact's size is the same.
    activation_matmuls: Literal["int8", "float"] = Field(
        "float", description="int8 models only: a matmul of two activations (an attention's query x key and "
        "probabilities x value) in float, run by XNNPACK, or int8, run by LiteRT's reference kernel (several times "
        "slower: benchmarks/tflite_activation_matmuls.md); not counted in min_int8_mac_fraction either way")
    # float by default since 2026-12-05 (session 38): LiteRT 2.3 runs an INT8 HARD_SWISH only in its reference kernel
    # (XNNPACK delegates the float one); in the zoo's MobileGaze it took 68-75% of the INT8 model's time (perf samples)
    # and the INT8 model ran 5-6x slower than FP32 (benchmarks/tflite_reference_ops.md)
    reference_kernel_ops: Literal["int8", "float"] = Field(
        "float", description="int8 models only: ops whose INT8 form LiteRT runs only in its slow reference kernel "
        "(hardswish) in float, run by XNNPACK between a dequantize and a quantize, or int8 "
        "(benchmarks/tflite_reference_ops.md)")

    @model_validator(mode="after")
    def _int8_io_needs_int8(self) -> ToTFLite:
        """Refused when the recipe loads, not after the passes before it have run."""
        if self.io == "int8" and self.precision != "int8":
            raise ValueError(f"to_tflite io=int8 needs precision int8, got {self.precision}; fix: set precision: int8")
        for option, where in (("single_channel_convs", "from its input on"), ("output_layers", "up to its output")):
            if self.io == "int8" and option in self.model_fields_set and getattr(self, option) == "float":
                raise ValueError(f"to_tflite {option}=float needs io float: with int8 I/O the model is integer {where}; "
                                 f"fix: drop {option} or set io: float")
        # set by the recipe: a default means nothing in FP32
        for option in ("fixed_output_ops", "adds_into_float_ops", "activation_matmuls", "single_channel_convs",
                       "reference_kernel_ops", "output_layers"):
            if option in self.model_fields_set and getattr(self, option) == "float" and self.precision != "int8":
                raise ValueError(f"to_tflite {option}=float needs precision int8, got {self.precision}; fix: set "
                                 f"precision: int8 or drop {option}")
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
                      f"weights, observer {plan.activations['observer']})"] + plan.decisions
        else:
            edge = _convert(litert_torch, module, args)
        with step("writing the .tflite flatbuffer"), quiet():  # litert-torch prints its progress and op counts
            edge.export(str(path))
        model = tflite_graph.read(path)
        if self.precision == "fp16":
            model = tflite_graph.read_bytes(_cast_weights_fp16(path))
            notes.append(FP16_NOTE)
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
        # int8 I/O is a full-integer model (for integer-only accelerators): its first conv and its output layers stay
        # INT8 whatever the options
        options = self if self.io == "float" else self.model_copy(update={"single_channel_convs": "int8",
                                                                          "output_layers": "int8"})
        plan = pt2e.plan(options, module, args, ctx, inputs, tensors, "xnnpack", WEIGHT_BITS)
        quantizer = self._quantizer(plan)
        converted, decisions = _quantize_pt2e(module, args, quantizer, [tuple(t[i:i + 1] for t in tensors)
                                                                        for i in range(len(inputs))])
        plan = plan.model_copy(update={"decisions": plan.decisions + decisions})
        edge = _convert(litert_torch, converted, args, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer),
                        original=module)
        return edge, plan

    def _quantizer(self, plan):
        """litert-torch's PT2E quantizer (per-channel symmetric weights, INT8 activations) with edgekit's observers
        for activation ranges, and the plan's float layers left unannotated."""
        from litert_torch.quantize import pt2e_quantizer

        base = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
        quantizer = _quantizer_class()().set_global(pt2e.with_edgekit_observers(base, plan, self))
        quantizer.fixed_output_ops = self.fixed_output_ops
        quantizer.adds_into_float_ops = self.adds_into_float_ops
        quantizer.activation_matmuls = self.activation_matmuls
        quantizer.reference_kernel_ops = self.reference_kernel_ops
        for lp in plan.float_layers:
            quantizer.set_module_name(lp.name, None)
        return quantizer


# Ops whose INT8 output LiteRT accepts with one scale and zero point only (the TFLite 8-bit quantization spec).
# tflite/kernels/activations.cc refuses any other at prepare for SOFTMAX, LOGISTIC (1/256, -128) and LOG_SOFTMAX
# (16/256, 127); TANH's reference kernel takes any, but XNNPACK's QS8 tanh only the spec's (1/128, 0).
# Keyed by the aten op's name as torch.export writes it (softmax.int, _softmax.default, ...).
FIXED_OUTPUT_QPARAMS = {"softmax": (1 / 256, -128), "_softmax": (1 / 256, -128), "sigmoid": (1 / 256, -128),
                        "log_softmax": (16 / 256, 127), "_log_softmax": (16 / 256, 127), "tanh": (1 / 128, 0)}


@functools.cache
def _quantizer_class():
    """litert-torch's PT2EQuantizer with what edgekit's plan needs fixed or added.

    - Fixed-output ops: litert-torch 0.10 annotates only aten._softmax and aten.sigmoid with the fixed scale, but
      torch.export writes F.softmax as aten.softmax.int: the softmax took its consumer's observed range and LiteRT
      refused it at prepare (`output->params.scale not near 1.f / 256`). After litert-torch's own annotation and its
      propagation through view/permute/mean, every op in FIXED_OUTPUT_QPARAMS whose input is quantized gets the output
      quantization LiteRT requires (then propagated on the same way); one with a float input stays float.
    - fixed_output_ops = "float" (the pass's option) leaves each of those ops float instead, and the ops reading it
      read float (LiteRT then runs them in float, the next INT8 op quantizing again); "auto" (the default) does so
      only where no INT8 MAC op reads the op (_feeds_mac_op), else quantizes it as "int8" does. One whose input is
      float (a float layer before it) is float under every setting; under these two its readers read float as well
      (an L2CS head kept float: its expectation's MUL and SUM had gone INT8 where the INT8 head left them float).
    - activation_matmuls = "float" (the pass's option, the default) leaves every matmul of two activations float
      before the fixed-output ops are decided: LiteRT runs their INT8 form only in its reference kernel; so does
      reference_kernel_ops = "float" with hardswish (_REFERENCE_KERNEL_OPS).
    - adds_into_float_ops = "float" (the pass's option) leaves float each add whose every reader is float (after the
      above; an add reading into another such add counts as float), so its result is not rounded to INT8 only to be
      dequantized by the next op. Then any op whose inputs edgekit left float and whose readers all read float
      stays float too (_float_islands_left_float).
    - A global average (a pool to 1x1, a mean) gets its own observed output range: litert-torch shares its input's (a
      view's rule), but the average of a feature map spans far less than the map, so the shared scale left the pooled
      features a few INT8 steps (pt2e.averages_own_output_range).
    - set_module_name(name, None) leaves that module float, fixed-output ops included: litert-torch 0.10 asserts on
      None, and its module-name filter reads the name from nn_module_stack's keys ('L__self___fc_yaw' -> 'fc.yaw'),
      which torch 2.13 no longer writes, so no plan layer returned to float stayed float; edgekit matches the paths.
    Recurrent layers stay float (as to_coreml keeps the recurrence): litert-torch 0.10's GRU annotator also fails on a
    GRU called without an initial hidden state."""
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.pt2e_quantizer_utils import _is_annotated, propagate_annotation
    from torchao.quantization.pt2e.quantizer import FixedQParamsQuantizationSpec, QuantizationAnnotation

    class EdgekitPT2EQuantizer(pt2e_quantizer.PT2EQuantizer):
        fixed_output_ops = "auto"
        adds_into_float_ops = "int8"
        activation_matmuls = "float"
        reference_kernel_ops = "float"
        STATIC_OPS = [op for op in pt2e_quantizer.PT2EQuantizer.STATIC_OPS if op not in ("gru_io_only", "fixed_qparams")]

        def set_module_name(self, module_name, quantization_config):
            self.module_name_config[module_name] = quantization_config
            return self

        def _annotate_all_static_patterns(self, model, quantization_config, filter_fn=None):
            return model if quantization_config is None else super()._annotate_all_static_patterns(
                model, quantization_config, filter_fn)

        def _annotate_for_static_quantization_config(self, model):
            for name, config in self.module_name_config.items():
                self._annotate_all_static_patterns(model, config, in_module(name))
            for module_type, config in self.module_type_config.items():
                self._annotate_all_static_patterns(model, config, pt2e_quantizer._get_module_type_filter(module_type))
            special = [in_module(name) for name in self.module_name_config] + \
                [pt2e_quantizer._get_module_type_filter(t) for t in self.module_type_config]
            return self._annotate_all_static_patterns(model, self.global_config, lambda n: not any(f(n) for f in special))

        def annotate(self, model):
            unshare_weights(model)
            if self.reference_kernel_ops == "float":
                _decompose_reference_kernel_ops(model)
            _zero_padded_max_pools(model)
            model = super().annotate(model)
            if self.global_config is None or self.global_config.input_activation is None:
                return model  # dynamic quantization: no activation scales at all
            _zero_pads_share_their_input_scale(model)
            in_float_module = [in_module(name) for name, config in self.module_name_config.items() if config is None]
            if self.activation_matmuls == "float":
                _activation_matmuls_left_float(model)
            if self.reference_kernel_ops == "float":
                _reference_kernel_ops_left_float(model)
            for node in model.graph.nodes:
                name = aten_name(node)
                if name not in FIXED_OUTPUT_QPARAMS or _is_annotated([node]) or any(f(node) for f in in_float_module):
                    continue
                float_input = not _quantized_output(node.args[0])  # a float layer before it: float either way
                if self.fixed_output_ops == "float" or (self.fixed_output_ops == "auto" and not _feeds_mac_op(node)):
                    leave_float(node)  # and its readers read float
                    node.meta["edgekit_fixed_output_ops"] = "float input" if float_input else self.fixed_output_ops
                    continue
                if float_input:
                    continue
                scale, zero_point = FIXED_OUTPUT_QPARAMS[name]
                spec = FixedQParamsQuantizationSpec(dtype=torch.int8, scale=scale, zero_point=zero_point, quant_min=-128,
                                                    quant_max=127, qscheme=torch.per_tensor_affine)
                node.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=spec, _annotated=True)
            propagate_annotation(model)  # on through a view or permute after it, as litert-torch does for the others
            pt2e.averages_own_output_range(model, self.global_config.output_activation)
            if self.adds_into_float_ops == "float":
                _adds_into_float_ops_left_float(model)
            _float_islands_left_float(model)
            return model

    return EdgekitPT2EQuantizer


def _quantized_output(node) -> bool:
    annotation = node.meta.get("quantization_annotation") if hasattr(node, "meta") else None
    return annotation is not None and annotation._annotated and annotation.output_qspec is not None


# ops that only move data between an op and its readers
_DATA_MOVES = ("view", "reshape", "_unsafe_view", "permute", "transpose", "t", "flatten", "squeeze", "unsqueeze",
               "contiguous", "clone", "expand", "dropout", "getitem")


def _feeds_mac_op(node) -> bool:
    """An INT8 conv, linear or matmul reads the node's output, directly or through ops that only move data."""
    readers = list(node.users)
    while readers:
        reader = readers.pop()
        name = aten_name(reader)
        if name in MAC_OPS and not reader.meta.get("edgekit_float_by_option"):
            return True
        if name in _DATA_MOVES:
            readers.extend(reader.users)
    return False


_MATMULS = ("matmul", "bmm", "mm", "baddbmm", "einsum")


def _from_constant(node) -> bool:
    """The node is a stored tensor (a weight), or only moves one."""
    while hasattr(node, "op"):
        if node.op == "get_attr":
            return True
        if aten_name(node) not in _DATA_MOVES or not node.args:
            return False
        node = node.args[0]
    return False


def _activation_matmuls_left_float(model) -> None:
    """Every matmul whose inputs are all activations (no stored weight) left float, before the fixed-output ops are
    decided: an attention's softmax then has no INT8 reader, and fixed_output_ops auto leaves it float too."""
    for node in model.graph.nodes:
        if aten_name(node) in _MATMULS and not any(_from_constant(a) for a in node.all_input_nodes):
            leave_float(node)
            node.meta["edgekit_float_matmul"] = True


# ops LiteRT 2.3 runs in INT8 only in its reference kernel, that XNNPACK runs in float (MobileNetV3's hardswish: its
# INT8 form took 68-75% of the zoo's MobileGaze's time; benchmarks/tflite_reference_ops.md)
_REFERENCE_KERNEL_OPS = ("hardswish", "hardswish_")


def _decompose_reference_kernel_ops(model) -> None:
    """Before annotation: each hardswish as x * clamp(x / 6 + 1/2, 0, 1), its four ops marked to stay float. A lone
    float op between an INT8 producer and an INT8 reader lowers to LiteRT's INT8 op all the same (dequantize -> op ->
    quantize is fused), so the single op cannot stay float; nor can x * relu6(x + 3) / 6, which the converter fuses
    back into HARD_SWISH. This chain stays float: XNNPACK runs the multiplies and the add, LiteRT the clamp
    (RELU_0_TO_1)."""
    import torch

    graph = model.graph
    found = [node for node in graph.nodes if aten_name(node) in _REFERENCE_KERNEL_OPS]
    for node in found:
        x = node.args[0]
        with graph.inserting_before(node):
            scaled = graph.call_function(torch.ops.aten.mul.Tensor, (x, 1 / 6))
            shifted = graph.call_function(torch.ops.aten.add.Tensor, (scaled, 0.5))
            gate = graph.call_function(torch.ops.aten.clamp.default, (shifted, 0.0, 1.0))
            out = graph.call_function(torch.ops.aten.mul.Tensor, (x, gate))
        for new in (scaled, shifted, gate, out):
            new.meta.update({k: v for k, v in node.meta.items() if k in ("val", "nn_module_stack", "stack_trace")})
            new.meta["edgekit_float_reference_op"] = aten_name(node)
        node.replace_all_uses_with(out)
        graph.erase_node(node)
    if found:  # most models have none: their graph is left as exported
        graph.lint()
        model.recompile()


def _zero_padded_max_pools(model) -> None:
    """Before annotation: a padded max pool of a ReLU's output as a zero pad, then the pool unpadded. LiteRT lowers
    max pooling's implicit padding (-inf) to an INT8 PADV2 of the lowest value, which it runs in its reference kernel;
    a zero PAD is XNNPACK's. The same values: every window of an undilated pool holds an input element, all >= 0."""
    import torch

    graph = model.graph
    found = []
    for pool in graph.nodes:
        if aten_name(pool) != "max_pool2d" or pool.kwargs or aten_name(pool.args[0]) not in ("relu", "relu_"):
            continue
        args = list(pool.args) + [[], 0, 1, False][len(pool.args) - 2:]  # the schema's defaults after kernel_size
        padding, dilation, ceil_mode = args[3:6]
        ph, pw = [padding] * 2 if isinstance(padding, int) else padding * (3 - len(padding))
        if (ph or pw) and dilation in (1, [1], [1, 1]) and not ceil_mode:
            found.append((pool, args, ph, pw))
    for pool, args, ph, pw in found:
        with graph.inserting_before(pool):
            padded = graph.call_function(torch.ops.aten.constant_pad_nd.default, (args[0], [pw, pw, ph, ph], 0.0))
        # a source of its own: with the pool's module stack alone, litert-torch's annotator took the pad for the pool
        padded.meta.update({k: v for k, v in pool.meta.items() if k in ("nn_module_stack", "stack_trace")},
                           source_fn_stack=[(padded.name, torch.nn.functional.pad)], edgekit_zero_pad=True)
        pool.args = (padded, *args[1:3], [0, 0], *args[4:])
    if found:
        graph.lint()
        model.recompile()


def _zero_pads_share_their_input_scale(model) -> None:
    """After annotation: each zero pad of _zero_padded_max_pools, and the pool reading it, INT8 with the scale of the
    pad's input (litert-torch annotates no pad, and a pool only after an annotated op), as a max pool is."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    for pad in model.graph.nodes:
        x = pad.args[0] if pad.meta.get("edgekit_zero_pad") else None
        if x is None or not _quantized_output(x) or pad.meta.get("quantization_annotation") is not None:
            continue
        shared = SharedQuantizationSpec(x)
        pad.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map={x: shared}, output_qspec=shared,
                                                                     _annotated=True)
        for pool in pad.users:
            if pool.meta.get("quantization_annotation") is None:
                pool.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map={pad: shared},
                                                                              output_qspec=shared, _annotated=True)


def _reference_kernel_ops_left_float(model) -> None:
    """After annotation: the decomposed ops compute in float (no input or output quantization); an INT8 op reading
    the last one still quantizes its input."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    for node in model.graph.nodes:
        if node.meta.get("edgekit_float_reference_op"):
            node.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=None, _annotated=True)


_ADDS = ("add", "add_")


def _reads_int8(node) -> bool:
    """The node quantizes an input or its output (an op left float by an option does neither)."""
    annotation = node.meta.get("quantization_annotation")
    return (annotation is not None and annotation._annotated and not node.meta.get("edgekit_float_by_option")
            and (annotation.output_qspec is not None or bool(annotation.input_qspec_map)))


def _adds_into_float_ops_left_float(model) -> None:
    """Every INT8 add whose readers are all float (the graph output included), to a fixed point: an add feeding only
    LayerNorm and the next residual add is float once that add is. An add the quantizer left float is not named."""
    leave_float_until_stable(model, lambda node: aten_name(node) in _ADDS and _reads_int8(node) and bool(node.users)
                             and not any(_reads_int8(user) for user in node.users), "edgekit_float_add")


def _float_island(node) -> bool:
    """The node quantizes its output, every input but stored constants is one edgekit left float, and no reader takes
    that output as INT8: quantizing it would only round it to INT8 and back (an attention's logit scaling between a
    float matmul and a float softmax). Only edgekit's own float choices start one: an op that litert-torch fused to its
    producer (the relu of a conv-relu) has an unquantized input too."""
    annotation = node.meta.get("quantization_annotation")
    inputs = [i for i in node.all_input_nodes if i.op != "get_attr"]
    if annotation is None or annotation.output_qspec is None or node.meta.get("edgekit_float_by_option") \
            or not inputs or not all(i.meta.get("edgekit_float_by_option") for i in inputs):
        return False
    return not any(read_as_int8(user, node) for user in node.users)


def _float_islands_left_float(model) -> None:
    """Every _float_island left float, to a fixed point (an island's neighbour may then be one)."""
    leave_float_until_stable(model, _float_island, "edgekit_float_island")


def float_matmul_decisions(prepared) -> list[str]:
    """One line per matmul of two activations left float by activation_matmuls."""
    return [f"{aten_name(node)} `{node.name}` in {node_location(node)} kept float (activation_matmuls: float): it "
            "multiplies two activations, which LiteRT runs in INT8 only in its reference kernel"
            for node in prepared.graph.nodes if node.meta.get("edgekit_float_matmul")]


def float_reference_op_decisions(prepared) -> list[str]:
    """One line per op left float by reference_kernel_ops (the last of its decomposed ops names it)."""
    return [f"{node.meta['edgekit_float_reference_op']} in {node_location(node)} kept float (reference_kernel_ops: "
            "float): LiteRT runs it in INT8 only in its reference kernel, so it computes as float multiplies, an add "
            "and a clamp" for node in prepared.graph.nodes
            if node.meta.get("edgekit_float_reference_op") and not any(
                u.meta.get("edgekit_float_reference_op") for u in node.users)]


def float_add_decisions(prepared) -> list[str]:
    """One line per add left float by adds_into_float_ops."""
    return [f"add `{node.name}` in {node_location(node)} kept float (adds_into_float_ops: float): every op reading it "
            "runs in float" for node in prepared.graph.nodes if node.meta.get("edgekit_float_add")]


def fixed_output_decisions(prepared) -> list[str]:
    """One line per op with a LiteRT-fixed INT8 output: quantized with that scale, or kept float and why."""
    lines = []
    for node in prepared.graph.nodes:
        name = aten_name(node)
        if name not in FIXED_OUTPUT_QPARAMS:
            continue
        annotation = node.meta.get("quantization_annotation")
        op = f"{name.lstrip('_')} `{node.name}` in {node_location(node)}"
        choice = node.meta.get("edgekit_fixed_output_ops")  # left float by that option (not as an island after it)
        if choice == "float input":
            lines.append(f"{op} kept float: its input is float (a float layer), and the ops reading it read float (no "
                         "INT8 conv, linear or matmul reads it)")
        elif choice is not None:
            why = "auto: no INT8 conv, linear or matmul reads it, so no MACs leave INT8" if choice == "auto" else "float"
            lines.append(f"{op} kept float (fixed_output_ops: {why}), and the ops reading it read float")
        elif annotation is not None and annotation.output_qspec is not None:
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
    return [f"{_RECURRENT[aten_name(node)]} `{node.name}` in {node_location(node)} kept float: edgekit quantizes no "
            "recurrence for LiteRT (litert-torch 0.10 annotates none but a GRU's input and output, and that annotator fails "
            "on a GRU called without an initial hidden state); LiteRT runs its gates as float FULLY_CONNECTED ops"
            for node in graph_module.graph.nodes if aten_name(node) in _RECURRENT]


def _quantize_pt2e(module, args, quantizer, samples: list[tuple]):
    """The shared PT2E sweep (edgekit.quant.pt2e.quantize) with LiteRT's own decision lines."""
    return pt2e.quantize(module, args, quantizer, samples, "to_tflite", "onnx-int8",
                         lambda prepared: float_matmul_decisions(prepared) + float_reference_op_decisions(prepared)
                         + fixed_output_decisions(prepared) + float_add_decisions(prepared)
                         + recurrent_decisions(prepared))


def _export(module, args, strict: bool = False):
    return pt2e.export(module, args, "to_tflite", strict)


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


FP16_NOTE = "weights stored as float16 (ai-edge-quantizer float casting); CPU kernels compute in float32"


class TFLiteFp16(Pass):
    """An FP32 .tflite with its weights cast to float16: the same bytes as to_tflite(precision=fp16), whose conversion
    it shares with the FP32 target through the pass cache (a build of both converts once)."""

    name: ClassVar[str] = "tflite_fp16"
    uses_calibration: ClassVar[bool] = False
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.tflite})
    produces: ClassVar[Format] = Format.tflite
    summary: ClassVar[str] = "store an FP32 .tflite's weights as float16 (ai-edge-quantizer float casting; LiteRT's CPU " \
                             "kernels compute in float32)"

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        if src.meta.precision not in (None, "fp32"):
            raise BadInputError(f"tflite_fp16 needs an FP32 .tflite, got {src.meta.precision}; fix: put it right after "
                                "to_tflite without precision")
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "model.tflite"
        tflite_graph.write(tflite_graph.read_bytes(_cast_weights_fp16(src.path)), path)
        io = tflite_graph.io_details(tflite_graph.read(path))
        return Artifact.create(path, Format.tflite, src, **src.meta.carried("precision", "io"), precision="fp16", io=io,
                               notes=[FP16_NOTE])


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
