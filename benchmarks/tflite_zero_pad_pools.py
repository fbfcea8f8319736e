"""TFLite INT8: a padded max pool after a ReLU as a zero PAD, not as LiteRT's PADV2 of the lowest value (issue 21,
item 3).

litert-torch lowers max pooling's implicit padding (-inf) to a PADV2 before an unpadded MAX_POOL_2D; LiteRT 2.3's
XNNPACK delegate takes no INT8 PADV2, so LiteRT runs it in `tflite::reference_ops::PadImpl`. Since 2026-12-05
to_tflite pads a max pool whose input a ReLU made with zeros (`_zero_padded_max_pools`: the same values, since every
window holds an input element >= 0), a PAD XNNPACK runs. Per model, in one run: the FP32 artifact, the shipped
tflite-int8 and the same compile with the rewrite switched off (patched out here, the previous artifact); their
outputs compared element by element on the unseen samples, differences from FP32, latency interleaved in one loop
(batch 1, 1 thread), and perf samples (cpu-clock, 4 kHz) of a child that only invokes the interpreter, by symbol
(benchmarks/int8_profile.py).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tflite_zero_pad_pools.py [--models gazeresnet18] [--avx2-only]
Writes benchmarks/tflite_zero_pad_pools.md and .json (needs `perf`: apt-get install linux-perf).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from unittest import mock

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import int8_peers as peers  # noqa: E402
from int8_profile import litert_perf  # noqa: E402
from tflite_fixed_output import header, run, tables  # noqa: E402

SHIPPED, BEFORE = "edgekit tflite-int8, zero PAD (shipped)", "edgekit tflite-int8, PADV2 (before)"


def largest_output_change(a: Path, b: Path, evals) -> float:
    """The largest absolute difference between two artifacts' outputs, element by element, over every sample."""
    import numpy as np

    from edgekit.backends.tflite.runner import LiteRTRunner

    first, second = LiteRTRunner(a), LiteRTRunner(b)
    return max(float(np.abs(first.run(evals.sample(i)) - second.run(evals.sample(i))).max()) for i in range(len(evals)))


def bench(name: str, tmp: Path, unseen: int, runs: int, perf_runs: int) -> dict:
    import edgekit.compiler as ek
    from edgekit.backends.tflite import convert
    from edgekit.backends.tflite.runner import LiteRTRunner
    from edgekit.evalset import default_eval_set, model_inputs
    from edgekit.source import load_source

    src = peers.model_source(name)
    variants = {"FP32": ek.compile(**src, target="tflite", out=tmp / "fp32", cache=False).artifact,
                SHIPPED: ek.compile(**src, target="tflite-int8", out=tmp / "zero", cache=False).artifact}
    with mock.patch.object(convert, "_zero_padded_max_pools", lambda model: None):
        variants[BEFORE] = ek.compile(**src, target="tflite-int8", out=tmp / "padv2", cache=False).artifact
    card = load_source(src["model"], tmp / "load", arch=src.get("arch"),
                       card=Path(src["card"]) if "card" in src else None).card
    evals = model_inputs(card, default_eval_set(card, unseen, seed=peers.UNSEEN_SEED))
    rows = peers.measure_runtime("LiteRT", variants, LiteRTRunner, evals, card, runs)
    for row in rows:
        row["perf"] = litert_perf(variants[row["variant"]], perf_runs, tmp)
    return {"model": name, "rows": rows, "unseen": unseen,
            "largest_output_change": largest_output_change(variants[SHIPPED], variants[BEFORE], evals)}


def markdown(results: list[dict], host: dict, version: str) -> str:
    from tests import avx2_only

    masked = ("Run with --avx2-only: CPUID masked (tests/avx2_only.c), XNNPACK on its AVX2 kernels. "
              if avx2_only.masked() else "")
    lines = header("TFLite INT8: a padded max pool after a ReLU as a zero PAD or as PADV2", "tflite_zero_pad_pools.py",
                   results, host, version, masked + "Time: perf samples of a child invoking the interpreter alone (its "
                   "start-up included): LiteRT's reference pad kernel, and the symbols above 2%.")

    def cells(r: dict) -> list[str]:
        symbols = r["perf"]["symbols"]
        pad = sum(pct for pct, sym in symbols if "reference_ops::PadImpl" in sym)
        top = "; ".join(f"{sym.split('(')[0][:60]} {pct:.0f}%" for pct, sym in symbols if pct >= 2)
        return [f"{pad:.1f}%", top]

    lines += tables(results, ["reference pad kernel", "where the time goes"], cells)
    lines += [f"- {r['model']}: the two INT8 artifacts' outputs differ by at most {r['largest_output_change']:.3g} "
              f"(element by element, {r['unseen']} samples)" for r in results]
    return "\n".join(lines)


def main() -> None:
    run(__doc__, bench, markdown, "gazeresnet18", "tflite_zero_pad_pools.md", runs=1000, masks=True, perf_runs=3000)


if __name__ == "__main__":
    main()
