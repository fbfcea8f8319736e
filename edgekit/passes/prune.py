"""prune: make models smaller (and, with channel pruning, faster), then optionally fine-tune to recover accuracy.

- method magnitude: unstructured; zero the smallest weights globally or per layer to a sparsity target. Shapes do not
  change, so dense runtimes run no faster; the zeros show up in compressed size (and Core ML sparse weights).
- method channel: structured; remove whole filters and the channels that consume them with torch-pruning's dependency
  graph (residual connections prune together), ranked by L1/L2 norm of the filters or by BatchNorm scale. Parameters,
  MACs and measured latency drop.
The final layer is never pruned (its outputs are the gaze). Accuracy is gated in degrees by the recipe, on the artifact.
"""

from __future__ import annotations

import copy
import io
import zlib
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from edgekit._optional import require
from edgekit.artifact import Artifact, Format
from edgekit.errors import BadInputError
from edgekit.finetune import fine_tune
from edgekit.passes.base import TrainingPass
from edgekit.torch_module import load_module, save_module


def _prunable(module):
    from torch import nn

    layers = [(n, m) for n, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return layers[:-1], layers[-1]  # the last layer produces the gaze: keep it whole


def _failing_module(exc: BaseException, root) -> str:
    """`module path (Class) at file:line`: the innermost frame of the model's own code in the traceback."""
    import traceback

    from torch import nn

    names = {id(m): n for n, m in root.named_modules()}
    tb, found = exc.__traceback__, "the model's forward"
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in names and "/torch/" not in tb.tb_frame.f_code.co_filename:
            where = traceback.extract_tb(tb, limit=1)[0]
            found = (f"module {names[id(owner)] or '(top level)'} ({type(owner).__name__}) at "
                     f"{Path(where.filename).name}:{where.lineno}")
        tb = tb.tb_next
    return found


def _compressed_bytes(module) -> int:
    import numpy as np

    blob = io.BytesIO()
    for t in module.state_dict().values():
        blob.write(t.detach().cpu().numpy().astype(np.float32).tobytes())
    return len(zlib.compress(blob.getvalue(), 6))


class Prune(TrainingPass):
    name: ClassVar[str] = "prune"
    version: ClassVar[int] = 2  # 2: stacked recurrent layers kept whole
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.torch})
    produces: ClassVar[Format] = Format.torch
    summary: ClassVar[str] = "unstructured magnitude or structured channel pruning (torch-pruning), optional fine-tuning"

    method: Literal["magnitude", "channel"] = "channel"
    amount: float = Field(0.5, gt=0, lt=1, description="sparsity (magnitude) or fraction of channels removed (channel)")
    scope: Literal["global", "layer"] = Field("global", description="magnitude: one threshold for all layers, or per layer")
    importance: Literal["l1", "l2", "bn_scale"] = Field("l1", description="channel: how filters are ranked")
    fine_tune_steps: int = Field(0, ge=0, description="steps of fine-tuning on synthetic eyes after pruning")
    batch: int = Field(64, ge=1)
    lr: float = Field(5e-4, gt=0)

    trains: ClassVar[str] = "ranks channels by float32 sums and fine-tunes"

    def gpus(self) -> int:
        return super().gpus() if self.fine_tune_steps else 0

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        import torch

        module, spec = load_module(src.path, trusted_arch=ctx.card.arch)
        module = copy.deepcopy(module).eval()
        params_before = sum(p.numel() for p in module.parameters())
        zipped_before = _compressed_bytes(module)
        if self.method == "magnitude":
            note = self._magnitude(module)
        else:
            if spec.get("bn_folds") and self.importance == "bn_scale":
                raise BadInputError("prune importance bn_scale needs BatchNorm layers, but they were folded; fix: put prune "
                                    "before fold_bn or use importance l1")
            note = self._channels(module, ctx)
        if self.fine_tune_steps:
            masks = {n: (p != 0) for n, p in module.named_parameters()} if self.method == "magnitude" else None
            fine_tune(module, ctx.card, self.fine_tune_steps, self.batch, self.lr, ctx.seed, label="prune fine-tuning",
                      device=self.training_device())
            if masks:  # keep the pruned weights at zero
                with torch.no_grad():
                    for n, p in module.named_parameters():
                        p.mul_(masks[n])
            note += f"; fine-tuned {self.fine_tune_steps} steps (batch {self.batch}, lr {self.lr})"
        params_after = sum(p.numel() for p in module.parameters())
        zeros = sum(int((p == 0).sum()) for p in module.parameters())
        save_module(module, out_dir / "module", spec["arch"], spec["arch_config"], spec.get("bn_folds", []))
        note += (f"; parameters {params_before} -> {params_after}, zeros {zeros / max(params_after, 1):.1%}, "
                 f"zlib-compressed weights {zipped_before / 1e6:.2f} -> {_compressed_bytes(module) / 1e6:.2f} MB")
        return Artifact.create(out_dir / "module", Format.torch, src, notes=[note], params_before=params_before,
                               params_after=params_after, zero_fraction=zeros / max(params_after, 1))

    def _magnitude(self, module) -> str:
        import torch
        from torch.nn.utils import prune

        layers, _ = _prunable(module)
        targets = [(m, "weight") for _, m in layers]
        if self.scope == "global":
            prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=self.amount)
        else:
            for m, name in targets:
                prune.l1_unstructured(m, name, amount=self.amount)
        for m, name in targets:
            prune.remove(m, name)  # make the zeros permanent; shapes are unchanged
        with torch.no_grad():
            return (f"prune: magnitude ({self.scope}) to {self.amount:.0%} sparsity of {len(layers)} layers; dense runtimes "
                    "gain no speed from it")

    def _channels(self, module, ctx) -> str:
        import torch

        tp = require("torch_pruning", "channel pruning")
        _, last = _prunable(module)
        example = tuple(torch.zeros(s.shape) for s in ctx.card.inputs)
        importance = {"l1": tp.importance.MagnitudeImportance(p=1), "l2": tp.importance.MagnitudeImportance(p=2),
                      "bn_scale": tp.importance.BNScaleImportance()}[self.importance]
        # torch-pruning prunes only single-layer recurrent cells: stacked ones keep their widths (and so do their inputs)
        stacked = [(n, m) for n, m in module.named_modules()
                   if isinstance(m, torch.nn.RNNBase) and (m.num_layers > 1 or m.bidirectional)]
        try:
            pruner = tp.pruner.MetaPruner(module, example, importance=importance, pruning_ratio=self.amount,
                                          ignored_layers=[last[1]] + [m for _, m in stacked])
            pruner.step()
        except Exception as exc:
            raise BadInputError(f"prune: torch-pruning could not trace the model ({str(exc).splitlines()[0][:200]}); "
                                "fix: use method magnitude") from None
        try:
            with torch.no_grad():
                module.eval()(*example)
        except Exception as exc:  # a width torch-pruning cannot see: a reshape by a fixed head or token count
            raise BadInputError(f"prune: after channel pruning the model fails in {_failing_module(exc, module)} "
                                f"({str(exc).splitlines()[0][:160]}): torch-pruning cannot see that this code fixes a "
                                "width (e.g. attention heads reshaped by a constant); fix: use method magnitude, or "
                                "compute the shape from the tensor") from None
        kept = f"; kept whole: {', '.join(n for n, _ in stacked)} (stacked or bidirectional recurrent)" if stacked else ""
        return (f"prune: channel pruning of {self.amount:.0%} of channels by {self.importance} (torch-pruning, "
                f"residual-aware){kept}")
