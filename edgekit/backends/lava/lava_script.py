"""Runs inside the Lava environment (Python 3.10, lava-nc, lava-dl, numpy<2; no torch, no edgekit).

    python -I lava_script.py ARTIFACT_FOLDER INPUTS.npz OUT.npz

Loads ARTIFACT_FOLDER/network.net with lava.lib.dl.netx, compiles it once for Lava's CPU simulator
(Loihi2SimCfg, fixed_pt: bit-accurate CUBA neurons) and runs every sample: the input neurons' bias carries the sample
(netx's input layer is driven through its bias), S + T steps (S = readout_start: the D delay steps plus any warm-up),
the readout's v read after S and after S + T steps,
every spiking layer's spikes recorded bit-packed (31 steps per int32 word: Lava's Var.get costs ~20 us per value, so
per-step ring buffers would dominate the run). Between samples all biases go to zero for D + 1 steps so the
one-step synaptic buffers drain, then v is zeroed: each sample starts from the state a fresh network has (the
comparison with the fixed-point model, which starts every sample fresh, checks this on every spike).
"""

import json
import os
import sys
import tempfile
import time
import types


import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

BITS = 31
PROGRESS = "edgekit-progress"  # stderr line after each sample: "edgekit-progress DONE TOTAL" (simulator.py reads it)


class SpikeBits(AbstractProcess):
    """Records the first `record` steps of every `block` steps, bit-packed per neuron."""

    def __init__(self, *, shape: tuple, record: int, block: int) -> None:
        super().__init__(shape=shape, record=record, block=block)
        words = -(-record // BITS)
        self.a_in = InPort(shape=shape)
        self.bits = Var(shape=shape + (words,), init=np.zeros(shape + (words,), np.int32))


@implements(proc=SpikeBits, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikeBitsModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)
    bits: np.ndarray = LavaPyType(np.ndarray, np.int32)

    def run_spk(self) -> None:
        spikes = self.a_in.recv() != 0
        step = (self.time_step - 1) % self.proc_params["block"]
        if step == 0:
            self.bits[:] = 0
        if step < self.proc_params["record"]:
            word, bit = divmod(step, BITS)
            self.bits[..., word] |= spikes.astype(np.int32) << bit


def stub_torch_only_modules() -> None:
    """netx imports two torch-only modules (and torch); stub them with real files (Lava's compiler reads __file__)."""
    folder = tempfile.mkdtemp(prefix="edgekit-lava-stubs-")
    for name, attrs in (("torch", {}), ("lava.lib.dl.slayer.neuron.rf", {"neuron_params": lambda *a, **k: {}}),
                        ("lava.lib.dl.netx.sequential_modules", {})):
        path = os.path.join(folder, name.replace(".", "_") + ".py")
        with open(path, "w") as fh:
            fh.write("# stub: edgekit runs netx without torch\n")
        module = types.ModuleType(name)
        module.__file__ = path
        module.__dict__.update(attrs)
        sys.modules[name] = module


def load_network(network_cls, path: str, spec: dict):
    """netx's Network, or exit 1 with one line on stderr naming the layer netx failed on (the index netx's _create was
    at, mapped to the SNN layer through lava.json's netx_layers)."""
    try:
        return network_cls(net_config=path)
    except Exception as exc:  # noqa: BLE001 - reported as one line, the caller raises it
        index, tb = None, exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_name == "_create" and "i" in tb.tb_frame.f_locals:
                index = tb.tb_frame.f_locals["i"]
            tb = tb.tb_next
        names = spec.get("netx_layers") or []
        name = names[index] if index is not None and index < len(names) else None
        where = (f"netx layer {index}" + (f" ({name})" if name else "")) if index is not None else "the netx file"
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"netx could not load {where}: {type(exc).__name__}: {msg}", file=sys.stderr)
        sys.exit(1)


def main(folder: str, inputs: str, out: str) -> None:
    stub_torch_only_modules()
    from lava.lib.dl.netx.hdf5 import Network
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    t_start = time.perf_counter()
    spec = json.load(open(os.path.join(folder, "lava.json")))
    T, D = spec["timesteps"], spec["delay_steps"]
    S = spec.get("readout_start", D)  # the readout window opens after the delays and any warm-up
    block = S + T + D + 1
    bias_in = np.load(inputs)["input_bias"]  # (N, C, H, W) int
    net = load_network(Network, os.path.join(folder, "network.net"), spec)
    layers = list(net.layers)
    sinks = []
    for layer in layers[:-1]:
        sink = SpikeBits(shape=layer.out.shape, record=S + T, block=block)
        layer.out.connect(sink.a_in)
        sinks.append(sink)
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    neurons = [layer.neuron for layer in layers]
    v_start, v_end, trains = [], [], [[] for _ in sinks]
    compiled, saved_bias, seconds = False, None, 0.0
    for i, sample in enumerate(bias_in):
        whc = np.transpose(sample, (2, 1, 0)).astype(np.int32)  # netx shapes are (x, y, channel)
        if not compiled:
            neurons[0].bias_mant.init = whc
        else:
            neurons[0].bias_mant.set(whc)
        start = time.perf_counter()
        net.run(condition=RunSteps(num_steps=S), run_cfg=cfg)
        if not compiled:
            compiled = True
            saved_bias = [n.bias_mant.get().copy() for n in neurons[1:]]
        v_start.append(neurons[-1].v.get().copy())
        net.run(condition=RunSteps(num_steps=T), run_cfg=cfg)
        seconds += time.perf_counter() - start
        v_end.append(neurons[-1].v.get().copy())
        for k, sink in enumerate(sinks):
            packed = sink.bits.get().astype(np.int64)  # (x, y, c, words) or (n, words)
            steps = np.arange(S + T)
            data = (packed[..., steps // BITS] >> (steps % BITS)) & 1  # (..., steps)
            if data.ndim == 4:
                data = np.transpose(data, (3, 2, 1, 0))  # -> (steps, c, y, x): edgekit's C, H, W order
            else:
                data = data.T
            trains[k].append(data.reshape(S + T, -1).astype(bool))
        # drain: no bias anywhere for D + 1 steps (without bias or input the input layer cannot fire, so layer k fires
        # at drain step k at the latest and every synaptic buffer is empty after D + 1 steps), then v back to zero.
        # u needs no reset: iDecay 4096 clears it every step. Var.set costs ~20 us per value, so nothing else is set.
        for n in neurons:
            n.bias_mant.set(np.zeros(n.bias_mant.shape, np.int32))
        net.run(condition=RunSteps(num_steps=D + 1), run_cfg=cfg)
        for n in neurons:
            n.v.set(np.zeros(n.v.shape, np.int32))
        for n, b in zip(neurons[1:], saved_bias):
            n.bias_mant.set(b)
        print(f"{PROGRESS} {i + 1} {len(bias_in)}", file=sys.stderr, flush=True)  # the parent's progress bar
    net.stop()
    print(f"timing: total {time.perf_counter() - t_start:.1f} s, samples' S+T steps {seconds:.1f} s", file=sys.stderr)
    np.savez(out, v_start=np.array(v_start, np.int64), v_end=np.array(v_end, np.int64), seconds=seconds,
             **{f"train_{k}": np.stack(t) for k, t in enumerate(trains)})


if __name__ == "__main__":
    main(*sys.argv[1:4])
