"""Build the report of one compiled artifact: run it in its runtime, compare with the reference, gate it."""

from __future__ import annotations

import datetime
from pathlib import Path

from edgekit import progress
from edgekit.artifact import Artifact
from edgekit.backends import get_backend
from edgekit.data.npz import GazeSet
from edgekit.environment import host_info, tool_versions
from edgekit.errors import first_line
from edgekit.evalset import ModelInputs, run_batches
from edgekit.quant.plan import ISA_PROFILES
from edgekit.recipe import Recipe
from edgekit.report.counterpart import fp32_counterpart
from edgekit.report.measure import compare
from edgekit.report.model import Gate, Measurement, Report, Step
from edgekit.report.parity import first_divergence
from edgekit.report.reference_cache import reference_outputs
from edgekit.report.reference_prefetch import ReferencePrefetch
from edgekit.report.sections import ArtifactInfo, ModelInfo, Parity, TargetInfo
from edgekit.report.timing import measure as measure_timing

def _set_info(gs: GazeSet | None) -> dict | None:
    if gs is None:
        return None
    source, seed = gs.meta.get("source"), gs.meta.get("seed")  # a user's set: its meta may hold anything
    return {"source": None if source is None else str(source), "n_images": len(gs), "digest": gs.digest(),
            "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else None}


def _lava_mismatch(report: Report) -> int | None:
    lava = report.spiking.lava if report.spiking else None
    return sum(lava.mismatched_spikes_per_layer) + (not lava.readout_equal) if lava and lava.ran else None


def _lava_message_mismatch(report: Report) -> int | None:
    lava = report.sigma_delta.lava if report.sigma_delta else None
    return sum(lava.mismatched_messages_per_layer) if lava and lava.ran else None


def _run_artifact(runner, inputs: ModelInputs, batch: int) -> tuple:
    """(outputs, the batch they ran at, notes): the recipe's batch, or 1 when the artifact's graph is fixed at batch 1."""
    described = lambda b: f"running the artifact on {len(inputs)} samples (batch {b})"  # noqa: E731
    if batch == 1:
        return run_batches(runner.run, inputs, 1, described(1)), 1, []
    try:
        return run_batches(runner.run, inputs, batch, described(batch)), batch, []
    except Exception as exc:  # a static batch-1 graph refuses bigger batches
        note = f"verified at batch 1: the artifact refused batch {batch} ({first_line(exc, 120)})"
        return run_batches(runner.run, inputs, 1, described(1)), 1, [note]


def check_gates(recipe: Recipe, report: Report) -> list[Gate]:
    g, acc = recipe.gates, report.accuracy
    size_mb = report.size["artifact"].value / 1e6
    checks = [
        ("max_error_deg", g.max_error_deg, acc.artifact.mean_deg if acc else None, "mean angular error of the artifact"),
        ("max_error_increase_deg", g.max_error_increase_deg, acc.error_increase_deg if acc else None,
         "artifact mean error minus reference mean error"),
        ("max_diff_deg", g.max_diff_deg, acc.diff_from_reference.max_deg if acc else None, "largest per-sample difference"),
        ("p95_diff_deg", g.p95_diff_deg, acc.diff_from_reference.p95_deg if acc else None, "p95 per-sample difference"),
        ("max_size_mb", g.max_size_mb, size_mb, "artifact size on disk (MB, all files)"),
        ("max_lava_mismatched_spikes", g.max_lava_mismatched_spikes, _lava_mismatch(report),
         "spikes and readout values differing between Lava's simulator and the fixed-point model"),
        ("max_increase_over_ann_deg", g.max_increase_over_ann_deg,
         report.sigma_delta.increase_over_ann_deg if report.sigma_delta else None,
         "fixed-point error minus that of the float ANN the network was converted from"),
        ("max_lava_mismatched_messages", g.max_lava_mismatched_messages, _lava_message_mismatch(report),
         "sigma-delta messages (readout included) differing between Lava's simulator and the fixed-point mirror"),
    ]
    gates = [Gate(name=name, limit=limit, value=value, passed=value is not None and value <= limit, detail=detail)
             for name, limit, value, detail in checks if limit is not None]
    lower_bounds = [  # at least
        ("min_int8_mac_fraction", g.min_int8_mac_fraction,
         report.quantization.int8_mac_fraction if report.quantization else None, "share of the quantized layers' MACs in INT8 (at least)"),
        ("min_delegated_mac_fraction", g.min_delegated_mac_fraction, report.runtime.delegated_mac_fraction if report.runtime
         else None, "share of MACs run by the XNNPACK delegate, not ExecuTorch's portable kernels (at least)"),
    ]
    gates += [Gate(name=name, limit=limit, value=value, passed=value is not None and value >= limit, detail=detail)
              for name, limit, value, detail in lower_bounds if limit is not None]
    return gates


def _quantization_sections(art: Artifact, comparison: dict | None) -> dict:
    """Plan summary with its per-layer table, and size/latency against the FP32 artifact the plan was applied to
    (`comparison`, measured interleaved by edgekit.report.timing.measure)."""
    plan = art.meta.quant_plan.model_dump()
    macs = sum(lp["macs"] for lp in plan["layers"]) or 1
    weights = sum(lp["weights"] for lp in plan["layers"]) or 1
    host = host_info()
    vnni = any(f in host["isa_flags"] for f in ("avx512_vnni", "avx_vnni"))
    profile = plan["isa_profile"]
    host_note = (f"deployment profile {profile} ({ISA_PROFILES[profile]['why']}); this host "
                 f"{'has' if vnni else 'lacks'} VNNI ({host['cpu']})")
    if profile in ("x86-vnni",) and not vnni and host["machine"] == "x86_64":
        host_note += ": the host differs from the profile, so its kernels may saturate where the device's would not"
    quant = {
        "plan": {k: plan[k] for k in ("weights", "activations", "isa_profile", "calibration", "decisions")},
        "int8_mac_fraction": sum(lp["macs"] for lp in plan["layers"] if lp["int8"]) / macs,
        "int8_weight_fraction": sum(lp["weights"] for lp in plan["layers"] if lp["int8"]) / weights,
        "float_layers": [{"name": lp["name"], "reason": lp["reason"]} for lp in plan["layers"] if not lp["int8"]],
        "layers": plan["layers"], "host_vs_profile": host_note,
    }
    return {"quantization": quant, "comparison": comparison}


def reproducibility(passes) -> dict:
    """Whether a rebuild on another x86-64 host gives the same bytes, and if not which passes make it differ."""
    reasons = [f"{p.name}: {why}" for p in passes if (why := p.host_dependence())]
    return {"across_hosts": not reasons,
            "why": "; ".join(reasons) or "every pass computes its output exactly (no calibration or training; BN folded in float64)"}


def step_rows(steps) -> list[Step]:
    return [Step(pass_=s.pass_, format=s.artifact.format.value, sha256=s.artifact.sha256, cached=s.cached,
                 seconds=round(s.seconds, 3), size_bytes=s.artifact.size_bytes(), notes=s.artifact.meta.notes)
            for s in steps]


def costliest_layers(layers) -> str:
    """A failed INT8 report's pointer to the layers to keep float first."""
    if not any(lp.sensitivity_deg is not None for lp in layers):
        return ("the per-layer INT8 sensitivity was not measured: the all-INT8 plan held the pass's targets on the "
                "calibration set (or mixed precision was off); fix: set the pass's target_error_increase_deg or "
                "target_*_diff_deg below the gate's so that mixed precision measures it and returns layers to float")
    costly = sorted(layers, key=lambda lp: -(lp.sensitivity_deg or 0))[:3]
    return ("the most sensitive layers in INT8 (each alone, calibration set; see Quantization): " +
            ", ".join(f"{lp.name} {lp.sensitivity_deg or 0:+.3f} deg" for lp in costly))


def verify(src, recipe: Recipe, pipeline, steps, art: Artifact, inputs: ModelInputs, eval_set: GazeSet,
           calib_set: GazeSet | None, work: Path, cache: bool = True, log=lambda message: None,
           reference: ReferencePrefetch | None = None) -> Report:
    """`cache`: whether the FP32 counterpart of an INT8 artifact (for the interleaved comparison) and the reference's
    outputs may come from, and go to, the caches. `reference`: the reference's outputs, computed while the passes ran."""
    backend = get_backend(recipe.backend)
    threads = recipe.verify.threads
    runner = backend.runner(art.path, threads=threads)
    art_out, batch, batch_note = _run_artifact(runner, inputs, recipe.verify.batch)
    # exactly as the artifact ran: same samples per call; every target of this model in a build runs the same
    # reference on the same images, so its outputs are cached (edgekit.report.reference_cache)
    prefetched = reference.take(batch) if reference is not None else None
    ref_out, reused = reference_outputs(src, inputs, eval_set.digest(), batch, cache, computed=prefetched,
                                        description=f"running the reference on {len(inputs)} samples (batch {batch})")
    if reused:
        log(f"reference outputs on {len(inputs)} samples (batch {batch}): reused, from an identical earlier run "
            "(same model, set, batch, tools, edgekit code and host)")
    elif prefetched is not None:
        log(f"reference outputs on {len(inputs)} samples (batch {batch}): computed on a spare core while the passes ran")
    how = (f"artifact: {runner.describe()}; reference: the model as loaded ({src.kind}) before any pass; both at batch "
           f"{batch}")
    accuracy = compare(ref_out, art_out, inputs, src.card, _set_info(eval_set), how)
    sample = inputs.sample(0)
    counts = backend.counts(art.path, runner, sample)
    runtime, extra_notes = backend.runtime_details(art, runner, work)
    notes = list(src.notes) + [n for s in steps for n in s.artifact.meta.notes] + extra_notes + batch_note
    skipped = pipeline.passes[:len(pipeline.passes) - len(steps)]
    if skipped:
        notes.insert(0, f"skipped {', '.join(p.name for p in skipped)}: not applicable to a {src.artifact.format.value} input")
    fp32 = None
    if art.meta.quant_plan and backend.measures_speed:  # every INT8 report compares with FP32, timed interleaved
        fp32, why_not = fp32_counterpart(art, steps, pipeline, src.artifact, src.card, work, cache, log)
        notes += [f"no interleaved FP32 comparison: {why_not}"] if why_not else []
    with progress.step(f"timing the artifact ({recipe.verify.latency_runs} batch-1 runs"
                       + (", interleaved with FP32)" if fp32 else ")")):
        timed = measure_timing(backend, art, runner, sample, recipe, fp32)
    lat, memory = timed.latency, timed.memory
    sections = {"runtime": runtime, "energy": backend.energy(art.path, runner, sample, recipe.device)}
    if art.meta.quant_plan:
        sections |= _quantization_sections(art, timed.comparison)
        if "int8_mac_fraction_measured" in runtime:  # read from the artifact itself: what the gate should check
            quant = sections["quantization"]
            sections["quantization"] = {**quant, "int8_mac_fraction_planned": quant["int8_mac_fraction"],
                                        "int8_mac_fraction": runtime["int8_mac_fraction_measured"]}
    # the backend's own sections (spiking targets: T sweep, spike rates, synaptic ops, and the energy from them)
    sections |= backend.sections(art, runner, inputs, ref_out, src.card, recipe.device)
    card = src.card
    report = Report(
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        model=ModelInfo(source=src.source, kind=src.kind, name=card.name, arch=card.arch, inputs=card.inputs,
                        output=card.output, preprocessing=card.preprocessing, digest=src.artifact.sha256),
        target=TargetInfo(name=recipe.name, backend=recipe.backend, device=recipe.device, description=recipe.description),
        recipe=recipe.resolved(), pipeline=str(pipeline),
        artifact=ArtifactInfo(path=art.path.name, format=art.format.value, sha256=art.sha256,
                              files=[f.name for f in art.files()], sidecar="io.json",
                              precision=art.meta.precision or "fp32",
                              reproducible=reproducibility(pipeline.passes[len(pipeline.passes) - len(steps):])),
        steps=step_rows(steps),
        accuracy=accuracy,
        latency=lat,
        memory={"peak_rss_increase": memory},
        size={"artifact": Measurement(value=art.size_bytes(), unit="bytes", method="static",
                                      how=f"sum of file sizes: {', '.join(f.name for f in art.files())}")},
        compute={"params": Measurement(value=counts["params"], unit="count", method="static", how=counts["params_how"]),
                 "macs": Measurement(value=counts["macs"], unit="MAC", method="static", how=counts["macs_how"])},
        host=host_info(), tools=tool_versions(),
        inputs_digest={k: v for k, v in {"model": src.artifact.sha256, "eval_set": eval_set.digest(),
                                         "calib_set": calib_set.digest() if calib_set else None}.items() if v},
        notes=notes, timing=timed.timing, **sections)
    gates = check_gates(recipe, report)
    report = report.model_copy(update={"gates": gates, "passed": all(g.passed for g in gates)})
    if not report.passed and report.quantization:
        report = report.model_copy(update={"notes": report.notes + [costliest_layers(report.quantization.layers)]})
    if not report.passed and src.module is not None:
        parity = first_divergence(src, art, inputs.sample(accuracy.diff_from_reference.worst_sample))
        report = report.model_copy(update={"parity": Parity.model_validate(parity)})
    return report
