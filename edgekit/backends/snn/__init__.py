"""SNN backend: the ANN-to-SNN conversion pass (convert.py) and edgekit's PyTorch integrate-and-fire simulator
(runner.py), whose report has a spiking section (error vs T, rates, synaptic ops) and energy from measured spikes."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from edgekit.artifact import Format
from edgekit.backends.base import Backend
from edgekit.backends.snn import convert  # noqa: F401  (registers the pass)
from edgekit.backends.snn import runner as snn_runtime


class SnnBackend(Backend):
    name: ClassVar[str] = "snn"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.snn})
    extra: ClassVar[str] = "snn"
    summary: ClassVar[str] = "edgekit's PyTorch integrate-and-fire simulator, CPU"

    def runner(self, path: Path, threads: int = 1):
        return snn_runtime.SnnRunner(path, threads)

    def counts(self, path: Path, runner, sample: dict) -> dict:
        return snn_runtime.counts(path, runner, sample)

    def energy(self, path: Path, runner, sample: dict, device: str) -> dict:
        return snn_runtime.energy(path, runner, sample, device)

    def sections(self, art, runner, inputs, ref_out, card, device: str) -> dict:
        spiking = snn_runtime.spiking(art, runner, inputs, ref_out, card, device)
        return {"energy": spiking.pop("energy_section"), "spiking": spiking}
