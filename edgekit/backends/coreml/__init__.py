"""Core ML backend: the conversion pass (convert.py), and verification of .mlpackage artifacts on any OS with
edgekit's MIL reference interpreter (mil_interpreter.py, runner.py); Core ML itself predicts only on macOS."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from edgekit.artifact import Format
from edgekit.backends.base import Backend
from edgekit.backends.coreml import convert  # noqa: F401  (registers the pass)
from edgekit.backends.coreml import runner as coreml_runtime


class CoreMLBackend(Backend):
    name: ClassVar[str] = "coreml"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.coreml})
    extra: ClassVar[str] = "coreml"
    measures_speed: ClassVar[bool] = False
    why_no_speed: ClassVar[str] = coreml_runtime.WHY_NO_SPEED
    summary: ClassVar[str] = "edgekit's MIL interpreter here; Core ML's runtime on macOS"

    def runner(self, path: Path, threads: int = 1):
        return coreml_runtime.runner(path, threads)

    def counts(self, path: Path, runner, sample: dict) -> dict:
        return coreml_runtime.counts(path, runner, sample)

    def energy(self, path: Path, runner, sample: dict, device: str) -> dict:
        return coreml_runtime.energy(path, runner, sample, device)

    def runtime_details(self, art, runner, work: Path) -> tuple[dict, list[str]]:
        return coreml_runtime.runtime_details(art, runner, work)
