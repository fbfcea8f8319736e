"""ONNX target benchmarks: compile wall time (cold and cached), `edgekit --help` time, onnxruntime latency.

Run: .venv/bin/python benchmarks/onnx_bench.py > benchmarks/onnx.md
Latencies are medians of batch-1 runs on a shared machine: compare rows of one run, not across runs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
EDGEKIT = [sys.executable, "-m", "edgekit.cli"]


def wall(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def compile_times() -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "EDGEKIT_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        cmd = EDGEKIT + ["compile", "--target", "onnx", "--out", f"{out}/o"]
        cold = wall(cmd, env)
        cached = [wall(cmd, env) for _ in range(3)]
        help_times = [wall(EDGEKIT + ["--help"], env) for _ in range(5)]
    rows.append(f"| `edgekit compile --target onnx` (demo), cold: empty cache, eval set rendered | {cold:.2f} s |")
    rows.append(f"| same, cached passes and eval set (median of 3) | {statistics.median(cached):.2f} s |")
    rows.append(f"| `edgekit --help` (median of 5) | {statistics.median(help_times):.2f} s |")
    return rows


def ort_latency(path: Path, shape: tuple[int, ...], threads: int, runs: int = 200, warmup: int = 20) -> tuple[float, float]:
    import numpy as np

    from edgekit.backends.onnx.runner import OnnxRunner

    runner = OnnxRunner(path, threads=threads)
    x = {runner.input_names[0]: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
    for _ in range(warmup):
        runner.run(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner.run(x)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 90))


def latency_rows() -> list[str]:
    import warnings

    import torch

    from edgekit.models import build
    from edgekit.models.io import load_shipped

    cases = [("tinygaze (shipped)", load_shipped("tinygaze")[0], (1, 1, 40, 64)),
             ("gazeresnet18 (shipped)", load_shipped("gazeresnet18")[0], (1, 1, 64, 96)),
             ("gazeresnet18", build("gazeresnet18", {"input_size": [96, 160]}).eval(), (1, 1, 96, 160)),
             ("gazeresnet18", build("gazeresnet18", {"in_channels": 3, "input_size": [224, 224]}).eval(), (1, 3, 224, 224))]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, shape in cases:
            path = Path(tmp) / f"{name.split()[0]}-{'x'.join(map(str, shape))}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (torch.zeros(shape),), str(path), dynamo=False, opset_version=17)
            one = ort_latency(path, shape, 1)
            two = ort_latency(path, shape, 2)
            rows.append(f"| {name} | {'x'.join(map(str, shape))} | {one[0]:.3f} / {one[1]:.3f} | {two[0]:.3f} / {two[1]:.3f} |")
    return rows


def main() -> None:
    from edgekit.environment import host_info
    from edgekit.backends.onnx.runner import runtime_version
    import torch

    host = host_info()
    print("# ONNX target benchmarks\n")
    print(f"Machine: {host['cpu']}, {host['cores']} cores ({', '.join(host['isa_flags'])}), {host['os']}, "
          f"Python {host['python']}, torch {torch.__version__}, onnxruntime {runtime_version()}. Shared machine: "
          "read ratios within one run. Produced by `benchmarks/onnx_bench.py`.\n")
    print("## Wall time\n\n| what | time |\n|---|---|")
    print("\n".join(compile_times()))
    print("\n## onnxruntime CPU latency, batch 1 (ms, p50 / p90 of 200 runs after 20 warm-up)\n")
    print("| model | input | 1 thread | 2 threads |\n|---|---|---|---|")
    print("\n".join(latency_rows()))


if __name__ == "__main__":
    main()
