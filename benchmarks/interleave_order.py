"""Does the way runners take turns change their measured latency? (Why edgekit.report.measure interleaves in blocks.)

int8_latency_rounds.md (session 35) found edgekit's onnx-int8 3-7% slower than ORT best on four models in every round,
with the convolutions taking the same time in onnxruntime's profiler. Those rounds alternated run by run in a fixed
order: FP32, edgekit, ORT default, ORT best, so edgekit's model always ran right after the FP32 one. This times the same
artifacts (one model; FP32, edgekit's INT8 and one peer per runtime) under four schedules, ROUNDS times each:

  run by run, edgekit after FP32   the alternation edgekit used until 2026-12-05
  run by run, peer after FP32      the same with the two INT8 variants swapped
  blocks                           edgekit.report.measure's alternation now: blocks of INTERLEAVE_BLOCK runs, each after
                                   SETTLE_S of untimed runs, the order changing every round
  alone                            each variant's runs one after the other, the variants one after another

and gives each variant's median p50 over the rounds, edgekit / peer and FP32 / edgekit per schedule. A second table
times the FP32 model run by run after 0.1 s of something else (sleep, edgekit's INT8 model, a Python loop), the runs
before that its own: how long it takes to run as fast as it does alone (why blocks start after SETTLE_S of untimed runs).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/interleave_order.py [--model gazeresnet18] [--runtime onnx|tflite]
         [--rounds 5] [--runs 300] [--out benchmarks/interleave_order.md]
Writes the Markdown (--out; a second runtime is appended with --append) and a JSON of every number next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from int8_latency_rounds import OURS, variants  # noqa: E402

PEER = {"onnx": "ORT best", "tflite": "litert-torch PT2E"}


def run_by_run(runners: dict, sample, runs: int) -> dict[str, list[float]]:
    """The alternation edgekit used before blocks: every runner once per turn, in the given order."""
    times = {k: [] for k in runners}
    for _ in range(runs):
        for k, run in runners.items():
            start = time.perf_counter()
            run(sample)
            times[k].append((time.perf_counter() - start) * 1e3)
    return times


def schedules(ours: str, peer: str) -> dict:
    from edgekit.report.measure import _time_runs

    def alone(runners, sample, n):
        return {k: _time_runs({k: run}, sample, n, 0)[k] for k, run in runners.items()}

    return {
        "run by run, edgekit after FP32": (("FP32", ours, peer), run_by_run),
        "run by run, peer after FP32": (("FP32", peer, ours), run_by_run),
        "blocks (edgekit now)": (("FP32", ours, peer), lambda r, s, n: _time_runs(r, s, n, 0)),
        "alone": (("FP32", ours, peer), alone),
    }


RAMP_POSITIONS = (1, 2, 3, 5, 10, 15, 20, 30)


def ramp(fp32, ours, sample, repeats: int = 8) -> dict[str, list[float]]:
    """The FP32 model's milliseconds at each run after 0.1 s of something else (median over `repeats`)."""
    def for_a_while(what):
        end = time.perf_counter() + 0.1
        while time.perf_counter() < end:
            if what == "sleep":
                time.sleep(0.1)
            elif what == "INT8 runs":
                ours(sample)

    out = {}
    for what in ("FP32 runs", "sleep", "INT8 runs", "Python loop"):
        rows = []
        for _ in range(repeats):
            run_by_run({"fp32": fp32}, sample, 40)  # its own steady state first
            if what != "FP32 runs":
                for_a_while(what)
            rows.append(run_by_run({"fp32": fp32}, sample, max(RAMP_POSITIONS))["fp32"])
        out[what] = [float(np.median([r[i - 1] for r in rows])) for i in RAMP_POSITIONS]
    return out


def bench(model: str, runtime: str, rounds: int, runs: int) -> dict:
    from edgekit.backends.onnx.runner import OnnxRunner
    from edgekit.backends.tflite.runner import LiteRTRunner
    from edgekit.evalset import default_eval_set, model_inputs
    from int8_peers import UNSEEN_SEED

    ours, peer = OURS[runtime], PEER[runtime]
    make = OnnxRunner if runtime == "onnx" else LiteRTRunner
    with tempfile.TemporaryDirectory() as folder:
        found, card = variants(model, runtime, Path(folder))
        runners = {k: make(found[k]).run for k in ("FP32", ours, peer)}
        sample = model_inputs(card, default_eval_set(card, 1, seed=UNSEEN_SEED)).sample(0)
        for run in runners.values():  # warm-up: first runs allocate
            for _ in range(max(runs // 10, 5)):
                run(sample)
        p50 = {name: {k: [] for k in runners} for name in schedules(ours, peer)}
        for _ in range(rounds):
            for name, (order, schedule) in schedules(ours, peer).items():
                times = schedule({k: runners[k] for k in order}, sample, runs)
                for k in order:
                    p50[name][k].append(float(np.median(times[k])))
        after = ramp(runners["FP32"], runners[ours], sample)
    return {"model": model, "runtime": runtime, "rounds": rounds, "runs": runs, "ours": ours, "peer": peer, "p50_ms": p50,
            "fp32_ramp_ms": after}


def markdown(res: dict, host: dict, header: bool) -> str:
    ours, peer = res["ours"], res["peer"]
    lines = []
    if header:
        lines += ["# Latency by schedule: run by run, in blocks, alone", "",
                  f"Machine: {host['cpu']}, {host['cores']} cores ({', '.join(host['isa_flags'])}). Produced by "
                  f"`benchmarks/interleave_order.py`: batch 1, 1 thread, {res['runs']} timed runs per variant and "
                  f"schedule, {res['rounds']} rounds (the schedules in turn), median p50 over the rounds.", ""]
    lines += [f"## {res['model']}, {res['runtime']}", "",
              f"| schedule | FP32 ms | {ours} ms | {peer} ms | edgekit / peer | FP32 / edgekit |", "|---|---|---|---|---|---|"]
    for name, by_variant in res["p50_ms"].items():
        med = {k: float(np.median(v)) for k, v in by_variant.items()}
        ratios = [o / p for o, p in zip(by_variant[ours], by_variant[peer])]
        lines.append(f"| {name} | {med['FP32']:.3f} | {med[ours]:.3f} | {med[peer]:.3f} | {np.median(ratios):.3f} "
                     f"({min(ratios):.3f}-{max(ratios):.3f}) | {med['FP32'] / med[ours]:.2f} |")
    lines += ["", "FP32 ms at each run after 0.1 s of something else (median of 8; 'FP32 runs': nothing else, its steady "
              "state):", "", "| before | " + " | ".join(f"run {i}" for i in RAMP_POSITIONS) + " |",
              "|---|" + "---|" * len(RAMP_POSITIONS)]
    lines += [f"| {what} | " + " | ".join(f"{v:.2f}" for v in values) + " |" for what, values in res["fp32_ramp_ms"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gazeresnet18")
    ap.add_argument("--runtime", choices=("onnx", "tflite"), default="onnx")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--append", action="store_true", help="add this runtime's table to --out and its JSON")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "interleave_order.md"))
    args = ap.parse_args()
    from edgekit import progress
    from edgekit.environment import host_info

    progress.configure(progress.QUIET)
    res = bench(args.model, args.runtime, args.rounds, args.runs)
    out, data = Path(args.out), Path(args.out).with_suffix(".json")
    earlier = json.loads(data.read_text())["results"] if args.append and data.is_file() else []
    results = [*earlier, res]
    out.write_text("\n".join(markdown(r, host_info(), i == 0) for i, r in enumerate(results)))
    data.write_text(json.dumps({"host": host_info(), "results": results}, indent=1) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
