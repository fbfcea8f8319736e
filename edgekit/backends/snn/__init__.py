"""SNN backend: the ANN-to-SNN conversion pass (convert.py) and edgekit's PyTorch integrate-and-fire simulator
(runner.py), whose report has a spiking section (error vs T, rates, synaptic ops) and energy from measured spikes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from edgekit.artifact import Format
from edgekit.backends.base import Backend, SpikingSections
from edgekit.backends.snn import convert  # noqa: F401  (registers the pass)
from edgekit.backends.snn.runner import SWEEP, SnnRunner, dense_counts, error_curve, naive_curve, reference
from edgekit.progress import step
from edgekit.snn.counts import energy_section, spiking_counts
from edgekit.snn.simulate import readout_lag


class SnnBackend(SpikingSections, Backend):
    name: ClassVar[str] = "snn"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.snn})
    extra: ClassVar[str] = "snn"
    summary: ClassVar[str] = "edgekit's PyTorch integrate-and-fire simulator, CPU"

    def runner(self, path: Path, threads: int = 1):
        return SnnRunner(path, threads)

    def counts(self, path: Path, runner, sample) -> dict:
        net = runner.net
        params = sum(int(w.numel()) + int(b.numel()) for w, b in zip(net.weights, net.biases) if w is not None)
        return dense_counts(net, params, "weights and biases of the SNN's layers")

    def energy(self, path: Path, runner, sample, device: str) -> dict:
        return {"why": "filled in from the spikes measured on the evaluation set (Spiking section)"}  # replaced after spiking()

    def spiking(self, art, runner, inputs, ref_out, card, device: str) -> dict:
        net = runner.net
        x = torch.from_numpy(np.ascontiguousarray(next(iter(inputs.arrays.values())), np.float32))
        truth, ref, ref_error = reference(inputs, ref_out, card)
        steps = tuple(sorted(set(SWEEP) | {net.timesteps}))
        with step(f"simulating the SNN for {max(steps)} steps on {len(x)} images (error vs timesteps, spike counts)"):
            started = time.perf_counter()
            curve, res = error_curve(net, x, truth, ref_error, ref, steps, count=True)
            sweep_s = time.perf_counter() - started
        lag = readout_lag(net)  # counts, rates and simulator time cover every step run: the lag and the T steps
        out = {"timesteps": net.timesteps, "latency_steps": net.timesteps + lag, "reset": net.reset, "v_init": net.v_init,
               "reference_error_deg": ref_error, "error_vs_timesteps": curve, "conversion": net.meta}
        out["naive_baseline"] = naive_curve(Path(art.path) / "baseline", x, truth, ref_error, ref)
        counts = spiking_counts(net, res.spikes[net.timesteps], res.acs[net.timesteps], net.timesteps + lag, len(x))
        out["counts"] = counts
        out["energy_section"] = energy_section(counts, runner.describe(), device)
        out["simulator_time"] = {"value": sweep_s / ((max(steps) + lag) * len(x)) * 1e3, "unit": "ms per step per image",
                                 "method": "measured", "how": f"{runner.describe()}; one batched run of {len(x)} images x "
                                                              f"{max(steps) + lag} steps (spike counting included), wall clock"}
        return out
