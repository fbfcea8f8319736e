"""Run a sigma-delta artifact: edgekit's fixed-point mirror (every evaluation image a single frame from rest, or
streams of frames), and Lava's CPU simulator on a stream of evaluation images, compared message for message."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from edgekit.backends.lava.simulator import lava_available, lava_failure, run_script
from edgekit.backends.sdnn.convert import net_from
from edgekit.backends.snn.runner import SeenInputs
from edgekit.data.gaze import readout_vectors
from edgekit.data.metrics import angular_error_deg
from edgekit.errors import EdgekitError
from edgekit.sdnn.mirror import Mirror, MirrorResult

SCRIPT = Path(__file__).with_name("lava_script.py")


class SdnnRunner:
    """run(): each image is one frame held for the network's steps per frame, every sample from rest (as Lava starts);
    what every run so far cost in messages and synaptic ops is kept for the report (`seen`)."""

    def __init__(self, path: Path, threads: int = 1):
        import torch

        self.path, self.threads = Path(path), threads
        self.net = net_from(self.path)
        self.spec = self.net.meta["spec"]
        self.mirror = Mirror(self.net.layers)
        self.seen = Seen(len(self.net.layers))
        torch.set_num_threads(threads)

    def frames(self, x: np.ndarray, record: bool = False) -> MirrorResult:
        """x: (N, F, C, H, W) preprocessed frames -> the mirror's result for N streams of F frames from rest."""
        return self.mirror.run(self.net.input_integers(x), self.net.steps_per_frame, record)

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        x = next(iter(inputs.values()))
        started = time.perf_counter()
        res = self.frames(x[:, None])
        out = self.net.decode(res.readout[:, -1])
        self.seen.add(x, out, res, time.perf_counter() - started)
        return out

    def describe(self) -> str:
        return (f"edgekit fixed-point mirror of Lava's sigma-delta neurons (integer arithmetic), "
                f"{self.net.steps_per_frame} steps per frame from rest")


class Seen(SeenInputs):
    """The mirror's runs so far, with the messages and synaptic ops they counted per layer."""

    def __init__(self, layers: int):
        super().__init__()
        self.messages, self.synops = np.zeros(layers), np.zeros(layers)

    def add(self, x: np.ndarray, out: np.ndarray, res: MirrorResult, seconds: float) -> None:
        self.record(x, out, seconds)
        self.messages += [m.sum() for m in res.messages]
        self.synops += [s.sum() for s in res.synops]


def lava_check(runner: SdnnRunner, x: np.ndarray, truth: np.ndarray, timeout: float = 900) -> dict:
    """The first images of x as one stream of frames (each held steps-per-frame steps, from rest) through Lava's
    simulator and through the mirror: every message of every layer at every step must be equal."""
    ok, why = lava_available()
    if not ok:
        return {"ran": False, "summary": f"not run: {why}"}
    net, hold = runner.net, runner.net.steps_per_frame
    frames = net.input_integers(x)
    mine = runner.mirror.run(frames[None], hold, record=True)
    with tempfile.TemporaryDirectory(prefix="edgekit-sdnn-") as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "inputs.npz", frames=frames.astype(np.int32))
        started = time.perf_counter()
        stderr, finished, code = run_script(SCRIPT, [str(runner.path.resolve()), str(tmp / "inputs.npz"), str(tmp)], tmp,
                                            len(x), timeout, f"Lava's simulator on {len(x)} frames of {hold} steps "
                                                                 "(start-up and compilation in the first)")
        wall = time.perf_counter() - started
        if not finished:
            raise EdgekitError(f"Lava's simulator on {runner.path.name} did not finish in {timeout:.0f} s; fix: lower the "
                               "recipe's lava_samples (to_sdnn) or check `edgekit doctor`")
        if code != 0 or not (tmp / "messages.npz").exists():
            raise lava_failure(runner.path, stderr, "to_sdnn")
        with np.load(tmp / "messages.npz") as recorded:
            theirs = [_steps_first(recorded[f"layer_{k}"]) for k in range(len(net.layers))]
        timing = json.loads((tmp / "timing.json").read_text())
    ours = [r[0] for r in mine.recorded]
    differ = [int((a != b).sum()) if a.shape == b.shape else int(max(a.size, b.size)) for a, b in zip(theirs, ours)]
    sent = [int((a != 0).sum()) for a in theirs[:-1]]  # the readout sends its sigma every step: not messages
    lava_out = net.decode(theirs[-1][hold - 1::hold])
    mine_out = net.decode(mine.readout[0])
    convention = net.output_convention
    lava_err, mine_err = (float(angular_error_deg(readout_vectors(o, convention), truth).mean()) for o in (lava_out, mine_out))
    match = sum(differ) == 0
    ms = timing["run_seconds"] / timing["steps"] * 1e3
    return {"ran": True, "samples": len(x), "steps": timing["steps"], "messages_per_layer": sent,
            "mismatched_messages_per_layer": differ, "match": match, "lava_error_deg": lava_err,
            "fixed_point_error_deg": mine_err, "simulator_seconds": timing["run_seconds"], "subprocess_seconds": wall,
            "ms_per_step": ms,
            "summary": (f"{'message for message identical' if match else 'MISMATCH'} to the fixed-point mirror on {len(x)} "
                        f"images run as one stream of frames ({timing['steps']} steps, {sum(sent):,} messages, "
                        f"{sum(differ)} values differ, readout included); error {lava_err:.3f} deg in Lava vs "
                        f"{mine_err:.3f} deg in the mirror on these frames; Lava CPU simulator {ms:.1f} ms per step "
                        f"(Loihi2SimCfg fixed_pt, {wall:.0f} s with start-up and compilation)")}


def _steps_first(messages: np.ndarray) -> np.ndarray:
    """A recorded layer's (steps, x, y, c) or (steps, n) -> (steps, neurons) in edgekit's C, H, W order."""
    if messages.ndim == 4:
        messages = np.transpose(messages, (0, 3, 2, 1))
    return messages.reshape(messages.shape[0], -1).astype(np.int64)
