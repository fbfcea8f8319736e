"""Fake quantization for QAT, with torch's own fake-quantize ops (straight-through gradients).

Each Conv/Linear gets per-output-channel symmetric weight fake quantization (the plan's weight bits)
through a parametrization, and uint8 fake quantization of its input with the calibrated range through
a forward pre-hook: the same arithmetic the INT8 artifact will run, so fine-tuning adapts to it.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from edgekit.progress import track
from edgekit.quant.observers import TensorStats, observe

QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)


class WeightFakeQuant(nn.Module):
    def __init__(self, bits: int):
        super().__init__()
        self.qmax = 2 ** (bits - 1) - 1

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        amax = w.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-12)
        scale = (amax / self.qmax).float()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -self.qmax, self.qmax)


def batched(tensors: list[torch.Tensor], size: int = 64) -> list[tuple[torch.Tensor, ...]]:
    """Calibration inputs as the observers sweep them: one tuple of every input's rows per batch of `size`."""
    return [tuple(t[i:i + size] for t in tensors) for i in range(0, len(tensors[0]), size)]


def _observed(model: nn.Module, batches: list[tuple[torch.Tensor, ...]], observer: str, percentile: float,
              types: tuple, side: str, outputs: list | None = None) -> dict[str, tuple[float, float]]:
    """Observer ranges of the input (side "input") or output of every module of `types` (see observed_stats)."""
    stats = observed_stats(model, batches, types, side, outputs, what=f"{side} ranges ({observer})")
    return {name: observe(s, observer, percentile) for name, s in stats.items()}


def observed_stats(model: nn.Module, batches: list[tuple[torch.Tensor, ...]], types: tuple = QUANTIZABLE,
                   side: str = "input", outputs: list | None = None, what: str = "input ranges") -> dict[str, TensorStats]:
    """Range and histograms of the input (side "input") or output of every module of `types`: a range sweep, then a
    histogram sweep over the calibration batches (as for ONNX), so every observer's range comes from one collection.
    `outputs`: receives the model's output on each batch of the range sweep (its float outputs on the calibration set,
    which a judge of the plan needs too)."""
    stats = {name: TensorStats() for name, m in model.named_modules() if isinstance(m, types)}

    def hook(name: str, sweep: str):
        def record(x) -> None:
            (stats[name].update_range if sweep == "range" else stats[name].update_hist)(x.detach().numpy())
        if side == "input":
            return lambda _m, args: record(args[0])
        return lambda _m, _args, out: record(out)

    n = sum(len(batch[0]) for batch in batches)
    sweeps = track([(sweep, batch) for sweep in ("range", "hist") for batch in batches],
                   description=f"calibrating {what} on {n} samples")
    hooks: list = []
    try:
        for sweep, batch in sweeps:
            if not hooks or hooks[0][0] != sweep:  # the histogram sweep starts: its own hooks
                for _, h in hooks:
                    h.remove()
                register = "register_forward_pre_hook" if side == "input" else "register_forward_hook"
                hooks = [(sweep, getattr(m, register)(hook(name, sweep))) for name, m in model.named_modules() if name in stats]
            with torch.no_grad():
                out = model(*batch)
            if outputs is not None and sweep == "range":
                outputs.append(out.numpy())
    finally:
        for _, h in hooks:
            h.remove()
    return stats


def input_ranges(model: nn.Module, batches: list[tuple[torch.Tensor, ...]], observer: str,
                 percentile: float = 99.99, outputs: list | None = None) -> dict[str, tuple[float, float]]:
    """Observer ranges of every quantizable layer's input over calibration batches (`outputs`: see _observed)."""
    return _observed(model, batches, observer, percentile, QUANTIZABLE, "input", outputs)


def output_ranges(model: nn.Module, batches: list[tuple[torch.Tensor, ...]], observer: str, percentile: float = 99.99,
                  types: tuple = (nn.Conv1d, nn.Conv2d)) -> dict[str, tuple[float, float]]:
    """Observer ranges of every conv's output (onnxruntime's integer Conv writes a uint8 output: QDQ quantizes it)."""
    return _observed(model, batches, observer, percentile, types, "output")


def _uint8(lo: float, hi: float) -> tuple[float, int]:
    lo, hi = min(lo, 0.0), max(hi, lo + 1e-6)
    scale = float((hi - lo) / 255.0)
    return scale, int(np.clip(round(-lo / scale), 0, 255))


@contextmanager
def fake_quantized(model: nn.Module, ranges: dict[str, tuple[float, float]], weight_bits: int,
                   outputs: dict[str, tuple[float, float]] | None = None):
    """Within the block, `model` computes as its INT8 artifact will; on exit the float weights are kept.
    `outputs`: layers whose output is fake-quantized too, with these ranges (QAT for ONNX, whose convs write uint8)."""
    hooks = []
    for name, m in model.named_modules():
        if name in (outputs or {}) and name in ranges:
            s, z = _uint8(*outputs[name])
            hooks.append(m.register_forward_hook(
                lambda _m, _args, out, s=s, z=z: torch.fake_quantize_per_tensor_affine(out, s, z, 0, 255)))
    for name, m in model.named_modules():
        if name not in ranges:
            continue
        lo, hi = ranges[name]
        lo, hi = min(lo, 0.0), max(hi, lo + 1e-6)
        scale = float((hi - lo) / 255.0)
        zero = int(np.clip(round(-lo / scale), 0, 255))
        hooks.append(m.register_forward_pre_hook(
            lambda _m, args, s=scale, z=zero: (torch.fake_quantize_per_tensor_affine(args[0], s, z, 0, 255), *args[1:])))
        parametrize.register_parametrization(m, "weight", WeightFakeQuant(weight_bits))
    try:
        yield model
    finally:
        for h in hooks:
            h.remove()
        for name, m in model.named_modules():
            if parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
