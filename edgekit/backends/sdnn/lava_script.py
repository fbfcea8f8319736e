"""Runs inside the Lava environment (Python 3.10, lava-nc, lava-dl, numpy<2; no torch, no edgekit).

    python -I lava_script.py ARTIFACT_FOLDER INPUTS.npz OUT_FOLDER

Loads ARTIFACT_FOLDER/network.net with lava.lib.dl.netx (sigma-delta layers), drives the input Delta's a_in with the
frames in INPUTS.npz (`frames`: F x C x H x W integers, each held `steps_per_frame` steps, back to back from rest:
netx's Input block never connects its own port), runs Lava's CPU simulator (Loihi2SimCfg, fixed_pt: bit-accurate
Delta / SigmaDelta / Sigma models) and records every layer's output message at every step. The recording sinks write
their own .npy files at the last step: Lava's Var.get costs ~25 us per value, which would dominate the run.
Lava's compiler imports every .py in this folder when it looks for process models: nothing here runs on import.
"""

import json
import os
import sys
import time

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
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


class FileRecord(AbstractProcess):
    """Keeps every step's message and saves them (..., steps) to `path` at the last step."""

    def __init__(self, *, shape: tuple, steps: int, path: str) -> None:
        super().__init__(shape=shape, steps=steps, path=path)
        self.a_in = InPort(shape=shape)


@implements(proc=FileRecord, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFileRecordModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.kept = []

    def run_spk(self) -> None:
        self.kept.append(self.a_in.recv().copy())
        if self.time_step == self.proc_params["steps"]:
            np.save(self.proc_params["path"], np.stack(self.kept, -1))


def main(folder: str, inputs: str, out: str) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(os.path.dirname(here), "lava"))
    from lava_script import load_network, stub_torch_only_modules  # the CUBA script's netx loader (same folder tree)

    stub_torch_only_modules()
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
    for k, layer in enumerate(layers):
        layer.out.connect(FileRecord(shape=layer.out.shape, steps=steps, path=os.path.join(out, f"msg_{k}.npy")).a_in)
    run_start = time.perf_counter()
    net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    seconds = time.perf_counter() - run_start
    net.stop()
    with open(os.path.join(out, "timing.json"), "w") as fh:
        json.dump({"run_seconds": seconds, "total_seconds": time.perf_counter() - started, "steps": steps}, fh)


if __name__ == "__main__":
    main(*sys.argv[1:4])
