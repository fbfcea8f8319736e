"""finetune_snn: surrogate-gradient fine-tuning of the converted CUBA network in Lava's exact timing (edgekit/snn/finetune.py).

Between to_snn (reset: zero, delay: true) and to_netx. It trains the SNN's float weights through the network as Lava
runs it (8-bit weights by straight-through rounding, one-step synaptic delays, reset to zero, the readout window),
on synthetic training eyes (the training seed: no calibration or evaluation image), with the same cosine loss as
every other fine-tuning pass, against the ANN's gaze (to_snn keeps it with keep_ann) and the labels. to_netx then rounds the trained weights onto the grid they were trained on, and the
Lava check still compares spike for spike. The error before and after is measured on calibration images, in the
same Lava timing; if training made it worse the converted weights are kept (and a note says so).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from edgekit.artifact import Artifact, Format
from edgekit.errors import BadInputError
from edgekit.evalset import model_inputs
from edgekit.finetune import fine_tune
from edgekit.passes.base import TrainingPass
from edgekit.progress import step
from edgekit.snn.net import ANN, SpikingNet
from edgekit.snn.nir_export import write_nir
from edgekit.torch_module import load_module


class FinetuneSNN(TrainingPass):
    name: ClassVar[str] = "finetune_snn"
    version: ClassVar[int] = 1
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.snn})
    produces: ClassVar[Format] = Format.snn
    summary: ClassVar[str] = ("fine-tune the converted CUBA network with surrogate gradients (snntorch) in Lava's exact "
                              "timing: 8-bit weights by STE, one-step delays, reset to zero")

    steps: int = Field(300, ge=1, description="fine-tuning steps on synthetic training eyes")
    batch: int = Field(32, ge=1)
    lr: float = Field(2e-4, gt=0, description="peak AdamW learning rate (one cycle) on the threshold-normalised weights")
    teacher_weight: float = Field(1.0, ge=0, le=1, description="share of the loss against the ANN's gaze (the rest: the "
                                                               "labels); above 0 it needs to_snn keep_ann: true")
    slope: float = Field(10.0, gt=0, description="slope of snntorch's fast-sigmoid surrogate gradient")
    check_images: int = Field(256, ge=8, description="calibration images scored before and after (in Lava's timing)")

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        import torch

        from edgekit.snn.finetune import LavaTimed, readout_error_deg

        if ctx.calib is None:
            raise BadInputError("finetune_snn scores the network on the calibration set; fix: declare `calibration:`")
        device = self.training_device()  # before the scoring
        net = SpikingNet.load(src.path)
        module = LavaTimed(net, slope=self.slope)
        teacher = self._teacher(Path(src.path), ctx.card)
        inputs = model_inputs(ctx.card, ctx.calib).take(self.check_images)
        x, truth = torch.from_numpy(next(iter(inputs.arrays.values()))), inputs.truth
        with step(f"scoring the converted network on {len(x)} calibration images in Lava's timing"):
            before = readout_error_deg(module, x, truth, net.output_convention)
        fine_tune(module, ctx.card, self.steps, self.batch, self.lr, label="finetune_snn (surrogate gradients, Lava timing)",
                  teacher=teacher, teacher_weight=self.teacher_weight, one_cycle=True, device=device)
        with step(f"scoring the fine-tuned network on {len(x)} calibration images"):
            after = readout_error_deg(module, x, truth, net.output_convention)
        kept = after < before
        if kept:
            net = module.write_back()
        net.meta["finetune_snn"] = {
            "method": "surrogate gradients (snntorch fast sigmoid) through Lava's timing: 8-bit weights and 13-bit biases by "
                      "straight-through rounding, one-step synaptic delays, reset to zero, the readout window",
            "steps": self.steps, "batch": self.batch, "lr": self.lr, "schedule": "one cycle", "slope": self.slope,
            "teacher_weight": self.teacher_weight,
            "calibration_error_before_deg": before, "calibration_error_after_deg": after, "check_images": len(x),
            "applied": kept}
        folder = net.save(out_dir / "snn")
        write_nir(net, folder / "model.nir")
        shutil.copytree(Path(src.path) / "baseline", folder / "baseline")  # the naive conversion reports compare against
        note = (f"fine-tuned {self.steps} steps of {self.batch} in Lava's timing: calibration error {before:.3f} -> {after:.3f} deg"
                if kept else f"fine-tuning did not lower the calibration error ({before:.3f} -> {after:.3f} deg): the converted "
                             "weights are kept")
        return Artifact.create(folder, Format.snn, src, notes=[note], timesteps=net.timesteps, reset=net.reset)

    def _teacher(self, folder: Path, card):
        """The ANN to_snn converted (kept with keep_ann), when the loss uses it."""
        if not self.teacher_weight:
            return None
        if not (folder / ANN).is_dir():
            raise BadInputError(f"finetune_snn distils from the ANN (teacher_weight {self.teacher_weight:g}), but the snn "
                                "artifact does not keep it; fix: set to_snn keep_ann: true, or finetune_snn teacher_weight: 0 "
                                "(labels only)")
        return load_module(folder / ANN, trusted_arch=card.arch)[0].eval()
