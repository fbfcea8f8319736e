"""edgekit's quantization plan for a PyTorch module (the TFLite route quantizes in torch before converting).

Same plan as the ONNX ptq pass (edgekit.quant.plan.QuantPlan): layers named by module path with MACs and
weights, per-layer sensitivity measured alone on the calibration set, mixed precision that returns the most
sensitive layers to float while the whole model misses its target. Sensitivity is scored in torch with
fake quantization (edgekit.quant.fake_quant), the arithmetic the INT8 artifact runs.
"""

from __future__ import annotations

import functools

import numpy as np

from edgekit.data.metrics import angular_error_deg
from edgekit.evalset import to_vectors
from edgekit.progress import track
from edgekit.quant.fake_quant import QUANTIZABLE, fake_quantized
from edgekit.quant.observers import TensorStats, observe
from edgekit.quant.plan import LayerPlan, QuantPlan, missed_targets, return_sensitive_to_float


def layer_table(module, args) -> list[LayerPlan]:
    """Every Conv/Linear with its MACs (from one batch-1 forward) and weight count."""
    import torch

    macs: dict[str, int] = {}

    def hook(name, m, inputs, out):
        per_out = m.in_features if isinstance(m, torch.nn.Linear) else (m.in_channels // m.groups) * int(np.prod(m.kernel_size))
        macs[name] = macs.get(name, 0) + int(out.numel()) * per_out

    hooks = [m.register_forward_hook(functools.partial(hook, name)) for name, m in module.named_modules()
             if isinstance(m, QUANTIZABLE)]
    with torch.no_grad():
        module(*args)
    for h in hooks:
        h.remove()
    modules = dict(module.named_modules())
    return [LayerPlan(name=name, op="Gemm" if isinstance(modules[name], torch.nn.Linear) else "Conv", node=name,
                      macs=count, weights=int(modules[name].weight.numel())) for name, count in macs.items()]


def output_layer_names(module, args) -> set[str]:
    """The Conv/Linear layers whose output tensor is the module's output or a view of it (same storage), from one
    forward: a head returned as it is, not one whose output an op (a normalisation) computes on first."""
    import torch
    from torch.utils._pytree import tree_leaves

    written: list[tuple[str, object]] = []  # held until the end: a freed output's memory can hold the model's output

    def hook(name, m, inputs, out):
        written.append((name, out))

    hooks = [m.register_forward_hook(functools.partial(hook, name)) for name, m in module.named_modules()
             if isinstance(m, QUANTIZABLE)]
    try:
        with torch.no_grad():
            outputs = {t.untyped_storage().data_ptr() for t in tree_leaves(module(*args)) if isinstance(t, torch.Tensor)}
    finally:
        for h in hooks:
            h.remove()
    return {name for name, out in written if out.untyped_storage().data_ptr() in outputs}


class FakeQuantJudge:
    """Scores a set of INT8 layers by fake-quantizing them in torch on calibration inputs. `float_outputs`: the
    module's float outputs on those inputs when a calibration sweep already computed them (else run here)."""

    def __init__(self, module, inputs, card, ranges: dict, weight_bits: int, float_outputs: np.ndarray | None = None):
        import torch

        self.module, self.ranges, self.bits, self.card = module, ranges, weight_bits, card
        self.batch = tuple(torch.from_numpy(inputs.arrays[s.name]) for s in card.inputs)
        self._vec = lambda out: to_vectors(out, card).reshape(-1, 3)
        self._angle = angular_error_deg
        self.truth = inputs.truth.reshape(-1, 3)
        self.ref = self._vec(self._run(set()) if float_outputs is None else float_outputs)
        self.ref_error = float(angular_error_deg(self.ref, self.truth).mean())

    def _run(self, int8: set[str]) -> np.ndarray:
        import torch

        with torch.no_grad(), fake_quantized(self.module, {k: v for k, v in self.ranges.items() if k in int8}, self.bits):
            return self.module(*self.batch).numpy()

    def differences(self, int8: set[str]) -> tuple[float, np.ndarray]:
        """(mean error increase over float, every sample's angular difference from float), degrees."""
        out = self._vec(self._run(int8))
        return float(self._angle(out, self.truth).mean()) - self.ref_error, self._angle(out, self.ref)

    def score(self, int8: set[str]) -> tuple[float, float, float]:
        """(mean error increase over float, p95 and largest difference from float), degrees."""
        increase, diff = self.differences(int8)
        return increase, float(np.percentile(diff, 95)), float(diff.max())

    def increase(self, int8: set[str]) -> float:
        return self.score(int8)[0]


def mixed_precision(plan: QuantPlan, judge: FakeQuantJudge, target: float, min_fraction: float, enabled: bool,
                    target_p95: float | None = None, target_max: float | None = None) -> QuantPlan:
    def sensitivity() -> dict[str, float]:
        return {lp.name: round(judge.increase({lp.name}), 4)
                for lp in track(plan.layers, description=f"INT8 sensitivity: each of {len(plan.layers)} layers alone "
                                                         f"on {len(judge.truth)} samples")}

    def score(candidate):
        increase, p95, largest = judge.score({lp.name for lp in candidate.layers if lp.int8})
        extra = f", p95 difference {p95:.3f} deg, largest {largest:.3f} deg" if target_p95 or target_max else ""
        return increase, extra, missed_targets(p95, largest, target_p95, target_max)

    return return_sensitive_to_float(plan, sensitivity, score,
                                     target=target, min_fraction=min_fraction, enabled=enabled,
                                     label="all planned layers in INT8",
                                     where=f"on {len(judge.truth)} calibration samples (torch fake quantization)")


@functools.cache
def range_observer_class():
    """A PT2E activation observer whose range comes from edgekit's observers (percentile, entropy, mse, minmax).

    It keeps edgekit's TensorStats: one calibration sweep for the range, a second for the histograms."""
    import torch
    from torchao.quantization.pt2e.observer import MinMaxObserver

    class EdgekitRangeObserver(MinMaxObserver):
        def __init__(self, method: str = "percentile", percentile: float = 99.99, headroom: float = 1.0, **kwargs):
            super().__init__(**kwargs)
            self.method, self.percentile, self.sweep, self.stats = method, percentile, "range", TensorStats()
            self.headroom = headroom  # the observed range widened by this factor (pt2e.averages_own_output_range)

        def forward(self, x):
            values = x.detach().float().numpy()
            (self.stats.update_range if self.sweep == "range" else self.stats.update_hist)(values)
            return x

        def calculate_qparams(self):
            lo, hi = observe(self.stats, self.method, self.percentile)
            lo, hi = min(lo, 0.0) * self.headroom, max(hi, 0.0, lo + 1e-6) * self.headroom
            self.min_val, self.max_val = torch.tensor(lo), torch.tensor(hi)
            return super().calculate_qparams()

    return EdgekitRangeObserver


def calibrate_observers(prepared, samples: list[tuple], count: int | None = None) -> None:
    """Two sweeps over the calibration samples (or batches of them: `count` samples in all): ranges first, then
    histograms over those ranges."""
    import torch

    observers = [m for m in prepared.modules() if type(m).__name__ == "EdgekitRangeObserver"]
    sweeps = [(sweep, args) for sweep in ("range", "hist") for args in samples]
    with torch.no_grad():
        for k, (sweep, args) in enumerate(track(sweeps, description=f"calibrating the PT2E observers on "
                                                                   f"{count or len(samples)} samples (ranges, then "
                                                                   "histograms)")):
            for obs in observers:
                obs.sweep = sweep
            prepared(*args)
            if k == 0:
                freeze_constant_observers(prepared)


def freeze_constant_observers(prepared) -> list[str]:
    """After one call, the observers of constants (the weights' per-channel observers) pass their input through: a
    weight's min and max cannot change between calls, and recomputing them on every sample was 31 of GazeResNet18's
    73 s of PT2E calibration. Returns the frozen observers' names."""
    frozen = []
    for node in prepared.graph.nodes:
        if node.op == "call_module" and node.args and getattr(node.args[0], "op", None) == "get_attr":
            observer = prepared.get_submodule(node.target)
            if hasattr(observer, "calculate_qparams") and type(observer).__name__ != "EdgekitRangeObserver":
                observer.forward = _pass_through  # an instance attribute: nn.Module calls self.forward
                frozen.append(node.target)
    return frozen


def _pass_through(x):
    return x
