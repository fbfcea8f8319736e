"""Simulate a SpikingNet in PyTorch, batched: integrate-and-fire hidden layers, integrator readout y = V_t / t.

The input is analog: the first layer's current (conv of the image plus bias) is computed once and injected every
step (direct encoding), so it counts as MACs once per inference; every later synapse receives binary spikes (ACs).
The network is a graph (edgekit/snn/graph.py): a residual add's neurons integrate the sum of its branches' currents.
Readouts are taken at several step counts in one run (the network at step t does not depend on later steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from edgekit.snn.graph import IMAGE, PASSTHROUGH, WEIGHTED


@dataclass
class SimResult:
    outputs: dict[int, np.ndarray]  # steps -> (N, out) readout V_t / t (before L2 normalisation)
    spikes: dict[int, list[float]] = field(default_factory=dict)  # steps -> total spikes per node of net.counted (all samples)
    acs: dict[int, list[float]] = field(default_factory=dict)  # steps -> synaptic ACs into each node of net.counted
    n: int = 0


def node_value(net, i: int, ins: list[torch.Tensor], sum_pool: bool = False) -> torch.Tensor:
    """What node i computes from its inputs' values: a synapse's current (bias included), a residual add's summed
    branch currents, or a flatten/pool of its input. sum_pool: pool by summing (fan-out counting)."""
    lay, w, b = net.layers[i], net.weights[i], net.biases[i]
    kind, h = lay["kind"], ins[0]
    if kind == "conv":
        return F.conv2d(h, w, b, stride=lay["stride"], padding=lay["padding"])
    if kind == "linear":
        return F.linear(h, w, b)
    if kind == "scale":
        shape = (1, -1) + (1,) * (h.dim() - 2)
        return h * w.view(shape) + b.view(shape)
    if kind == "add":
        return sum(ins[1:], ins[0])
    if kind == "flatten":
        return h.flatten(1)
    return F.avg_pool2d(h, lay["kernel"], lay["stride"], lay["padding"], divisor_override=1 if sum_pool else None)


def input_chain(net, i: int) -> tuple[int, list[int]]:
    """(the node whose values synapse node i reads, past flatten/pool nodes; those nodes in execution order)."""
    chain, src = [], net.sources(i)[0]
    while src >= 0 and net.layers[src]["kind"] in PASSTHROUGH:
        chain.insert(0, src)
        src = net.sources(src)[0]
    return src, chain


def static_nodes(net) -> set[int]:
    """Nodes whose value is the same at every step: the image, and neuron-free nodes that only read such nodes. A synapse
    reading them is computed once per inference (direct encoding: effective MACs, not ACs)."""
    static = {IMAGE}
    for i, lay in enumerate(net.layers):
        if lay.get("neuron", "none") == "none" and all(s in static for s in net.sources(i)):
            static.add(i)
    return static


def fan_out(net, i: int) -> torch.Tensor:
    """Per neuron that synapse node i reads (past flatten/pool): how many nonzero synapses it drives (NeuroBench:
    ACs = spikes x fan-out). Through an average pool this counts synapse paths: a spike reaches every pooled value
    whose window holds it (one without overlap, up to k*k with stride 1), each with the synapse's fan-out."""
    root, chain = input_chain(net, i)
    shape = net.layers[root]["out_shape"] if root >= 0 else net.input_shape
    x = torch.ones(1, *shape, dtype=torch.float64, requires_grad=True)
    masked = _Masked(net, i)
    with torch.enable_grad():  # d(sum of outputs)/d(input) = each input's fan-out, borders and strides included
        h = x
        for c in chain:
            h = node_value(net, c, [h], sum_pool=True)
        (grad,) = torch.autograd.grad(node_value(masked, i, [h]).sum(), x)
    return grad[0]


class _Masked:
    """Node i of `net` with 0/1 weights (nonzero synapses) and no bias, for counting fan-out by autograd."""

    def __init__(self, net, i: int):
        self.layers = net.layers
        self.weights = {i: (net.weights[i] != 0).to(torch.float64)}
        self.biases = {i: torch.zeros(net.weights[i].shape[0], dtype=torch.float64)}


def fan_out_of(weight: torch.Tensor, kind: str, in_shape, stride, padding) -> torch.Tensor:
    mask = (weight != 0).to(torch.float64)
    if kind != "conv":
        return mask.sum(0)
    x = torch.ones(1, *in_shape, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():  # d(sum of outputs)/d(input) = each input's fan-out, borders and strides included
        (grad,) = torch.autograd.grad(F.conv2d(x, mask, stride=tuple(stride), padding=tuple(padding)).sum(), x)
    return grad[0]


def synaptic_ops(sent: torch.Tensor, fan: torch.Tensor, binary: bool = False) -> float:
    """One step's synaptic operations (NeuroBench's ACs) into a synapse: per sending neuron, the samples of the batch
    `sent` (N, ...) in which it sent (a spike, or a nonzero graded message), times its fan-out `fan`; whole numbers,
    exact in float64. binary: `sent` holds 0/1 spikes, counted by a float64 sum (4x faster than comparing with 0)."""
    flat = sent.reshape(len(sent), -1)
    senders = flat.sum(0, dtype=torch.float64) if binary else (flat != 0).sum(0).to(torch.float64)
    return float(senders @ fan.reshape(-1).to(torch.float64))


def delay_depth(net) -> dict[int, int]:
    """Per node, the steps its input lags the image by when every synapse reading spikes delays them by one step
    (Lava: a spike emitted at step t arrives at step t + 1): input first reaches it at step depth + 1. 0 without delay."""
    static, depth = static_nodes(net), {IMAGE: 0}
    for i, lay in enumerate(net.layers):
        srcs = net.sources(i)
        hop = int(net.delay and lay["kind"] in WEIGHTED and not all(s in static for s in srcs))
        depth[i] = max(depth[s] for s in srcs) + hop
    return depth


def readout_lag(net) -> int:
    """Steps before the readout window opens: the output's delay depth plus the warm-up (0 without delay)."""
    return delay_depth(net)[len(net.layers) - 1] + net.warmup


@torch.no_grad()
def _steps(net, x: torch.Tensor, steps: int, upto: int | None = None, nodes: list[int] | None = None, given=None):
    """Advance the network one step at a time; yields (t, values, read, v): each node's value at step t (spikes for
    IF neurons, currents for neuron-free nodes), the values synapses read at step t (with net.delay the previous
    step's, empty at the first step, when they read zeros) and the membrane potentials. upto: last node index to run.
    nodes, given: run only these nodes (in execution order); the values they read from others are given(t)."""
    order = range((len(net.layers) - 1 if upto is None else upto) + 1) if nodes is None else nodes
    static = static_nodes(net)
    constant: dict[int, torch.Tensor] = {}  # values and currents that only depend on the image: computed once
    v: dict[int, torch.Tensor] = {}
    prev: dict[int, torch.Tensor] = {}
    for t in range(1, steps + 1):
        values = {IMAGE: x} | (given(t) if given else {})
        read = prev if net.delay else values
        for i in order:
            lay = net.layers[i]
            srcs = net.sources(i)
            if i in constant:
                cur = constant[i]
            else:
                delayed = net.delay and lay["kind"] in WEIGHTED
                cur = node_value(net, i, [values[s] if not delayed or s in static else
                                          read[s] if s in read else torch.zeros_like(values[s]) for s in srcs])
                if all(s in static for s in srcs):
                    constant[i] = cur
            neuron = lay.get("neuron", "none")
            if neuron == "none":
                values[i] = cur
                continue
            if i not in v:
                v[i] = torch.full_like(cur, net.v_init) if neuron == "if" else torch.zeros_like(cur)
            v[i] += cur
            if neuron == "integrator":
                values[i] = v[i]
                continue
            # a comparison written straight into a float tensor, and the reset as v - v * fired (exact: v or 0): on
            # one core 10x faster than a bool mask converted and masked_fill_ (half the simulation's time before)
            fired = torch.ge(v[i], 1.0, out=torch.empty_like(cur))
            if net.reset == "subtract":
                v[i] -= fired
            else:
                v[i].addcmul_(v[i], fired, value=-1.0)
            values[i] = fired
        yield t, values, read, v
        prev = values


# Images per pass: every image runs from rest, so passes over parts of a batch give its outputs and counts (bit for bit
# here; elsewhere a conv kernel chosen by batch size may differ in a last bit), and a step's tensors stay in the cache
# (TinyGaze's 64-step curve on 512 images: 7.0 s at once, 5.8 s in parts of 64).
CHUNK = 64


def simulate(net, x: torch.Tensor, steps: int, record: tuple[int, ...] = (), count: bool = True) -> SimResult:
    """Run `steps` timesteps on inputs x (N, C, H, W). record: step counts whose readout (and counts) to keep
    besides the last. Counts are per node of net.counted: spikes of its IF neurons, ACs into its synapses."""
    counted, static = net.counted, static_nodes(net)
    roots = {k: input_chain(net, i)[0] for k, i in enumerate(counted) if net.layers[i]["kind"] in WEIGHTED}
    readers = {k: root for k, root in roots.items() if root not in static}  # synapses driven by spikes
    fans = {k: fan_out(net, counted[k]) for k in readers} if count else {}  # once, for every part
    parts = [_simulate(net, x[i:i + CHUNK], steps, record, count, readers, fans) for i in range(0, len(x), CHUNK)]
    res = SimResult(outputs={t: np.concatenate([p.outputs[t] for p in parts]) for t in parts[0].outputs}, n=len(x))
    for t in parts[0].outputs:  # whole counts, exact as floats: the sums do not depend on the parts
        res.spikes[t] = [sum(v) for v in zip(*(p.spikes[t] for p in parts))]
        res.acs[t] = [sum(v) for v in zip(*(p.acs[t] for p in parts))]
    return res


@torch.no_grad()
def _simulate(net, x: torch.Tensor, steps: int, record: tuple[int, ...], count: bool, readers: dict, fans: dict
              ) -> SimResult:
    """simulate() on one part of the batch; readers: counted synapse -> the spiking node it reads, fans: their fan-outs."""
    record = tuple(sorted(set(record) | {steps}))
    counted = net.counted
    spikes, acs = [0.0] * len(counted), [0.0] * len(counted)
    res = SimResult(outputs={}, n=len(x))
    last = len(net.layers) - 1
    lag = readout_lag(net)  # with synaptic delay and warm-up the readout window is lag+1 .. lag+t
    v_start = 0.0
    for t, values, read, v in _steps(net, x, steps + lag):
        if count:
            for k, i in enumerate(counted):
                if k in readers and readers[k] in read:
                    acs[k] += synaptic_ops(read[readers[k]], fans[k])
                if net.layers[i].get("neuron") == "if":
                    spikes[k] += float(values[i].sum())
        if t == lag:
            v_start = v[last].clone()
        if t - lag in record:
            res.outputs[t - lag] = ((v[last] - v_start) / (t - lag)).numpy().astype(np.float64)
            res.spikes[t - lag], res.acs[t - lag] = list(spikes), list(acs)
    return res


class LayerwiseRates:
    """rates() of the IF populations in execution order, for calibration that rescales each population's consumers
    before taking the next one's rates. Nodes up to the population last taken then no longer change (only later
    weights do), so each run keeps, for every step, what the later nodes read from it and the next run starts from
    there instead of the image: linear in depth, not quadratic, and the same numbers, since every part of the batch
    runs the same kernels on the same values. Spikes are kept as bits; a stateless node between them (an average
    pool of spikes, a shortcut's current) is recomputed from them in every run rather than kept as float32 at every
    step (a ResNet-18's pooled stem: 1.4 GB for 256 images at 64x96). Runs last as long as the deepest population needs."""

    def __init__(self, net, x: torch.Tensor, steps: int):
        self.net, self.x, self.steps = net, x, steps
        self.depth, self.static = delay_depth(net), static_nodes(net)
        pops = [i for i, lay in enumerate(net.layers) if lay.get("neuron") == "if"]
        self.total = steps + net.warmup + max((self.depth[i] for i in pops), default=0)
        self.start = 0  # the first node the next run computes
        self.recomputed: list[int] = []  # stateless nodes before `start` that the next run computes again
        self.kept = [{} for _ in range(0, len(x), CHUNK)]  # per part of the batch: node -> its values, step by step

    def rates(self, upto: int) -> torch.Tensor:
        if upto < self.start:
            raise ValueError(f"population {upto} comes before node {self.start}: take rates in execution order")
        net, keep, recompute = self.net, *self._frontier(upto)
        nodes = sorted(set(self.recomputed) | set(range(self.start, upto + 1)))
        lag = self.depth[upto] + net.warmup
        out = []
        for part, kept in enumerate(self.kept):
            x = self.x[part * CHUNK:(part + 1) * CHUNK]
            record: dict[int, list] = {s: [] for s in keep if s >= self.start}  # the others are kept already
            total = 0.0
            for t, values, _, _ in _steps(net, x, self.total, nodes=nodes, given=lambda t: _unpack(kept, t)):
                if lag < t <= lag + self.steps:
                    total = total + values[upto]
                for s, series in record.items():
                    if s in self.static:  # the same tensor at every step: kept once
                        record[s] = values[s]
                    elif net.layers[s]["neuron"] == "if":
                        series.append(_pack(values[s]))
                    else:  # an integrator's potential, updated in place: copied
                        series.append(values[s].clone())
            self.kept[part] = record | {s: kept[s] for s in keep if s < self.start}
            out.append(total / self.steps)
        self.start, self.recomputed = upto + 1, recompute
        return torch.cat(out)

    def _frontier(self, upto: int) -> tuple[set[int], list[int]]:
        """What runs after population `upto` read from the nodes up to it: (the nodes whose values are kept: spikes,
        potentials, static values; the stateless ones recomputed from those)."""
        net = self.net
        wanted = [s for j in range(upto + 1, len(net.layers)) for s in net.sources(j) if 0 <= s <= upto]
        keep, recompute = set(), set()
        while wanted:
            s = wanted.pop()
            if s < 0 or s in keep or s in recompute:
                continue
            if s in self.static or net.layers[s].get("neuron", "none") != "none":
                keep.add(s)
            else:
                recompute.add(s)
                wanted += net.sources(s)
        return keep, sorted(recompute)


def _pack(spikes: torch.Tensor) -> tuple:
    """0/1 spikes as bits (32x smaller than float32; packing and unpacking cost a few percent of a conv step)."""
    return np.packbits(spikes.numpy() != 0), spikes.shape


def _unpack(kept: dict, t: int) -> dict[int, torch.Tensor]:
    values = {}
    for s, series in kept.items():
        value = series if isinstance(series, torch.Tensor) else series[t - 1]
        if isinstance(value, tuple):
            bits, shape = value
            value = torch.from_numpy(np.unpackbits(bits, count=int(np.prod(shape))).astype(np.float32)).view(shape)
        values[s] = value
    return values


def rates(net, x: torch.Tensor, steps: int, upto: int) -> torch.Tensor:
    """Spike rate (spikes per step) of node `upto`'s IF neurons over `steps` steps, from the one its input first
    arrives at plus the warm-up, as the readout is windowed (calibration: compare with the ANN)."""
    return torch.cat([_rates(net, x[i:i + CHUNK], steps, upto) for i in range(0, len(x), CHUNK)])


@torch.no_grad()
def _rates(net, x: torch.Tensor, steps: int, upto: int) -> torch.Tensor:
    lag = delay_depth(net)[upto] + net.warmup
    total = 0.0
    for t, values, _, _ in _steps(net, x, steps + lag, upto):
        if t > lag:
            total = total + values[upto]
    return total / steps
