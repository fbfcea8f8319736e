"""Where the test suite's time goes: `make test`'s command with a plugin that records each test's wall and CPU
seconds and the garbage collector's time per worker, and the machine's idle CPU from /proc/stat.

    python benchmarks/suite_time.py [--label L] [--jobs N]   writes benchmarks/suite_time_L.json; --render prints its
                                                            Markdown summary (the tables in suite_time.md)
    ... --processes   also the CPU of every process the suite started, by kind (Lava's simulator, Ray's workers and
                      daemons, CLI subprocesses, ...), which the plugin cannot see: BSD process accounting (`accton`,
                      Debian's acct package, as root) joined with `ps` sampled every 0.3 s for the command lines

Run it on a quiet host (load average under 0.3): the suite's budget is 8 minutes on 2 cores (issue 21, item 4).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _idle_cpu_s() -> float:
    """Idle seconds summed over every CPU since boot (/proc/stat, in USER_HZ ticks of 1/100 s)."""
    return int(Path("/proc/stat").read_text().split()[4]) / 100


# (kind, what the command line holds), the first that matches names a process's kind
KINDS = (("pytest-xdist worker", "exec(eval(sys.stdin"), ("Lava's simulator", "lava_script.py"),
         ("Lava import check", "import importlib.metadata as m, lava"), ("float-digest probe", "determinism_probe"),
         ("reference prefetch", "edgekit.report.reference_prefetch"), ("Ray worker", "default_worker.py"),
         ("Ray worker", "ray::"), ("Ray daemons", "ray/"), ("edgekit CLI subprocess", "edgekit.cli"),
         ("edgekit CLI subprocess", "signal.default_int_handler"), ("pytest and scripts in its folders", "pytest"), ("chromium", "chromium"))


def _kind(args: str | None) -> str:
    if args is None:
        return "unseen (shorter than a sample)"
    return next((kind for kind, key in KINDS if key in args), "other")


@contextlib.contextmanager
def _process_accounting(enabled: bool):
    """Yields a dict filled, after the block, with CPU seconds by process kind (empty when not enabled)."""
    result: dict[str, dict] = {}
    if not enabled:
        yield result
        return
    with tempfile.TemporaryDirectory() as tmp:
        acct, seen, stop = Path(tmp) / "pacct", {}, threading.Event()
        acct.touch()

        def sample():  # pid -> [(time, args)]: pids are reused (pid_max may be 32768), so times pick the right one
            while not stop.is_set():
                now = time.time()
                out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
                for line in out.splitlines():
                    pid, _, args = line.strip().partition(" ")
                    if "<defunct>" not in args:
                        seen.setdefault(int(pid), []).append((now, args.strip()))
                stop.wait(0.3)

        subprocess.run(["accton", str(acct)], check=True, capture_output=True)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            yield result
        finally:
            subprocess.run(["accton", "off"], capture_output=True)
            stop.set()
            sampler.join()
        records = subprocess.run(["dump-acct", str(acct)], capture_output=True, text=True, check=True).stdout
    for line in records.splitlines():
        fields = [f.strip() for f in line.split("|")]
        cpu, elapsed, pid = (float(fields[2]) + float(fields[3])) / 100, float(fields[4]) / 100, int(fields[9])
        start = time.mktime(time.strptime(re.sub(r"\s+", " ", fields[14]), "%a %b %d %H:%M:%S %Y"))
        args = next((a for t, a in seen.get(pid, []) if start - 1 <= t <= start + elapsed + 1), None)
        entry = result.setdefault(_kind(args), {"processes": 0, "cpu_s": 0.0})
        entry["processes"] += 1
        entry["cpu_s"] += cpu


def measure(jobs: int, processes: bool = False) -> dict:
    from edgekit.environment import host_info

    with tempfile.TemporaryDirectory() as records, _process_accounting(processes) as by_kind:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "SUITE_TIME_DIR": records,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH")]))}
        load, idle, started = os.getloadavg()[0], _idle_cpu_s(), time.time()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-n", str(jobs), "--dist", "loadfile", "-q",
                               "-p", "suite_time_plugin", "-p", "no:cacheprovider"], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        wall, idle = time.time() - started, _idle_cpu_s() - idle
        workers = [json.loads(p.read_text()) for p in sorted(Path(records).glob("gw*.json"))]
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    tests = [t for w in workers for t in w["tests"]]
    return {"exit_code": proc.returncode, "summary": summary, "jobs": jobs, "cpu": host_info()["cpu"], "load_at_start": load,
            "wall_s": wall, "idle_cpu_s": idle, "busy_cpu_s": os.cpu_count() * wall - idle,
            "workers": [{"worker": w["worker"], "first_test_s": min(t["start"] for t in w["tests"]) - started,
                         "last_end_s": max(t["start"] + t["wall_s"] for t in w["tests"]) - started,
                         "tests_cpu_s": sum(t["cpu_s"] for t in w["tests"]), "gc": w["gc"]} for w in workers],
            "files": _by_file(tests), "tests": sorted(tests, key=lambda t: -t["wall_s"])[:25],
            **({"processes": dict(sorted(by_kind.items(), key=lambda kv: -kv[1]["cpu_s"]))} if processes else {})}


def _by_file(tests: list[dict]) -> list[dict]:
    files: dict[str, dict] = {}
    for t in tests:
        f = files.setdefault(t["test"].split("::")[0], {"file": t["test"].split("::")[0], "tests": 0, "wall_s": 0.0, "cpu_s": 0.0})
        f["tests"] += 1
        f["wall_s"] += t["wall_s"]
        f["cpu_s"] += t["cpu_s"]
    return sorted(files.values(), key=lambda f: -f["wall_s"])


def render(run: dict) -> str:
    gc2 = sum(w["gc"]["2"]["seconds"] for w in run["workers"])
    lines = [f"{run['summary']} on {run['cpu']}, {run['jobs']} workers, load {run['load_at_start']:.2f} at the start: "
             f"wall {run['wall_s']:.0f} s, busy CPU {run['busy_cpu_s']:.0f} s, idle CPU {run['idle_cpu_s']:.0f} s, "
             f"full garbage collections in the workers {gc2:.1f} s", "",
             "| worker | first test at (s) | last test ended (s) | CPU in its tests (s) |", "|---|---:|---:|---:|"]
    lines += [f"| {w['worker']} | {w['first_test_s']:.1f} | {w['last_end_s']:.1f} | {w['tests_cpu_s']:.0f} |"
              for w in run["workers"]]
    lines += ["", "| file | tests | wall (s) | CPU (s) |", "|---|---:|---:|---:|"]
    lines += [f"| {f['file']} | {f['tests']} | {f['wall_s']:.1f} | {f['cpu_s']:.1f} |" for f in run["files"][:15]]
    if "processes" in run:  # --processes: every process the suite started, by kind (process accounting)
        lines += ["", "| processes of kind | count | CPU (s) |", "|---|---:|---:|"]
        lines += [f"| {kind} | {e['processes']} | {e['cpu_s']:.1f} |" for kind, e in run["processes"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="latest")
    parser.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 4))
    parser.add_argument("--render", action="store_true", help="print the Markdown summary of an earlier run")
    parser.add_argument("--processes", action="store_true", help="also every process's CPU by kind (accton, as root)")
    args = parser.parse_args()
    path = ROOT / "benchmarks" / f"suite_time_{args.label}.json"
    if not args.render:
        path.write_text(json.dumps(measure(args.jobs, args.processes), indent=1) + "\n")
    print(render(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
