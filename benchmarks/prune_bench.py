"""Pruning benchmark on this host: TinyGaze pruned by edgekit's own recipe path, GazeResNet18 pruned and fine-tuned
on a GPU by benchmarks/prune_gpu.py (module folders). For each: parameters, MACs, error on 512 evaluation
images, and onnxruntime latency (1 thread, batch 1) measured interleaved with the unpruned FP32 model in one loop.

Run: .venv/bin/python benchmarks/prune_bench.py PRUNED_DIR > benchmarks/pruning.md
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(pruned_dir: Path) -> None:
    import edgekit.compiler as ek
    from edgekit.evalset import default_eval_set
    from edgekit.backends.onnx.runner import OnnxRunner, runtime_version
    from edgekit.evalset import model_inputs
    from edgekit.models.io import load_shipped
    from edgekit.report.compare import scatter_svg
    from edgekit.environment import host_info
    from edgekit.report.measure import interleaved_latency

    host = host_info()
    print("# Pruning benchmark\n")
    print(f"Machine: {host['cpu']}, {host['cores']} cores ({', '.join(host['isa_flags'])}); onnxruntime {runtime_version()}; "
          "latency p50 of 200 batch-1 runs (1 thread) interleaved with the unpruned FP32 model in one loop. Error: mean "
          "angular error on 512 evaluation images (seed 3). Produced by `benchmarks/prune_bench.py`.\n")
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = {"tinygaze": [("unpruned", None)] + [(f"channel {p}% (fine-tuned 3000 steps here)", p) for p in (30, 50, 70)],
                 "gazeresnet18": [("unpruned", "gazeresnet18")] + [(f"channel {p}% (GPU fine-tuned 3000 steps)",
                                                                    str(pruned_dir / f"gazeresnet18-channel{p}")) for p in (30, 50, 70)]}
        for family, variants in cases.items():
            _, card = load_shipped(family)
            evals = model_inputs(card, default_eval_set(card, 512))
            sample = evals.sample(0)
            rows = []
            for label, model in variants:
                for target in ("onnx", "onnx-int8"):
                    if family == "tinygaze" and model is not None:  # edgekit's own prune pass in the pipeline
                        recipe = tmp / f"tiny-{model}-{target}.yaml"
                        text = (Path(ek.__file__).parent / "targets" / f"{target}-pruned.yaml").read_text()
                        recipe.write_text(text.replace("amount: 0.5", f"amount: {model / 100}").replace("max_error_increase_deg: 0.5", "max_error_increase_deg: 5"))
                        res = ek.compile(None, str(recipe), out=tmp / f"{family}-{model}-{target}")
                    else:
                        res = ek.compile(model, target, out=tmp / f"{family}-{label[:10]}-{target}".replace(" ", "_"))
                    rows.append((label, target, res))
            runners = {f"{l} / {t}": OnnxRunner(r.artifact).run for l, t, r in rows}
            lat = interleaved_latency(runners, sample, 200, 20, "onnxruntime CPU EP, 1 thread")
            base = lat[f"unpruned / onnx"]["p50"].value
            base_err = rows[0][2].report.accuracy.artifact.mean_deg
            print(f"## {family}\n")
            print("| variant | target | params (M) | MACs (M) | error (deg) | vs unpruned FP32 | latency p50 (ms) | speed-up |")
            print("|---|---|---|---|---|---|---|---|")
            for label, target, res in rows:
                rep = res.report
                p50 = lat[f"{label} / {target}"]["p50"].value
                err = rep.accuracy.artifact.mean_deg
                print(f"| {label} | {target} | {rep.compute['params'].value / 1e6:.2f} | {rep.compute['macs'].value / 1e6:.1f} | "
                      f"{err:.3f} | {err - base_err:+.3f} | {p50:.3f} | {base / p50:.2f}x |")
                if family == "gazeresnet18":
                    points.append((f"{label.split(' (')[0]} {target}", p50, err, "#1f77b4" if target == "onnx" else "#d62728"))
            print()
    print("## Error against latency (the Pareto front is the lower-left edge)\n")
    print(scatter_svg("GazeResNet18: error against latency", "latency p50 (ms, 1 thread)", "mean angular error (deg)", points))
    print()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
