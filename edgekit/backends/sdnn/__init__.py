"""Sigma-delta backend (Loihi 2 through netx's SDNN layers): the to_sdnn pass (convert.py), edgekit's fixed-point
mirror as the runner and Lava's CPU simulator as its check (runner.py, lava_script.py). Its report section
`sigma_delta` gives messages and synaptic ops per frame, on single frames from rest and on 60 Hz sequences, against
the ANN's MACs, with energy from the same cited constants as the other targets."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from edgekit.artifact import Format
from edgekit.backends.base import Backend
from edgekit.backends.lava.simulator import LavaChecked
from edgekit.backends.sdnn import convert  # noqa: F401  (registers the pass)
from edgekit.backends.sdnn.convert import ANN
from edgekit.backends.sdnn.runner import SdnnRunner, lava_check
from edgekit.backends.snn.runner import reference
from edgekit.data.gaze import readout_vectors
from edgekit.data.metrics import angular_error_deg
from edgekit.energy.meters import Reading
from edgekit.progress import step
from edgekit.sdnn.counts import ann_macs, message_counts
from edgekit.sdnn.energy import estimates

WHY_NO_SPEED = ("not measured: no Loihi here; Lava's CPU simulator time per step is in the Sigma-delta section, and a "
                "simulator's speed says nothing about the chip")
NOT_METERED = "not measured: a simulated network has no energy meter, and this host's power says nothing about Loihi"
SEQUENCE_SEED = 6060  # the renderer's seed for the report's 60 Hz sequences (not the evaluation set's)


class SdnnBackend(LavaChecked, Backend):
    name: ClassVar[str] = "sdnn"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.sdnn})
    extra: ClassVar[str] = "snn"
    measures_speed: ClassVar[bool] = False
    why_no_speed: ClassVar[str] = WHY_NO_SPEED
    summary: ClassVar[str] = ("Loihi 2 sigma-delta network via netx: edgekit's fixed-point mirror, checked message for "
                              "message in Lava's CPU simulator")

    def runner(self, path: Path, threads: int = 1):
        return SdnnRunner(path, threads)

    def counts(self, path: Path, runner, sample) -> dict:
        layers = runner.net.layers
        params = sum(int(lay.weight.size) + (0 if lay.bias is None else int(lay.bias.size)) for lay in layers[1:])
        return {"params": params, "macs": ann_macs(layers),
                "params_how": "8-bit weights and integer biases in the netx file (the readout's bias is added on the host)",
                "macs_how": "the ANN's multiply-accumulates per frame (conv and dense layers of the netx file), batch 1"}

    def energy(self, path: Path, runner, sample, device: str) -> dict:
        return {"why": "filled in from the messages measured by the fixed-point mirror (Sigma-delta section)"}

    def runtime_details(self, art, runner, work: Path) -> tuple[dict, list[str]]:
        return {"runtime": runner.describe(), "executed_here": True}, [
            "accuracy measured with edgekit's fixed-point mirror of Lava's sigma-delta neurons (checked message for "
            "message against Lava's simulator on a subset: Sigma-delta section)"]

    def sections(self, art, runner, inputs, ref_out, card, device: str) -> dict:
        x = next(iter(inputs.arrays.values()))
        truth, _, ref_error = reference(inputs, ref_out, card)
        if not runner.seen.covers(x):  # verification ran other inputs (or none) through this runner: run the set now
            runner.seen = type(runner.seen)(len(runner.net.layers))
            with step(f"running the fixed-point mirror on {len(x)} images"):
                runner.run({"x": x})
        seen, net = runner.seen, runner.net
        single = message_counts(net, seen.messages / seen.samples, seen.synops / seen.samples, seen.samples)
        error = lambda out: float(angular_error_deg(readout_vectors(out, net.output_convention), truth).mean())  # noqa: E731
        fixed_error = error(np.concatenate(seen.outputs))
        ann = AnnRunner(Path(art.path) / ANN, card)
        ann_error = error(ann(x))
        single["energy"] = estimates(single["synops"], single["neuron_updates"], device)
        sequence, sequence_set = _sequences(runner, ann, card, device)
        lava = lava_check(runner, x[:runner.spec["lava_samples"]], truth[:runner.spec["lava_samples"]])
        section = {"steps_per_frame": net.steps_per_frame, "delay_steps": net.delay_steps, "reference_error_deg": ref_error,
                   "fixed_point": {"error_deg": fixed_error, "samples": len(x), "increase_deg": fixed_error - ref_error},
                   "ann_error_deg": ann_error, "increase_over_ann_deg": fixed_error - ann_error,
                   "ann_macs": ann_macs(net.layers), "single_frame": single, "sequence": sequence,
                   "sequence_set": sequence_set, "conversion": runner.spec, "lava": lava,
                   "simulator_time": {"value": seen.seconds / (net.steps_per_frame * seen.samples) * 1e3,
                                      "unit": "ms per step per image (fixed-point mirror)", "method": "measured",
                                      "how": f"{runner.describe()}; verification's run over {seen.samples} images, wall clock"}}
        energy = {"macs_by_precision": {}, "layers": single["layers"], "estimates": single["energy"],
                  "measured": Reading(None, None, 0, 0.0, NOT_METERED).__dict__ | {"meter": "none",
                                                                                   "runtime": runner.describe()}}
        return {"sigma_delta": section, "energy": energy}


class AnnRunner:
    """The float ANN the network was converted from (the artifact's ann/ copy), run in batches of preprocessed images."""

    def __init__(self, folder: Path, card):
        from edgekit.torch_module import load_module

        self.module = load_module(folder, trusted_arch=card.arch)[0].eval()

    def __call__(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        import torch

        with torch.no_grad():
            return np.concatenate([self.module(torch.from_numpy(np.ascontiguousarray(x[i:i + batch], np.float32))).numpy()
                                   for i in range(0, len(x), batch)])


def _sequences(runner: SdnnRunner, ann: AnnRunner, card, device: str) -> tuple[dict | None, dict | None]:
    """The renderer's 60 Hz sequences (appearance frozen, gaze moving) run as streams: every frame held for the
    network's steps per frame, state carried over, so a frame costs only the changes it brings. Averages over every
    frame after the first (the first starts from rest, as a single frame does)."""
    from edgekit.data.synthetic import synthetic_sequences
    from edgekit.evalset import model_inputs

    plan = runner.spec.get("sequences") or {}
    n, length = plan.get("count", 0), plan.get("frames", 0)
    if n < 1 or length < 2:
        return None, None
    shape = runner.net.layers[0].shape
    gs = synthetic_sequences(n, length, SEQUENCE_SEED, tuple(shape[-2:]), fps=plan.get("fps", 60), progress=False,
                             role="eval")
    frames = next(iter(model_inputs(card, gs).arrays.values())).reshape(n, length, *shape)
    net = runner.net
    with step(f"running {n} sequences of {length} frames at {plan.get('fps', 60):g} Hz through the fixed-point mirror"):
        res = runner.frames(frames)
        rest = runner.frames(frames.reshape(n * length, 1, *shape))  # the same frames, each from rest
    later = slice(1, None)
    per = n * (length - 1)
    counts = message_counts(net, np.array([m[later].sum() for m in res.messages]) / per,
                            np.array([s[later].sum() for s in res.synops]) / per, per)
    truth = gs.gaze.reshape(n, length, 3)[:, later].reshape(-1, 3)
    streamed = net.decode(res.readout[:, later].reshape(per, -1))
    from_rest = net.decode(rest.readout[:, -1]).reshape(n, length, -1)[:, later].reshape(per, -1)
    error = lambda out: float(angular_error_deg(readout_vectors(out, net.output_convention), truth).mean())  # noqa: E731
    counts["error_deg"] = error(streamed)
    counts["ann_error_deg"] = error(ann(frames.reshape(n, length, *shape)[:, later].reshape(per, *shape)))
    counts["energy"] = estimates(counts["synops"], counts["neuron_updates"], device)
    counts["how"] += "; frames after the first of each sequence, state carried over from the frame before"
    return counts, {"renderer": gs.meta.get("source"), "fps": plan.get("fps", 60), "sequences": n, "frames": length,
                    "seed": SEQUENCE_SEED, "from_rest_error_deg": error(from_rest),
                    "from_rest_synops": float(sum(s.sum() for s in rest.synops)) / (n * length)}
