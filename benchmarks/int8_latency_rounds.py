"""Is edgekit's INT8 as fast as the peers'? Latency in several interleaved rounds (issue 21, item 2: "at equal or
better latency").

int8_peers.md times every variant once, interleaved in one loop; between two such runs the same artifact's p50 moved
by up to 9% here (ORT best on GazeResNet18: 1.650 then 1.506 ms), so a few percent between two variants of one run says
little. This builds, per model, the FP32 artifact, edgekit's INT8 one and the peers' (ONNX: ORT default and ORT best;
LiteRT: litert-torch's PT2E), then times them in ROUNDS interleaved rounds and gives each variant's median p50 over
the rounds, and per round the ratio of edgekit's p50 to the fastest peer's: its median and range. A verdict "holds"
when the median ratio is at most 1; "within noise" when it is above 1 but the rounds' range reaches 1. Each round is
edgekit.report.measure.interleaved_latency: since 2026-12-05 the variants take turns in blocks of runs, each after
untimed settling runs; before, run by run, which made whichever variant followed FP32 slower
(benchmarks/interleave_order.md).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/int8_latency_rounds.py [--models gazeresnet18,itracker]
         [--runtime onnx|tflite] [--rounds 7] [--runs 300] [--avx2-only] [--out benchmarks/int8_latency_rounds.md]
Writes the Markdown (--out) and a JSON of every number next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import int8_peers as peers  # noqa: E402

OURS = {"onnx": "edgekit onnx-int8", "tflite": "edgekit tflite-int8"}


def variants(name: str, runtime: str, tmp: Path) -> tuple[dict, object]:
    import edgekit.compiler as ek
    from edgekit.evalset import default_eval_set, model_inputs
    from edgekit.source import load_source

    src = peers.model_source(name)
    loaded = load_source(src["model"], tmp / "load", arch=src.get("arch"), card=Path(src["card"]) if "card" in src else None)
    calib = model_inputs(loaded.card, default_eval_set(loaded.card, 512, role="calib")).arrays
    fp32 = ek.compile(**src, target=runtime, out=tmp / "fp32", cache=False).artifact
    found = {"FP32": fp32, OURS[runtime]: ek.compile(**src, target=f"{runtime}-int8", out=tmp / "q", cache=False).artifact}
    if runtime == "onnx":
        found["ORT default"] = peers.attempt("ORT default", lambda: peers.ort_default(fp32, calib, tmp / "ort-default.onnx"))
        found["ORT best"] = peers.attempt("ORT best", lambda: peers.ort_best(fp32, calib, tmp / "ort-best.onnx"))
    else:
        found["litert-torch PT2E"] = peers.attempt("pt2e", lambda: peers.litert_pt2e(loaded.module, loaded.card, calib,
                                                                                      tmp / "pt2e.tflite"))
    return found, loaded.card


def bench(name: str, runtime: str, rounds: int, runs: int) -> dict:
    from edgekit.backends.onnx.runner import OnnxRunner
    from edgekit.backends.tflite.runner import LiteRTRunner
    from edgekit.evalset import default_eval_set, model_inputs
    from edgekit.report.measure import interleaved_latency

    make = OnnxRunner if runtime == "onnx" else LiteRTRunner
    with tempfile.TemporaryDirectory() as folder:
        found, card = variants(name, runtime, Path(folder))
        failed = {k: v for k, v in found.items() if not isinstance(v, Path)}
        runners = {k: make(v) for k, v in found.items() if isinstance(v, Path)}
        sample = model_inputs(card, default_eval_set(card, 1, seed=peers.UNSEEN_SEED)).sample(0)
        p50s = {k: [] for k in runners}
        for _ in range(rounds):
            lat = interleaved_latency({k: r.run for k, r in runners.items()}, sample, runs, max(runs // 10, 5), "1 thread")
            for k in runners:
                p50s[k].append(lat[k]["p50"].value)
    peer_names = [k for k in runners if k not in ("FP32", OURS[runtime])]
    ratios = [p50s[OURS[runtime]][i] / min(p50s[k][i] for k in peer_names) for i in range(rounds)] if peer_names else []
    return {"model": name, "runtime": runtime, "rounds": rounds, "runs": runs, "p50_ms": p50s, "failed": failed,
            "ratio_to_fastest_peer": ratios}


def verdict(ratios: list[float]) -> str:
    if not ratios:
        return "no peer ran"
    median, low, high = float(np.median(ratios)), min(ratios), max(ratios)
    word = "holds" if median <= 1 else "within noise" if low <= 1 else "SLOWER"
    return f"{word}: edgekit / fastest peer {median:.3f} (median of {len(ratios)} rounds; range {low:.3f}-{high:.3f})"


def markdown(results: list[dict], host: dict, masked: bool) -> str:
    from edgekit.report.measure import INTERLEAVE_BLOCK, SETTLE_S

    kernels = (" Run with --avx2-only: CPUID masked (tests/avx2_only.c), every runtime and compile on its AVX2 kernels."
               if masked else "")
    lines = ["# INT8 latency against the peers, in interleaved rounds", "",
             f"Machine: {host['cpu']}, {host['cores']} cores ({', '.join(host['isa_flags'])}).{kernels} Produced by "
             f"`benchmarks/int8_latency_rounds.py`: batch 1, 1 thread, each round {results[0]['runs'] if results else 0} "
             f"runs per variant after warm-up, interleaved in blocks of {INTERLEAVE_BLOCK} runs (more where they take "
             f"under {SETTLE_S:g} s, two blocks at least), each after {SETTLE_S:g} s of untimed ones "
             "(edgekit.report.measure); the peers built as in "
             "`int8_peers.py` (calibrated on the same 512 samples).", "",
             "| model | runtime | variant | p50 ms, median of rounds | p50 range | x FP32 |", "|---|---|---|---|---|---|"]
    for res in results:
        fp32 = float(np.median(res["p50_ms"]["FP32"]))
        for variant, values in res["p50_ms"].items():
            median = float(np.median(values))
            lines.append(f"| {res['model']} | {res['runtime']} | {variant} | {median:.3f} | {min(values):.3f}-"
                         f"{max(values):.3f} | {fp32 / median:.2f} |")
        for variant, why in res["failed"].items():
            lines.append(f"| {res['model']} | {res['runtime']} | {variant} | failed: {why[:120]} |  |  |")
    lines.append("")
    lines += [f"- {res['model']} ({res['runtime']}): {verdict(res['ratio_to_fastest_peer'])}" for res in results]
    return "\n".join(lines)


def main() -> None:
    from tests import avx2_only

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="gazeresnet18,itracker,mpiigaze_lenet,gaze360_temporal")
    ap.add_argument("--runtime", choices=("onnx", "tflite"), default="onnx")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=300)
    avx2_only.add_option(ap)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "int8_latency_rounds.md"))
    args = ap.parse_args()
    from edgekit import progress
    from edgekit.environment import host_info

    avx2_only.rerun_if_asked(args.avx2_only, "int8_latency_rounds")
    progress.configure(progress.QUIET)
    results = [bench(name, args.runtime, args.rounds, args.runs) for name in args.models.split(",")]
    out = Path(args.out)
    out.write_text(markdown(results, host_info(), avx2_only.masked()) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"host": host_info(), "avx2_only": avx2_only.masked(),
                                                    "results": results}, indent=1) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
