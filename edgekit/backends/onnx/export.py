"""export_onnx: PyTorch (module, TorchScript or torch.export program) -> ONNX, simplified and checked.

Uses the TorchScript-based exporter (`dynamo=False`): 0.2-2 s against 5-10 s for the dynamo exporter,
which also silently stays at opset 18 when asked for less (shared reference/dependencies.md). The graph
is simplified with onnxslim only when that changes it, and passes the ONNX checker.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from edgekit._optional import require
from edgekit.artifact import Artifact, Format
from edgekit.backends.onnx.symbolics import older_opset_symbolics
from edgekit.errors import BadInputError, first_line
from edgekit.passes.base import Pass
from edgekit.quiet import quiet
from edgekit.safe_pt2 import load_exported_program
from edgekit.torch_module import load_module


def load_torch_artifact(art: Artifact, *, trusted_arch: str | None = None):
    """The nn.Module behind any torch-family artifact, loaded without running code from the file: a module folder
    imports a non-built-in architecture only if it is `trusted_arch` (the run's --arch, ctx.card.arch), a .pt2
    goes through edgekit.safe_pt2."""
    import torch

    if art.format == Format.torch:
        return load_module(art.path, trusted_arch=trusted_arch)[0]
    if art.format == Format.torchscript:
        return load_torchscript(art.path)
    module = load_exported_program(art.path).module().requires_grad_(False)

    class Opaque(torch.nn.Module):
        """Hides the torch.export module from train()/eval(), which it refuses, so the TorchScript exporter can trace it."""

        def __init__(self, fn):
            super().__init__()
            object.__setattr__(self, "fn", fn)  # deliberately not registered as a submodule

        def forward(self, *args):
            return self.fn(*args)

    return Opaque(module)


def load_torchscript(path: Path):
    """torch.jit.load: it runs the file's TorchScript (by design) but unpickles no arbitrary Python; a corrupt file is
    one line, without torch's C++ trace."""
    import torch

    try:
        with quiet():
            return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        first = first_line(exc, 200).split(". ")[0]
        raise BadInputError(f"{path}: not a loadable TorchScript file ({first}); fix: save it again with torch.jit.save") from None


def unsupported_op_location(module, args, op: str) -> str:
    """The module path that calls `op` (`aten::cummax`, or a converter's short lowercase name such as `int`), read from
    the scope names of a traced graph."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = torch.jit.trace(module, args, check_trace=False).inlined_graph
    except Exception:
        return "unknown module"
    for node in graph.nodes():
        if node.kind() == op or node.kind().split("::")[-1].lower() == op.lower():
            scope = node.scopeName().split("/")[-1].replace("__module.", "")
            return scope or "(top level)"
    return "unknown module"


# fixes for the exporter's "ONNX export of operator X, <condition>" refusals
_EXPORT_FIXES = {
    "adaptive_avg_pool2d": "give AdaptiveAvgPool2d an output size that divides its input size (the exporter turns it "
                           "into a fixed-kernel AvgPool), or pool with nn.AvgPool2d",
    "adaptive_max_pool2d": "give AdaptiveMaxPool2d an output size that divides its input size, or pool with nn.MaxPool2d",
}


def _export(module, args, path: Path, opset: int, names: list[str], out_name: str, axes) -> None:
    import torch

    with older_opset_symbolics(opset):  # affine_grid below opset 20
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset, input_names=names,
                          output_names=[out_name], dynamic_axes=axes, do_constant_folding=True)


def _first_opset_that_exports(module, args, names, out_name, axes, start: int, last: int = 20) -> int | None:
    """The lowest opset from `start` to `last` (onnxruntime runs up to 20 here) at which the model exports, or None."""
    for opset in range(start, last + 1):
        with tempfile.TemporaryDirectory(prefix="edgekit-opset-") as tmp, quiet():
            try:
                _export(module, args, Path(tmp) / "m.onnx", opset, names, out_name, axes)
                return opset
            except Exception:
                continue
    return None


class ExportOnnx(Pass):
    name: ClassVar[str] = "export_onnx"
    uses_calibration: ClassVar[bool] = False
    version: ClassVar[int] = 1
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.torch, Format.torchscript, Format.exported_program})
    produces: ClassVar[Format] = Format.onnx
    summary: ClassVar[str] = "export to ONNX (TorchScript exporter), simplify with onnxslim when it changes the graph, check"

    opset: int = Field(17, ge=11, le=23, description="ONNX opset")
    simplify: bool = Field(True, description="run onnxslim and keep its graph when it differs")
    dynamic_batch: bool = Field(True, description="leave the batch dimension symbolic")

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        import torch

        onnx = require("onnx", "the export_onnx pass")
        module = load_torch_artifact(src, trusted_arch=ctx.card.arch)
        card = ctx.card
        args = tuple(torch.zeros(s.shape) for s in card.inputs)
        names = [s.name for s in card.inputs]
        out_name = card.output.name
        axes = {n: {0: "batch"} for n in names + [out_name]} if self.dynamic_batch else None
        path = out_dir / "model.onnx"
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            with quiet():
                _export(module, args, path, self.opset, names, out_name, axes)
        except Exception as exc:
            text = str(exc)
            match = re.search(r"operator '?([\w:.]+)'? to ONNX opset version (\d+)", text)
            if match:
                op = match.group(1)
                where = unsupported_op_location(module, args, op)
                higher = _first_opset_that_exports(module, args, names, out_name, axes, self.opset + 1)
                fix = (f"set `export_onnx: {{opset: {higher}}}` in the recipe (opset {higher} exports it)" if higher else
                       "replace that layer with supported ops")
                raise BadInputError(f"export_onnx: operator {op} (in module {where}) is not supported by the ONNX exporter at "
                                    f"opset {match.group(2)}; fix: {fix}") from None
            match = re.search(r"ONNX export of operator (\w+), ([^.]*)", text)
            if match:  # an operator the exporter takes only in some configurations
                op, why = match.groups()
                where = unsupported_op_location(module, args, f"aten::{op}")
                raise BadInputError(f"export_onnx: operator {op} (in module {where}) cannot be exported: {why.strip()}; fix: "
                                    f"{_EXPORT_FIXES.get(op, 'replace that layer with supported ops')}") from None
            raise BadInputError(f"export_onnx failed: {text.strip().splitlines()[0][:300]}; fix: check the model traces "
                                "with torch.jit.trace") from None
        model = onnx.load(str(path))
        notes = [f"exported with torch {torch.__version__} TorchScript exporter, opset {self.opset}"]
        if self.simplify:
            import onnxslim

            before = [n.op_type for n in model.graph.node]
            slim = onnxslim.slim(model)
            after = [n.op_type for n in slim.graph.node]
            if after != before:
                model = slim
                notes.append(f"onnxslim {onnxslim.__version__}: {len(before)} -> {len(after)} nodes")
            else:
                notes.append(f"onnxslim {onnxslim.__version__}: no change")
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(path))
        ops = sorted({n.op_type for n in model.graph.node})
        folds = []
        if src.format == Format.torch:
            import json

            folds = json.loads((src.path / "module.json").read_text()).get("bn_folds", [])
        return Artifact.create(path, Format.onnx, src, notes=notes, opset=self.opset, precision="fp32", ops=ops,
                               nodes=len(model.graph.node), bn_folds=folds)


class OnnxFp16(Pass):
    name: ClassVar[str] = "onnx_fp16"
    uses_calibration: ClassVar[bool] = False
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.onnx})
    produces: ClassVar[Format] = Format.onnx
    summary: ClassVar[str] = "store weights and compute in float16, keeping float32 inputs and outputs (onnxconverter-common)"

    keep_io_types: bool = Field(True, description="float32 inputs/outputs (the one input contract)")

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        onnx = require("onnx", "the onnx_fp16 pass")
        float16 = require("onnxconverter_common.float16", "the onnx_fp16 pass")
        with warnings.catch_warnings():  # it warns that eps constants below 1e-7 are raised to fp16's smallest normal
            warnings.simplefilter("ignore")
            fp32 = onnx.load(str(src.path))
            kept = sampling_coordinates(fp32.graph)
            model = float16.convert_float_to_float16(fp32, keep_io_types=self.keep_io_types, node_block_list=kept or None)
        if kept:  # the converter leaves float32 value_info on the float16 casts it puts after kept nodes: infer again
            del model.graph.value_info[:]
        onnx.checker.check_model(model, full_check=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(out_dir / "model.onnx"))
        meta = src.meta.carried("precision")
        notes = ["weights and activations converted to float16 with float32 I/O"]
        if kept:
            notes.append(f"kept float32: grid sampling and the ops computing its coordinates ({', '.join(kept)}); all-float16 "
                         "sampling positions cost the zoo's spatial transformer 0.11 deg (max difference) against 0.08")
        return Artifact.create(out_dir / "model.onnx", Format.onnx, src, **meta, precision="fp16", notes=notes)


# ops between a grid's parameters (theta) and GridSample: positions need float32 where values are fine in float16
_COORDINATE_OPS = {"MatMul", "Transpose", "Reshape", "Unsqueeze", "Squeeze", "Concat", "Cast", "Add", "Sub", "Mul", "Div",
                   "Gather", "Shape", "Slice", "Expand", "Constant", "AffineGrid"}


def sampling_coordinates(graph) -> list[str]:
    """Every GridSample node and the coordinate arithmetic feeding its grid input (walked back to the layer that
    produces the transform's parameters). With them in float16 the zoo's spatial transformer missed the 0.1 degree gate
    (0.11 max difference; 0.08 with them in float32), while its convolutions are fine in float16."""
    producer = {out: node for node in graph.node for out in node.output}
    kept, todo = [], []
    for node in graph.node:
        if node.op_type == "GridSample":
            kept.append(node.name)
            todo.append(node.input[1])
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in kept or node.op_type not in _COORDINATE_OPS:
            continue
        kept.append(node.name)
        todo.extend(node.input)
    return kept
