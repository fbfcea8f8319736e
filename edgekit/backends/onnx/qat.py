"""qat: quantization-aware fine-tuning, run only when ONNX post-training quantization misses its target (it lives with
the ONNX backend because it scores what export_onnx | ptq would give).

The pass first measures what PTQ would give (export, calibrate, quantize, score in onnxruntime on the
calibration set). If the mean error increase is within `target_error_increase_deg` the model passes
through unchanged. Otherwise it fine-tunes the (BatchNorm-folded) PyTorch module with fake-quantized
weights and inputs for `steps` steps on synthetic training eyes (a seed no calibration or evaluation set
uses), and hands the adapted float module on to export_onnx and ptq, which quantize it for real.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from edgekit.artifact import Artifact, ArtifactMeta, Format
from edgekit.backends.onnx.export import ExportOnnx
from edgekit.backends.onnx.ptq import PTQ, CalibEval
from edgekit.errors import BadInputError
from edgekit.evalset import model_inputs
from edgekit.finetune import fine_tune
from edgekit.passes.base import Pass
from edgekit.quant.fake_quant import fake_quantized, input_ranges
from edgekit.quant.plan import ISA_PROFILES, missed_targets
from edgekit.torch_module import load_module, save_module


class QAT(Pass):
    name: ClassVar[str] = "qat"
    version: ClassVar[int] = 1
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
    always: bool = Field(False, description="fine-tune even when PTQ meets the target")

    def host_dependence(self) -> str | None:
        return "fine-tunes in float32 with torch kernels chosen for the CPU"

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        if ctx.calib is None:
            raise BadInputError("qat needs a calibration set; fix: declare `calibration:` in the recipe or pass --calib-set")
        ptq = PTQ(observer=self.observer, isa_profile=self.isa_profile, mixed_precision=False)
        before, missed = self._ptq_increase(src, ctx, out_dir / "check-before", ptq)
        if before <= self.target_error_increase_deg and not missed and not self.always:
            shutil.copytree(src.path, out_dir / "module")
            return Artifact.create(out_dir / "module", Format.torch, src,
                                   notes=[f"qat: not needed, PTQ error increase {before:+.3f} deg <= {self.target_error_increase_deg}"
                                          + (" and its differences from FP32 within the targets"
                                             if self.target_p95_diff_deg or self.target_max_diff_deg else "")])
        module, spec = load_module(src.path, trusted_arch=ctx.card.arch)
        tuned = self._fine_tune(copy.deepcopy(module), ctx)
        save_module(tuned, out_dir / "module", spec["arch"], spec["arch_config"], spec.get("bn_folds", []))
        result = Artifact.create(out_dir / "module", Format.torch, src)
        after, still = self._ptq_increase(result, ctx, out_dir / "check-after", ptq)
        why = f" (PTQ missed: {'; '.join(missed)})" if missed else ""
        note = (f"qat: {self.steps} steps (batch {self.batch}, lr {self.lr}) with fake quantization{why}; PTQ error "
                f"increase on the calibration set {before:+.3f} -> {after:+.3f} deg"
                + (f"; still missed: {'; '.join(still)}" if still else ""))
        return result.model_copy(update={"meta": ArtifactMeta(notes=[note], qat_before_deg=before, qat_after_deg=after)})

    def _ptq_increase(self, art: Artifact, ctx, scratch: Path, ptq) -> tuple[float, list[str]]:
        """PTQ's mean error increase on the calibration set, and the difference targets it misses."""
        scratch.mkdir(parents=True, exist_ok=True)
        fp32 = ExportOnnx().run(art, ctx, scratch / "fp32")
        int8 = ptq.run(fp32, ctx, scratch / "int8")
        judge = CalibEval(fp32.path, model_inputs(ctx.card, ctx.calib), ctx.card, ptq.sensitivity_samples)
        increase, p95, largest = judge.score(int8.path)
        shutil.rmtree(scratch, ignore_errors=True)
        return increase, missed_targets(p95, largest, self.target_p95_diff_deg, self.target_max_diff_deg)

    def _fine_tune(self, module, ctx):
        import functools

        import torch

        calib = torch.from_numpy(model_inputs(ctx.card, ctx.calib).arrays[ctx.card.image_input.name])
        module.eval()
        ranges = input_ranges(module, [(calib[i:i + 64],) for i in range(0, len(calib), 64)], self.observer)
        bits = ISA_PROFILES[self.isa_profile]["weight_bits"]
        return fine_tune(module, ctx.card, self.steps, self.batch, self.lr, ctx.seed, ctx.progress, "qat fine-tuning",
                         context=functools.partial(fake_quantized, ranges=ranges, weight_bits=bits))
