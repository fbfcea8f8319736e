"""TFLite INT8: would a judge that sees every INT8 tensor choose better activation observers? (issue 21, item 2)

`to_tflite` leaves `observer_search` off: its torch fake-quantization judge quantizes conv and linear inputs only.
This benchmark tries the most faithful judge torch can run cheaply: the converted PT2E graph itself (every quantize /
dequantize pair litert-torch lowers), calibrated once, converted once per observer, run on calibration samples.

Per model: `tflite-int8` is compiled as shipped while its calibrated PT2E graphs are kept (the batch-1 graph the
artifact comes from, and its batched twin); then for each observer (percentile, as shipped; mse; minmax; histogram,
the peer's HistogramObserver search): the converted graph's difference from FP32 on the first 256 calibration samples
(the judge), and the LiteRT artifact converted from it, measured on the unseen samples against the FP32 artifact (the
truth). The row the judge would choose uses edgekit's own rule (quant.plan.choose_observer).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tflite_observers.py [--models tinygaze,gazeresnet18,zoo]
Writes benchmarks/tflite_observers.md and .json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import int8_peers as peers  # noqa: E402

OBSERVERS = ("percentile", "mse", "minmax", "histogram")
JUDGE_SAMPLES = 256


@contextmanager
def kept_pt2e_graphs(kept: dict):
    """While tflite-int8 compiles: keep the quantizer, the float module and its example args, the calibration
    samples, the calibrated batch-1 graph (before convert_pt2e) and the calibrated twin with its batches."""
    from torchao.quantization.pt2e import quantize_pt2e

    from edgekit.backends.tflite import convert
    from edgekit.quant import pt2e

    originals = convert._quantize_pt2e, pt2e.batched_twin, quantize_pt2e.convert_pt2e

    def quantize(module, args, quantizer, samples):
        kept.update(module=module, args=args, quantizer=quantizer, samples=samples)
        return originals[0](module, args, quantizer, samples)

    def twin(*a, **k):
        kept["twin"] = originals[1](*a, **k)
        return kept["twin"]

    def convert_pt2e(prepared, **k):
        kept["prepared"] = copy.deepcopy(prepared)  # calibrated: its observers hold the statistics
        return originals[2](prepared, **k)

    convert._quantize_pt2e, pt2e.batched_twin, quantize_pt2e.convert_pt2e = quantize, twin, convert_pt2e
    try:
        yield kept
    finally:
        convert._quantize_pt2e, pt2e.batched_twin, quantize_pt2e.convert_pt2e = originals


def converted_with(graph, observer: str):
    """A copy of a calibrated PT2E graph, converted with every edgekit activation observer set to `observer`."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from edgekit.quant import pt2e

    graph = copy.deepcopy(graph)
    for m in graph.modules():
        if type(m).__name__ == "EdgekitRangeObserver":
            m.method = observer
    with pt2e._without_qat_conv_bn_folding():
        return convert_pt2e(graph, fold_quantize=False)


def judge_batches(kept: dict) -> tuple[object, list[tuple]]:
    """(the graph to judge with, its inputs covering JUDGE_SAMPLES calibration samples): the batched twin where the
    model has one, else the batch-1 graph sample by sample."""
    twin = kept.get("twin")
    if twin is not None:
        graph, batches = twin
        per = batches[0][0].shape[0]
        return graph, batches[:max(1, JUDGE_SAMPLES // per)]
    return kept["prepared"], kept["samples"][:JUDGE_SAMPLES]


def vectors(module, batches, card):
    import numpy as np
    import torch

    from edgekit.evalset import to_vectors

    with torch.no_grad():
        return to_vectors(np.concatenate([module(*b).numpy() for b in batches]), card).reshape(-1, 3)


def bench(name: str, tmp: Path, unseen: int) -> dict:
    import litert_torch
    import numpy as np
    from litert_torch.quantize.quant_config import QuantConfig

    import edgekit.compiler as ek
    from edgekit.backends.tflite import convert as tflite_convert
    from edgekit.backends.tflite import graph as tflite_graph
    from edgekit.backends.tflite.runner import LiteRTRunner
    from edgekit.data.metrics import angular_error_deg
    from edgekit.evalset import default_eval_set, model_inputs
    from edgekit.quant.plan import ObserverTrial, QuantPlan, choose_observer, target_distance
    from edgekit.source import load_source

    src = peers.model_source(name)
    fp32 = ek.compile(**src, target="tflite", out=tmp / "fp32", cache=False, force=True).artifact
    with kept_pt2e_graphs({}) as kept:
        shipped = ek.compile(**src, target="tflite-int8", out=tmp / "int8", cache=False, force=True)
    target = {g.name: g.limit for g in shipped.report.gates}["max_error_increase_deg"]
    card = load_source(src["model"], tmp / "load", arch=src.get("arch"),
                       card=Path(src["card"]) if "card" in src else None).card
    evals = model_inputs(card, default_eval_set(card, unseen, seed=peers.UNSEEN_SEED))
    ref, _ = peers.differences(LiteRTRunner(fp32), evals, card, np.zeros((len(evals), 3)))
    graph, batches = judge_batches(kept)
    float_out = vectors(kept["module"], batches, card)
    truth = model_inputs(card, default_eval_set(card, 512, role="calib")).truth.reshape(-1, 3)[:len(float_out)]
    rows, trials = [], []
    for observer in OBSERVERS:
        judged = vectors(converted_with(graph, observer), batches, card)
        diff = angular_error_deg(judged, float_out)
        increase = float(angular_error_deg(judged, truth).mean() - angular_error_deg(float_out, truth).mean())
        trials.append(ObserverTrial(observer, QuantPlan(), increase, float(diff.mean()), float(diff.max()),
                                    target_distance(increase, 0.0, float(diff.max()), target, None, None)))
        path = tmp / f"{observer}.tflite"
        edge = tflite_convert._convert(litert_torch, converted_with(kept["prepared"], observer), kept["args"],
                                       quant_config=QuantConfig(pt2e_quantizer=kept["quantizer"]), original=kept["module"])
        edge.export(str(path))
        model = tflite_graph.read(path)
        tflite_graph.float_inputs(model)  # float32 I/O, as tflite-int8 ships
        tflite_graph.write(model, path)
        _, truth_diff = peers.differences(LiteRTRunner(path), evals, card, ref)
        rows.append({"observer": observer, "judge_mean": float(diff.mean()), "judge_max": float(diff.max()),
                     "artifact_mean": float(truth_diff.mean()), "artifact_max": float(truth_diff.max())})
    chosen, _ = choose_observer(trials)
    return {"model": name, "rows": rows, "judge_samples": len(float_out), "judge_chooses": chosen.observer,
            "shipped": shipped.report.quantization.plan.activations["observer"], "unseen": unseen}


def markdown(results: list[dict], host: dict) -> str:
    lines = ["# TFLite INT8: activation observers judged on the converted PT2E graph", "",
             f"Machine: {host['cpu']}, {host['cores']} cores. Produced by `benchmarks/tflite_observers.py`. Judge: the "
             "calibrated PT2E graph converted per observer and run in torch on the first calibration samples, difference "
             f"from FP32 (deg). Truth: the LiteRT artifact from that graph on {results[0]['unseen'] if results else 0} "
             f"unseen samples (seed {peers.UNSEEN_SEED}) against the FP32 artifact. `chosen` marks the observer "
             "edgekit's rule (quant.plan.choose_observer) would keep from the judge's numbers.", "",
             "| model | observer | judge mean | judge max | artifact mean | artifact max |", "|---|---|---|---|---|---|"]
    for res in results:
        for r in res["rows"]:
            mark = [("shipped" if r["observer"] == res["shipped"] else ""), ("chosen" if r["observer"] == res["judge_chooses"] else "")]
            label = r["observer"] + (f" ({', '.join(m for m in mark if m)})" if any(mark) else "")
            lines.append(f"| {res['model']} | {label} | {r['judge_mean']:.3f} | {r['judge_max']:.3f} | "
                         f"{r['artifact_mean']:.3f} | {r['artifact_max']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="tinygaze,gazeresnet18,zoo", help="comma-separated; 'zoo' = every tests/zoo model")
    ap.add_argument("--unseen", type=int, default=2000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "tflite_observers.md"))
    args = ap.parse_args()
    from edgekit import progress
    from edgekit.environment import host_info

    progress.configure(progress.QUIET)
    models = [m for part in args.models.split(",") for m in (peers.zoo_models() if part == "zoo" else [part])]
    results = []
    out = Path(args.out)
    for name in models:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(bench(name, Path(tmp), args.unseen))
        print(f"{name}: done", file=sys.stderr, flush=True)
        out.write_text(markdown(results, host_info()) + "\n")
        out.with_suffix(".json").write_text(json.dumps({"host": host_info(), "results": results}, indent=1))
    print(out.read_text())


if __name__ == "__main__":
    main()
