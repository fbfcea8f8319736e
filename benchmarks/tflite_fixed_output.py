"""TFLite INT8 with LiteRT's fixed-output ops (softmax, sigmoid, tanh, log_softmax) and the adds read only by float ops
in INT8 or float (issue 21, item 2).

Per model, in one run: the FP32 artifact, `tflite-int8` with each of the four settings of `fixed_output_ops`
(int8: softmax at LiteRT's 1/256 output scale) and `adds_into_float_ops` (the shipped pair marked), and litert-torch's
plain PT2E route (the peer of
benchmarks/int8_peers.py). Each: difference from the FP32 artifact on the unseen samples (mean / p95 / max deg),
latency interleaved in one loop (batch 1, 1 thread), the report's INT8 MAC share, and the compute ops LiteRT runs in
float (op name x count, from the interpreter's op list).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tflite_fixed_output.py [--models gaze_transformer,l2cs_bins,preact_resnet_gaze]
Writes benchmarks/tflite_fixed_output.md and .json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import int8_peers as peers  # noqa: E402
from int8_profile import litert_float_op_details  # noqa: E402

# float ops that only move or reshape data: not compute
DATA_MOVEMENT = {"RESHAPE", "TRANSPOSE"}


def float_compute_ops(path: Path) -> dict[str, int]:
    """op name -> how many of them LiteRT runs in float (XNNPACK-delegated partitions not counted)."""
    return dict(collections.Counter(op["op_name"] for op in litert_float_op_details(path)
                                    if op["op_name"] not in DATA_MOVEMENT))


def bench(name: str, tmp: Path, unseen: int, runs: int) -> dict:
    import edgekit.compiler as ek
    from edgekit.backends.tflite.runner import LiteRTRunner
    from edgekit.evalset import default_eval_set, model_inputs
    from edgekit.source import load_source

    src = peers.model_source(name)
    variants, int8_share = {}, {}
    variants["FP32"] = ek.compile(**src, target="tflite", out=tmp / "fp32", cache=False).artifact
    def changed(**options):
        return peers.recipe_with("tflite-int8", "to_tflite", options, tmp)

    from edgekit.backends.tflite.convert import ToTFLite

    shipped = {k: ToTFLite.model_fields[k].default for k in ("fixed_output_ops", "adds_into_float_ops")}
    for i, (fixed, adds) in enumerate((("int8", "int8"), ("float", "int8"), ("int8", "float"), ("float", "float"))):
        options = {"fixed_output_ops": fixed, "adds_into_float_ops": adds}
        label = f"edgekit, fixed_output_ops: {fixed}, adds_into_float_ops: {adds}" + (" (shipped)" if options == shipped else "")
        result = ek.compile(**src, target=str(changed(**options)), out=tmp / f"variant-{i}", cache=False, force=True)
        variants[label] = result.artifact
        gate = {g.name: g for g in result.report.gates}.get("min_int8_mac_fraction")
        int8_share[label] = f"{gate.value:.3f}" + ("" if gate.passed else f" (below the gate's {gate.limit})")
    loaded = load_source(src["model"], tmp / "load", arch=src.get("arch"), card=Path(src["card"]) if "card" in src else None)
    card = loaded.card
    calib = model_inputs(card, default_eval_set(card, 512, role="calib")).arrays
    evals = model_inputs(card, default_eval_set(card, unseen, seed=peers.UNSEEN_SEED))
    variants["litert-torch PT2E"] = peers.attempt("pt2e", lambda: peers.litert_pt2e(loaded.module, card, calib,
                                                                                     tmp / "pt2e.tflite"))
    rows = peers.measure_runtime("LiteRT", variants, LiteRTRunner, evals, card, runs)  # marks what LiteRT refuses
    for row in rows:
        row["int8_mac_share"] = int8_share.get(row["variant"], "")
        ran = "failed" not in row and row["variant"] != "FP32"
        row["float_ops"] = float_compute_ops(variants[row["variant"]]) if ran else {}
    return {"model": name, "rows": rows, "unseen": unseen}


def header(title: str, script: str, results: list[dict], host: dict, version: str, columns_mean: str) -> list[str]:
    """The title and the machine paragraph shared by this benchmark and tflite_activation_matmuls.py."""
    return [f"# {title}", "",
            f"Machine: {host['cpu']}, {host['cores']} cores ({', '.join(host['isa_flags'])}). LiteRT {version}. Produced "
            f"by `benchmarks/{script}`: every variant calibrated on the same 512 samples, measured on "
            f"{results[0]['unseen'] if results else 0} unseen samples (seed {peers.UNSEEN_SEED}) against the FP32 "
            f"artifact; latency interleaved in one loop, batch 1, 1 thread. {columns_mean}", ""]


def tables(results: list[dict], columns: list[str], cells) -> list[str]:
    """Per model, a table: variant, mean / p95 / max difference, p50, then `columns` filled by `cells(row)`; a variant
    that failed gets its reason instead."""
    lines = []
    for res in results:
        head = ["variant", "mean diff (deg)", "p95 diff", "max diff", "p50 (ms)", *columns]
        lines += [f"## {res['model']}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in res["rows"]:
            if "failed" in r:
                lines.append(f"| {r['variant']} | failed: {r['failed'][:160]} |" + "  |" * (len(head) - 2))
                continue
            own = [r["variant"], f"{r['mean_diff']:.3f}", f"{r['p95_diff']:.3f}", f"{r['max_diff']:.3f}",
                   f"{r['p50_ms']:.3f}", *cells(r)]
            lines.append("| " + " | ".join(own) + " |")
        lines.append("")
    return lines


def markdown(results: list[dict], host: dict, version: str) -> str:
    lines = header("TFLite INT8: LiteRT's fixed-output ops, and adds read only by float ops, in INT8 or float",
                   "tflite_fixed_output.py", results, host, version,
                   "Float ops: compute ops LiteRT runs with a float input or output (XNNPACK's delegated partitions not "
                   "counted).")
    lines += tables(results, ["INT8 MAC share", "float ops"], lambda r: [
        str(r["int8_mac_share"]), ", ".join(f"{k} {v}" for k, v in sorted(r["float_ops"].items()))])
    return "\n".join(lines)


def run(doc: str, bench_one, markdown_of, default_models: str, default_out: str, runs: int = 300, masks: bool = False,
        **extra) -> None:
    """The command line shared with benchmarks/tflite_activation_matmuls.py and single_channel_convs.py: each model
    benched in its own temporary folder, then the Markdown and a JSON of every number written. `extra`: more integer
    options for bench_one; `masks`: an --avx2-only option (the run as on a CPU without AVX-512 and VNNI)."""
    from tests import avx2_only

    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--models", default=default_models)
    ap.add_argument("--unseen", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=runs, help="latency runs per variant")
    for name, default in extra.items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / default_out))
    if masks:
        avx2_only.add_option(ap)
    args = ap.parse_args()
    avx2_only.rerun_if_asked(masks and args.avx2_only, Path(sys.argv[0]).stem)
    from edgekit import progress
    from edgekit.backends.tflite.runner import runtime_version
    from edgekit.environment import host_info

    progress.configure(progress.QUIET)
    results = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(bench_one(name, Path(tmp), args.unseen, args.runs, *(getattr(args, k) for k in extra)))
    out = Path(args.out)
    out.write_text(markdown_of(results, host_info(), runtime_version()) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"host": host_info(), "avx2_only": avx2_only.masked(), "results": results},
                                                   indent=1) + "\n")
    print(out.read_text())


def main() -> None:
    run(__doc__, bench, markdown, "gaze_transformer,l2cs_bins,preact_resnet_gaze", "tflite_fixed_output.md")


if __name__ == "__main__":
    main()
