"""ptq: post-training INT8 with a backend-independent plan, mixed precision by measured sensitivity.

1. One calibration run collects every tensor's range and histograms; the chosen observer turns them
   into activation ranges. Weights: symmetric per output channel (7-bit on ISA profiles whose u8s8
   kernels can saturate).
2. Every Conv/Gemm/MatMul goes INT8 except layers matched by `keep_float` (module-name patterns).
3. Sensitivity: each layer quantized alone, its effect on angular error measured in onnxruntime on the
   calibration set (never the evaluation set). While the whole model misses `target_error_increase_deg`,
   the most sensitive INT8 layer goes back to float, as long as the INT8 share of MACs stays at or above
   `min_int8_mac_fraction`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from edgekit.artifact import Artifact, Format
from edgekit.backends.onnx.qdq import apply_plan, quantizable_layers, weight_error
from edgekit.backends.onnx.runner import OnnxRunner
from edgekit.data.metrics import angular_error_deg
from edgekit.errors import BadInputError
from edgekit.evalset import model_inputs, run_all, to_vectors
from edgekit.passes.int8_options import Int8Options
from edgekit.quant.calibration import collect
from edgekit.quant.observers import observe
from edgekit.quant.plan import ISA_PROFILES, QuantPlan, keep_float, missed_targets, return_sensitive_to_float, tensor_key


class CalibEval:
    """Scores candidate QDQ models in onnxruntime against the FP32 model on calibration inputs."""

    def __init__(self, fp32: Path, inputs, card, n: int):
        self.inputs, self.card, self._angle = inputs.take(n), card, angular_error_deg
        self._vec = lambda out: to_vectors(out, card).reshape(-1, 3)
        self._run_all = run_all
        self.truth = self.inputs.truth.reshape(-1, 3)
        self.ref = self._vec(run_all(OnnxRunner(fp32).run, self.inputs))
        self.ref_error = float(angular_error_deg(self.ref, self.truth).mean())

    def score(self, path: Path) -> tuple[float, float, float]:
        """(mean error increase over FP32, p95 and largest difference from FP32), degrees."""
        out = self._vec(self._run_all(OnnxRunner(path).run, self.inputs))
        increase = float(self._angle(out, self.truth).mean()) - self.ref_error
        diff = self._angle(out, self.ref)
        return increase, float(np.percentile(diff, 95)), float(diff.max())



class PTQ(Int8Options):
    name: ClassVar[str] = "ptq"
    version: ClassVar[int] = 1
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.onnx})
    produces: ClassVar[Format] = Format.onnx
    summary: ClassVar[str] = "INT8 post-training quantization (per-channel weights, calibrated activations, mixed precision)"

    isa_profile: Literal["portable", "x86-avx2", "x86-vnni", "arm64"] = Field(
        "portable", description="deployment ISA class; portable is safe on every x86 and ARM CPU")

    def host_dependence(self) -> str | None:
        return "activation ranges and mixed-precision scores come from float32 calibration runs in onnxruntime, whose kernels depend on the CPU"

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        if ctx.calib is None:
            raise BadInputError("ptq needs a calibration set; fix: declare `calibration:` in the recipe or pass --calib-set")
        if src.meta.precision not in (None, "fp32"):
            raise BadInputError(f"ptq needs an FP32 ONNX model, got {src.meta.precision}; fix: put ptq before onnx_fp16")
        inputs = model_inputs(ctx.card, ctx.calib)
        ctx.log(f"ptq: calibrating on {len(inputs)} samples ({self.observer})")
        stats = collect(src.path, inputs.arrays)
        ranges = {}
        import onnx

        graph = onnx.load(str(src.path)).graph
        producers = {out: tensor_key(node.name, i) for node in graph.node for i, out in enumerate(node.output)}
        for tensor, s in stats.items():
            key = producers.get(tensor, f"input:{tensor}")
            ranges[key] = [float(v) for v in observe(s, self.observer, self.percentile)]
        bits = ISA_PROFILES[self.isa_profile]["weight_bits"]
        layers = [lp.model_copy(update={"weight_error": weight_error(src.path, lp, bits)}) for lp in quantizable_layers(src.path)]
        plan = QuantPlan(weights={"dtype": "int8", "bits": bits, "scheme": "symmetric", "granularity": "per_output_channel"},
                         activations={"dtype": "uint8", "scheme": "asymmetric", "granularity": "per_tensor",
                                      "observer": self.observer, **({"percentile": self.percentile} if self.observer == "percentile" else {})},
                         isa_profile=self.isa_profile, layers=layers, ranges=ranges,
                         calibration={"source": ctx.calib.meta.get("source"), "n": len(inputs), "digest": ctx.calib.digest()})
        plan = keep_float(plan, self.keep_float)
        plan = self._mixed_precision(plan, src.path, inputs, ctx, out_dir)
        final = apply_plan(src.path, plan, out_dir / "model.onnx")
        meta = src.meta.carried("precision")
        notes = [f"ptq: {plan.int8_fraction('macs'):.1%} of MACs and {plan.int8_fraction('weights'):.1%} of weights in INT8 "
                 f"({bits}-bit weights, profile {self.isa_profile}); observer {self.observer}"] + plan.decisions
        (out_dir / "plan.json").write_text(plan.model_dump_json(indent=2))
        return Artifact.create(final, Format.onnx, src, **meta, precision="int8", quant_plan=plan,
                               notes=notes)

    def _mixed_precision(self, plan, fp32: Path, inputs, ctx, out_dir: Path):
        scratch = out_dir / "candidates"
        scratch.mkdir(parents=True, exist_ok=True)
        judge = CalibEval(fp32, inputs, ctx.card, self.sensitivity_samples)
        # per-layer sensitivity: each layer alone in INT8
        names = [lp.name for lp in plan.layers]
        sens = {}
        for lp in plan.layers:
            alone = plan.with_float(set(names) - {lp.name}, "scratch")
            sens[lp.name] = judge.score(apply_plan(fp32, alone, scratch / "alone.onnx"))[0]

        def score(candidate):
            increase, p95, largest = judge.score(apply_plan(fp32, candidate, scratch / "full.onnx"))
            missed = missed_targets(p95, largest, self.target_p95_diff_deg, self.target_max_diff_deg)
            return increase, f", p95 difference {p95:.3f} deg, largest {largest:.3f} deg", missed

        plan = return_sensitive_to_float(plan, sens, score, target=self.target_error_increase_deg,
                                         min_fraction=self.min_int8_mac_fraction, enabled=self.mixed_precision,
                                         label="all quantizable layers in INT8",
                                         where=f"on {len(judge.inputs)} calibration samples")
        shutil.rmtree(scratch, ignore_errors=True)
        return plan
