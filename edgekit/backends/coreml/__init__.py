"""Core ML backend: the conversion pass (convert.py), and verification of .mlpackage artifacts on any OS with
edgekit's MIL reference interpreter (mil_interpreter.py, runner.py); Core ML itself predicts only on macOS."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from edgekit.artifact import Format
from edgekit.backends.base import Backend
from edgekit.backends.coreml import convert  # noqa: F401  (registers the pass)
from edgekit.backends.coreml.mil_interpreter import MilInterpreter
from edgekit.backends.coreml.runner import WHY_NO_SPEED, macos_check, open_runner
from edgekit.energy.section import energy_section


class CoreMLBackend(Backend):
    name: ClassVar[str] = "coreml"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.coreml})
    extra: ClassVar[str] = "coreml"
    measures_speed: ClassVar[bool] = False
    why_no_speed: ClassVar[str] = WHY_NO_SPEED
    summary: ClassVar[str] = "edgekit's MIL interpreter here; Core ML's runtime on macOS"

    def runner(self, path: Path, threads: int = 1):
        return open_runner(path, threads)

    def counts(self, path: Path, interp, sample) -> dict:
        interp.run(sample)
        weights = interp.weight_precisions()
        params = sum(w["elements"] for w in weights)
        return {"params": params, "macs": interp.macs,
                "params_how": "elements of the ML program's constant tensors with more than 16 elements (weights)",
                "macs_how": "counted by the MIL interpreter from the conv/linear/matmul shapes it executed, batch 1"}

    def energy(self, path: Path, interp, sample, device: str) -> dict:
        """Per-op counts from the interpreter's run of the package (precision as declared, weights as stored)."""
        interp.run(sample)
        return energy_section(interp.layers, interp, sample, device, not_measurable=(
            "Core ML runs only on Apple devices; this host runs edgekit's numpy interpreter, whose energy says nothing "
            "about a device"))

    def runtime_details(self, art, interp: MilInterpreter, work: Path) -> tuple[dict, list[str]]:
        weights = interp.weight_precisions()
        total = sum(w["elements"] for w in weights) or 1
        by_dtype: dict[str, int] = {}
        for w in weights:
            by_dtype[w["dtype"]] = by_dtype.get(w["dtype"], 0) + w["elements"]
        details = {"runtime": interp.describe(), "executed_here": True, "core_ml_runtime": macos_check(art.path, interp),
                   "op_histogram": interp.op_histogram(), "weight_dtypes": {k: v / total for k, v in by_dtype.items()},
                   "int8_weight_fraction": (by_dtype.get("int8", 0) + by_dtype.get("uint8", 0)) / total,
                   "weights": weights}
        note = ("Core ML outputs measured with edgekit's MIL reference interpreter (numpy and torch, FP32 accumulation); "
                + details["core_ml_runtime"]["status"])
        return details, [note]
