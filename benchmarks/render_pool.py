"""Rendering synthetic sets: the process pool edgekit used for every set (one process per core) against its default
now (a pool only for sets of 1,024 images or more, on this compile's share of the cores).

Every compile renders its evaluation and calibration sets (512 images) and a fine-tuning pass its training set (up to
24,000). Here N child processes render the same mix of sets at once, as N compiles do in `edgekit build --jobs N` or
the test suite's N workers, each with JAX loaded (litert-torch imports it, and pools then start through a forkserver),
once with a pool of one process per core and once with the default; the two alternate over --rounds rounds. Wall
clock per round, and the CPU time of the whole machine (/proc/stat) over it.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/render_pool.py [--compiles 1 2] [--rounds 2] [--out benchmarks/render_pool.md]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIX = ((24_000, 1), (512, 20), (1_000, 4), (2_000, 2))  # (images, sets): one fine-tuning set, many eval/calib sets
CHILD = textwrap.dedent('''
    import sys
    import jax  # noqa: F401  (as in a compile that converted to TFLite: pools start through a forkserver)
    from edgekit.data import synthetic
    from edgekit.environment import set_parallel_compiles, usable_cores

    mode, compiles, mix = sys.argv[1], int(sys.argv[2]), eval(sys.argv[3])
    set_parallel_compiles(compiles)
    workers = usable_cores() if mode == "pool per core" else None  # None: edgekit's default
    for n, sets in mix:
        for k in range(sets):
            synthetic.synthetic_set(n, 1000 + k, (40, 64), workers=workers, cache=False, progress=False)
''')


def _busy_seconds() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _round(mode: str, compiles: int, mix) -> tuple[float, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    busy, start = _busy_seconds(), time.perf_counter()
    children = [subprocess.Popen([sys.executable, "-c", CHILD, mode, str(compiles), repr(mix)], env=env)
                for _ in range(compiles)]
    if any(child.wait() for child in children):
        sys.exit(f"a child rendering with {mode!r} failed")
    return time.perf_counter() - start, _busy_seconds() - busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compiles", type=int, nargs="+", default=[1, 2], help="child processes rendering at once")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from edgekit.environment import cpu_label, usable_cores

    modes = ("pool per core", "default")
    images = sum(n * k for n, k in MIX)
    lines = ["# Rendering synthetic sets: a pool per core against edgekit's default", "",
             f"Machine: {cpu_label()}, {usable_cores()} usable cores, {time.strftime('%Y-%m-%d')}. Produced by "
             f"`benchmarks/render_pool.py --compiles {' '.join(map(str, args.compiles))} --rounds {args.rounds}`: "
             f"N processes at once, each rendering {images:,} images in {sum(k for _, k in MIX)} sets "
             f"({', '.join(f'{k} x {n:,}' for n, k in MIX)}) with JAX loaded; the two ways alternate.", "",
             "| compiles at once | way | wall per round (s) | CPU-s per round (whole machine) |", "|---|---|---|---|"]
    for compiles in args.compiles:
        runs: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
        for r in range(args.rounds):
            for mode in modes if r % 2 == 0 else modes[::-1]:
                runs[mode].append(_round(mode, compiles, MIX))
                print(f"{compiles} at once, round {r + 1}: {mode}: {runs[mode][-1][0]:.1f} s wall, "
                      f"{runs[mode][-1][1]:.1f} CPU-s", flush=True)
        for mode in modes:
            walls, cpus = zip(*runs[mode])
            lines.append(f"| {compiles} | {mode} | {' / '.join(f'{w:.1f}' for w in walls)} | "
                         f"{' / '.join(f'{c:.1f}' for c in cpus)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
