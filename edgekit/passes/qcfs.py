"""qcfs: fine-tune the ANN with quantization-clip-floor-shift activations (Bu et al., ICLR 2022) before to_snn.

Every nn.ReLU becomes y = lam * clamp(floor(x * L / lam + 1/2) / L, 0, 1) with a learnable threshold lam per layer
(initialised at the 99.9th percentile of the layer's output on the calibration set) and a straight-through floor.
After training the ReLUs come back (the artifact stays a plain torch module); the learned thresholds travel in the
artifact's metadata and to_snn uses them as the IF thresholds with an initial charge of half a threshold, which makes
the expected conversion error zero at any T (in the paper's analysis) and cuts the error at small T.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from pydantic import Field
from torch import nn

from edgekit.artifact import Artifact, Format
from edgekit.errors import BadInputError
from edgekit.evalset import model_inputs
from edgekit.finetune import fine_tune
from edgekit.passes.base import TrainingPass
from edgekit.torch_module import get_submodule_parent, load_module, save_module


class _Floor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad):
        return grad  # straight through


class QCFSAct(nn.Module):
    def __init__(self, lam: float, levels: int):
        super().__init__()
        self.lam, self.levels = nn.Parameter(torch.tensor(float(lam))), levels

    def forward(self, x):
        y = (x / self.lam).clamp(0, 1)
        return _Floor.apply(y * self.levels + 0.5) / self.levels * self.lam


def _swap(module: nn.Module, kind: type, make) -> list[str]:
    """Replace every module of type `kind` by make(name, old); returns the names replaced, in module order."""
    names = [n for n, m in module.named_modules() if isinstance(m, kind)]
    for name in names:
        parent, leaf = get_submodule_parent(module, name)
        setattr(parent, leaf, make(name, getattr(parent, leaf)))
    return names


class QCFS(TrainingPass):
    name: ClassVar[str] = "qcfs"
    version: ClassVar[int] = 1
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.torch})
    produces: ClassVar[Format] = Format.torch
    summary: ClassVar[str] = "fine-tune with QCFS activations (learned thresholds) so the SNN converts with little error at low T"

    levels: int = Field(8, ge=2, le=256, description="quantization levels L of the clip-floor activation")
    steps: int = Field(1500, ge=1, description="fine-tuning steps on synthetic training eyes")
    batch: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        if ctx.calib is None:
            raise BadInputError("qcfs needs a calibration set to initialise its thresholds; fix: declare `calibration:`")
        module, spec = load_module(src.path, trusted_arch=ctx.card.arch)
        module.eval()
        arrays = model_inputs(ctx.card, ctx.calib).take(256).arrays  # every declared input (image, head pose)
        calib = [torch.from_numpy(arrays[s.name]) for s in ctx.card.inputs]
        outputs: dict[str, torch.Tensor] = {}
        hooks = [m.register_forward_hook(lambda m, i, o, n=n: outputs.__setitem__(n, o.detach()))
                 for n, m in module.named_modules() if isinstance(m, nn.ReLU)]
        with torch.no_grad():
            module(*calib)
        for h in hooks:
            h.remove()
        if not outputs:
            raise BadInputError("qcfs found no nn.ReLU module to replace; fix: use nn.ReLU modules (not F.relu) or drop qcfs")
        init = {n: max(float(torch.quantile(o.flatten()[:: max(1, o.numel() // 200_000)], 0.999)), 1e-3) for n, o in outputs.items()}
        acts: dict[str, QCFSAct] = {}
        _swap(module, nn.ReLU, lambda n, _: acts.setdefault(n, QCFSAct(init[n], self.levels)))
        fine_tune(module, ctx.card, self.steps, self.batch, self.lr, label=f"qcfs fine-tuning (L={self.levels})",
                  device=self.training_device())
        thresholds = {n: float(a.lam.detach().abs()) for n, a in acts.items()}
        _swap(module, QCFSAct, lambda n, _: nn.ReLU())
        save_module(module.eval(), out_dir / "module", spec["arch"], spec["arch_config"], spec.get("bn_folds", []))
        notes = [f"QCFS fine-tuned {self.steps} steps (L={self.levels}); learned thresholds "
                 + ", ".join(f"{n} {v:.3g}" for n, v in thresholds.items())]
        return Artifact.create(out_dir / "module", Format.torch, src, notes=notes, qcfs_thresholds=thresholds,
                               qcfs_levels=self.levels)
