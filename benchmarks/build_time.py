"""`edgekit build` of the shipped edgekit.yaml from an empty cache (issue 21, item 1: "give the time before and
after"): this checkout against an earlier revision, measured in one run, alternating, `--jobs 1`.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/build_time.py [--before 3bed63b] [--repeats 2]
        [--quiet-below 0.3] [--out benchmarks/build_time.json]

Each build runs in a fresh process with its own empty EDGEKIT_CACHE_DIR and output folder, the earlier revision from a
`git worktree` with this checkout's virtual environments (`.venv`, and `.venv-lava` for the Loihi targets through
EDGEKIT_LAVA_VENV), so both use the same packages. Per build: wall time, the load average before it, and every
target's seconds and status from dist/manifest.json. Prints a markdown table; --out also writes every run as JSON.
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
from pathlib import Path

from compile_time import ROOT, earlier_checkout, settle
from edgekit.environment import cpu_label


def build_once(code: Path, quiet_below: float | None) -> dict:
    """One cold `edgekit build edgekit.yaml` of the code in `code` (its own shipped project file)."""
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "EDGEKIT_CACHE_DIR": cache, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1",
               "EDGEKIT_LAVA_VENV": str(ROOT / ".venv-lava")}
        load = settle(quiet_below) if quiet_below is not None else os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "edgekit.cli", "build", "edgekit.yaml", "--jobs", "1",
                               "--out", f"{out}/dist"], cwd=code, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{code}: edgekit build exited {done.returncode}: {done.stderr[-2000:]}")
        manifest = json.loads((Path(out) / "dist" / "manifest.json").read_text())
    targets = {a["target"]: {"seconds": a["seconds"], "status": a["status"]} for a in manifest["artifacts"]}
    return {"seconds": seconds, "load_before": load, "targets": targets}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="3bed63b", help="the revision to compare with (default: before issue 21)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quiet-below", type=float, default=None, metavar="LOAD",
                    help="before each build, wait (up to 5 min) for the 1-minute load average to fall under LOAD")
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    with earlier_checkout(args.before) as before:
        for k in range(args.repeats):
            order = (("before", before), ("after", ROOT))
            for label, code in order if k % 2 == 0 else order[::-1]:  # alternate who goes first
                run = build_once(code, args.quiet_below)
                runs[label].append(run)
                print(f"[{k + 1}/{args.repeats}] {label}: {run['seconds']:.1f} s (load {run['load_before']:.2f})",
                      file=sys.stderr, flush=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    targets = list(runs["after"][0]["targets"])
    med = {label: {t: statistics.median(r["targets"][t]["seconds"] for r in rs) for t in targets}
           for label, rs in runs.items()}
    whole = {label: statistics.median(r["seconds"] for r in rs) for label, rs in runs.items()}
    print(f"`edgekit build edgekit.yaml --jobs 1`, empty cache, median of {args.repeats} (alternating), "
          f"OMP_NUM_THREADS=1, {cpu_label()}, {os.cpu_count()} CPUs; before = {args.before}, after = {head} "
          "(uncommitted changes included). Seconds per target from dist/manifest.json.\n")
    print("| | " + " | ".join(targets) + " | whole build |")
    print("|---|" + "---|" * (len(targets) + 1))
    for label in ("before", "after"):
        print(f"| {label} | " + " | ".join(f"{med[label][t]:.1f}" for t in targets) + f" | {whole[label]:.1f} s |")
    print(f"\nWhole build {whole['before'] / whole['after']:.2f}x faster; load average before each build "
          f"{min(r['load_before'] for rs in runs.values() for r in rs):.2f}-"
          f"{max(r['load_before'] for rs in runs.values() for r in rs):.2f}.")
    if args.out:
        args.out.write_text(json.dumps({"cpu": cpu_label(), "before": args.before, "after": head, "runs": runs},
                                       indent=2) + "\n")


if __name__ == "__main__":
    main()
