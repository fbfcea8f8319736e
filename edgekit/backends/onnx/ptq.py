"""ptq: post-training INT8 with a backend-independent plan, mixed precision by measured sensitivity.

1. One calibration run collects every tensor's range and histograms; the chosen observer turns them
   into activation ranges. Weights: symmetric per output channel (7-bit on ISA profiles whose u8s8
   kernels can saturate). With `weight_rounding: gptq` on, the same run also sums each Conv/Gemm/MatMul's input
   correlations, from which weight_rounding.py rounds its weights (GPTQ); with `bias_correction` on, it sums the inputs
   of every Conv/Gemm with a bias, which bias_correction.py needs to remove the mean shift its rounded weights cause.
2. Every Conv/Gemm/MatMul goes INT8 except layers matched by `keep_float` (module-name patterns); MatMuls of two
   activations (attention) are layers too. Ops onnxruntime has no integer kernel for (BatchNorm, LayerNorm) stay
   float, and a Gemm/MatMul read only by float ops keeps a float output (qdq.py).
3. Everything is judged in onnxruntime on the calibration set (never the evaluation set), against every accuracy
   target: the mean error increase, and the p95 and largest difference from FP32 aimed at `difference_margin` of
   their targets (the evaluation set is another sample: its largest difference is larger about half the time).
   Whole plans are judged on every calibration sample.
4. The observer is chosen by the output (`observer_search`): every observer's all-INT8 plan is judged on the
   calibration samples, and the closest to FP32 among those holding every target kept (quant.plan.choose_observer);
   with `weight_rounding: gptq` on, that plan with its weights rounded by GPTQ is judged against it by the same rule,
   then with `bias_correction` on, the kept plan with its biases corrected. Both edits fit the even-numbered
   calibration samples and are judged on the odd-numbered ones: judged on the samples it fitted, a fit looks better
   than it is.
   Then, while the model misses a target, the most sensitive INT8 layer (its mean difference from FP32 alone in INT8
   on `sensitivity_samples` samples) goes back to float, skipping layers whose MACs would take the INT8 share below
   `min_int8_mac_fraction`; the plan's decisions say which layer went, which target it missed, and why it stopped.
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from edgekit.artifact import Artifact, Format
from edgekit.backends.onnx.bias_correction import BiasCorrection, correctable_inputs
from edgekit.backends.onnx.weight_rounding import GPTQRounding, InputCorrelations, roundable_layers
from edgekit.backends.onnx.qdq import QDQBuilder, quantizable_layers, weight_error
from edgekit.backends.onnx.runner import OnnxRunner
from edgekit.data.metrics import angular_error_deg
from edgekit.errors import BadInputError
from edgekit.evalset import model_inputs, run_all, to_vectors
from edgekit.passes.int8_options import Int8Options
from edgekit.progress import track
from edgekit.quant.calibration import calibration_run
from edgekit.quant.observers import observe
from edgekit.quant.plan import (ISA_PROFILES, ObserverTrial, QuantPlan, choose_observer, keep_float, missed_targets,
                                observer_decision, observers_to_try, return_sensitive_to_float, target_distance, tensor_key,
                                with_observer)



class CalibEval:
    """Scores candidate QDQ models in onnxruntime against the FP32 model on calibration inputs."""

    def __init__(self, fp32: Path, inputs, card, n: int, ref: np.ndarray | None = None):
        self.fp32, self.inputs, self.card, self._angle = fp32, inputs.take(n), card, angular_error_deg
        self._vec = lambda out: to_vectors(out, card).reshape(-1, 3)
        self._run_all = run_all
        self.truth = self.inputs.truth.reshape(-1, 3)
        self.ref = self._vec(run_all(OnnxRunner(fp32).run, self.inputs)) if ref is None else ref
        self.ref_error = float(angular_error_deg(self.ref, self.truth).mean())

    def first(self, n: int) -> CalibEval:
        """The same judge on the first n samples, reusing the FP32 outputs (per-sample: the batch does not matter)."""
        return self if n >= len(self.inputs) else self.subset(np.arange(n))

    def subset(self, indices: np.ndarray) -> CalibEval:
        """The same judge on the samples at `indices`, reusing the FP32 outputs. A temporal model gives several gaze
        vectors per sample (one per frame read out): those samples' worth of them."""
        per_sample = len(self.ref) // len(self.inputs)
        rows = (np.asarray(indices)[:, None] * per_sample + np.arange(per_sample)).reshape(-1)
        picked = self.inputs.pick(np.asarray(indices))
        return CalibEval(self.fp32, picked, self.card, len(picked), self.ref[rows])

    def differences(self, path: Path) -> tuple[float, np.ndarray]:
        """(mean error increase over FP32, every sample's angular difference from FP32), degrees."""
        out = self._vec(self._run_all(OnnxRunner(path).run, self.inputs))
        return float(self._angle(out, self.truth).mean()) - self.ref_error, self._angle(out, self.ref)

    def score(self, path: Path) -> tuple[float, float, float]:
        """(mean error increase over FP32, p95 and largest difference from FP32), degrees."""
        increase, diff = self.differences(path)
        return increase, float(np.percentile(diff, 95)), float(diff.max())



def fit_and_held_out(samples: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(the calibration samples the weight edits fit: GPTQ's input correlations, bias correction's mean inputs; those
    they are judged on): the even- and odd-numbered ones, so that a calibration set in any order (by subject, by
    session) splits evenly; every sample for both when there are fewer than 2."""
    every = np.arange(samples)
    return (every, None) if samples < 2 else (every[0::2], every[1::2])


@dataclass
class WeightEdits:
    """The edits of a QDQ model's INT8 constants that ptq judges, each applied when the plan keeps it (its `weights`
    say so): GPTQ's rounding first, then bias correction, which corrects the weights as rounded."""

    rounding: GPTQRounding | None = None
    correction: BiasCorrection | None = None

    def _available(self) -> list[tuple]:
        """(edit, the plan's weights key, its value when on, a label) of each edit available, in the order applied."""
        return [row for row in ((self.rounding, "rounding", "gptq", "GPTQ weight rounding"),
                                (self.correction, "bias_correction", True, "bias correction")) if row[0] is not None]

    def switches(self) -> list[tuple[str, object, str]]:
        return [(key, on, label) for _, key, on, label in self._available()]

    def for_plan(self, plan: QuantPlan) -> list:
        return [edit for edit, key, on, _ in self._available() if plan.weights.get(key) == on]


def switch_decision(label: str, kept: bool, trials: list[ObserverTrial], where: str) -> str:
    """The decision line of one edit's choice (quant.plan.choose_observer's rule over the plans with and without)."""
    tried = "; ".join(f"{t.observer}: mean difference {t.mean_diff:.3f} deg, largest {t.largest:.3f} deg" for t in trials)
    why = ("the closer to FP32 (mean and largest difference) of the plans that hold every target"
           if any(t.distance <= 1 for t in trials) else "the closer to the targets, which neither plan holds")
    return f"{label} {'kept' if kept else 'not kept'}: {why}, all layers in INT8 {where} ({tried})"


class PTQ(Int8Options):
    name: ClassVar[str] = "ptq"
    # 2: bias correction; 3: GPTQ weight rounding; 4: the edits judged on held-out samples; 5: a Gemm/MatMul writing a
    # graph output keeps a float output
    version: ClassVar[int] = 5
    consumes: ClassVar[frozenset[Format]] = frozenset({Format.onnx})
    produces: ClassVar[Format] = Format.onnx
    summary: ClassVar[str] = "INT8 post-training quantization (per-channel weights, calibrated activations, mixed precision)"

    isa_profile: Literal["portable", "x86-avx2", "x86-vnni", "arm64"] = Field(
        "portable", description="deployment ISA class; portable is safe on every x86 and ARM CPU")
    bias_correction: bool = Field(False, description="also judge, like the observer, the all-INT8 plan whose Conv/Gemm "
                                  "biases absorb the mean output shift of their rounded weights (half the calibration "
                                  "set's mean inputs; NNCF's fast bias correction), judged on the other half, and keep "
                                  "the closer to FP32. Off by default: on 2,000 unseen images it was kept on 4 of 10 "
                                  "models, lowering their mean difference from FP32, but raised GazeResNet18's largest "
                                  "(0.819 -> 1.001 deg; benchmarks/int8_bias_correction.md)")
    weight_rounding: Literal["nearest", "gptq"] = Field(
        "nearest", description="gptq: also judge, like the observer, the all-INT8 plan whose Conv/Gemm/MatMul weights "
        "are rounded by GPTQ on half the calibration inputs (each rounding error compensated by the weights not yet "
        "rounded; same scales), judged on the other half, and keep the closer to FP32. Off by default: on 2,000 unseen "
        "images it lowered the mean difference from FP32 on 7 of 10 models (GazeResNet18 0.217 -> 0.163 deg) but "
        "raised the largest on 4 (gaze_transformer 1.290 -> 2.303 deg; benchmarks/int8_gptq.md)")
    difference_margin: float = Field(0.8, gt=0, le=1, description="mixed precision aims at this fraction of the p95 "
                                     "and largest difference targets on the calibration samples: the evaluation set is "
                                     "another sample, whose largest difference exceeds the calibration one about half "
                                     "the time")

    def host_dependence(self) -> str | None:
        return "activation ranges and mixed-precision scores come from float32 calibration runs in onnxruntime, whose kernels depend on the CPU"

    def run(self, src: Artifact, ctx, out_dir: Path) -> Artifact:
        if ctx.calib is None:
            raise BadInputError("ptq needs a calibration set; fix: declare `calibration:` in the recipe or pass --calib-set")
        if src.meta.precision not in (None, "fp32"):
            raise BadInputError(f"ptq needs an FP32 ONNX model, got {src.meta.precision}; fix: put ptq before onnx_fp16")
        inputs = model_inputs(ctx.card, ctx.calib)
        import onnx

        model = onnx.load(str(src.path))
        bits = ISA_PROFILES[self.isa_profile]["weight_bits"]
        correctable = correctable_inputs(model) if self.bias_correction else {}
        roundable = roundable_layers(model) if self.weight_rounding == "gptq" else {}
        fit, held_out = fit_and_held_out(len(inputs))
        correlations = InputCorrelations(model, roundable, len(fit)) if roundable else None
        stats, fp32_outputs = calibration_run(src.path, inputs.arrays, mean_of=set(correctable.values()), also_read={
            t: functools.partial(correlations.add, t) for t in correlations.tensors()} if correlations else None, fit=fit)
        means = {node: stats[t].mean for node, t in correctable.items() if t in stats and stats[t].total is not None}
        edits = WeightEdits(rounding=GPTQRounding(correlations, bits) if correlations else None,
                            correction=BiasCorrection(model, means) if means else None)
        graph = model.graph
        producers = {out: tensor_key(node.name, i) for node in graph.node for i, out in enumerate(node.output)}

        def ranges_for(observer: str) -> dict[str, list[float]]:
            return {producers.get(tensor, f"input:{tensor}"): [float(v) for v in observe(s, observer, self.percentile)]
                    for tensor, s in stats.items()}

        ranges = ranges_for(self.observer)
        layers = [lp.model_copy(update={"weight_error": weight_error(model, lp, bits)}) for lp in quantizable_layers(src.path)]
        plan = QuantPlan(weights={"dtype": "int8", "bits": bits, "scheme": "symmetric", "granularity": "per_output_channel",
                                  "rounding": "nearest", "bias_correction": False},
                         activations={"dtype": "uint8", "scheme": "asymmetric", "granularity": "per_tensor",
                                      "observer": self.observer, **({"percentile": self.percentile} if self.observer == "percentile" else {})},
                         isa_profile=self.isa_profile, layers=layers, ranges=ranges,
                         calibration={"source": ctx.calib.meta.get("source"), "n": len(inputs), "digest": ctx.calib.digest()})
        plan = keep_float(plan, self.keep_float)
        with QDQBuilder(src.path) as builder:
            plan, judged = self._mixed_precision(plan, builder, src.path, inputs, fp32_outputs, ctx, out_dir,
                                                 ranges_for, edits, held_out)
            final = judged or builder.build(plan, out_dir / "model.onnx", edits.for_plan(plan))
        meta = src.meta.carried("precision")
        corrected = ((f"; weights rounded by GPTQ on {len(fit)} calibration samples"
                      if plan.weights.get("rounding") == "gptq" else "")
                     + (f"; biases corrected by {len(fit)} calibration samples' mean inputs"
                        if plan.weights.get("bias_correction") else ""))
        notes = [f"ptq: {plan.int8_fraction('macs'):.1%} of MACs and {plan.int8_fraction('weights'):.1%} of weights in INT8 "
                 f"({bits}-bit weights, profile {self.isa_profile}); observer {plan.activations['observer']}{corrected}"]
        notes += plan.decisions
        (out_dir / "plan.json").write_text(plan.model_dump_json(indent=2))
        return Artifact.create(final, Format.onnx, src, **meta, precision="int8", quant_plan=plan,
                               notes=notes)

    def _mixed_precision(self, plan, builder: QDQBuilder, fp32: Path, inputs, fp32_outputs: np.ndarray, ctx,
                         out_dir: Path, ranges_for=None, edits: WeightEdits | None = None,
                         held_out: np.ndarray | None = None):
        edits = edits or WeightEdits()
        scratch = out_dir / "candidates"
        scratch.mkdir(parents=True, exist_ok=True)
        # whole plans are judged on every calibration sample (the evaluation set is never seen), against the FP32
        # outputs the calibration run computed (same model and samples at batch 64, graph optimised less: on GazeResNet18
        # they differ from a fully optimised run's by float rounding, at most 2e-5 of a degree, far below any target)
        judge = CalibEval(fp32, inputs, ctx.card, len(inputs), ref=to_vectors(fp32_outputs, ctx.card).reshape(-1, 3))
        probe = judge.first(self.sensitivity_samples)
        margin = self.difference_margin
        aim = lambda t: None if t is None else round(t * margin, 6)  # noqa: E731
        p95_aim, max_aim = aim(self.target_p95_diff_deg), aim(self.target_max_diff_deg)

        # whole plans already judged, and their QDQ models (built in the builder's thread): the search and the
        # mixed-precision rounds start from the same one, and the chosen plan's model is the artifact
        measured, models = {}, {}
        plan_key = lambda candidate: (candidate.activations.get("observer"), frozenset(candidate.weights.items()),  # noqa: E731
                                      frozenset(lp.name for lp in candidate.layers if lp.int8))

        def build_ahead(candidate) -> None:
            key = plan_key(candidate)
            if key not in models:
                models[key] = builder.build_ahead(candidate, scratch / f"plan{len(models)}.onnx",
                                                  edits.for_plan(candidate))

        def model_of(candidate) -> Path:
            build_ahead(candidate)
            return models[plan_key(candidate)].result()

        def measure(candidate):
            key = plan_key(candidate)
            if key not in measured:
                measured[key] = _measure(model_of(candidate))
            return measured[key]

        def _measure(model: Path, on: CalibEval = judge):
            increase, diff = on.differences(model)
            p95, largest = float(np.percentile(diff, 95)), float(diff.max())
            missed = missed_targets(p95, largest, p95_aim, max_aim)
            distance = target_distance(increase, p95, largest, self.target_error_increase_deg, p95_aim, max_aim)
            return (increase, f", p95 difference {p95:.3f} deg, largest {largest:.3f} deg", missed), distance, float(diff.mean()), largest

        trials = []
        if self.observer_search and ranges_for is not None:
            # the observer is chosen first, by the output: every observer's all-INT8 plan judged on the calibration
            # samples (quant.plan.choose_observer says which wins)
            candidates = observers_to_try(self.observer)
            plans = {observer: plan if observer == self.observer else
                     with_observer(plan, observer, ranges_for(observer), self.percentile) for observer in candidates}
            for candidate in plans.values():  # each builds while the one before is judged
                build_ahead(candidate)
            for observer in track(candidates, description=f"observer choice: all-INT8 plans with {', '.join(candidates)} ranges"):
                candidate = plans[observer]
                (increase, _, _), distance, mean_diff, largest = measure(candidate)
                trials.append(ObserverTrial(observer, candidate, increase, mean_diff, largest, distance))
            chosen, why = choose_observer(trials)
            plan = chosen.plan
        switched = []
        # each edit asked for is judged like the observer, in the order applied (one more whole plan each): GPTQ and
        # bias correction both fit the calibration set, and samples far from it can get further from FP32 (bias
        # correction: temporalgaze's largest difference on the calibration set 2.7 -> 6.1 deg; benchmarks/int8_peers.md;
        # GPTQ fitted on every sample: preact_resnet_gaze's 1.86 against nearest rounding's 2.59 there, but 1.82 against
        # 1.45 at the 99.9th percentile of 10,000 unseen images). So the edits are judged on the samples they did not fit.
        switch_judge = judge if held_out is None else judge.subset(held_out)
        for key, on, label in edits.switches():
            tried = []
            for candidate in (plan, plan.model_copy(update={"weights": {**plan.weights, key: on}})):
                (increase, _, _), distance, mean_diff, largest = _measure(model_of(candidate), switch_judge)
                tried.append(ObserverTrial(f"with {label}" if candidate.weights[key] == on else "without", candidate,
                                           increase, mean_diff, largest, distance))
            kept, _ = choose_observer(tried)
            plan = kept.plan
            switched.append((label, plan.weights[key] == on, tried))
        names = [lp.name for lp in plan.layers]

        def sensitivity() -> dict[str, float]:
            # each layer alone in INT8, its mean angular difference from FP32 on `sensitivity_samples` calibration
            # samples (the mean error increase of one layer is mostly noise: errors against the labels move both ways)
            alone = [plan.with_float(set(names) - {name}, "scratch") for name in names]
            # layer k + 1's model builds while layer k's is judged (two files in turn)
            ahead = lambda k: builder.build_ahead(alone[k], scratch / f"alone{k % 2}.onnx", edits.for_plan(alone[k]))  # noqa: E731
            sens, next_model = {}, ahead(0)
            for k, name in enumerate(track(names, description=f"INT8 sensitivity: each of {len(names)} layers alone on "
                                                              f"{len(probe.inputs)} samples")):
                model, next_model = next_model.result(), ahead(k + 1) if k + 1 < len(names) else None
                sens[name] = float(probe.differences(model)[1].mean())
            return sens

        def score(candidate):
            return measure(candidate)[0]

        aims = [f"{name} {aim(t):.3g} deg ({margin:.0%} of {t})" for name, t in
                (("p95 difference", self.target_p95_diff_deg), ("largest difference", self.target_max_diff_deg)) if t]
        plan = return_sensitive_to_float(plan, sensitivity, score, target=self.target_error_increase_deg,
                                         min_fraction=self.min_int8_mac_fraction, enabled=self.mixed_precision,
                                         label="all quantizable layers in INT8",
                                         where=f"on {len(judge.inputs)} calibration samples"
                                               + (f" (aims: {', '.join(aims)}; sensitivity: mean difference from FP32 "
                                                  f"with the layer alone in INT8, {len(probe.inputs)} samples)" if aims else ""))
        where = f"on {len(judge.inputs)} calibration samples"
        if switched:
            held = where if held_out is None else f"on the {len(switch_judge.inputs)} calibration samples they did not fit"
            plan = plan.model_copy(update={"decisions": [switch_decision(label, on, tried, held)
                                                         for label, on, tried in switched] + plan.decisions})
        if trials:
            plan = plan.model_copy(update={"decisions": [observer_decision(chosen, why, self.observer, trials, where),
                                                         *plan.decisions]})
        judged = models.get(plan_key(plan))
        if judged is not None:
            judged = judged.result().replace(out_dir / "model.onnx")
        shutil.rmtree(scratch, ignore_errors=True)
        return plan, judged
