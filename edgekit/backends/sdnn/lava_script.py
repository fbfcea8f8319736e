"""Runs inside the Lava environment (Python 3.10, lava-nc, lava-dl, numpy<2; no torch, no edgekit).

    python -I lava_script.py ARTIFACT_FOLDER INPUTS.npz OUT_FOLDER

Loads ARTIFACT_FOLDER/network.net with lava.lib.dl.netx (sigma-delta layers), drives the input Delta's a_in with the
frames in INPUTS.npz (`frames`: F x C x H x W integers, each held `steps_per_frame` steps, back to back from rest:
netx's Input block never connects its own port), runs Lava's CPU simulator (Loihi2SimCfg, fixed_pt: bit-accurate
Delta / SigmaDelta / Sigma models) and records every layer's output message at every step, in OUT_FOLDER/messages.npz
(layer_K: steps x netx shape), saved by the recording process itself (lava_script.Recorder).
Lava's compiler imports every .py in this folder when it looks for process models: nothing here runs on import.
"""

import json
import os
import sys
import time

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

PROGRESS = "edgekit-progress"  # stderr line after each frame: "edgekit-progress DONE TOTAL" (simulator.py reads it)


class Frames(AbstractProcess):
    """Sends frame t // hold at step t (int32 graded): the input Delta's a_in."""

    def __init__(self, *, frames: np.ndarray, hold: int) -> None:
        super().__init__(hold=hold)
        self.s_out = OutPort(shape=frames.shape[:-1])
        self.frames = Var(shape=frames.shape, init=frames)


@implements(proc=Frames, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFramesModel(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    frames: np.ndarray = LavaPyType(np.ndarray, np.int32)

    def run_spk(self) -> None:
        hold, total = self.proc_params["hold"], self.frames.shape[-1]
        frame = (self.time_step - 1) // hold
        self.s_out.send(self.frames[..., frame])
        if self.time_step % hold == 0:
            print(f"{PROGRESS} {frame + 1} {total}", file=sys.stderr, flush=True)


def main(folder: str, inputs: str, out: str) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(os.path.dirname(here), "lava"))
    from lava_script import load_network, recorder, stub_torch_only_modules, use_sparse_conv  # the CUBA script's

    stub_torch_only_modules()
    use_sparse_conv()  # graded messages too: each kernel's matrix is checked against Lava's scipy convolution first
    from lava.lib.dl.netx.hdf5 import Network
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    started = time.perf_counter()
    spec = json.load(open(os.path.join(folder, "sdnn.json")))
    hold = spec["steps_per_frame"]
    frames = np.load(inputs)["frames"]  # (F, C, H, W) int
    steps = len(frames) * hold
    net = load_network(Network, os.path.join(folder, "network.net"), {"netx_layers": spec.get("netx_layers")})
    layers = list(net.layers)
    source = Frames(frames=np.transpose(frames, (3, 2, 1, 0)).astype(np.int32), hold=hold)  # netx shapes: (x, y, c)
    source.s_out.connect(layers[0].neuron.a_in)
    sink = recorder([layer.out.shape for layer in layers], steps, steps, steps, os.path.join(out, "messages.npz"), "int32")
    for k, layer in enumerate(layers):
        layer.out.connect(getattr(sink, f"a_in{k}"))
    run_start = time.perf_counter()
    net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    seconds = time.perf_counter() - run_start
    net.stop()
    with open(os.path.join(out, "timing.json"), "w") as fh:
        json.dump({"run_seconds": seconds, "total_seconds": time.perf_counter() - started, "steps": steps}, fh)


if __name__ == "__main__":
    main(*sys.argv[1:4])
