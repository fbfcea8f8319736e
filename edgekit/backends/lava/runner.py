"""Lava backend (Loihi 2 through netx): verify `lava` artifacts with edgekit's fixed-point mirror on the whole
evaluation set, and in Lava's CPU simulator (separate Python 3.10 environment, a subprocess) on the first
`lava_samples` images, compared spike for spike. Loihi hardware needs Intel's non-public package: not run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from edgekit.backends.lava.simulator import lava_available, run_lava
from edgekit.backends.snn.runner import SeenInputs, normalize, readout_vectors
from edgekit.data.metrics import angular_error_deg
from edgekit.snn.fixed_point import input_bias, run_fixed
from edgekit.snn.netx import SPEC, encoder_current, read_network

WHY_NO_SPEED = ("not measured: no Loihi here; Lava's CPU simulator time per step is in the Spiking section, and a "
                "simulator's speed says nothing about the chip")


class FixedPointRunner:
    def __init__(self, path: Path, threads: int = 1):
        self.path = Path(path)
        self.spec = json.loads((self.path / SPEC).read_text())
        self.layers = read_network(self.path / "network.net", self.spec)
        self.last = None
        self.seen = Seen()

    def input_bias(self, x: np.ndarray) -> np.ndarray:
        return input_bias(encoder_current(self.path, self.spec, x), int(self.spec["input_scale"]), 0)

    def run(self, inputs: dict[str, np.ndarray], keep_trains: bool = False) -> np.ndarray:
        x = next(iter(inputs.values()))
        started = time.perf_counter()
        self.last = run_fixed(self.layers, self.input_bias(x), self.spec["timesteps"], keep_trains,
                              self.spec.get("readout_start", self.spec["delay_steps"]))
        out = normalize(self.last.readout.astype(np.float64), self.spec["normalize_output"])
        self.seen.add(x, out, self.last, time.perf_counter() - started)
        return out

    def describe(self) -> str:
        return (f"edgekit fixed-point mirror of Lava's CUBA neurons (integer arithmetic), T={self.spec['timesteps']} "
                f"+ {self.spec['delay_steps']} delay steps" + (f" + {self.spec['warmup_steps']} warm-up steps"
                                                                if self.spec.get("warmup_steps") else ""))


class Seen(SeenInputs):
    """The fixed-point runs so far, with the spikes and synaptic ops they counted per layer."""

    def __init__(self):
        super().__init__()
        self.spikes, self.acs = None, None

    def add(self, x: np.ndarray, out: np.ndarray, res, seconds: float) -> None:
        self.record(x, out, seconds)
        self.spikes = [a + b for a, b in zip(self.spikes, res.spikes_per_layer)] if self.spikes else list(res.spikes_per_layer)
        self.acs = [a + b for a, b in zip(self.acs, res.acs_per_layer)] if self.acs else list(res.acs_per_layer)


def lava_check(art, runner, inputs, truth: np.ndarray, samples: int) -> dict:
    """Lava's simulator on the first `samples` images against the fixed-point mirror: every spike of every layer."""
    ok, why = lava_available()
    if not ok:
        return {"ran": False, "summary": f"not run: {why}"}
    x = next(iter(inputs.arrays.values()))[:samples]
    mine = runner.run({"x": x}, keep_trains=True)
    trains = runner.last.trains
    res = run_lava(Path(art.path), runner.input_bias(x))
    spec = runner.spec
    lava_out = normalize((res.v_end - res.v_start) / 64 / (spec["scales"][-1] * spec["timesteps"]), spec["normalize_output"])
    convention = spec.get("output_convention", "unit_vector")  # pitch/yaw readouts become vectors for the error
    # every layer must come back with the same shape; a missing or misshapen layer counts all its spikes as mismatched
    mismatched = [int((a != b).sum()) if a.shape == b.shape else int(max(a.size, b.size))
                  for a, b in zip(res.trains, trains)] + [int(t.size) for t in trains[len(res.trains):]]
    total = [int(a.sum()) for a in res.trains]
    readout_equal = bool(np.array_equal(res.v_end - res.v_start, runner.last.v_diff))
    lava_err, mine_err = (float(angular_error_deg(readout_vectors(o, convention), truth[:samples]).mean()) for o in (lava_out, mine))
    match = sum(mismatched) == 0 and readout_equal
    return {"ran": True, "samples": len(x), "spikes_per_layer": total, "mismatched_spikes_per_layer": mismatched,
            "readout_equal": readout_equal, "match": match, "lava_error_deg": lava_err, "fixed_point_error_deg": mine_err,
            "simulator_seconds": res.seconds, "subprocess_seconds": res.wall_seconds,
            "ms_per_step": res.seconds / res.steps * 1e3,
            "summary": (f"{'spike for spike identical' if match else 'MISMATCH'} to the fixed-point model on {len(x)} images "
                        f"({sum(total):,} spikes, {sum(mismatched)} differ; readout equal: {readout_equal}); error "
                        f"{lava_err:.3f} deg in Lava vs {mine_err:.3f} deg fixed point on these images; Lava CPU simulator "
                        f"{res.seconds / res.steps * 1e3:.1f} ms per step (Loihi2SimCfg fixed_pt, "
                        f"{res.wall_seconds:.0f} s with start-up and compilation)")}
