"""ONNX backend: the export and int8/fp16 passes (export.py, ptq.py with qdq.py), graph counts (graph.py,
energy_counts.py) and the onnxruntime CPU runner (runner.py)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from edgekit.artifact import Format
from edgekit.backends.base import Backend
from edgekit.backends.onnx import export, ptq  # noqa: F401  (registers the passes)
from edgekit.backends.onnx import runner as onnx_runtime


class OnnxBackend(Backend):
    name: ClassVar[str] = "onnx"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.onnx})
    extra: ClassVar[str] = "onnx"
    summary: ClassVar[str] = "onnxruntime, CPU execution provider"

    def runner(self, path: Path, threads: int = 1):
        return onnx_runtime.OnnxRunner(path, threads=threads)

    def counts(self, path: Path, runner, sample: dict) -> dict:
        return onnx_runtime.counts(path, runner, sample)

    def energy(self, path: Path, runner, sample: dict, device: str) -> dict:
        return onnx_runtime.energy(path, runner, sample, device)

    def runtime_details(self, art, runner, work: Path) -> tuple[dict, list[str]]:
        return onnx_runtime.runtime_details(art, runner, work)
