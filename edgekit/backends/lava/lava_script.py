"""Runs inside the Lava environment (Python 3.10, lava-nc, lava-dl, numpy<2; no torch, no edgekit).

    python -I lava_script.py ARTIFACT_FOLDER INPUTS.npz OUT.npz

Loads ARTIFACT_FOLDER/network.net with lava.lib.dl.netx, compiles it once for Lava's CPU simulator
(Loihi2SimCfg, fixed_pt: bit-accurate CUBA neurons) and runs every sample in one run of N blocks of S + T + D + 1 steps:
S + T steps with the sample (S = readout_start: the D delay steps plus any warm-up; netx's input layer is driven
through its bias), the readout's v taken after S and after S + T steps, then D + 1 steps with no bias anywhere, so
that the one-step synaptic buffers drain, and v back to zero: each sample starts from the state a fresh network has
(the comparison with the fixed-point model, which starts every sample fresh, checks this on every spike). Every spiking
layer's spikes are kept by one Recorder process that saves them itself at the last step (Lava's Var.get costs ~20 us
per value, and each process more costs every step).
"""

import atexit
import json
import os
import shutil
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
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

PROGRESS = "edgekit-progress"  # stderr line after each sample: "edgekit-progress DONE TOTAL" (simulator.py reads it)


class Recorder(AbstractProcess):
    """Every layer's output in one process, kept in memory and saved by the process itself to `path` at step `steps`
    (an .npz of layer_K: (kept steps, *shape)). One process for all layers: each Lava process is an OS process that
    the runtime synchronises every step. Saved from inside: Lava's Var.get sends one value at a time (~20 us each).
    Of every `block` steps the first `record` are kept. progress: a PROGRESS line on stderr after every block."""

    def __init__(self, *, shapes: list, record: int, block: int, steps: int, path: str, dtype: str, progress: bool) -> None:
        super().__init__(shapes=shapes, record=record, block=block, steps=steps, path=path, dtype=dtype, progress=progress)
        for k, shape in enumerate(shapes):
            setattr(self, f"a_in{k}", InPort(shape=shape))


class _RecorderModel(PyLoihiProcessModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.kept = [[] for _ in proc_params["shapes"]]

    def run_spk(self) -> None:
        p = self.proc_params
        keep = (self.time_step - 1) % p["block"] < p["record"]
        for k, kept in enumerate(self.kept):
            data = getattr(self, f"a_in{k}").recv()  # every port every step: its sender waits for the read
            if keep:
                kept.append(data.astype(p["dtype"]))
        if p["progress"] and self.time_step % p["block"] == 0:  # a sample done: the parent's progress bar
            print(f"{PROGRESS} {self.time_step // p['block']} {p['steps'] // p['block']}", file=sys.stderr, flush=True)
        if self.time_step == p["steps"]:
            np.savez(p["path"], **{f"layer_{k}": np.stack(kept) for k, kept in enumerate(self.kept)})


def recorder(shapes: list, record: int, block: int, steps: int, path: str, dtype: str, progress: bool = False) -> Recorder:
    """A Recorder and its process model, made for this many ports (Lava reads a model's ports from its class
    attributes, and looks for models in the module that defines the process)."""
    ports = {f"a_in{k}": LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24) for k in range(len(shapes))}
    name = f"PyRecorder{len(shapes)}Model"
    model = type(name, (_RecorderModel,), {**ports, "__module__": Recorder.__module__})
    sys.modules[Recorder.__module__].__dict__[name] = tag("fixed_pt")(requires(CPU)(
        implements(proc=Recorder, protocol=LoihiProtocol)(model)))
    return Recorder(shapes=[tuple(s) for s in shapes], record=record, block=block, steps=steps, path=path, dtype=dtype,
                    progress=progress)


def stub_torch_only_modules() -> None:
    """netx imports two torch-only modules (and torch); stub them with real files (Lava's compiler reads __file__)."""
    folder = tempfile.mkdtemp(prefix="edgekit-lava-stubs-")
    atexit.register(shutil.rmtree, folder, True)  # not left in the user's TMPDIR
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


def use_sparse_conv() -> None:
    """Lava's Conv process model convolves with scipy, one convolve2d per (output, input) channel pair per step: 4,000
    to 8,000 calls a step for TinyGaze, most of the simulator's time. Lava's own conv_to_sparse (its kernel as a
    connection matrix) computes the same sums as one sparse product. Each layer's matrix is checked against Lava's
    scipy convolution on random inputs before its first use, and any difference stops the run. Called before the
    first run: Lava forks its process models, which inherit this."""
    from lava.proc.conv import utils

    scipy_conv, built = utils.conv, {}

    def conv(input_, weight, kernel_size, stride, padding, dilation, groups):
        key = (id(weight), input_.shape)
        entry = built.get(key)
        if entry is None or entry[0] is not weight or not np.array_equal(entry[1], weight):
            entry = built[key] = (weight, weight.copy(), *_sparse_conv(scipy_conv, input_.shape, weight, kernel_size,
                                                                      stride, padding, dilation, groups))
        matrix, shape = entry[2], entry[3]
        return (matrix @ input_.reshape(-1).astype(np.float64)).reshape(shape).astype(weight.dtype)

    utils.conv = conv


def _sparse_conv(scipy_conv, in_shape, weight, kernel_size, stride, padding, dilation, groups):
    """(the connection matrix, the output shape), after checking it against Lava's scipy convolution."""
    from lava.proc.conv import utils
    from scipy.sparse import csr_matrix

    args = (kernel_size, stride, padding, dilation, groups)
    out_shape = tuple(int(v) for v in utils.output_shape(in_shape, weight.shape[0], *args[:4]))
    dst, src, values = utils.conv_to_sparse(in_shape, out_shape, weight, stride, padding, dilation, groups)
    matrix = csr_matrix((values.astype(np.float64), (dst, src)), shape=(int(np.prod(out_shape)), int(np.prod(in_shape))))
    rng = np.random.default_rng(0)
    for probe in (rng.random(in_shape) < 0.3, rng.integers(-(1 << 15), 1 << 15, in_shape)):  # spikes, graded messages
        want = scipy_conv(probe, weight, *args)
        got = (matrix @ probe.reshape(-1).astype(np.float64)).reshape(out_shape).astype(weight.dtype)
        if not np.array_equal(got, want):
            raise RuntimeError(f"Lava's sparse convolution differs from its scipy convolution on a {weight.shape} kernel")
    return matrix, out_shape


def samples_inside_the_neurons(input_id: int, readout_id: int, samples: list, run: int, block: int, readout_at: tuple,
                                path: str) -> None:
    """Per-sample state changes made by the neuron processes themselves, at fixed steps, instead of by Var.set from the
    runtime, which sends one message per value (~20 us each: 1.2 s of each TinyGaze sample's 1.5 s). Lava's own
    fixed-point LIF step runs unchanged in between. At a block's first step every layer's v is zero (u needs no reset:
    iDecay 4096 clears it every step), the input layer takes the block's sample as its bias and every other layer its
    own bias; after `run` steps every bias is zero (the drain: without bias or input the input layer cannot fire, so
    layer k fires at drain step k at the latest and every synaptic buffer is empty after D + 1 steps, the rest of the
    block). The readout's v after `readout_at` steps of each block
    is saved to `path` by the readout's process at the last step. Called before the first run: Lava forks its process
    models, which inherit this."""
    from lava.proc.lif.models import AbstractPyLifModelFixed

    lava_step = AbstractPyLifModelFixed.run_spk
    steps = block * len(samples)

    def run_spk(self) -> None:
        phase = (self.time_step - 1) % block  # time_step is advanced before run_spk: 1 at the first step
        if not hasattr(self, "edgekit_bias"):
            self.edgekit_bias, self.edgekit_readout = self.bias_mant.copy(), []
        if phase == 0:
            self.v[:] = 0
            self.bias_mant[:] = samples[(self.time_step - 1) // block] if self.model_id == input_id else self.edgekit_bias
        elif phase == run:
            self.bias_mant[:] = 0
        if self.model_id == readout_id and phase == 0 and 0 in readout_at:
            self.edgekit_readout.append(self.v.copy())
        lava_step(self)
        if self.model_id == readout_id:
            if phase + 1 in readout_at:
                self.edgekit_readout.append(self.v.copy())
            if self.time_step == steps:
                np.save(path, np.stack(self.edgekit_readout).astype(np.int64))

    AbstractPyLifModelFixed.run_spk = run_spk


def main(folder: str, inputs: str, out: str) -> None:
    stub_torch_only_modules()
    use_sparse_conv()
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
    spikes = os.path.join(os.path.dirname(os.path.abspath(out)), "spikes.npz")
    sink = recorder([layer.out.shape for layer in layers[:-1]], S + T, block, block * len(bias_in), spikes, "bool",
                    progress=True)
    for k, layer in enumerate(layers[:-1]):
        layer.out.connect(getattr(sink, f"a_in{k}"))
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    neurons = [layer.neuron for layer in layers]
    samples = [np.transpose(sample, (2, 1, 0)).astype(np.int32) for sample in bias_in]  # netx shapes are (x, y, channel)
    readout = os.path.join(os.path.dirname(os.path.abspath(out)), "readout.npy")
    samples_inside_the_neurons(neurons[0].id, neurons[-1].id, samples, S + T, block, (S, S + T), readout)
    net.run(condition=RunSteps(num_steps=1), run_cfg=cfg)  # compiles and starts the processes: not timed
    start = time.perf_counter()
    net.run(condition=RunSteps(num_steps=block * len(samples) - 1), run_cfg=cfg)
    seconds = time.perf_counter() - start
    net.stop()
    v = np.load(readout) if os.path.exists(readout) else np.zeros(0)  # (2 N, readout shape): after S, after S + T steps
    if len(v) != 2 * len(samples):  # the neurons are not the LIF model samples_inside_the_neurons changed
        raise RuntimeError(f"the readout process kept {len(v)} potentials for {len(samples)} samples")
    v_start, v_end = v[0::2], v[1::2]
    print(f"timing: total {time.perf_counter() - t_start:.1f} s, {block * len(samples)} steps {seconds:.1f} s", file=sys.stderr)
    trains = {}
    with np.load(spikes) as recorded:
        for k in range(len(layers) - 1):
            data = recorded[f"layer_{k}"]  # (N * (S + T), x, y, c) or (N * (S + T), n)
            if data.ndim == 4:
                data = np.transpose(data, (0, 3, 2, 1))  # -> (steps, c, y, x): edgekit's C, H, W order
            trains[f"train_{k}"] = data.reshape(len(bias_in), S + T, -1)
    np.savez(out, v_start=v_start, v_end=v_end, seconds=seconds, steps=block * len(samples) - 1, **trains)


if __name__ == "__main__":
    main(*sys.argv[1:4])
