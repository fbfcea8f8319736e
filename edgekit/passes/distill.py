"""distill: train a student (a built-in architecture; TinyGaze, sequential, by default) to reproduce the model's gaze.

For targets whose runtime cannot load the model's structure: netx runs conv/flatten/dense chains only, so a residual
network with max-pooling (GazeResNet18) reaches Loihi as a TinyGaze-shaped student taught by it. The student takes the
teacher's input size, channels and preprocessing (the model card is unchanged) and learns from the teacher's outputs on
training images, mixed with the labels; verification then measures it against the teacher like any other artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from edgekit.artifact import Artifact, Format
from edgekit.errors import BadInputError
from edgekit.finetune import fine_tune
from edgekit.models.registry import builtin
from edgekit.passes.base import Pass
from edgekit.torch_module import build_arch, load_module, save_module


class Distill(Pass):
    name: ClassVar[str] = "distill"
    version: ClassVar[int] = 1
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.torch})
    produces: ClassVar[Format] = Format.torch
    summary: ClassVar[str] = "train a built-in student (default TinyGaze, sequential) from this model's gaze on synthetic eyes"

    student: str = Field("tinygaze", description="built-in architecture of the student (single-image, vector output; "
                                                  "sequential for the loihi targets)")
    student_config: dict = Field(default_factory=dict, description="constructor arguments; input size and channels "
                                                                   "come from the model card")
    steps: int = Field(1500, ge=1, description="training steps (one-cycle learning rate)")
    batch: int = Field(128, ge=1)
    lr: float = Field(3e-3, gt=0)
    teacher_weight: float = Field(0.7, ge=0, le=1, description="share of the loss against the teacher (the rest: labels)")

    def host_dependence(self) -> str | None:
        return "trains the student in float32 with torch kernels chosen for the CPU"

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        import torch

        card = ctx.card
        if card.output.convention != "unit_vector" or card.image_input.layout != "NCHW" or len(card.inputs) != 1:
            raise BadInputError("distill trains single-image students that output a 3-D gaze vector; fix: distil a "
                                "single-image, vector-output model (or drop distill from the recipe)")
        spec = builtin(self.student)  # a one-line error for an unknown name
        if spec.temporal:
            raise BadInputError(f"distill: the student {self.student} is a temporal model; fix: use a per-frame student "
                                "such as tinygaze")
        teacher, _ = load_module(src.path, trusted_arch=card.arch)
        config = {**spec.config, **self.student_config, "input_size": list(card.image_size),
                  "in_channels": card.image_input.shape[1]}
        torch.manual_seed(ctx.seed)
        student = build_arch(self.student, config)
        ctx.log(f"distill: training {self.student} for {self.steps} steps from the model's gaze on synthetic training eyes")
        fine_tune(student, card, self.steps, self.batch, self.lr, ctx.seed, ctx.progress, f"distilling into {self.student}",
                  teacher=teacher, teacher_weight=self.teacher_weight, one_cycle=True)
        save_module(student, out_dir / "module", self.student, config, [])
        params = sum(p.numel() for p in student.parameters())
        notes = [f"distilled into {self.student} ({params:,} parameters) over {self.steps} steps of {self.batch} synthetic eyes "
                 f"(loss {self.teacher_weight:g} teacher, {1 - self.teacher_weight:g} labels)"]
        return Artifact.create(out_dir / "module", Format.torch, src, notes=notes, teacher=card.arch,
                               student=self.student)
