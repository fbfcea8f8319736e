"""to_coreml: PyTorch -> Core ML ML program (.mlpackage) with coremltools, float32 I/O, metadata filled in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from edgekit._optional import require
from edgekit._version import __version__
from edgekit.artifact import Artifact, Format
from edgekit.backends.onnx.export import load_torch_artifact, unsupported_op_location
from edgekit.errors import BadInputError
from edgekit.evalset import model_inputs
from edgekit.passes.base import Pass
from edgekit.passes.recurrent import unroll_recurrent
from edgekit.progress import step
from edgekit.quant.fake_quant import QUANTIZABLE, batched, input_ranges
from edgekit.quiet import quiet


def _failing_torch_op(exc: BaseException) -> str | None:
    """The TorchScript op coremltools was converting when it failed (its frontend holds it in a local `node`), so the
    error can name the op and, through a trace, the module; None when the failure was elsewhere."""
    tb, kind = exc.__traceback__, None
    while tb is not None:
        node = tb.tb_frame.f_locals.get("node")
        if isinstance(getattr(node, "kind", None), str):
            kind = node.kind
        tb = tb.tb_next
    return kind


class ToCoreML(Pass):
    name: ClassVar[str] = "to_coreml"
    version: ClassVar[int] = 4  # 2: recurrent layers unrolled, their ops in FP32; 3: deterministic protobuf bytes; 4: no date
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.torch, Format.torchscript, Format.exported_program})
    produces: ClassVar[Format] = Format.coreml
    summary: ClassVar[str] = "convert to a Core ML ML program (.mlpackage) with coremltools"

    precision: Literal["fp16", "fp32"] = Field("fp16", description="compute and storage precision")
    deployment_target: Literal["iOS16", "iOS17", "iOS18", "macOS13", "macOS14", "macOS15"] = "iOS17"
    compute_units: Literal["all", "cpu_only", "cpu_and_gpu", "cpu_and_ne"] = "all"
    input_type: Literal["tensor", "image"] = Field(
        "tensor", description="tensor: float32 preprocessed input (the one input contract); image: raw pixels, "
                              "the card's scale and offset applied inside the model")
    weights: Literal["float", "int8", "palettize4", "sparse"] = Field(
        "float", description="int8: per-channel symmetric linear weights; palettize4: 4-bit k-means lookup table per tensor; "
                             "sparse: store zeros (from magnitude pruning) as a bit mask")
    weight_threshold: int = Field(512, ge=1, description="compress only weight tensors with at least this many elements")
    activations: Literal["float", "int8"] = Field(
        "float", description="int8: quantize every conv/linear input to uint8 with calibrated ranges (W8A8 with weights=int8)")
    observer: Literal["minmax", "percentile", "entropy", "mse"] = Field("percentile", description="activation range observer")

    def host_dependence(self) -> str | None:
        if self.activations == "int8":
            return "activation ranges come from float32 calibration runs in torch, whose kernels depend on the CPU"
        if self.weights == "palettize4":  # not seen to differ, but its k-means runs on BLAS kernels chosen for the CPU
            return "k-means palettization runs in float on BLAS kernels chosen for the CPU"
        return None

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        import numpy as np
        import torch

        ct = require("coremltools", "the to_coreml pass")
        card = ctx.card
        module = load_torch_artifact(src, trusted_arch=ctx.card.arch)
        unrolled, native = [], []
        if not isinstance(module, torch.jit.ScriptModule):
            try:
                module, unrolled = unroll_recurrent(module)  # coremltools 9.0 cannot convert torch 2.13's GRU
            except BadInputError:
                # multi-layer / bidirectional LSTMs cannot be unrolled, but coremltools converts nn.LSTM itself
                # (MIL lstm ops, which edgekit's interpreter runs); a GRU it cannot convert keeps the refusal
                native = [n for n, m in module.named_modules() if isinstance(m, torch.nn.LSTM)]
                if not native or any(isinstance(m, torch.nn.GRU) for m in module.modules()):
                    raise
        args = tuple(torch.zeros(s.shape) for s in card.inputs)
        ranges = self._activation_ranges(module, ctx) if self.activations == "int8" else {}
        convert = dict(convert_to="mlprogram", inputs=self._inputs(ct, card),
                       outputs=[ct.TensorType(name=card.output.name, dtype=np.float32)],
                       minimum_deployment_target=getattr(ct.target, self.deployment_target),
                       compute_precision=self._compute_precision(ct, bool(unrolled or native)),
                       compute_units=getattr(ct.ComputeUnit, self.compute_units.upper()))
        exported_note = None
        try:  # the default, TorchScript: every model it converts keeps its package bytes
            hooks = _quantizer_hooks(module, ranges, decomposed=False)
            try:
                with quiet():
                    traced = module if src.format == Format.torchscript else torch.jit.trace(module, args, check_trace=False)
            finally:
                for h in hooks:
                    h.remove()
            with step("converting with coremltools (TorchScript)"), quiet():
                model = ct.convert(traced, **convert)
        except Exception as exc:
            kind = _failing_torch_op(exc)
            if not isinstance(module, torch.nn.Module) or isinstance(module, torch.jit.ScriptModule):
                raise self._refusal(module, args, kind, exc, None) from None
            # the fallback, taken only when TorchScript conversion fails (so the choice is deterministic): the
            # torch.export program coremltools recommends for torch 2, in which static shapes make x.shape[0] /
            # x.size(0) plain integers (no aten::Int) and affine_grid becomes an explicit grid (MIL resample)
            try:
                model = self._convert_exported(ct, module, args, ranges, dict(  # a fresh FP16 op selector
                    convert, compute_precision=self._compute_precision(ct, bool(unrolled or native))))
            except BadInputError:
                raise
            except Exception as exported_exc:
                raise self._refusal(module, args, kind, exc, exported_exc) from None
            why = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            exported_note = ("converted from a torch.export program (ATen dialect, affine_grid decomposed into an explicit "
                             "sampling grid): TorchScript conversion failed" + (f" on op {kind}" if kind else "")
                             + f" ({why})")
        samplers = sorted({op.op_type for f in model._mil_program.functions.values() for op in f.operations
                           if op.op_type in _SAMPLERS}) if self.precision == "fp16" and not (unrolled or native) else []
        if self.weights != "float":
            with step(f"compressing the weights ({self.weights})"):
                model = self._compress(model, ct)
        self._fill_metadata(model, card, ctx)
        path = out_dir / "model.mlpackage"
        with step("writing the .mlpackage"), quiet():
            model.save(str(path))
        _serialize_deterministically(path)
        precision = {"float": self.precision, "int8": "int8-weights", "palettize4": "palettized-4bit",
                     "sparse": f"{self.precision}-sparse"}[self.weights]
        if self.activations == "int8":
            precision = "w8a8" if self.weights == "int8" else f"{precision}+int8-activations"
        notes = [f"coremltools {ct.__version__}: ML program for {self.deployment_target}, {self.precision} compute, weights "
                 f"{self.weights}, activations {self.activations}, compute units {self.compute_units}"]
        if unrolled:
            notes.append(f"recurrent layers {', '.join(unrolled)} unrolled into linear/sigmoid/tanh ops over the "
                         f"{card.image_input.shape[1]}-step window (coremltools cannot convert torch 2.13's GRU/LSTM)"
                         + ("; only conv and relu run in FP16, the recurrence in FP32" if self.precision == "fp16" else ""))
        if exported_note:
            notes.append(exported_note)
        if samplers:
            notes.append(f"grid sampling ({', '.join(samplers)} and the ops computing its coordinates) kept in FP32, "
                         "the rest in FP16")
        if native:
            notes.append(f"LSTM layers {', '.join(native)} converted by coremltools to MIL lstm ops (multi-layer or "
                         "bidirectional layers are not unrolled)"
                         + ("; only conv and relu run in FP16, the recurrence in FP32" if self.precision == "fp16" else ""))
        return Artifact.create(path, Format.coreml, src, precision=precision, deployment_target=self.deployment_target,
                               input_type=self.input_type, notes=notes)

    def _inputs(self, ct, card) -> list:
        import numpy as np

        if self.input_type == "tensor":
            return [ct.TensorType(name=s.name, shape=tuple(s.shape), dtype=np.float32) for s in card.inputs]
        spec, pre = card.image_input, card.preprocessing
        if len(card.inputs) != 1 or spec.layout != "NCHW" or spec.shape[1] not in (1, 3) or pre.equalize_hist:
            raise BadInputError("to_coreml input_type=image needs one NCHW image input with 1 or 3 channels and no "
                                "histogram equalisation; fix: use input_type: tensor")
        layout = {1: ct.colorlayout.GRAYSCALE, 3: ct.colorlayout.BGR if spec.color == "bgr" else ct.colorlayout.RGB}[spec.shape[1]]
        return [ct.ImageType(name=spec.name, shape=tuple(spec.shape), scale=pre.scale, bias=[pre.offset] * spec.shape[1],
                             color_layout=layout)]

    def _compute_precision(self, ct, recurrent: bool):
        if self.precision == "fp32":
            return ct.precision.FLOAT32
        if recurrent:
            # an unrolled recurrence compounds FP16 rounding step after step (TemporalGaze: max difference 0.075
            # -> 0.025 degrees on 100 windows when only the convolutions run in FP16)
            return ct.transform.FP16ComputePrecision(op_selector=lambda op: op.op_type in ("conv", "relu"))
        # grid sampling in FP32 (FP16 everywhere else; a program without resample/affine is plain FLOAT16): an FP16
        # sampling coordinate is off by up to 2^-11 of the image width (stn_gaze: max difference 0.168 -> 0.075 degrees
        # on 512 eye images)
        return ct.transform.FP16ComputePrecision(op_selector=_NotGridSampling())

    def _convert_exported(self, ct, module, args, ranges: dict, convert: dict):
        """ct.convert on module's torch.export program, decomposed as coremltools asks (`run_decompositions`) plus
        affine_grid_generator -> linspace/mul/sum (torch's own decomposition): coremltools maps affine_grid + grid_sample
        to MIL affine, which has only zeros padding, and a grid tensor to MIL resample, which has every padding mode."""
        import torch

        hooks = _quantizer_hooks(module, ranges, decomposed=True)
        try:
            with quiet():
                program = torch.export.export(module, args)
        finally:
            for h in hooks:
                h.remove()
        with step("converting with coremltools (torch.export program)"), quiet():
            program = program.run_decompositions(_decompositions())
            _check_exported_grid_samplers(program)
            return ct.convert(program, **convert)

    @staticmethod
    def _refusal(module, args, kind: str | None, exc: BaseException, exported_exc: BaseException | None) -> BadInputError:
        where = f" op {kind} (in module {unsupported_op_location(module, args, kind)})" if kind else " the model"
        fix = ("compute the shape with -1 (x.flatten(1), x.reshape(-1, ...)) instead of sizes read from x.shape or "
               "x.size()" if kind == "int" else "replace the unsupported layer or pick another target")
        also = ""
        if exported_exc is not None:
            exported_kind = _failing_torch_op(exported_exc)
            first = (str(exported_exc).strip().splitlines() or [type(exported_exc).__name__])[0][:160]
            also = f"; its torch.export path failed too{f' on op {exported_kind}' if exported_kind else ''} ({first})"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
        return BadInputError(f"to_coreml: coremltools could not convert{where} ({first}){also}; fix: {fix}")

    def _activation_ranges(self, module, ctx) -> dict:
        """Each conv/linear input's calibrated range: edgekit's observers over the calibration set."""
        import torch

        if ctx.calib is None:
            raise BadInputError("to_coreml activations=int8 needs a calibration set; fix: add `calibration:` to the recipe")
        if not isinstance(module, torch.nn.Module) or isinstance(module, torch.jit.ScriptModule):
            raise BadInputError("to_coreml activations=int8 needs a PyTorch module (not TorchScript); fix: give the weights")
        arrays = model_inputs(ctx.card, ctx.calib).arrays  # every declared input (image, head pose)
        xs = [torch.from_numpy(arrays[spec.name]) for spec in ctx.card.inputs]
        return input_ranges(module, batched(xs), self.observer)


    def _compress(self, model, ct):
        """Weight compression with coremltools.optimize (data-free: no predict, so it runs off macOS)."""
        if self.weights == "float":
            return model
        cto = require("coremltools.optimize.coreml", "Core ML weight compression")
        if self.weights == "int8":
            op_config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", granularity="per_channel",
                                                    weight_threshold=self.weight_threshold)
            with quiet():
                return cto.linear_quantize_weights(model, config=cto.OptimizationConfig(global_config=op_config))
        if self.weights == "sparse":  # exact: only weights that are already zero are dropped
            op_config = cto.OpThresholdPrunerConfig(threshold=1e-12, minimum_sparsity_percentile=0.1,
                                                    weight_threshold=self.weight_threshold)
            with quiet():
                return cto.prune_weights(model, config=cto.OptimizationConfig(global_config=op_config))
        require("sklearn", "4-bit k-means palettization")
        op_config = cto.OpPalettizerConfig(mode="kmeans", nbits=4, granularity="per_tensor", weight_threshold=self.weight_threshold)
        with quiet():
            return cto.palettize_weights(model, config=cto.OptimizationConfig(global_config=op_config))

    @staticmethod
    def _fill_metadata(model, card, ctx) -> None:
        pre = card.preprocessing
        model.short_description = card.description or f"{card.name} gaze estimator compiled by edgekit"
        model.author = "edgekit"
        model.license = "same as the source model's weights"
        model.version = __version__
        image_input = model.get_spec().description.input[0].type.HasField("imageType")
        for s in card.inputs:
            model.input_description[s.name] = (
                f"{s.name}: {s.color} image {s.shape[-1]}x{s.shape[-2]}; the model applies x * {pre.scale:.8g} + {pre.offset:g}"
                if image_input and s.source == "image" else
                f"{s.name}: float32 {'x'.join(map(str, s.shape))} {s.layout}; pixels x -> x * {pre.scale:.8g} + {pre.offset:g}"
                if s.takes_pixels else f"{s.name}: {s.meaning()}")
        model.output_description[card.output.name] = (f"{card.output.name}: {card.output.convention}, camera frame x right, "
                                                       "y down, z forward")
        model.user_defined_metadata["edgekit.version"] = __version__
        model.user_defined_metadata["edgekit.pipeline"] = ctx.pipeline
        model.user_defined_metadata["edgekit.preprocessing"] = json.dumps(pre.model_dump())
        # coremltools stamps the day of conversion: the same model converted tomorrow would have other bytes
        model.user_defined_metadata.pop("com.github.apple.coremltools.conversion_date", None)


_SAMPLERS = {"resample": "coordinates", "affine": "transform_matrix"}


class _NotGridSampling:
    """FP16 op selector: False (keep FP32) for MIL resample/affine and every op whose output reaches their sampling
    coordinates or transform (a spatial transformer's localisation net and grid); True elsewhere, so a program without
    them is converted exactly as with ct.precision.FLOAT16. The FP32 set is found once per block, before the FP16
    pass inserts any cast."""

    def __init__(self):
        self.fp32: dict[int, tuple[object, set[int]]] = {}

    def __call__(self, op) -> bool:
        block = op.enclosing_block
        if id(block) not in self.fp32:
            keep, stack = set(), [o for o in block.operations if o.op_type in _SAMPLERS]
            for o in stack:
                keep.add(id(o))
            stack = [getattr(o, _SAMPLERS[o.op_type]).op for o in stack]
            while stack:
                o = stack.pop()
                if o is None or id(o) in keep:
                    continue
                keep.add(id(o))
                stack.extend(v.op for v in o.inputs.values() if not isinstance(v, (list, tuple)))
                stack.extend(x.op for v in o.inputs.values() if isinstance(v, (list, tuple)) for x in v)
            self.fp32[id(block)] = (block, keep)  # the block is held so its id is not reused
        return id(op) not in self.fp32[id(block)][1]


def _quantizer_hooks(module, ranges: dict, decomposed: bool) -> list:
    """Forward pre-hooks that quantize and dequantize every conv/linear input to uint8 with its range. TorchScript:
    torch.quantize_per_tensor (quantized tensors); torch.export: the quantized_decomposed ops on float tensors (what
    coremltools' torch.export frontend reads). Both round half to even; both become MIL quantize/dequantize."""
    import torch

    if decomposed and ranges:
        import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers torch.ops.quantized_decomposed)
    hooks = []
    for name, m in module.named_modules():
        if isinstance(m, QUANTIZABLE) and name in ranges:
            lo, hi = min(ranges[name][0], 0.0), max(ranges[name][1], 1e-6)
            scale = (hi - lo) / 255.0
            zero = int(round(-lo / scale))
            if decomposed:
                qd = torch.ops.quantized_decomposed
                hook = (lambda _m, a, s=scale, z=zero: (qd.dequantize_per_tensor(
                    qd.quantize_per_tensor(a[0], s, z, 0, 255, torch.uint8), s, z, 0, 255, torch.uint8), *a[1:]))
            else:
                hook = (lambda _m, a, s=scale, z=zero: (
                    torch.dequantize(torch.quantize_per_tensor(a[0], s, z, torch.quint8)), *a[1:]))
            hooks.append(m.register_forward_pre_hook(hook))
    return hooks


def _decompositions() -> dict:
    """The torch.export decomposition table for coremltools: `run_decompositions({})` (what coremltools asks for)
    plus affine_grid_generator, so grid_sample reads an explicit grid and becomes MIL resample."""
    import torch
    from torch._decomp import get_decompositions

    return get_decompositions([torch.ops.aten.affine_grid_generator])


_GRID_SAMPLE_MODES = {0: "bilinear", 1: "nearest", 2: "bicubic"}


def _check_exported_grid_samplers(program) -> None:
    """Refuse, in one line naming the module, a grid_sample Core ML cannot express: MIL resample samples bilinear or
    nearest (no bicubic); every torch padding mode has a MIL one (zeros -> constant, border -> border, reflection ->
    reflection with align_corners, symmetric without)."""
    import torch

    for node in program.graph.nodes:
        if node.op != "call_function" or node.target not in (torch.ops.aten.grid_sampler.default,
                                                             torch.ops.aten.grid_sampler_2d.default):
            continue
        mode = node.args[2] if len(node.args) > 2 else 0
        if mode not in (0, 1):
            stack = node.meta.get("nn_module_stack") or {}
            path = next(reversed(stack.values()))[0] if stack else ""
            raise BadInputError(f"to_coreml: grid_sample mode {_GRID_SAMPLE_MODES.get(mode, mode)!r} in module "
                                f"{path or '(top level)'} has no Core ML equivalent (MIL resample samples bilinear or "
                                "nearest); fix: use mode='bilinear' or 'nearest', or pick another target")


def _serialize_deterministically(package: Path) -> None:
    """Rewrite the package's model spec with protobuf map fields in sorted order: coremltools writes metadata and op
    attributes (maps) in an order that changes from process to process, so two saves of one model differed."""
    from coremltools.proto import Model_pb2

    spec_path = package / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_path.read_bytes())
    spec_path.write_bytes(spec.SerializeToString(deterministic=True))
