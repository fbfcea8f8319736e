"""edgekit's TFLite targets on the shipped models: error, difference, size, latency, INT8 share, compile time.

Run: .venv/bin/python benchmarks/tflite_bench.py [model ...] > /tmp/tflite-targets.md
(default models: tinygaze gazeresnet18 temporalgaze). Each row is one `edgekit.compile` with an empty pass
cache, verified in the LiteRT interpreter (XNNPACK, 1 thread) on the target's evaluation set; latencies are
batch-1 medians on a shared 2-core machine: compare rows of one run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

TARGETS = ("tflite", "tflite-fp16", "tflite-int8", "tflite-int8-io")


def row(model: str, target: str, out: str) -> str:
    import edgekit.compiler as ek

    start = time.perf_counter()
    res = ek.compile(model, target, out=f"{out}/{model}-{target}", cache=False)
    seconds = time.perf_counter() - start
    r = res.report
    acc, q = r.accuracy, r.quantization or {}
    int8 = f"{q['int8_mac_fraction']:.1%}" if q else "-"
    floats = ", ".join(sorted({f["op"] for f in r.runtime.get("float_ops", [])})) or "-"
    return (f"| {model} | {target} | {acc.artifact.mean_deg:.3f} | {acc.error_increase_deg:+.3f} | "
            f"{acc.diff_from_reference.mean_deg:.4f} / {acc.diff_from_reference.p95_deg:.4f} / "
            f"{acc.diff_from_reference.max_deg:.4f} | {r.size['artifact'].value / 1e6:.2f} | {r.latency['p50'].value:.3f} | "
            f"{int8} | {floats} | {seconds:.0f} | {'pass' if r.passed else 'FAIL'} |")


def main(models: list[str]) -> None:
    print("| model | target | error (deg) | increase over reference | diff mean / p95 / max (deg) | size (MB) | "
          "p50 (ms) | INT8 MACs | ops left float | compile (s) | gates |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as out:
        for model in models:
            for target in TARGETS:
                print(row(model, target, out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["tinygaze", "gazeresnet18", "temporalgaze"])
