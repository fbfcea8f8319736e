"""TFLite INT8: ops LiteRT runs in INT8 only in its reference kernel (hardswish) in float or INT8 (issue 21, items
2 and 3).

LiteRT 2.3's XNNPACK delegate takes no INT8 HARD_SWISH, so LiteRT runs it in `tflite::reference_ops::HardSwish`, a
plain C++ loop. Per model, in one run: the FP32 artifact, `tflite-int8` with `reference_kernel_ops: float` (the
default since 2026-12-05: each hardswish computes as float multiplies, an add and a clamp between a dequantize and a
quantize) and `int8`, and litert-torch's plain PT2E route (the peer of benchmarks/int8_peers.py). Each: difference
from the FP32 artifact on the unseen samples (mean / p95 / max deg), latency interleaved in one loop (batch 1,
1 thread), the share min_int8_mac_fraction checks, and where LiteRT spends its time: perf samples (cpu-clock, 4 kHz)
of a child that only invokes the interpreter, by symbol (benchmarks/int8_profile.py).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tflite_reference_ops.py [--models mobilegaze] [--avx2-only]
Writes benchmarks/tflite_reference_ops.md and .json (needs `perf`: apt-get install linux-perf).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from tflite_activation_matmuls import bench_option  # noqa: E402
from tflite_fixed_output import header, run, tables  # noqa: E402

bench = functools.partial(bench_option, "reference_kernel_ops")


def markdown(results: list[dict], host: dict, version: str) -> str:
    from tests import avx2_only

    masked = ("Run with --avx2-only: CPUID masked (tests/avx2_only.c), XNNPACK on its AVX2 kernels. "
              if avx2_only.masked() else "")
    lines = header("TFLite INT8: ops LiteRT runs in INT8 only in its reference kernel, in float or INT8",
                   "tflite_reference_ops.py", results, host, version, masked + "Gate share: conv and fully-connected "
                   "MACs in INT8 (what min_int8_mac_fraction checks). Time: perf samples of a child invoking the "
                   "interpreter alone (its start-up included), the symbols above 2%.")

    def cells(r: dict) -> list[str]:
        share = f"{r['gate_share']:.3f}" if "gate_share" in r else ""
        top = "; ".join(f"{sym.split('(')[0][:60]} {pct:.0f}%" for pct, sym in r["perf"]["symbols"] if pct >= 2)
        return [share, top]

    return "\n".join(lines + tables(results, ["gate share", "where the time goes"], cells))


def main() -> None:
    run(__doc__, bench, markdown, "mobilegaze", "tflite_reference_ops.md", runs=1000, masks=True, perf_runs=3000)


if __name__ == "__main__":
    main()
