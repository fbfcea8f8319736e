"""ExecuTorch FP32 and INT8 side by side with ONNX Runtime and LiteRT: accuracy, size and interleaved latency.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/executorch_bench.py [model ...] > /tmp/executorch-bench.md
(default models: tinygaze gazeresnet18; options: --rounds, --blocks, --warmup, --json PATH). About 5 minutes on
2 shared cores with a warm edgekit cache; cold, GazeResNet18's three INT8 compiles add 10-15 minutes under load.
Results and discussion: benchmarks/executorch.md.

Per model, the six targets are compiled by `edgekit.compile` (default synthetic evaluation set, so every artifact is
scored on the same 512 images; accuracy, difference and size come from each report). Then the six artifacts are
loaded with the runners edgekit verifies them with (`get_backend(name).runner(path, threads=1)`) and timed on the
same batch-1 sample, round robin in one loop, so the machine's load hits all six alike. The module is not called
executorch.py: run as a script, benchmarks/ comes first on sys.path and that name would shadow the executorch package.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

TARGETS = ("onnx", "onnx-int8", "tflite", "tflite-int8", "executorch", "executorch-int8")
BASELINE = "onnx"  # latency ratios are against this artifact of the same model, timed in the same loop
RUNTIMES = {"onnx": "ONNX Runtime", "tflite": "LiteRT", "executorch": "ExecuTorch"}
THREADS = 1


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def compile_all(model: str, out: Path) -> dict:
    """target -> CompileResult, every target on the model's default evaluation set (checked to be one set)."""
    import edgekit

    results = {}
    for target in TARGETS:
        start = time.perf_counter()
        results[target] = edgekit.compile(model, target, out=out / model / target)
        print(f"<!-- compiled {model} -> {target} in {time.perf_counter() - start:.0f} s -->", file=sys.stderr, flush=True)
    digests = {r.report.accuracy.set.digest for r in results.values()}
    if len(digests) != 1:  # the comparison means nothing if the artifacts were scored on different images
        raise SystemExit(f"{model}: the targets were evaluated on different sets ({sorted(digests)})")
    return results


def sample_input(model: str, n_images: int) -> dict:
    """Sample 0 of the default evaluation set of `n_images` (the reports' set), preprocessed as every runner takes it:
    the sample verification times."""
    from edgekit.evalset import default_eval_set, model_inputs
    from edgekit.models.io import load_shipped

    card = load_shipped(model)[1]
    return model_inputs(card, default_eval_set(card, n_images)).sample(0)


def round_robin(runs: dict, sample: dict, rounds: int, warmup: int) -> dict:
    """Milliseconds of each call per round, as (label, "wall") and (label, "cpu") arrays. Each round calls every
    label once; the starting label rotates, so each follows each other equally often (a large model evicts the caches
    the next one would use). CPU time is this process's (every runtime runs its one thread on the caller's): a run
    the scheduler pauses on the shared cores gets longer in wall time only."""
    import numpy as np

    labels = list(runs)
    for _ in range(warmup):
        for label in labels:
            runs[label](sample)
    times = {(label, clock): np.empty(rounds) for label in labels for clock in ("wall", "cpu")}
    for i in range(rounds):
        k = i % len(labels)
        for label in labels[k:] + labels[:k]:
            cpu, wall = time.process_time_ns(), time.perf_counter_ns()
            runs[label](sample)
            times[(label, "wall")][i] = (time.perf_counter_ns() - wall) / 1e6
            times[(label, "cpu")][i] = (time.process_time_ns() - cpu) / 1e6
    return times


def bare_call(backend: str, runner, sample: dict):
    """The runtime's own call with its I/O, inputs prepared once and no edgekit wrapper (float conversion, batching
    loop): what an app's Python would call. Timed beside run(), it shows how much of a small model's time is wrapper."""
    import numpy as np

    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in sample.values()]
    if backend == "onnx":
        feed = dict(zip(runner.input_names, arrays))
        return lambda _: runner.session.run(None, feed)[0]
    if backend == "tflite":
        interp, out = runner.interpreter, runner.output["index"]
        if any(d["dtype"] != np.float32 for d in runner.inputs):
            return None  # int8 inputs need the runner's quantize step; none of TARGETS has them

        def call(_):
            for detail, array in zip(runner.inputs, arrays):
                interp.set_tensor(detail["index"], array)
            interp.invoke()
            return interp.get_tensor(out)
        return call
    if backend == "executorch":
        import torch

        tensors = [torch.from_numpy(a) for a in arrays]
        return lambda _: runner.method.execute(tensors)[0]
    return None


def time_model(results: dict, sample: dict, rounds: int, blocks: int, warmup: int) -> dict:
    """Per target: p50/p90 over all blocks and the p50 ratio to BASELINE in each block (its spread shows the noise), in
    wall and CPU time for edgekit's run() and in wall time for the bare runtime call; all twelve timed in one loop."""
    import numpy as np

    from edgekit.backends import get_backend

    backends = {t: r.report.target.backend for t, r in results.items()}
    runners = {t: get_backend(backends[t]).runner(r.artifact, threads=THREADS) for t, r in results.items()}
    runs = {t: runner.run for t, runner in runners.items()}
    runs |= {f"{t}:bare": bare_call(backends[t], runner, sample) for t, runner in runners.items()}
    runs = {label: run for label, run in runs.items() if run is not None}
    for label, run in runs.items():  # every call must give what verification saw: the same finite gaze vector
        out = np.asarray(run(sample), dtype=np.float64).reshape(-1)
        ref = np.asarray(runs[label.split(":")[0]](sample), dtype=np.float64).reshape(-1)
        if out.size < 3 or not np.isfinite(out).all() or not np.allclose(out, ref, atol=1e-5):
            raise SystemExit(f"{label}: returned {out!r} on the timing sample, run() gives {ref!r}")
    measured = [round_robin(runs, sample, rounds, warmup if b == 0 else 0) for b in range(blocks)]
    timing = {}
    for t in TARGETS:
        timing[t] = {"runtime_detail": runners[t].describe()}
        for label, base, clock, prefix in ((t, BASELINE, "wall", ""), (t, BASELINE, "cpu", "cpu_"),
                                           (f"{t}:bare", f"{BASELINE}:bare", "wall", "bare_")):
            if label not in runs:
                continue
            pooled = np.concatenate([blk[(label, clock)] for blk in measured])
            ratios = [float(np.median(blk[(label, clock)]) / np.median(blk[(base, clock)])) for blk in measured]
            timing[t] |= {f"{prefix}p50_ms": float(np.percentile(pooled, 50)),
                          f"{prefix}p90_ms": float(np.percentile(pooled, 90)), f"{prefix}ratio_p50_blocks": ratios}
    return timing


def row(model: str, target: str, res, timed: dict) -> dict:
    r = res.report
    acc = r.accuracy
    q = r.quantization
    return {"model": model, "target": target, "runtime": RUNTIMES[r.target.backend], "passed": r.passed,
            "error_deg": acc.artifact.mean_deg, "reference_deg": acc.reference.mean_deg,
            "error_increase_deg": acc.error_increase_deg, "diff_mean_deg": acc.diff_from_reference.mean_deg,
            "diff_p95_deg": acc.diff_from_reference.p95_deg, "diff_max_deg": acc.diff_from_reference.max_deg,
            "size_bytes": int(r.size["artifact"].value), "int8_mac_fraction": q.int8_mac_fraction if q else None,
            "n_samples": acc.set.n_samples, "eval_digest": acc.set.digest, **timed}


def spread(ratios: list[float]) -> str:
    """The per-block values as 'min-max' (one value when they agree to 2 decimals)."""
    lo, hi = f"{min(ratios):.2f}", f"{max(ratios):.2f}"
    return lo if lo == hi else f"{lo}-{hi}"


def accuracy_table(rows: list[dict]) -> str:
    lines = ["| model | target | runtime | error (deg) | increase | diff mean / p95 / max (deg) | size (MB) | INT8 MACs "
             "| gates |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        int8 = f"{r['int8_mac_fraction']:.1%}" if r["int8_mac_fraction"] is not None else "-"
        lines.append(f"| {r['model']} | {r['target']} | {r['runtime']} | {r['error_deg']:.3f} | "
                     f"{r['error_increase_deg']:+.3f} | {r['diff_mean_deg']:.4f} / {r['diff_p95_deg']:.4f} / "
                     f"{r['diff_max_deg']:.4f} | {r['size_bytes'] / 1e6:.2f} | {int8} | "
                     f"{'pass' if r['passed'] else 'FAIL'} |")
    return "\n".join(lines)


def latency_table(rows: list[dict]) -> str:
    lines = ["| model | target | wall p50 / p90 (ms) | wall p50 / onnx | CPU p50 (ms) | CPU p50 / onnx | "
             "bare call wall p50 (ms) | bare / onnx bare |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bare = (f"{r['bare_p50_ms']:.3f} | {spread(r['bare_ratio_p50_blocks'])}" if "bare_p50_ms" in r else "- | -")
        lines.append(f"| {r['model']} | {r['target']} | {r['p50_ms']:.3f} / {r['p90_ms']:.3f} | "
                     f"{spread(r['ratio_p50_blocks'])} | {r['cpu_p50_ms']:.3f} | {spread(r['cpu_ratio_p50_blocks'])} | "
                     f"{bare} |")
    return "\n".join(lines)


def speedups(rows: list[dict]) -> str:
    """INT8 against FP32 in each runtime (same loop): the p50 ratio, min-max over the blocks."""
    lines = ["| model | runtime | FP32 / INT8, wall p50 | CPU p50 | bare call wall p50 | size FP32 / INT8 |",
             "|---|---|---|---|---|---|"]
    by = {(r["model"], r["target"]): r for r in rows}
    for model in dict.fromkeys(r["model"] for r in rows):
        for fp32 in ("onnx", "tflite", "executorch"):
            a, b = by[(model, fp32)], by[(model, f"{fp32}-int8")]
            cells = []
            for key in ("ratio_p50_blocks", "cpu_ratio_p50_blocks", "bare_ratio_p50_blocks"):
                ratios = [x / y for x, y in zip(a.get(key, []), b.get(key, []))]
                cells.append(spread(ratios) if ratios else "-")
            lines.append(f"| {model} | {RUNTIMES[fp32]} | {' | '.join(cells)} | {a['size_bytes'] / b['size_bytes']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["tinygaze", "gazeresnet18"])
    parser.add_argument("--rounds", type=int, default=300, help="timed rounds per block (each runs all six once)")
    parser.add_argument("--blocks", type=int, default=3, help="timing blocks per model (the ratio's spread)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed rounds before the first block")
    parser.add_argument("--json", type=Path, help="also write every number here")
    args = parser.parse_args()

    from edgekit.environment import host_info

    host = host_info()
    started, load_start = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), load()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            results = compile_all(model, Path(tmp))
            load_timing = load()
            sample = sample_input(model, results[BASELINE].report.accuracy.set.n_images)
            timed = time_model(results, sample, args.rounds, args.blocks, args.warmup)
            print(f"<!-- timed {model} under load {load_timing} -> {load()} -->", file=sys.stderr, flush=True)
            rows += [row(model, t, results[t], timed[t]) for t in TARGETS]
    versions = {d: metadata.version(d) for d in ("torch", "onnxruntime", "ai-edge-litert", "executorch")}
    meta = {"started": started, "load_start": load_start, "load_end": load(), "host": host, "threads": THREADS,
            "rounds": args.rounds, "blocks": args.blocks, "warmup": args.warmup, "versions": versions}
    print(f"Host: {host['cpu']}, {host['cores']} cores ({', '.join(host['isa_flags'])}), {host['os']}, Python "
          f"{host['python']}; {', '.join(f'{k} {v}' for k, v in versions.items())}. Started {started}; load average "
          f"(1/5/15 min) {load_start} at the start, {meta['load_end']} at the end. {THREADS} thread, batch 1, "
          f"{args.blocks} blocks x {args.rounds} round-robin rounds after {args.warmup} warm-up rounds.\n")
    print(accuracy_table(rows) + "\n")
    print(latency_table(rows) + "\n")
    print(speedups(rows))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
