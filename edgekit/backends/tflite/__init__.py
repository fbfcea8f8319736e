"""TFLite backend: the litert-torch conversion pass (convert.py), the flatbuffer reader/editor (graph.py) and the
LiteRT interpreter runner (runner.py)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from edgekit.artifact import Format
from edgekit.backends.base import Backend
from edgekit.backends.tflite import convert  # noqa: F401  (registers the pass)
from edgekit.backends.tflite import runner as litert_runtime


class TFLiteBackend(Backend):
    name: ClassVar[str] = "tflite"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.tflite})
    extra: ClassVar[str] = "tflite"
    summary: ClassVar[str] = "LiteRT interpreter (XNNPACK), CPU"

    def runner(self, path: Path, threads: int = 1):
        return litert_runtime.runner(path, threads)

    def counts(self, path: Path, runner, sample: dict) -> dict:
        return litert_runtime.counts(path, runner, sample)

    def energy(self, path: Path, runner, sample: dict, device: str) -> dict:
        return litert_runtime.energy(path, runner, sample, device)

    def runtime_details(self, art, runner, work: Path) -> tuple[dict, list[str]]:
        return litert_runtime.runtime_details(art, runner, work)
