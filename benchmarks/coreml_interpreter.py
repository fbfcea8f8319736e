"""Verification time of Core ML artifacts: edgekit's MIL interpreter at this checkout against an earlier revision.

Every Core ML compile runs its artifact on the 512 evaluation samples at batch 1 in edgekit's MIL interpreter (Core ML
predicts only on macOS), so the interpreter's time per sample is most of a Core ML compile's verification. Here the
GazeResNet18 artifacts of coreml (FP16), coreml-int8 (INT8 weights, constexpr_affine_dequantize) and
coreml-palettized (4-bit palettes, constexpr_lut_to_dense) are compiled once, then run by the interpreter of each
revision (a `git worktree` of --against, and this checkout) in a child process each, the two alternating over
--rounds rounds: 3 warm-up runs, then 16 timed runs on the same random image per round; the median round, and the
largest output difference between the revisions.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/coreml_interpreter.py --against ab27ef1 [--out benchmarks/coreml_interpreter.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("coreml", "coreml-int8", "coreml-palettized")
CHILD = textwrap.dedent('''
    import json, sys, time, numpy as np
    from pathlib import Path
    from edgekit.backends.coreml.mil_interpreter import MilInterpreter

    out = {}
    for package in json.loads(sys.argv[1]):
        interp = MilInterpreter(Path(package))
        name = interp.input_names[0]
        shape = [int(s) for s in interp.function.inputs[name].shape]
        x = {name: (np.random.default_rng(0).random(shape) * 255).astype(np.float32)}
        for _ in range(3):
            interp.run(x)
        start = time.perf_counter()
        for _ in range(16):
            y = interp.run(x)
        out[package] = {"ms": (time.perf_counter() - start) / 16 * 1e3, "output": y.ravel().tolist()}
    print(json.dumps(out))
''')


def _compile(folder: Path) -> dict[str, str]:
    import edgekit.compiler as ek

    os.environ["EDGEKIT_CACHE_DIR"] = str(folder / "cache")  # not the user's pass cache
    packages = {}
    for target in TARGETS:
        result = ek.compile("gazeresnet18", target, out=folder / target)
        packages[target] = str(result.artifact)
    return packages


def _run(tree: Path, packages: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(packages)], env=env, cwd=tree, capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the earlier revision (a commit, tag or branch)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from compile_time import earlier_checkout  # benchmarks/, first on sys.path when run as a script

    from edgekit.environment import host_info

    with tempfile.TemporaryDirectory() as work, earlier_checkout(args.against) as old:
        packages = _compile(Path(work))
        order = [packages[t] for t in TARGETS]
        times = {"old": [], "new": []}
        outputs = {}
        for _ in range(args.rounds):  # alternating, so the host's speed moves both alike
            for label, tree in (("old", old), ("new", ROOT)):
                found = _run(tree, order)
                times[label].append([found[p]["ms"] for p in order])
                outputs[label] = [np.asarray(found[p]["output"]) for p in order]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "edgekit"], cwd=ROOT).returncode:
        head += " with uncommitted changes to edgekit/"
    host = host_info()
    rows = []
    for k, target in enumerate(TARGETS):
        before = float(np.median([r[k] for r in times["old"]]))
        after = float(np.median([r[k] for r in times["new"]]))
        diff = float(np.abs(outputs["old"][k] - outputs["new"][k]).max())
        rows.append({"target": target, "before_ms": before, "after_ms": after, "speedup": before / after,
                     "largest_output_difference": diff})
    lines = ["# Core ML verification: the MIL interpreter's time per sample, GazeResNet18 (batch 1, 1 thread)", "",
             f"Machine: {host['cpu']}, {os.cpu_count()} cores ({', '.join(host['isa_flags'])}). "
             f"{args.against} (before) against {head} (after), in a child process each, alternating over "
             f"{args.rounds} rounds; produced by `benchmarks/coreml_interpreter.py`.", "",
             "| target | before (ms per sample) | after | x faster | largest output difference |", "|---|---|---|---|---|"]
    lines += [f"| {r['target']} | {r['before_ms']:.1f} | {r['after_ms']:.1f} | {r['speedup']:.1f} | "
              f"{r['largest_output_difference']:.2g} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps({"host": host, "against": args.against, "head": head,
                                                             "rounds": times, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
