"""Cold compile time of GazeResNet18 to onnx-int8 and tflite-int8 (issue 21, item 1): this checkout against an earlier
revision, measured in one run, interleaved, each compile from an empty cache.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compile_time.py [--before 3bed63b] [--repeats 3]
        [--targets onnx-int8 tflite-int8] [--out benchmarks/compile_time.json] [--quiet-below 0.3]

The earlier revision is checked out with `git worktree` into a temporary folder and run with this checkout's virtual
environment (PYTHONPATH pointing at it), so both use the same packages. Per compile: wall time, the load average
before it, and the report's error increase and largest difference from the reference (the same accuracy is part of
the goal). Prints a markdown table; --out also writes every run as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from edgekit.environment import cpu_label

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def earlier_checkout(revision: str):
    """A `git worktree` of REVISION in a temporary folder (its path), removed afterwards: run with this checkout's
    virtual environment and PYTHONPATH pointing at it, the earlier code uses the same packages."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), revision], cwd=ROOT, check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)


def settle(below: float, limit_s: float = 300.0) -> float:
    """Wait until the 1-minute load average is under `below` (the previous compile's load decays with a 1-minute time
    constant), at most `limit_s` seconds; returns the load average then."""
    waited = 0.0
    while os.getloadavg()[0] >= below and waited < limit_s:
        time.sleep(5)
        waited += 5
    return os.getloadavg()[0]


def compile_once(code: Path, model: str, target: str, quiet_below: float | None = None) -> dict:
    """One cold compile (empty cache, fresh output folder) with the edgekit package found in `code`; `quiet_below`:
    first wait for the load average to fall under it."""
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "EDGEKIT_CACHE_DIR": cache, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
        load = settle(quiet_below) if quiet_below is not None else os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "edgekit.cli", "compile", model, "-t", target, "--out", f"{out}/o",
                               "-q"], cwd=code, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode not in (0, 1):  # 1: a gate failed, still a finished compile with a report
            raise SystemExit(f"{code}: compile {model} -t {target} exited {done.returncode}: {done.stderr[-2000:]}")
        report = json.loads((Path(out) / "o" / "report.json").read_text())
    acc = report["accuracy"]
    return {"seconds": seconds, "load_before": load, "passed": report["passed"],
            "error_increase_deg": acc["error_increase_deg"], "max_diff_deg": acc["diff_from_reference"]["max_deg"],
            "int8_mac_fraction": (report.get("quantization") or {}).get("int8_mac_fraction")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="3bed63b", help="the revision to compare with (default: before issue 21)")
    ap.add_argument("--model", default="gazeresnet18")
    ap.add_argument("--targets", nargs="+", default=["onnx-int8", "tflite-int8"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quiet-below", type=float, default=None, metavar="LOAD",
                    help="before each compile, wait (up to 5 min) for the 1-minute load average to fall under LOAD "
                         "(the issue's quiet host: 0.3)")
    args = ap.parse_args()
    runs: dict[str, dict[str, list[dict]]] = {t: {"before": [], "after": []} for t in args.targets}
    with earlier_checkout(args.before) as before:
        for k in range(args.repeats):
            for target in args.targets:
                for label, code in (("before", before), ("after", ROOT)):  # interleaved: load drifts hit both
                    run = compile_once(code, args.model, target, args.quiet_below)
                    runs[target][label].append(run)
                    print(f"[{k + 1}/{args.repeats}] {target} {label}: {run['seconds']:.1f} s (load "
                          f"{run['load_before']:.2f})", file=sys.stderr, flush=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"Cold compile of {args.model}, median of {args.repeats} (interleaved, empty cache each time), "
          f"OMP_NUM_THREADS=1, {cpu_label()}, {os.cpu_count()} CPUs; before = {args.before}, after = {head} "
          "(uncommitted changes included)\n")
    print("| target | before (s) | after (s) | speed-up | error increase before / after (deg) | largest difference "
          "before / after (deg) | load average before each compile |")
    print("|---|---|---|---|---|---|---|")
    for target, by in runs.items():
        med = {label: statistics.median(r["seconds"] for r in rs) for label, rs in by.items()}
        acc = {label: rs[0] for label, rs in by.items()}
        loads = [r["load_before"] for rs in by.values() for r in rs]
        print(f"| {target} | {med['before']:.1f} | {med['after']:.1f} | {med['before'] / med['after']:.2f}x | "
              f"{acc['before']['error_increase_deg']:+.3f} / {acc['after']['error_increase_deg']:+.3f} | "
              f"{acc['before']['max_diff_deg']:.3f} / {acc['after']['max_diff_deg']:.3f} | "
              f"{min(loads):.2f}-{max(loads):.2f} |")
    if args.out:
        args.out.write_text(json.dumps({"cpu": cpu_label(), "before": args.before, "after": head, "model": args.model,
                                        "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
