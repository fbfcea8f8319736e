"""Lava backend (Loihi 2 through netx): the netx export pass (convert.py), the fixed-point mirror runner (runner.py)
and Lava's CPU simulator in its own Python 3.10 environment (simulator.py running lava_script.py)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from edgekit.artifact import Format
from edgekit.backends.base import Availability, Backend
from edgekit.backends.lava import convert  # noqa: F401  (registers the pass)
from edgekit.backends.lava import runner as lava_runtime
from edgekit.backends.lava.simulator import lava_available


class LavaBackend(Backend):
    name: ClassVar[str] = "lava"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.lava})
    extra: ClassVar[str] = "snn"
    measures_speed: ClassVar[bool] = False
    why_no_speed: ClassVar[str] = lava_runtime.WHY_NO_SPEED
    summary: ClassVar[str] = "Loihi 2 via netx: edgekit's fixed-point mirror, checked spike for spike in Lava's CPU simulator"

    def available(self) -> Availability:
        """The netx writer's extra is enough to build and verify; Lava's simulator adds the spike-for-spike check."""
        exported = super().available()
        if not exported.usable:
            return exported
        ok, why = lava_available()
        return Availability(True, why if ok else f"fixed-point mirror only; Lava's simulator check: {why}")

    def runner(self, path: Path, threads: int = 1):
        return lava_runtime.FixedPointRunner(path, threads)

    def counts(self, path: Path, runner, sample: dict) -> dict:
        return lava_runtime.counts(path, runner, sample)

    def energy(self, path: Path, runner, sample: dict, device: str) -> dict:
        return lava_runtime.energy(path, runner, sample, device)

    def runtime_details(self, art, runner, work: Path) -> tuple[dict, list[str]]:
        return lava_runtime.runtime_details(art, runner, work)

    def sections(self, art, runner, inputs, ref_out, card, device: str) -> dict:
        spiking = lava_runtime.spiking(art, runner, inputs, ref_out, card, device)
        return {"energy": spiking.pop("energy_section"), "spiking": spiking}
