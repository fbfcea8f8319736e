"""How much does "the largest difference from FP32 on 2,000 unseen images" move from one unseen set to another?

int8_peers.md compares edgekit with its peers by the mean and the largest angular difference from FP32 on one set of
2,000 unseen images (seed 424242). The largest is one image. This runs the same ONNX variants (edgekit onnx-int8 as
shipped and with `weight_rounding: gptq`, ORT default, ORT best; int8_peers.py builds the peers) on 5 disjoint unseen
sets of 2,000 (seeds 424242..424246; no role draws them) and gives each set's mean and largest, and over all 10,000
images the 99th and 99.9th percentiles, which rest on 100 and 10 images instead of one.

With --runtime tflite, the same on LiteRT: edgekit tflite-int8 as shipped and with to_tflite's `activation_matmuls:
int8` (the default until 2026-12-05; before that commit this variant was `fixed_output_ops` and `adds_into_float_ops`
both float), and for the models whose head feeds an output normalisation that head kept float (keep_float; not
shipped: benchmarks/tflite_output_layers.md), against litert-torch's PT2E route, each against the FP32 TFLite
artifact.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int8_unseen_sets.py [--models itracker,stn_gaze]
         [--runtime onnx|tflite] [--out benchmarks/int8_unseen_sets.md]
Writes the Markdown (--out) and a JSON of every number next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

from int8_peers import UNSEEN_SEED, attempt, litert_pt2e, model_source, ort_best, ort_default, recipe_with  # noqa: E402
from tflite_output_layers import NORMALISED_HEADS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SETS = 5
PER_SET = 2000


def variants(name: str, tmp: Path) -> tuple[Path, dict[str, Path], object]:
    import edgekit.compiler as ek
    from edgekit.evalset import default_eval_set, model_inputs
    from edgekit.source import load_source

    src = model_source(name)
    card = load_source(src["model"], tmp / "load", arch=src.get("arch"),
                       card=Path(src["card"]) if "card" in src else None).card
    fp32 = ek.compile(**src, target="onnx", out=tmp / "onnx", cache=False).artifact
    calib = model_inputs(card, default_eval_set(card, 512, role="calib")).arrays
    gptq = recipe_with("onnx-int8", "ptq", {"weight_rounding": "gptq"}, tmp)
    return fp32, {"edgekit onnx-int8": ek.compile(**src, target="onnx-int8", out=tmp / "q", cache=False).artifact,
                  "edgekit, weight_rounding: gptq": ek.compile(**src, target=str(gptq), out=tmp / "g", cache=False).artifact,
                  "ORT default": ort_default(fp32, calib, tmp / "ort-default.onnx"),
                  "ORT best": ort_best(fp32, calib, tmp / "ort-best.onnx")}, card


def tflite_variants(name: str, tmp: Path) -> tuple[Path, dict[str, Path], object]:
    import edgekit.compiler as ek
    from edgekit.evalset import default_eval_set, model_inputs
    from edgekit.source import load_source

    src = model_source(name)
    loaded = load_source(src["model"], tmp / "load", arch=src.get("arch"),
                         card=Path(src["card"]) if "card" in src else None)
    fp32 = ek.compile(**src, target="tflite", out=tmp / "tflite", cache=False).artifact
    calib = model_inputs(loaded.card, default_eval_set(loaded.card, 512, role="calib")).arrays
    int8_matmuls = recipe_with("tflite-int8", "to_tflite", {"activation_matmuls": "int8"}, tmp)
    found = {"edgekit tflite-int8": ek.compile(**src, target="tflite-int8", out=tmp / "q", cache=False).artifact,
             "edgekit, activation_matmuls: int8 (shipped until 2026-12-05)": ek.compile(
                 **src, target=str(int8_matmuls), out=tmp / "f", cache=False, force=True).artifact}
    if name in NORMALISED_HEADS:  # not shipped: the head before an output normalisation kept float too
        head = recipe_with("tflite-int8", "to_tflite", {"keep_float": [NORMALISED_HEADS[name]]}, tmp)
        found[f"edgekit, normalised head {NORMALISED_HEADS[name]} float (keep_float)"] = ek.compile(
            **src, target=str(head), out=tmp / "h", cache=False, force=True).artifact
    found["litert-torch PT2E"] = attempt("pt2e", lambda: litert_pt2e(loaded.module, loaded.card, calib, tmp / "pt2e.tflite"))
    return fp32, found, loaded.card


def bench_model(name: str, runtime: str = "onnx") -> dict:
    from edgekit.backends.onnx.runner import OnnxRunner
    from edgekit.backends.tflite.runner import LiteRTRunner
    from edgekit.data.metrics import angular_error_deg
    from edgekit.errors import BadInputError
    from edgekit.evalset import default_eval_set, model_inputs, run_all, to_vectors

    runner = LiteRTRunner if runtime == "tflite" else OnnxRunner
    with tempfile.TemporaryDirectory() as d:
        fp32, quantized, card = (tflite_variants if runtime == "tflite" else variants)(name, Path(d))
        # a peer that failed is a result (litert-torch cannot convert stn_gaze, LiteRT refuses its l2cs_bins:
        # int8_peers.md): attempt() gave its error instead of a path, or the runtime refuses the file
        runs, failed = {}, {}
        for k, path in quantized.items():
            if isinstance(path, str):
                failed[k] = path
                continue
            try:
                runs[k] = runner(path).run
            except BadInputError as exc:
                failed[k] = str(exc)
        reference = runner(fp32).run
        diffs: dict[str, list[np.ndarray]] = {k: [] for k in runs}
        for seed in range(UNSEEN_SEED, UNSEEN_SEED + SETS):
            evals = model_inputs(card, default_eval_set(card, PER_SET, seed=seed))
            vectors = lambda run: to_vectors(run_all(run, evals), card).reshape(-1, 3)  # noqa: E731
            ref = vectors(reference)
            for k, run in runs.items():
                diffs[k].append(angular_error_deg(vectors(run), ref))
    rows = []
    for k, sets in diffs.items():
        every = np.concatenate(sets)
        rows.append({"variant": k, "mean_per_set": [float(s.mean()) for s in sets], "max_per_set": [float(s.max()) for s in sets],
                     "mean": float(every.mean()), "p99": float(np.percentile(every, 99)),
                     "p999": float(np.percentile(every, 99.9)), "max": float(every.max())})
    rows += [{"variant": k, "failed": why} for k, why in failed.items()]
    return {"model": name, "runtime": runtime, "rows": rows}


def markdown(results: list[dict], host: dict, runtime: str = "onnx") -> str:
    against = "FP32 TFLite model in LiteRT" if runtime == "tflite" else "FP32 ONNX model in onnxruntime"
    out = [f"# INT8 on {SETS} unseen sets of {PER_SET:,}: how far one set's largest difference is to be trusted", "",
           f"Machine: {host['cpu']}, {host['cores']} cores. Produced by `benchmarks/int8_unseen_sets.py"
           + (" --runtime tflite" if runtime == "tflite" else "") + "`; every variant "
           f"calibrated on the same 512 samples, each set's differences from the {against} (seeds "
           f"{UNSEEN_SEED}..{UNSEEN_SEED + SETS - 1}; the first is int8_peers.md's set).", ""]
    for r in results:
        out += [f"## {r['model']}", "", "| variant | mean per set (deg) | largest per set | all 10,000: mean | p99 | p99.9 | largest |",
                "|---|---|---|---|---|---|---|"]
        for row in r["rows"]:
            if "failed" in row:
                out.append(f"| {row['variant']} | failed: {row['failed'][:160]} |  |  |  |  |  |")
                continue
            out.append(f"| {row['variant']} | {' '.join(f'{v:.3f}' for v in row['mean_per_set'])} | "
                       f"{' '.join(f'{v:.3f}' for v in row['max_per_set'])} | {row['mean']:.3f} | {row['p99']:.3f} | "
                       f"{row['p999']:.3f} | {row['max']:.3f} |")
        ours = r["rows"][0]
        peers = [row for row in r["rows"] if not row["variant"].startswith("edgekit") and "failed" not in row]
        if not peers:
            out += ["", "- no peer ran", ""]
            continue
        best = [min(row["max_per_set"][i] for row in peers) for i in range(SETS)]
        wins = sum(o <= b for o, b in zip(ours["max_per_set"], best))
        out += ["", f"- {ours['variant']}'s largest difference at most the best peer's on {wins} of {SETS} sets; "
                f"over all 10,000: mean {ours['mean']:.3f} vs best peer {min(row['mean'] for row in peers):.3f}, p99.9 "
                f"{ours['p999']:.3f} vs {min(row['p999'] for row in peers):.3f}, largest {ours['max']:.3f} vs "
                f"{min(row['max'] for row in peers):.3f}", ""]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="itracker,mpiigaze_lenet,stn_gaze,preact_resnet_gaze,gaze_transformer")
    ap.add_argument("--runtime", choices=("onnx", "tflite"), default="onnx")
    ap.add_argument("--out", help="default: benchmarks/int8_unseen_sets.md (int8_unseen_sets_tflite.md with --runtime tflite)")
    args = ap.parse_args()
    from edgekit.environment import host_info

    host = host_info()
    results = []
    for name in args.models.split(","):
        results.append(bench_model(name, args.runtime))
        print(name, "done", flush=True)
    suffix = "_tflite" if args.runtime == "tflite" else ""
    out = Path(args.out or ROOT / "benchmarks" / f"int8_unseen_sets{suffix}.md")
    out.write_text(markdown(results, host, args.runtime))
    out.with_suffix(".json").write_text(json.dumps({"host": host, "python": platform.python_version(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
