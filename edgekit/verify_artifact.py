"""Build the report of one compiled artifact: run it in its runtime, compare with the reference, gate it."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from edgekit.artifact import Artifact
from edgekit.cache import tool_versions
from edgekit.data.npz import GazeSet
from edgekit.evalset import ModelInputs
from edgekit.recipe import Recipe
from edgekit.report.model import Gate, Measurement, Report, Step
from edgekit.verify import compare, host_info, latency, peak_memory, run_all


def _set_info(gs: GazeSet | None) -> dict | None:
    if gs is None:
        return None
    return {"source": gs.meta.get("source"), "n_images": len(gs), "digest": gs.digest(), "seed": gs.meta.get("seed")}


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
    ]
    return [Gate(name=name, limit=limit, value=value, passed=value is not None and value <= limit, detail=detail)
            for name, limit, value, detail in checks if limit is not None]


def verify(src, recipe: Recipe, pipeline, steps, art: Artifact, inputs: ModelInputs, eval_set: GazeSet,
           calib_set: GazeSet | None, staging: Path, work: Path) -> Report:
    from edgekit.backends import load_backend
    from edgekit.report.counts import onnx_counts

    backend = load_backend(recipe.backend)
    threads = recipe.verify.threads
    runner = backend.OnnxRunner(art.path, threads=threads)
    ref_out = run_all(src.reference, inputs)
    art_out = run_all(runner.run, inputs)
    how = f"artifact: {runner.describe()}; reference: the model as loaded ({src.kind}) before any pass"
    accuracy = compare(ref_out, art_out, inputs, src.card, _set_info(eval_set), how)
    sample = inputs.sample(0)
    memory = peak_memory(lambda: backend.OnnxRunner(art.path, threads=threads).run(sample))
    counts = onnx_counts(art.path)
    runtime = {"runtime": runner.describe(), "executed_here": True}
    notes = [n for s in steps for n in s.artifact.meta.get("notes", [])]
    skipped = pipeline.passes[:len(pipeline.passes) - len(steps)]
    if skipped:
        notes.insert(0, f"skipped {', '.join(p.name for p in skipped)}: not applicable to a {src.artifact.format.value} input")
    if art.meta.get("precision") == "fp16":
        fp16 = backend.fp16_execution(art.path, work)
        runtime["fp16_execution"] = fp16
        notes.append(fp16["note"])
    report = Report(
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        model={"source": src.source, "kind": src.kind, "name": src.card.name, "arch": src.card.arch,
               "inputs": [json.loads(s.model_dump_json()) for s in src.card.inputs],
               "output": json.loads(src.card.output.model_dump_json()),
               "preprocessing": src.card.preprocessing.model_dump(), "digest": src.artifact.sha256},
        target={"name": recipe.name, "backend": recipe.backend, "device": recipe.device, "description": recipe.description},
        recipe=recipe.resolved(), pipeline=str(pipeline),
        artifact={"path": art.path.name, "format": art.format.value, "sha256": art.sha256,
                  "files": [f.name for f in art.files()], "sidecar": "io.json", "precision": art.meta.get("precision", "fp32")},
        steps=[Step(pass_=s.pass_, format=s.artifact.format.value, sha256=s.artifact.sha256, cached=s.cached,
                    seconds=round(s.seconds, 3), notes=s.artifact.meta.get("notes", [])) for s in steps],
        accuracy=accuracy,
        latency=latency(runner.run, sample, recipe.verify.latency_runs, recipe.verify.warmup_runs, runner.describe()),
        memory={"peak_rss_increase": memory},
        size={"artifact": Measurement(value=art.size_bytes(), unit="bytes", method="static",
                                      how=f"sum of file sizes: {', '.join(f.name for f in art.files())}")},
        compute={"params": Measurement(value=counts["params"], unit="count", method="static", how="ONNX initializer elements"),
                 "macs": Measurement(value=counts["macs"], unit="MAC", method="static",
                                     how="from the ONNX graph with inferred shapes, batch 1: " +
                                         ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in counts["macs_by_op"].items()))},
        runtime=runtime, host=host_info(), tools=tool_versions(),
        inputs_digest={k: v for k, v in {"model": src.artifact.sha256, "eval_set": eval_set.digest(),
                                         "calib_set": calib_set.digest() if calib_set else None}.items() if v},
        notes=notes)
    gates = check_gates(recipe, report)
    report = report.model_copy(update={"gates": gates, "passed": all(g.passed for g in gates)})
    if not report.passed and src.module is not None:
        from edgekit.parity import first_divergence

        report = report.model_copy(update={"parity": first_divergence(src, art, inputs.sample(accuracy.diff_from_reference.worst_sample))})
    return report
