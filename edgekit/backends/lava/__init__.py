"""Lava backend (Loihi 2 through netx): the netx export pass (convert.py), the fixed-point mirror runner (runner.py)
and Lava's CPU simulator in its own Python 3.10 environment (simulator.py running lava_script.py)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from edgekit.artifact import Format
from edgekit.backends.base import Backend, SpikingSections
from edgekit.backends.lava import convert, finetune  # noqa: F401  (registers the passes)
from edgekit.backends.lava.runner import WHY_NO_SPEED, FixedPointRunner, Seen, lava_check
from edgekit.backends.lava.simulator import LavaChecked
from edgekit.backends.snn.runner import dense_counts, error_curve, naive_curve, readout_vectors, reference
from edgekit.data.metrics import angular_error_deg
from edgekit.progress import step
from edgekit.snn.counts import energy_section, spiking_counts
from edgekit.snn.net import SpikingNet


class LavaBackend(LavaChecked, SpikingSections, Backend):
    name: ClassVar[str] = "lava"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.lava})
    extra: ClassVar[str] = "snn"
    measures_speed: ClassVar[bool] = False
    why_no_speed: ClassVar[str] = WHY_NO_SPEED
    summary: ClassVar[str] = "Loihi 2 via netx: edgekit's fixed-point mirror, checked spike for spike in Lava's CPU simulator"

    def runner(self, path: Path, threads: int = 1):
        return FixedPointRunner(path, threads)

    def counts(self, path: Path, runner, sample) -> dict:
        params = sum(int(lay.weight.size) + int(lay.bias.size) for lay in runner.layers if lay.weight is not None)
        return dense_counts(SpikingNet.load(Path(path) / "snn"), params,
                            "8-bit weights and 13-bit biases in the netx file (the host encoder's first conv not included)")

    def energy(self, path: Path, runner, sample, device: str) -> dict:
        return {"why": "filled in from the spikes measured by the fixed-point model (Spiking section)"}  # replaced after spiking()

    def runtime_details(self, art, runner, work: Path) -> tuple[dict, list[str]]:
        return {"runtime": runner.describe(), "executed_here": True, "netx": runner.spec}, [
            "accuracy measured with edgekit's fixed-point mirror of Lava (checked spike for spike against Lava's simulator "
            "on a subset: Spiking section)"]

    def spiking(self, art, runner, inputs, ref_out, card, device: str) -> dict:
        import torch

        spec, x = runner.spec, next(iter(inputs.arrays.values()))
        truth, ref, ref_error = reference(inputs, ref_out, card)
        snn = SpikingNet.load(Path(art.path) / "snn")
        if not runner.seen.covers(x):  # verification ran other inputs through this runner (or none): run the set now
            runner.seen = Seen()
            with step(f"running the fixed-point mirror on {len(x)} images"):
                runner.run({"x": x})
        seen = runner.seen
        fixed = np.concatenate(seen.outputs)
        fixed_err = float(angular_error_deg(readout_vectors(fixed, spec.get("output_convention", "unit_vector")), truth).mean())
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        sweep = tuple(sorted({4, 8, 16, 32, 64, snn.timesteps}))
        with step(f"simulating the float SNN for {max(sweep)} steps on {len(x)} images (error vs timesteps)"):
            curve, _ = error_curve(snn, xt, truth, ref_error, ref, sweep)
        float_row = next(r for r in curve if r["timesteps"] == snn.timesteps)
        steps = spec["steps"]
        counts = spiking_counts(snn, seen.spikes, seen.acs, steps, len(x))  # measured over the S + T steps Lava runs
        out = {"timesteps": spec["timesteps"], "latency_steps": steps, "reset": "zero", "reference_error_deg": ref_error,
               "error_vs_timesteps": curve, "curve_of": ("the float SNN in the artifact (reset to zero, "
                            + ("Lava's one-step synaptic delays and warm-up)" if snn.delay else "no delays)")),
               "fixed_point": {"error_deg": fixed_err, "samples": len(x), "increase_deg": fixed_err - ref_error},
               "float_snn": {"error_deg": float_row["error_deg"], "samples": len(x),
                             "fixed_minus_float_deg": fixed_err - float_row["error_deg"]},
               "counts": counts, "conversion": snn.meta,
               "energy_section": energy_section(counts, runner.describe(), device),
               "naive_baseline": naive_curve(Path(art.path) / "snn" / "baseline", xt, truth, ref_error, ref),
               "simulator_time": {"value": seen.seconds / (steps * len(x)) * 1e3, "unit": "ms per step per image (fixed-point mirror)",
                                  "method": "measured", "how": f"{runner.describe()}; verification's run over {len(x)} images "
                                                               f"in {len(seen.outputs)} batch(es), wall clock"}}
        out["lava"] = lava_check(art, runner, inputs, truth, spec.get("lava_samples", 16))
        return out
