"""SNN backend: run `snn` artifacts (edgekit/snn) in edgekit's PyTorch integrate-and-fire simulator on this CPU.

The report's spiking section has the error-vs-T curve of the converted network and of the naive baseline stored
beside it, spike rates per layer and NeuroBench-named synaptic operations from the measured spikes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from edgekit.data.gaze import readout_vectors  # noqa: F401  (the spiking backends import it from here)
from edgekit.data.metrics import angular_error_deg
from edgekit.evalset import to_vectors
from edgekit.progress import step
from edgekit.snn.counts import layer_macs
from edgekit.snn.net import SpikingNet
from edgekit.snn.simulate import simulate

SWEEP = (4, 8, 16, 32, 64)


class SeenInputs:
    """What every run() of a spiking runner produced so far, in order, with a digest of its inputs: a report section
    reuses verification's pass over the evaluation set instead of running the mirror over it a second time, when
    covers(x) says the inputs were exactly x. Subclasses add their own counts (spikes, messages)."""

    def __init__(self):
        self.hash, self.outputs, self.samples, self.seconds = hashlib.sha256(), [], 0, 0.0

    def record(self, x: np.ndarray, out: np.ndarray, seconds: float) -> None:
        self.hash.update(np.ascontiguousarray(x).tobytes())
        self.outputs.append(out)
        self.samples += len(x)
        self.seconds += seconds

    def covers(self, x: np.ndarray) -> bool:
        return self.samples == len(x) and self.hash.hexdigest() == hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def normalize(out: np.ndarray, on: bool) -> np.ndarray:
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12) if on else out


class SnnRunner:
    def __init__(self, path: Path, threads: int = 1):
        self.net, self.threads = SpikingNet.load(Path(path)), threads

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(next(iter(inputs.values())), np.float32))
        torch.set_num_threads(self.threads)  # the recipe's thread count, as the other runtimes are given theirs
        out = simulate(self.net, x, self.net.timesteps, count=False).outputs[self.net.timesteps]
        return normalize(out, self.net.normalize_output)

    def describe(self) -> str:
        return (f"edgekit PyTorch IF simulator (torch {torch.__version__}, CPU, {self.threads} thread(s)), "
                f"T={self.net.timesteps}, reset by {self.net.reset}")


def dense_counts(net, params: int, params_how: str) -> dict:
    """The report's compute counts of a spiking artifact (snn and lava backends): its parameters, and the dense MACs
    of the equivalent ANN."""
    return {"params": params, "macs": sum(layer_macs(net.layers[i]) for i in net.weighted), "params_how": params_how,
            "macs_how": "dense MACs of the equivalent ANN, batch 1 (the spiking section has ACs from measured spikes)"}


def reference(inputs, ref_out, card) -> tuple[np.ndarray, np.ndarray, float]:
    """(labelled gaze, the reference model's gaze vectors, its mean error) on the evaluation set."""
    truth = inputs.truth.reshape(-1, 3)
    ref = to_vectors(ref_out, card).reshape(-1, 3)
    return truth, ref, float(angular_error_deg(ref, truth).mean())


def error_curve(net, x: torch.Tensor, truth: np.ndarray, ref_error: float, ref_vectors: np.ndarray,
                steps: tuple[int, ...] = SWEEP, count: bool = False):
    """Mean angular error and increase over the ANN at each T, from one simulation of max(steps) steps (the readout
    turned into gaze vectors by the net's output convention)."""
    res = simulate(net, x, max(steps), record=steps, count=count)
    rows = []
    for t in steps:
        out = readout_vectors(res.outputs[t], net.output_convention)
        err = float(angular_error_deg(out, truth).mean())
        rows.append({"timesteps": t, "error_deg": err, "increase_deg": err - ref_error,
                     "diff_from_ann_mean_deg": float(angular_error_deg(out, ref_vectors).mean())})
    return rows, res


def naive_curve(folder: Path, x, truth, ref_error: float, ref) -> dict | None:
    """The same curve for the naive conversion stored beside the SNN (None when the artifact has none)."""
    if not folder.is_dir():
        return None
    base = SpikingNet.load(folder)
    with step(f"simulating the naive baseline for {max(SWEEP)} steps on {len(x)} images"):
        curve = error_curve(base, x, truth, ref_error, ref)[0]
    return {"what": base.meta.get("baseline"), "error_vs_timesteps": curve}
