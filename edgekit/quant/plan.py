"""The quantization plan: which layers run in INT8, how weights and activations are quantized, and the
activation ranges. It is backend-independent: layers are named by their PyTorch module path and ranges
by the producing layer and op (`features/features.0/features.0.2/Relu`, `input:image`); each backend
applies it natively (ONNX: QDQ; TFLite and Core ML reuse it).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, Field

from edgekit import progress

PLAN_VERSION = 1
QUANTIZABLE_OPS = ("Conv", "Gemm", "MatMul")
# Deployment ISA classes. u8s8 kernels built on VPMADDUBSW (x86 AVX2 without VNNI) add two u8*s8 products
# into 16 bits and saturate with full 8-bit weights (12 degrees measured on a trained model, shared
# reference/dependencies.md); 7-bit weights (255*64*2 < 32767) cannot saturate.
ISA_PROFILES = {
    "portable": {"weight_bits": 7, "why": "safe on every x86 (with or without VNNI) and ARM CPU: 7-bit weights cannot saturate u8s8 kernels"},
    "x86-avx2": {"weight_bits": 7, "why": "x86 AVX2 without VNNI: u8s8 kernels saturate with 8-bit weights"},
    "x86-vnni": {"weight_bits": 8, "why": "x86 with AVX512-VNNI or AVX-VNNI: 32-bit accumulation, no saturation"},
    "arm64": {"weight_bits": 8, "why": "ARMv8.2+ dot product: no saturation"},
    # TFLite and ExecuTorch: XNNPACK's signed int8 (QS8) kernels sign-extend to 16 bits before multiplying, on every ISA
    "xnnpack": {"weight_bits": 8, "why": "XNNPACK signed int8 kernels (LiteRT, ExecuTorch) widen before multiplying: no u8s8 saturation"},
}


def module_paths(node_name: str) -> list[str]:
    """The full module path at each scope depth of a TorchScript-exported ONNX node name.

    The exporter names a scope by the attribute (`/stage1/block1/conv1/Conv`) or, for a Sequential's child, by its
    dotted name within the parent (`/features/features.0/features.0.0/Conv`, `/down/down.0/Conv`), so the full path is
    built level by level: ['stage1', 'stage1.block1', 'stage1.block1.conv1'], never the bare 'conv1' that another
    stage's block also has."""
    segments: list[str] = []
    paths = []
    for part in [p for p in node_name.split("/") if p][:-1]:  # the last part is the op
        if segments and part.startswith(segments[-1] + "."):
            segments[-1] = part  # a Sequential child: its name already holds the parent's
        else:
            segments.append(part)
        paths.append(".".join(segments))
    return paths


def layer_name(node_name: str) -> str:
    """`/stage1/block1/conv1/Conv` -> `stage1.block1.conv1` (the full path of the module that produced the node)."""
    paths = module_paths(node_name)
    return paths[-1] if paths else node_name.strip("/")


def tensor_key(node_name: str, index: int = 0) -> str:
    return node_name.strip("/") + (f":{index}" if index else "")


class LayerPlan(BaseModel):
    name: str
    op: str
    node: str
    macs: int
    weights: int
    int8: bool = True
    reason: str = "quantized"
    sensitivity_deg: float | None = None  # only this layer in INT8 (calibration set): ONNX ptq, its mean difference
    # from FP32; torch plans (TFLite), the error increase
    weight_error: float | None = None  # relative RMS error of its INT8 weights


class QuantPlan(BaseModel):
    version: int = PLAN_VERSION
    weights: dict = Field(default_factory=dict)
    activations: dict = Field(default_factory=dict)
    isa_profile: str = "portable"
    calibration: dict = Field(default_factory=dict)
    layers: list[LayerPlan] = Field(default_factory=list)
    ranges: dict[str, list[float]] = Field(default_factory=dict)
    decisions: list[str] = Field(default_factory=list)  # how mixed precision got here, step by step

    @property
    def float_layers(self) -> list[LayerPlan]:
        return [lp for lp in self.layers if not lp.int8]

    def int8_fraction(self, attr: str) -> float:
        total = sum(getattr(lp, attr) for lp in self.layers)
        return sum(getattr(lp, attr) for lp in self.layers if lp.int8) / total if total else 0.0

    def with_float(self, names: set[str], reason: str) -> QuantPlan:
        layers = [lp.model_copy(update={"int8": False, "reason": reason}) if lp.name in names and lp.int8 else lp
                  for lp in self.layers]
        return self.model_copy(update={"layers": layers})


def keep_float(plan: QuantPlan, patterns: list[str]) -> QuantPlan:
    """Layers whose module name matches a pattern (fnmatch) stay float."""
    names = {lp.name for lp in plan.layers if any(fnmatch.fnmatch(lp.name, p) for p in patterns)}
    return plan.with_float(names, f"kept float by keep_float {patterns}") if names else plan


SEARCHED_OBSERVERS = ("percentile", "mse", "minmax")  # entropy: slow (a KL sweep per tensor), never the closest here


def observers_to_try(configured: str) -> list[str]:
    """The observer choice's candidates: the configured one first (it wins ties), then the other searched ones."""
    return [configured, *(o for o in SEARCHED_OBSERVERS if o != configured)]


def target_distance(increase: float, p95: float, largest: float, target: float, target_p95: float | None,
                    target_max: float | None) -> float:
    """The largest ratio of a measured value to its target: below 1, every target holds."""
    return max([increase / target] + [v / t for v, t in ((p95, target_p95), (largest, target_max)) if t])


@dataclass
class ObserverTrial:
    """One observer's all-INT8 plan judged on the calibration samples (degrees; `distance` below 1: every target holds)."""

    observer: str
    plan: QuantPlan
    increase: float  # mean error increase over FP32
    mean_diff: float  # mean angular difference from FP32
    largest: float  # largest difference from FP32
    distance: float  # the largest ratio of a measured value to its target


def choose_observer(trials: list[ObserverTrial]) -> tuple[ObserverTrial, str]:
    """The observer to keep, and why: among the trials that hold every target, the one closest to FP32, by the sum of
    its mean and its largest difference each relative to the best trial's (a percentile clip that rounds finer for
    most samples clips the few whose activations reach past it, min-max the reverse: both numbers count); when none
    holds, the one closest to its targets. Ties keep the first trial (the configured observer)."""
    holding = [t for t in trials if t.distance <= 1]
    if not holding:
        best = min(trials, key=lambda t: t.distance)
        return best, "the closest to the targets, none of which every observer's all-INT8 plan holds"
    best_mean = max(min(t.mean_diff for t in holding), 1e-9)
    best_max = max(min(t.largest for t in holding), 1e-9)
    best = min(holding, key=lambda t: t.mean_diff / best_mean + t.largest / best_max)
    return best, "the closest to FP32 (mean and largest difference) among the plans that hold every target"


def observer_decision(chosen: ObserverTrial, why: str, configured: str, trials: list[ObserverTrial], where: str) -> str:
    tried = "; ".join(f"{t.observer}: error increase {t.increase:+.3f} deg, mean difference {t.mean_diff:.3f} deg, "
                      f"largest {t.largest:.3f} deg" for t in trials)
    return (f"observer {chosen.observer}" + (f" instead of {configured}" if chosen.observer != configured else "")
            + f": {why}, all layers in INT8 {where} ({tried})")


def with_observer(plan: QuantPlan, observer: str, ranges: dict[str, list[float]], percentile: float) -> QuantPlan:
    activations = {k: v for k, v in plan.activations.items() if k != "percentile"}
    activations.update(observer=observer, **({"percentile": percentile} if observer == "percentile" else {}))
    return plan.model_copy(update={"ranges": ranges, "activations": activations})


def missed_targets(p95: float, largest: float, target_p95: float | None, target_max: float | None) -> list[str]:
    """The difference targets a candidate misses (the accuracy gates besides the error increase)."""
    return ([f"p95 difference {p95:.3f} > {target_p95} deg"] if target_p95 is not None and p95 > target_p95 else []) + \
           ([f"largest difference {largest:.3f} > {target_max} deg"] if target_max is not None and largest > target_max else [])


def return_sensitive_to_float(plan: QuantPlan, sensitivity: Callable[[], dict[str, float]], score, *, target: float,
                              min_fraction: float, enabled: bool, label: str, where: str) -> QuantPlan:
    """Mixed precision, shared by every INT8 pass: while the model misses a target, the most sensitive INT8 layer
    returns to float, as long as `min_fraction` of MACs stay INT8.

    `sensitivity()`: each layer's error (or difference) alone in INT8; called only when the all-INT8 plan misses a
    target with mixed precision enabled, since only then can it change a decision (it costs one calibration run per
    layer). `score(plan) -> (increase, extra, missed)` measures the whole plan: `extra` is what else the caller
    reports beside it (e.g. ", p95 difference 0.4 deg") and `missed` names the caller's other targets the plan misses
    (p95 or max difference from FP32), each one a reason to go on."""
    with progress.step("mixed precision search"):  # each round scores the whole plan on the calibration samples
        return _return_to_float(plan, sensitivity, score, target, min_fraction, enabled, label, where)


def _with_sensitivity(plan: QuantPlan, sens: dict[str, float]) -> QuantPlan:
    return plan.model_copy(update={"layers": [lp.model_copy(update={"sensitivity_deg": round(sens[lp.name], 4)})
                                              for lp in plan.layers]})


def _return_to_float(plan: QuantPlan, sensitivity, score, target: float, min_fraction: float, enabled: bool,
                     label: str, where: str) -> QuantPlan:
    increase, extra, missed = score(plan)
    decisions = [f"{label}: error increase {increase:+.3f} deg{extra} {where}"]
    if not (enabled and (increase > target or missed)):
        return plan.model_copy(update={"decisions": decisions})
    sens = sensitivity()
    plan = _with_sensitivity(plan, sens)
    skipped: set[str] = set()  # too many MACs to leave INT8 (the floor only gets closer)
    while increase > target or missed:
        candidates = sorted((lp for lp in plan.layers if lp.int8), key=lambda lp: -sens[lp.name])
        if not candidates:
            break
        fits = [lp for lp in candidates if plan.with_float({lp.name}, "").int8_fraction("macs") >= min_fraction]
        if not fits:
            worst = candidates[0]
            left = plan.with_float({worst.name}, "").int8_fraction("macs")
            decisions.append(f"stopped: moving {worst.name} to float would leave {left:.1%} of MACs "
                             f"in INT8, below {min_fraction:.0%}" + (f"; still missed: {'; '.join(missed)}" if missed else "")
                             + (f"; error increase {increase:+.3f} > {target} deg" if increase > target else ""))
            break
        for lp in candidates[:candidates.index(fits[0])]:
            if lp.name not in skipped:
                skipped.add(lp.name)
                left = plan.with_float({lp.name}, "").int8_fraction("macs")
                decisions.append(f"{lp.name} stays INT8 ({sens[lp.name]:+.3f} deg alone): moving it to float would leave "
                                 f"{left:.1%} of MACs in INT8, below {min_fraction:.0%}")
        worst = fits[0]
        plan = plan.with_float({worst.name}, f"kept float: most sensitive layer left ({sens[worst.name]:+.3f} deg alone)"
                               + (f"; {'; '.join(missed)}" if missed else "")
                               + (f"; error increase {increase:+.3f} > {target} deg" if increase > target else ""))
        increase, extra, missed = score(plan)
        decisions.append(f"{worst.name} -> float: error increase {increase:+.3f} deg{extra}")
    return plan.model_copy(update={"decisions": decisions})
