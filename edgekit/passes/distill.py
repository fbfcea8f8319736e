"""distill: train a student (a built-in architecture; TinyGaze, sequential, by default) to reproduce the model's gaze.

For targets whose runtime cannot load the model's structure: netx runs conv/flatten/dense chains only, so a residual
network with max-pooling (GazeResNet18) reaches Loihi as a TinyGaze-shaped student taught by it. The student takes the
teacher's input size, channels and preprocessing (the model card is unchanged) and learns from the teacher's outputs on
training images, mixed with the labels; verification then measures it against the teacher like any other artifact.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from edgekit.artifact import Artifact, Format
from edgekit.errors import BadInputError
from edgekit.finetune import fine_tune
from edgekit.models.registry import builtin
from edgekit.passes.base import TrainingPass
from edgekit.torch_module import build_arch, load_module, save_module


class Distill(TrainingPass):
    name: ClassVar[str] = "distill"
    version: ClassVar[int] = 1
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.torch})
    produces: ClassVar[Format] = Format.torch
    summary: ClassVar[str] = "train a built-in student (default TinyGaze, sequential) from this model's gaze on synthetic eyes"

    student: str = Field("tinygaze", description="built-in architecture of the student (per-frame; sequential for the "
                                                  "loihi targets); it outputs in the model's convention and takes "
                                                  "every input the model takes")
    student_config: dict = Field(default_factory=dict, description="constructor arguments; input size and channels "
                                                                   "come from the model card")
    steps: int = Field(1500, ge=1, description="training steps (one-cycle learning rate)")
    batch: int = Field(128, ge=1)
    lr: float = Field(3e-3, gt=0)
    teacher_weight: float = Field(0.7, ge=0, le=1, description="share of the loss against the teacher (the rest: labels)")

    trains: ClassVar[str] = "trains the student"

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        import torch

        card = ctx.card
        if card.image_input.layout != "NCHW":
            raise BadInputError(f"distill trains per-frame students on single eye images, not {card.image_input.layout} "
                                "sequences; fix: distil a per-frame model (or drop distill from the recipe)")
        spec = builtin(self.student)  # a one-line error for an unknown name
        if spec.temporal:
            raise BadInputError(f"distill: the student {self.student} is a temporal model; fix: use a per-frame student "
                                "such as tinygaze")
        teacher, _ = load_module(src.path, trusted_arch=card.arch)
        # the student fits the model's interface: its output convention and every input (flat ones such as head pose
        # feed its head; further image crops are taken but not used: the student learns from the eye image)
        extra_inputs = [0 if s.takes_pixels else math.prod(s.shape[1:]) for s in card.inputs[1:]]
        config = {**spec.config, **self.student_config, "input_size": list(card.image_size),
                  "in_channels": card.image_input.shape[1],
                  **({"outputs": 2} if card.output.convention == "pitchyaw_rad" else {}),
                  **({"extra_inputs": extra_inputs} if extra_inputs else {})}
        torch.manual_seed(ctx.seed)
        student = build_arch(self.student, config)
        fine_tune(student, card, self.steps, self.batch, self.lr, ctx.seed, label=f"distilling into {self.student}",
                  teacher=teacher, teacher_weight=self.teacher_weight, one_cycle=True, device=self.training_device())
        save_module(student, out_dir / "module", self.student, config, [])
        params = sum(p.numel() for p in student.parameters())
        notes = [f"distilled into {self.student} ({params:,} parameters) over {self.steps} steps of {self.batch} synthetic eyes "
                 f"(loss {self.teacher_weight:g} teacher, {1 - self.teacher_weight:g} labels)"]
        unused = [s.name for s, size in zip(card.inputs[1:], extra_inputs) if not size]
        if unused:
            notes.append(f"the student takes but does not use {', '.join(unused)}: it sees the eye image "
                         f"{card.image_input.name!r} and flat inputs only")
        return Artifact.create(out_dir / "module", Format.torch, src, notes=notes, teacher=card.arch,
                               student=self.student)
