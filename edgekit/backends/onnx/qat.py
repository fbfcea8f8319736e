"""qat: quantization-aware fine-tuning, run only when ONNX post-training quantization misses its target (it lives with
the ONNX backend because it scores what export_onnx | ptq would give).

The pass first measures what PTQ would give, as the recipe's ptq runs it: export, calibrate, quantize with mixed
precision, score in onnxruntime on every calibration sample against the same (margined) targets. If the mean error
increase and the p95/largest differences from FP32 are within their targets the model passes through unchanged.
Otherwise it fine-tunes the (BatchNorm-folded) PyTorch module with fake-quantized weights and inputs for `steps`
steps on synthetic training eyes (a seed no calibration or evaluation set uses):

- starting from PTQ's mixed-precision plan: the layers it keeps in float are not fake-quantized;
- distilled from the FP32 model (its gaze is the target, not the label): the accuracy gates measure the artifact's
  difference from that model, and fine-tuning towards the labels moves the model away from it;
- kept only when it helps: PTQ of the tuned module is scored the same way, and when it is not closer to its targets
  (the largest ratio of error increase, p95 and largest difference to their targets) the original module goes on.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import ClassVar, Literal, NamedTuple

from pydantic import Field

from edgekit.artifact import Artifact, ArtifactMeta, Format
from edgekit.backends.onnx.export import ExportOnnx
from edgekit.backends.onnx.ptq import PTQ, CalibEval
from edgekit.errors import BadInputError
from edgekit.evalset import model_inputs
from edgekit.finetune import fine_tune
from edgekit.passes.base import TrainingPass
from edgekit.progress import step
from edgekit.quant.fake_quant import batched, fake_quantized, input_ranges, output_ranges
from edgekit.quant.plan import ISA_PROFILES, missed_targets
from edgekit.torch_module import load_module, save_module


class QAT(TrainingPass):
    name: ClassVar[str] = "qat"
    version: ClassVar[int] = 2  # 2: the PTQ it scores leaves a graph output float
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.torch})
    produces: ClassVar[Format] = Format.torch
    summary: ClassVar[str] = "quantization-aware fine-tuning with fake quantization, only when PTQ misses its target"

    steps: int = Field(300, ge=1, description="optimizer steps")
    batch: int = Field(64, ge=1)
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate (fine-tuning: small)")
    observer: Literal["minmax", "percentile", "entropy", "mse"] = "percentile"
    isa_profile: Literal["portable", "x86-avx2", "x86-vnni", "arm64"] = "portable"
    target_error_increase_deg: float = Field(0.3, gt=0, description="PTQ within this needs no QAT")
    target_p95_diff_deg: float | None = Field(None, gt=0, description="and PTQ's p95 difference from FP32 within this "
                                              "(calibration set); unset: the recipe's gates.p95_diff_deg")
    target_max_diff_deg: float | None = Field(None, gt=0, description="and PTQ's largest difference from FP32 within "
                                              "this; unset: the recipe's gates.max_diff_deg")
    min_int8_mac_fraction: float = Field(0.9, ge=0, le=1, description="PTQ's mixed precision keeps at least this INT8 MAC share")
    always: bool = Field(False, description="fine-tune even when PTQ meets the target")

    def _ptq(self) -> PTQ:
        return PTQ(observer=self.observer, isa_profile=self.isa_profile, mixed_precision=True,
                   target_error_increase_deg=self.target_error_increase_deg, target_p95_diff_deg=self.target_p95_diff_deg,
                   target_max_diff_deg=self.target_max_diff_deg, min_int8_mac_fraction=self.min_int8_mac_fraction)

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        if ctx.calib is None:
            raise BadInputError("qat needs a calibration set; fix: declare `calibration:` in the recipe or pass --calib-set")
        device = self.training_device()  # a GPU asked for and missing: said now, not after the PTQ check
        ptq = self._ptq()
        with step("qat: PTQ of the model before fine-tuning (is QAT needed?)"):
            before = self._ptq_check(src, ctx, out_dir / "check-before", ptq)
        if not before.missed and not self.always:
            shutil.copytree(src.path, out_dir / "module")
            return Artifact.create(out_dir / "module", Format.torch, src,
                                   notes=[f"qat: not needed, PTQ error increase {before.increase:+.3f} deg <= {self.target_error_increase_deg}"
                                          + (" and its differences from FP32 within the targets"
                                             if self.target_p95_diff_deg or self.target_max_diff_deg else "")])
        module, spec = load_module(src.path, trusted_arch=ctx.card.arch)
        float_layers = {lp.name for lp in before.plan.float_layers} if before.plan else set()
        tuned = self._fine_tune(copy.deepcopy(module), ctx, device, teacher=module, float_layers=float_layers)
        save_module(tuned, out_dir / "tuned", spec["arch"], spec["arch_config"], spec.get("bn_folds", []))
        tuned_art = Artifact.create(out_dir / "tuned", Format.torch, src)
        with step("qat: PTQ of the fine-tuned model"):
            after = self._ptq_check(tuned_art, ctx, out_dir / "check-after", ptq)
        why = f" (PTQ missed: {'; '.join(before.missed)})" if before.missed else ""
        kept = f"; kept in float during fine-tuning as in PTQ's plan: {', '.join(sorted(float_layers))}" if float_layers else ""
        what = (f"qat: {self.steps} steps (batch {self.batch}, lr {self.lr}) with fake quantization, distilled from the FP32 "
                f"model{why}{kept}; PTQ on the calibration set: {before.summary()} -> {after.summary()}")
        if after.distance < before.distance or self.always:
            shutil.move(str(out_dir / "tuned"), out_dir / "module")
            note = what + (f"; still missed: {'; '.join(after.missed)}" if after.missed else "")
            result = Artifact.create(out_dir / "module", Format.torch, src)
        else:
            shutil.rmtree(out_dir / "tuned")
            shutil.copytree(src.path, out_dir / "module")
            note = (what + f"; rejected: no closer to the targets ({after.distance:.2f} vs {before.distance:.2f} of the "
                    "worst target), the module before fine-tuning goes on")
            result = Artifact.create(out_dir / "module", Format.torch, src)
        return result.model_copy(update={"meta": ArtifactMeta(notes=[note], qat_before_deg=before.increase,
                                                              qat_after_deg=after.increase)})

    def _ptq_check(self, art: Artifact, ctx, scratch: Path, ptq) -> _Check:
        """PTQ with mixed precision as the recipe runs it, scored on every calibration sample against its aims."""
        scratch.mkdir(parents=True, exist_ok=True)
        fp32 = ExportOnnx().run(art, ctx, scratch / "fp32")
        int8 = ptq.run(fp32, ctx, scratch / "int8")
        inputs = model_inputs(ctx.card, ctx.calib)
        judge = CalibEval(fp32.path, inputs, ctx.card, len(inputs))
        increase, p95, largest = judge.score(int8.path)
        shutil.rmtree(scratch, ignore_errors=True)
        aim = lambda t: None if t is None else round(t * ptq.difference_margin, 6)  # noqa: E731
        p95_aim, max_aim = aim(self.target_p95_diff_deg), aim(self.target_max_diff_deg)
        missed = missed_targets(p95, largest, p95_aim, max_aim) + (
            [f"error increase {increase:+.3f} > {self.target_error_increase_deg} deg"] if increase > self.target_error_increase_deg else [])
        ratios = [v / t for v, t in ((p95, p95_aim), (largest, max_aim)) if t]
        return _Check(increase, p95, largest, missed, max([increase / self.target_error_increase_deg, *ratios]),
                      int8.meta.quant_plan)

    def _fine_tune(self, module, ctx, device: str, teacher=None, float_layers: set[str] = frozenset()):
        import functools

        import torch

        arrays = model_inputs(ctx.card, ctx.calib).arrays
        calib = [torch.from_numpy(arrays[spec.name]) for spec in ctx.card.inputs]  # every input the model declares
        module.eval()
        ranges = input_ranges(module, batched(calib), self.observer)
        ranges = {k: v for k, v in ranges.items() if k not in float_layers}
        # an INT8 conv's output is quantized too (onnxruntime's integer Conv writes uint8): simulated as well
        outputs = output_ranges(module, batched(calib), self.observer)
        bits = ISA_PROFILES[self.isa_profile]["weight_bits"]
        return fine_tune(module, ctx.card, self.steps, self.batch, self.lr, ctx.seed, label="qat fine-tuning",
                         context=functools.partial(fake_quantized, ranges=ranges, weight_bits=bits, outputs=outputs),
                         teacher=teacher, teacher_weight=1.0, device=device)


class _Check(NamedTuple):
    increase: float
    p95: float
    largest: float
    missed: list[str]
    distance: float  # the largest ratio of a measure to its target: below 1, every target holds
    plan: object

    def summary(self) -> str:
        return f"error increase {self.increase:+.3f} deg, p95 difference {self.p95:.3f}, largest {self.largest:.3f}"
