"""Run the SDNN netx file in Lava's CPU simulator (Loihi2SimCfg fixed_pt), recording every layer's output messages.

    /work/main/.venv-lava/bin/python -I run_lava.py DIR      (DIR from make_net.py; writes DIR/lava_out.npz)

The input layer is a Delta process with no bias (netx's Input block never connects its inp port), so a source
process here drives layers[0].neuron.a_in directly with the per-step integers. Messages are recorded in (C,H,W) order.
"""

import os
import sys
import tempfile
import types
from pathlib import Path

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


class Schedule(AbstractProcess):
    """Sends data[..., t - 1] at step t (int32 graded)."""

    def __init__(self, *, data: np.ndarray) -> None:
        super().__init__()
        self.s_out = OutPort(shape=data.shape[:-1])
        self.data = Var(shape=data.shape, init=data)


@implements(proc=Schedule, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyScheduleModel(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    data: np.ndarray = LavaPyType(np.ndarray, np.int32)

    def run_spk(self) -> None:
        self.s_out.send(self.data[..., (self.time_step - 1) % self.data.shape[-1]])


class Record(AbstractProcess):
    """Keeps the int32 message of every step: buf[..., t - 1]."""

    def __init__(self, *, shape: tuple, steps: int) -> None:
        super().__init__()
        self.a_in = InPort(shape=shape)
        self.buf = Var(shape=shape + (steps,), init=np.zeros(shape + (steps,), np.int32))


@implements(proc=Record, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyRecordModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    buf: np.ndarray = LavaPyType(np.ndarray, np.int32)

    def run_spk(self) -> None:
        msg = self.a_in.recv()
        if self.time_step == 1:
            print(f"record {self.buf.shape[:-1]}: recv dtype {msg.dtype}", file=sys.stderr)
        self.buf[..., self.time_step - 1] = msg


def stub_torch_only_modules() -> None:
    """Same stubs as edgekit's lava_script.py: netx imports torch-only modules."""
    folder = tempfile.mkdtemp(prefix="sdnn-stubs-")
    for name, attrs in (("torch", {}), ("lava.lib.dl.slayer.neuron.rf", {"neuron_params": lambda *a, **k: {}}),
                        ("lava.lib.dl.netx.sequential_modules", {})):
        path = os.path.join(folder, name.replace(".", "_") + ".py")
        with open(path, "w") as fh:
            fh.write("# stub\n")
        module = types.ModuleType(name)
        module.__file__ = path
        module.__dict__.update(attrs)
        sys.modules[name] = module


def to_chw(buf: np.ndarray) -> np.ndarray:
    """(x, y, c, T) or (n, T) -> (T, C, H, W) or (T, n)."""
    return np.transpose(buf, (3, 2, 1, 0)) if buf.ndim == 4 else buf.T


def main(folder: str) -> None:
    stub_torch_only_modules()
    from lava.lib.dl.netx.hdf5 import Network
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    folder = Path(folder)
    inputs = np.load(folder / "inputs.npz")["inputs"]  # (T, C, H, W)
    steps = inputs.shape[0]
    net = Network(net_config=str(folder / "network.net"))
    print(net, file=sys.stderr)
    layers = list(net.layers)
    for lay in layers:
        n = lay.neuron
        print(type(lay).__name__, type(n).__name__, n.s_out.shape,
              {k: getattr(n, k).init for k in ("vth", "spike_exp", "state_exp", "cum_error") if hasattr(n, k)},
              "weight_exp", getattr(getattr(lay, "synapse", None), "proc_params", {}).get("weight_exp"),
              "num_weight_bits", getattr(getattr(lay, "synapse", None), "proc_params", {}).get("num_weight_bits"),
              file=sys.stderr)
    source = Schedule(data=np.transpose(inputs, (3, 2, 1, 0)).astype(np.int32))  # (x, y, c, T)
    source.s_out.connect(layers[0].neuron.a_in)
    sinks = []
    for lay in layers:
        sink = Record(shape=lay.out.shape, steps=steps)
        lay.out.connect(sink.a_in)
        sinks.append(sink)
    net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    out = {f"msg_{k}": to_chw(s.buf.get().astype(np.int64)) for k, s in enumerate(sinks)}
    # the optimised dense weights Lava actually holds (after netx's optimize_weight_bits + the model's truncation)
    for k, lay in enumerate(layers):
        syn = getattr(lay, "synapse", None)
        if syn is not None and hasattr(syn, "weights"):
            out[f"lava_dense_weights_{k}"] = syn.weights.get().astype(np.int64)
    net.stop()
    np.savez(folder / "lava_out.npz", **out)
    for k in range(len(sinks)):
        m = out[f"msg_{k}"].reshape(steps, -1)
        print(f"layer {k}: nonzero messages per step {[(int(t) + 1, int(c)) for t, c in enumerate((m != 0).sum(1))]}",
              file=sys.stderr)
    print(f"wrote {folder / 'lava_out.npz'}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
