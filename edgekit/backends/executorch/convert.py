"""to_executorch: PyTorch -> ExecuTorch program (.pte) with the XNNPACK delegate, FP32 or INT8 from edgekit's plan.

- fp32: torch.export -> to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()]) -> to_executorch.
- int8: edgekit's quantization plan applied through PT2E with ExecuTorch's XNNPACKQuantizer: per-channel symmetric
  INT8 weights, INT8 activations whose ranges come from edgekit's observers, float layers chosen by mixed precision
  (edgekit.quant.pt2e, shared with to_tflite). The program keeps float32 I/O: quantize/dequantize run inside.

Recurrent layers are unrolled first (edgekit.passes.recurrent), as for Core ML: ExecuTorch has no kernel for
aten.gru / aten.lstm, while the unrolled linear/sigmoid/tanh ops are delegated to XNNPACK.
"""

from __future__ import annotations

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
from edgekit.passes.int8_options import Int8Options
from edgekit.passes.recurrent import unroll_recurrent
from edgekit.progress import step
from edgekit.quant import pt2e
from edgekit.quiet import quiet

WEIGHT_BITS = 8  # XNNPACK's signed int8 kernels widen before multiplying (quant/plan.py ISA_PROFILES["xnnpack"])
WHO = "to_executorch"


class ToExecuTorch(Int8Options):
    name: ClassVar[str] = "to_executorch"
    version: ClassVar[int] = 1
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
        module, unrolled = unroll_recurrent(module)
        args = tuple(torch.zeros(s.shape) for s in ctx.card.inputs)
        meta: dict = {"precision": self.precision}
        notes = []
        if unrolled:
            notes.append(f"recurrent layers {', '.join(unrolled)} unrolled into linear/sigmoid/tanh ops over the "
                         f"{ctx.card.image_input.shape[1]}-step window (ExecuTorch has no GRU/LSTM kernel)")
        if self.precision == "int8":
            module, plan = self._int8(module, args, ctx)
            meta["quant_plan"] = plan
            notes += [f"to_executorch: {plan.int8_fraction('macs'):.1%} of planned MACs in INT8 ({WEIGHT_BITS}-bit "
                      f"per-channel weights, observer {self.observer})"] + plan.decisions
        program = _lower(module, args)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "model.pte"
        with step("writing the .pte program"):
            path.write_bytes(program.buffer)
        graph = pte.read(path)
        notes.append(f"lowered with executorch {metadata.version('executorch')}: {graph.delegated_share():.1%} of MACs in "
                     f"{len(graph.delegates)} XNNPACK delegate call(s); portable kernels: "
                     + (", ".join(f"{op} x{n}" for op, n in graph.portable_ops().items()) or "none"))
        return Artifact.create(path, Format.pte, src, **meta, io=graph.io(), notes=notes)

    def _int8(self, module, args, ctx):
        """The QDQ module of edgekit's plan, quantized by XNNPACKQuantizer with edgekit's observers."""
        import torch
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                             get_symmetric_quantization_config)

        if ctx.calib is None:
            raise BadInputError("to_executorch precision=int8 needs a calibration set; fix: add `calibration:` to the recipe")
        inputs = model_inputs(ctx.card, ctx.calib)
        tensors = [torch.from_numpy(inputs.arrays[s.name]) for s in ctx.card.inputs]
        plan = pt2e.plan(self, module, args, ctx, inputs, tensors, "xnnpack", WEIGHT_BITS)
        base = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
        quantizer = XNNPACKQuantizer().set_global(pt2e.with_edgekit_observers(base, self))
        for lp in plan.float_layers:
            quantizer.set_module_name(lp.name, None)
        samples = [tuple(t[i:i + 1] for t in tensors) for i in range(len(inputs))]
        converted, decisions = pt2e.quantize(module, args, quantizer, samples, WHO, "onnx-int8", fold_quantize=True)
        return converted, plan.model_copy(update={"decisions": plan.decisions + decisions})


def _lower(module, args):
    """torch.export (non-strict, as the FP32 ONNX export), XNNPACK partitioning and lowering, ExecuTorch program."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    exported = pt2e.export(module, args, WHO)
    try:
        with step("lowering to ExecuTorch with the XNNPACK partitioner"), quiet():
            return to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
    except Exception as exc:
        raise BadInputError(f"{WHO}: ExecuTorch could not lower the model ({first_line(exc)}); fix: replace the "
                            "layer that uses that operator, or use the onnx target") from None
