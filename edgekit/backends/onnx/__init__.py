"""ONNX backend: the export and int8/fp16 passes (export.py, ptq.py with qdq.py), graph counts (graph.py,
energy_counts.py) and the onnxruntime CPU runner (runner.py)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from edgekit.artifact import Format
from edgekit.backends.base import Backend
from edgekit.backends.onnx import export, ptq, qat  # noqa: F401  (registers the passes)
from edgekit.backends.onnx.energy_counts import onnx_layer_counts
from edgekit.backends.onnx.graph import onnx_counts
from edgekit.backends.onnx.runner import OnnxRunner, fp16_execution
from edgekit.energy.section import energy_section


class OnnxBackend(Backend):
    name: ClassVar[str] = "onnx"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.onnx})
    extra: ClassVar[str] = "onnx"
    summary: ClassVar[str] = "onnxruntime, CPU execution provider"

    def runner(self, path: Path, threads: int = 1):
        return OnnxRunner(path, threads=threads)

    def counts(self, path: Path, runner, sample) -> dict:
        c = onnx_counts(path)
        return {**c, "params_how": "ONNX initializer elements",
                "macs_how": "from the ONNX graph with inferred shapes, batch 1: " +
                            ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in c["macs_by_op"].items())}

    def energy(self, path: Path, runner, sample, device: str) -> dict:
        """Per-layer counts, cited estimates, and a RAPL measurement where the host exposes the counters."""
        return energy_section(onnx_layer_counts(path), runner, sample, device)

    def runtime_details(self, art, runner, work: Path) -> tuple[dict, list[str]]:
        details = {"runtime": runner.describe(), "executed_here": True}
        if art.meta.precision != "fp16":
            return details, []
        fp16 = fp16_execution(art.path, work)
        return {**details, "fp16_execution": fp16}, [fp16["note"]]
