"""null backend: runs a torch artifact itself in eager PyTorch (no converter, no extra runtime).

It makes the pipeline, cache, gates and report testable in milliseconds, and is the smallest complete Backend.
Its counts come from forward hooks on conv and linear layers; its energy section from those counts at FP32.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from edgekit.artifact import Format
from edgekit.backends.base import Availability, Backend
from edgekit.energy.section import energy_section
from edgekit.torch_module import load_module, torch_runner


class TorchRunner:
    """The artifact run as verification runs the reference (torch_runner: a convolutional model as a channels-last
    copy), so that an identity pipeline's artifact agrees with its reference bit for bit."""

    def __init__(self, path: Path, threads: int = 1):
        import torch

        self.torch, self.threads = torch, threads
        self.module = load_module(Path(path))[0].eval()
        self._run = torch_runner(self.module)

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        self.torch.set_num_threads(self.threads)
        return self._run({k: np.ascontiguousarray(v, np.float32) for k, v in inputs.items()})

    def describe(self) -> str:
        return f"PyTorch {self.torch.__version__} eager, CPU, {self.threads} thread(s) (null backend: no conversion)"

    def layer_rows(self, sample: dict[str, np.ndarray]) -> list[dict]:
        """One row per conv/linear call on `sample` (batch 1): FP32 MACs, weight bytes, activation elements."""
        nn, rows = self.torch.nn, []

        def hook(layer, args, out):
            macs = out.numel() // out.shape[0] * (layer.weight[0].numel())
            rows.append({"layer": names[layer], "op": type(layer).__name__, "precision": "fp32", "macs": int(macs),
                         "weight_bytes": 4 * sum(p.numel() for p in layer.parameters(recurse=False)),
                         "act_in_elems": int(args[0].numel()), "act_out_elems": int(out.numel()), "act_bytes_per_elem": 4})

        names = {m: n for n, m in self.module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
        handles = [m.register_forward_hook(hook) for m in names]
        try:
            with self.torch.no_grad():  # the module itself, whose layers hold the hooks (run() may call its copy)
                self.module(*(self.torch.from_numpy(np.ascontiguousarray(v, np.float32)) for v in sample.values()))
        finally:
            for h in handles:
                h.remove()
        return rows


class NullBackend(Backend):
    name: ClassVar[str] = "null"
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.torch})
    extra: ClassVar[str] = ""
    summary: ClassVar[str] = "the torch artifact in eager PyTorch (testing the pipeline without a converter)"

    def available(self) -> Availability:
        return Availability(True, "ok (needs only torch)")

    def runner(self, path: Path, threads: int = 1) -> TorchRunner:
        return TorchRunner(path, threads)

    def counts(self, path: Path, runner: TorchRunner, sample: dict) -> dict:
        rows = runner.layer_rows(sample)
        return {"params": sum(p.numel() for p in runner.module.parameters()), "macs": sum(r["macs"] for r in rows),
                "params_how": "elements of the module's parameters",
                "macs_how": "conv and linear MACs counted by forward hooks on one sample, batch 1"}

    def energy(self, path: Path, runner: TorchRunner, sample: dict, device: str) -> dict:
        return energy_section(runner.layer_rows(sample), runner, sample, device)
