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
from edgekit.quant.fake_quant import QUANTIZABLE, input_ranges
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
    version: ClassVar[int] = 3  # 2: recurrent layers unrolled, their ops in FP32; 3: deterministic protobuf bytes
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
        hooks = self._activation_quantizers(module, ctx) if self.activations == "int8" else []
        try:
            with quiet():
                traced = module if src.format == Format.torchscript else torch.jit.trace(module, args, check_trace=False)
                for h in hooks:
                    h.remove()
                model = ct.convert(
                    traced, convert_to="mlprogram",
                    inputs=self._inputs(ct, card),
                    outputs=[ct.TensorType(name=card.output.name, dtype=np.float32)],
                    minimum_deployment_target=getattr(ct.target, self.deployment_target),
                    compute_precision=self._compute_precision(ct, bool(unrolled or native)),
                    compute_units=getattr(ct.ComputeUnit, self.compute_units.upper()))
        except Exception as exc:
            kind = _failing_torch_op(exc)
            where = f" op {kind} (in module {unsupported_op_location(module, args, kind)})" if kind else " the model"
            fix = ("compute the shape with -1 (x.flatten(1), x.reshape(-1, ...)) instead of sizes read from x.shape or "
                   "x.size()" if kind == "int" else "replace the unsupported layer or pick another target")
            raise BadInputError(f"to_coreml: coremltools could not convert{where} ({str(exc).strip().splitlines()[0][:240]}); "
                                f"fix: {fix}") from None
        model = self._compress(model, ct)
        self._fill_metadata(model, card, ctx)
        path = out_dir / "model.mlpackage"
        with quiet():
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
        return ct.precision.FLOAT16

    def _activation_quantizers(self, module, ctx) -> list:
        """Forward pre-hooks that quantize and dequantize every conv/linear input with its calibrated uint8 range;
        traced, they become MIL quantize/dequantize ops. Ranges: edgekit's observers over the calibration set."""
        import torch

        if ctx.calib is None:
            raise BadInputError("to_coreml activations=int8 needs a calibration set; fix: add `calibration:` to the recipe")
        if not isinstance(module, torch.nn.Module) or isinstance(module, torch.jit.ScriptModule):
            raise BadInputError("to_coreml activations=int8 needs a PyTorch module (not TorchScript); fix: give the weights")
        arrays = model_inputs(ctx.card, ctx.calib).arrays  # every declared input (image, head pose)
        xs = [torch.from_numpy(arrays[spec.name]) for spec in ctx.card.inputs]
        ranges = input_ranges(module, [tuple(x[i:i + 64] for x in xs) for i in range(0, len(xs[0]), 64)], self.observer)
        hooks = []
        for name, m in module.named_modules():
            if isinstance(m, QUANTIZABLE) and name in ranges:
                lo, hi = min(ranges[name][0], 0.0), max(ranges[name][1], 1e-6)
                scale = (hi - lo) / 255.0
                zero = int(round(-lo / scale))
                hooks.append(m.register_forward_pre_hook(lambda _m, a, s=scale, z=zero: (
                    torch.dequantize(torch.quantize_per_tensor(a[0], s, z, torch.quint8)), *a[1:])))
        return hooks

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
                if s.source == "image" else f"{s.name}: head pitch and yaw in radians")
        model.output_description[card.output.name] = (f"{card.output.name}: {card.output.convention}, camera frame x right, "
                                                       "y down, z forward")
        model.user_defined_metadata["edgekit.version"] = __version__
        model.user_defined_metadata["edgekit.pipeline"] = ctx.pipeline
        model.user_defined_metadata["edgekit.preprocessing"] = json.dumps(pre.model_dump())


def _serialize_deterministically(package: Path) -> None:
    """Rewrite the package's model spec with protobuf map fields in sorted order: coremltools writes metadata and op
    attributes (maps) in an order that changes from process to process, so two saves of one model differed."""
    from coremltools.proto import Model_pb2

    spec_path = package / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_path.read_bytes())
    spec_path.write_bytes(spec.SerializeToString(deterministic=True))
