"""TFLite INT8: matmuls of two activations (an attention's query x key and probabilities x value) in float or INT8
(issue 21, items 2 and 3).

Per model, in one run: the FP32 artifact, `tflite-int8` with `activation_matmuls: float` (the default) and `int8`, and
litert-torch's plain PT2E route (the peer of benchmarks/int8_peers.py). Each: difference from the FP32 artifact on
the unseen samples (mean / p95 / max deg), latency interleaved in one loop (batch 1, 1 thread), the share
min_int8_mac_fraction checks (conv and fully-connected MACs in INT8), the matmuls' own MAC share and precision, and
where LiteRT spends its time: perf samples (cpu-clock, 4 kHz) of a child that only invokes the interpreter, by symbol
(LiteRT's Python wrapper has no op profiler: benchmarks/int8_profile.py).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tflite_activation_matmuls.py [--models gaze_transformer]
Writes benchmarks/tflite_activation_matmuls.md and .json (needs `perf`: apt-get install linux-perf).
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
import int8_peers as peers  # noqa: E402
from int8_profile import litert_perf  # noqa: E402
from tflite_fixed_output import float_compute_ops, header, run, tables  # noqa: E402



def matmul_facts(path: Path) -> dict:
    """The gate's share and the matmuls of two activations, read from the .tflite as the report reads it."""
    from edgekit.backends.base import weight_int8_share
    from edgekit.backends.tflite import graph

    rows = graph.layer_rows(graph.read(path))
    share, matmuls = weight_int8_share(rows)
    total = sum(r["macs"] for r in rows if r["macs"]) or 1
    return {"gate_share": share, "matmul_mac_share": sum(r["macs"] for r in matmuls) / total,
            "matmul_precisions": sorted({r["precision"] for r in matmuls})}


def bench_option(option: str, name: str, tmp: Path, unseen: int, runs: int, perf_runs: int) -> dict:
    """One to_tflite option's float and int8 settings against FP32 and litert-torch's PT2E route on one model (shared
    with benchmarks/tflite_reference_ops.py): differences, latency, gate share, float ops, perf samples."""
    import edgekit.compiler as ek
    from edgekit.backends.tflite.runner import LiteRTRunner
    from edgekit.evalset import default_eval_set, model_inputs
    from edgekit.source import load_source

    src = peers.model_source(name)
    variants = {"FP32": ek.compile(**src, target="tflite", out=tmp / "fp32", cache=False).artifact}
    for setting in ("float", "int8"):
        recipe = peers.recipe_with("tflite-int8", "to_tflite", {option: setting}, tmp)
        label = f"edgekit, {option}: {setting}" + (" (shipped)" if setting == "float" else "")
        variants[label] = ek.compile(**src, target=str(recipe), out=tmp / setting, cache=False, force=True).artifact
    loaded = load_source(src["model"], tmp / "load", arch=src.get("arch"), card=Path(src["card"]) if "card" in src else None)
    card = loaded.card
    calib = model_inputs(card, default_eval_set(card, 512, role="calib")).arrays
    evals = model_inputs(card, default_eval_set(card, unseen, seed=peers.UNSEEN_SEED))
    (tmp / "pt2e").mkdir()
    variants["litert-torch PT2E"] = peers.attempt("pt2e", lambda: peers.litert_pt2e(loaded.module, card, calib,
                                                                                     tmp / "pt2e" / "model.tflite"))
    rows = peers.measure_runtime("LiteRT", variants, LiteRTRunner, evals, card, runs)
    for row in rows:
        if "failed" in row:
            continue
        path = variants[row["variant"]]
        row |= matmul_facts(path) if row["variant"] != "FP32" else {}
        row["float_ops"] = float_compute_ops(path) if row["variant"] != "FP32" else {}
        row["perf"] = litert_perf(path, perf_runs, tmp)
    return {"model": name, "rows": rows, "unseen": unseen}


bench = functools.partial(bench_option, "activation_matmuls")


def markdown(results: list[dict], host: dict, version: str) -> str:
    lines = header("TFLite INT8: matmuls of two activations in float or INT8", "tflite_activation_matmuls.py", results,
                   host, version, "Gate share: conv and fully-connected MACs in INT8 (what min_int8_mac_fraction "
                   "checks); matmuls: the matmuls of two activations, their share of all MACs and their precision. Time: "
                   "perf samples of a child invoking the interpreter alone (its start-up included), the symbols above 2%.")

    def cells(r: dict) -> list[str]:
        matmuls = (f"{r['matmul_mac_share']:.1%} of MACs, {' / '.join(r['matmul_precisions'])}"
                   if r.get("matmul_precisions") else "")
        share = f"{r['gate_share']:.3f}" if "gate_share" in r else ""
        top = "; ".join(f"{sym.split('(')[0][:60]} {pct:.0f}%" for pct, sym in r["perf"]["symbols"] if pct >= 2)
        return [share, matmuls, top]

    return "\n".join(lines + tables(results, ["gate share", "matmuls", "where the time goes"], cells))


def main() -> None:
    run(__doc__, bench, markdown, "gaze_transformer", "tflite_activation_matmuls.md", runs=1000, perf_runs=3000)


if __name__ == "__main__":
    main()
