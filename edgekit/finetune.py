"""Short fine-tuning of a gaze module on synthetic training eyes (used after pruning, for QAT and QCFS, and to distil a
teacher into a student).

Loss: 1 - cos between the model's output (converted from pitch/yaw when the card says so) and the label, on
images rendered from the training seed, which no calibration or evaluation set uses.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch
from torch.nn import functional as F

from edgekit.data import synthetic
from edgekit.errors import BadInputError
from edgekit.evalset import model_inputs, render_options
from edgekit.progress import track


MAX_IMAGES = 24_000  # the size of TinyGaze's own training set


def to_vector(out: torch.Tensor, convention: str) -> torch.Tensor:
    if convention == "pitchyaw_rad":
        p, y = out[:, 0], out[:, 1]
        return torch.stack([-torch.cos(p) * torch.sin(y), -torch.sin(p), -torch.cos(p) * torch.cos(y)], dim=1)
    return out


def fine_tune(module: torch.nn.Module, card, steps: int, batch: int, lr: float, seed: int = 0,
              label: str = "fine-tuning", context=nullcontext, device: str = "cpu", teacher: torch.nn.Module | None = None,
              teacher_weight: float = 1.0, one_cycle: bool = False) -> torch.nn.Module:
    """AdamW for `steps` steps on `steps * batch` training images; `context(module)` wraps the loop (fake quantization).
    teacher: distillation; the loss mixes 1 - cos against the teacher's gaze (teacher_weight) and against the label.
    one_cycle: a one-cycle learning rate (training from scratch) instead of a constant one (fine-tuning).
    device: "cuda" trains on the GPU (see _reproducible); `module` comes back on the CPU, the teacher stays where it was.
    Progress: the rendering of the training images, then a bar over the steps labelled `label` (edgekit.progress)."""
    if card.image_input.layout != "NCHW":
        raise BadInputError(f"{label} trains on single eye images, not {card.image_input.layout} sequences; fix: drop it "
                            "from the recipe for this model")
    # at most MAX_IMAGES distinct images (reshuffled each pass): rendering, not training, dominated long runs;
    # every input the model declares is fed (head pose and extra views rendered with the eyes when it takes them)
    train = synthetic.standard_set("train", min(steps * batch, MAX_IMAGES), card.image_size, **render_options(card))
    arrays = model_inputs(card, train).arrays
    xs = [torch.from_numpy(arrays[s.name]).to(device) for s in card.inputs]
    y = torch.from_numpy(train.gaze.astype("float32")).to(device)
    if device != "cpu" and teacher is not None:
        teacher = copy.deepcopy(teacher).to(device)  # the caller's stays on the CPU
    module.to(device)
    gen = torch.Generator().manual_seed(seed)
    per_pass = max(len(y) // batch, 1)
    order = torch.cat([torch.randperm(len(y), generator=gen)[:per_pass * batch] for _ in range(-(-steps // per_pass))]).to(device)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps) if one_cycle else None
    module.train()
    with context(module), _reproducible(device):
        taught = _teacher_gaze(teacher, xs, card.output.convention, batch) if teacher is not None else None
        for step in track(range(steps), total=steps, description=f"{label}: {steps} steps of {batch} images"):
            idx = order[step * batch:(step + 1) * batch]
            out = to_vector(module(*(x[idx] for x in xs)), card.output.convention)
            loss = (1 - F.cosine_similarity(out, y[idx], dim=-1)).mean()
            if taught is not None:
                loss = (1 - teacher_weight) * loss + teacher_weight * (1 - F.cosine_similarity(out, taught[idx], dim=-1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
    return module.cpu().eval()


def _reproducible(device: str):
    """On a GPU, cuDNN's deterministic kernels without autotuning or TF32, for the block only: one GPU model then
    gives the same weights every time (CPU training needs nothing)."""
    if device == "cpu":
        return nullcontext()
    return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False)


@torch.no_grad()
def _teacher_gaze(teacher: torch.nn.Module, xs: list[torch.Tensor], convention: str, batch: int) -> torch.Tensor:
    teacher.eval()
    return torch.cat([to_vector(teacher(*(x[i:i + batch] for x in xs)), convention) for i in range(0, len(xs[0]), batch)])
