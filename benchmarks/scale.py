"""How `edgekit build` scales (issue 22, item 5): per-task times on this machine, the speed-up of a local Ray build
over `--jobs 1` and `--jobs 2`, and an ESTIMATE by simulation of a 100-model x 20-target zoo on 1, 8 and 64 nodes.

Parts (each selectable, so one can be rerun; every part merges its numbers into --json, and the Markdown is always
regenerated from that JSON):
  --tasks     per built-in model, every target of edgekit.yaml, each as `edgekit build --jobs 1` of a one-target
              project into its own temporary dist/, one fresh EDGEKIT_CACHE_DIR per model (cold for the model's
              first target; later targets reuse fold_bn / export_onnx as one build of all targets would). From
              manifest.json: the task's seconds and status; from report.json: each pass's seconds and whether it
              came from the cache; from the cache folder: each pass-cache entry's size in bytes.
  --speedup   the project "tinygaze x the same targets" built from an empty cache with --jobs 1, --jobs 2 and
              --executor ray --jobs 2, interleaved, --repeats rounds (a later --speedup adds its rounds to the
              earlier ones); plus a local Ray's own cost (ray.init, first tasks, per task, shutdown) measured alone.
  --simulate  pure Python, seconds: a discrete-event list scheduler of a synthetic 100-model x 20-target zoo built
              from the --tasks numbers (and --speedup's Ray cost and two-at-once slowdown) on 1, 8 and 64 nodes:
              an ESTIMATE, its assumptions in SIM and written out in the Markdown.
Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py [--tasks] [--speedup] [--simulate]
         [--models tinygaze,temporalgaze,gazeresnet18] [--targets a,b] [--into tasks|training] [--repeats 1]
         [--timeout 900] [--note "what else ran"]
     (no part flag: only regenerate benchmarks/scale.md from benchmarks/scale.json)
     The GPU variants use `--tasks --models tinygaze,gazeresnet18 --targets onnx-int8-qat --into training`.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from edgekit.environment import cpu_label

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PREFIX = ("fold_bn", "export_onnx")  # the leading passes a model's targets share (its first target runs them)


def versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("torch", "ray", "onnxruntime"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def env_for(cache: Path) -> dict:
    return {**os.environ, "EDGEKIT_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def run_build(project: dict, tmp: Path, cache: Path, args: list[str], timeout: float) -> dict:
    """One `edgekit build` in a fresh process: wall time, load average before and after, its manifest (or why not)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "edgekit.yaml").write_text(yaml.safe_dump(project))
    dist = tmp / "dist"
    before = load()
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "edgekit.cli", "build", str(tmp / "edgekit.yaml"), "--out",
                               str(dist), "-q", *args], cwd=tmp, env=env_for(cache), capture_output=True, text=True,
                              timeout=timeout)
        rc, tail = done.returncode, (done.stderr or done.stdout)[-600:]
    except subprocess.TimeoutExpired:
        rc, tail = "timeout", f"killed after {timeout:.0f} s"
    wall = time.perf_counter() - start
    manifest = json.loads((dist / "manifest.json").read_text()) if (dist / "manifest.json").is_file() else None
    return {"wall_s": round(wall, 2), "rc": rc, "load_before": before, "load_after": load(), "dist": dist,
            "manifest": manifest, "tail": tail if rc not in (0, 1) else None}


# ---- part 1: per-task times ----------------------------------------------------------------------------------------

def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def cache_entries(cache: Path) -> dict[str, int]:
    """Pass-cache entries by the sha256 of their output (what a report's steps name) -> bytes on disk."""
    out = {}
    for entry in (cache / "passes").glob("*/*"):
        meta = entry / "artifact.json"
        if meta.is_file():
            out[json.loads(meta.read_text())["sha256"]] = dir_bytes(entry)
    return out


def leading_prefix(steps: list[dict]) -> list[dict]:
    """The steps of the shared prefix: the leading fold_bn / export_onnx (an export after QAT is the target's own)."""
    out = []
    for s in steps:
        if s["pass"] not in PREFIX:
            break
        out.append(s)
    return out


def task_row(target: str, res: dict) -> dict:
    """One (model, target): status, the task's seconds, its passes split into the shared prefix and its own."""
    row = {"target": target, "wall_s": res["wall_s"], "rc": res["rc"], "load_before": res["load_before"],
           "load_after": res["load_after"]}
    entry = (res["manifest"] or {}).get("artifacts", [{}])[0]
    row["status"] = entry.get("status", "timeout" if res["rc"] == "timeout" else "no manifest")
    row["seconds"] = entry.get("seconds")
    if entry.get("reason") or res["tail"]:
        row["reason"] = (entry.get("reason") or res["tail"])[:400]
    if entry.get("report"):
        report = json.loads((res["dist"] / entry["report"]).read_text())
        row["steps"] = [{"pass": s["pass"], "cached": s["cached"], "seconds": s["seconds"], "sha256": s["sha256"],
                         "size_bytes": s.get("size_bytes")} for s in report["steps"]]
        row["artifact_bytes"] = entry.get("size_bytes")
        passes = sum(s["seconds"] for s in row["steps"])
        row["prefix_s"] = round(sum(s["seconds"] for s in leading_prefix(row["steps"])), 3)
        row["own_s"] = round(passes - row["prefix_s"], 3)
        row["rest_s"] = round(row["seconds"] - passes, 3)  # loading, evaluation sets, reference, verification, writing
    return row


def measure_tasks(model: str, targets: list[str], timeout: float) -> dict:
    """Every target of one model, one `edgekit build --jobs 1` each, on one cache that starts empty."""
    with tempfile.TemporaryDirectory(prefix=f"scale-{model}-") as tmp:
        cache = Path(tmp) / "cache"
        rows = []
        for target in targets:
            res = run_build({"models": [{"name": model}], "targets": [target]}, Path(tmp) / target, cache,
                            ["--jobs", "1"], timeout)
            rows.append(task_row(target, res))
            r = rows[-1]
            print(f"  {model} {target}: {r['status']} {r['seconds']} s (process {r['wall_s']} s, load "
                  f"{r['load_before'][0]})", file=sys.stderr, flush=True)
        sizes = cache_entries(cache)
        for r in rows:
            for s in r.get("steps", []):
                s["cache_entry_bytes"] = sizes.get(s["sha256"])
        other = {d.name: dir_bytes(d) for d in cache.iterdir() if d.is_dir() and d.name != "passes"}
    return {"targets": rows, "cache_other_bytes": other, "cache_passes_bytes": sum(sizes.values())}


# ---- part 2: speed-up ----------------------------------------------------------------------------------------------

RAY_COST = r'''
import json, os, sys, time
t0 = time.perf_counter(); import ray; t_import = time.perf_counter() - t0
t0 = time.perf_counter(); ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False); t_init = time.perf_counter() - t0
@ray.remote(num_cpus=1)
def first():
    import edgekit.compiler  # what a build task imports before its compile (torch and edgekit)
    return os.getpid()
@ray.remote(num_cpus=1)
def empty(i):
    return i
t0 = time.perf_counter(); ray.get([first.remote() for _ in range(2)]); t_first = time.perf_counter() - t0
t0 = time.perf_counter(); ray.get([empty.remote(i) for i in range(200)]); t_empty = (time.perf_counter() - t0) / 200
t0 = time.perf_counter(); ray.shutdown(); t_down = time.perf_counter() - t0
print(json.dumps({"import_ray_s": t_import, "init_s": t_init, "first_tasks_import_edgekit_s": t_first,
                  "per_empty_task_s": t_empty, "shutdown_s": t_down}))
'''


def ray_cost() -> dict:
    with tempfile.TemporaryDirectory() as cache:
        done = subprocess.run([sys.executable, "-c", RAY_COST], env=env_for(Path(cache)), capture_output=True,
                              text=True, timeout=300)
    if done.returncode != 0:
        return {"error": done.stderr[-500:]}
    return {k: round(v, 3) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


MODES = {"jobs1": ["--jobs", "1"], "jobs2": ["--jobs", "2"], "ray2": ["--executor", "ray", "--jobs", "2"]}


def measure_speedup(model: str, targets: list[str], repeats: int, timeout: float) -> dict:
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for k in range(repeats):
        for mode, flags in MODES.items():  # interleaved: a drift in the host's load hits every mode
            with tempfile.TemporaryDirectory(prefix=f"scale-{mode}-") as tmp:
                res = run_build({"models": [{"name": model}], "targets": targets}, Path(tmp), Path(tmp) / "cache",
                                flags, timeout)
            m = res["manifest"] or {}
            statuses = [a["status"] for a in m.get("artifacts", [])]
            runs[mode].append({"wall_s": res["wall_s"], "build_s": m.get("seconds"), "rc": res["rc"],
                               "load_before": res["load_before"], "load_after": res["load_after"],
                               "task_s_sum": round(sum(a.get("seconds") or 0 for a in m.get("artifacts", [])), 2),
                               "statuses": {s: statuses.count(s) for s in set(statuses)}, "error": res["tail"]})
            print(f"  [{k + 1}/{repeats}] {mode}: {res['wall_s']} s (load {res['load_before'][0]} -> "
                  f"{res['load_after'][0]})", file=sys.stderr, flush=True)
    return {"model": model, "targets": targets, "repeats": repeats, "runs": runs, "ray_cost": ray_cost()}


# ---- part 3: simulation (an ESTIMATE) ------------------------------------------------------------------------------

SIM = {
    "seed": 22,
    "models": 100,
    "targets": 20,
    "nodes": [1, 8, 64],
    "cpus_per_node": 2,          # like this machine: one task per CPU (a task declares 1 CPU)
    "big_fraction": 0.3,         # share of gazeresnet18-sized models; the rest tinygaze-sized
    "model_scale": [0.5, 1.5],   # each model's times x uniform(a, b): zoo models are not all exactly one size
    "extra_targets": 8,          # drawn with replacement (fixed seed) from the 12 measured, each keeping its times
    "gpu_targets": 4,            # GPU variant: the first 4 extra targets stand for QAT / distillation / fine-tuning
    "training_target": "onnx-int8-qat",  # GPU variant: those targets take this target's times (--into training)
    "gpu_speedup": 1.0,          # a GPU task lasts its measured CPU time (no speed-up assumed), on the node's 1 GPU
    "task_overhead_s": 0.01,     # Ray, per task beyond its compile (docs/build.md; --speedup measures it here)
    "worker_start_s": 2.5,       # each worker's first task imports torch and edgekit (--speedup measures it here)
    "bandwidths_gbit": [1, 10],  # the shared store (NFS or similar): one link every node shares, FIFO
}


def task_times(tasks: dict, model: str) -> dict:
    """From part 1, for one model: `prepare` (seconds of the prefix passes, uncached) and its bytes; per target, its
    seconds without the prefix (own passes + loading and verification), the bytes it pulls (the prefix entries it
    uses, the evaluation set and reference outputs) and pushes (its own passes' cache entries and the artifact)."""
    rows = [r for r in tasks[model]["targets"] if r.get("seconds") is not None]
    prefix = {}
    for r in rows:
        for s in leading_prefix(r.get("steps", [])):
            if not s["cached"]:
                prefix.setdefault(s["pass"], s)
    shared = sum(tasks[model]["cache_other_bytes"].get(k, 0) for k in ("synthetic", "references"))
    targets = {}
    for r in rows:
        if not r.get("steps"):  # refused (e.g. a model the target cannot convert): its measured seconds, no bytes
            targets[r["target"]] = {"seconds": r["seconds"], "pull": 0, "push": 0, "refused": True}
            continue
        pre = leading_prefix(r["steps"])
        pull = shared + sum(prefix[s["pass"]]["cache_entry_bytes"] or 0 for s in pre if s["pass"] in prefix)
        push = r.get("artifact_bytes") or 0
        push += sum(s["cache_entry_bytes"] or 0 for s in r["steps"][len(pre):] if not s["cached"])
        targets[r["target"]] = {"seconds": r["own_s"] + r["rest_s"], "pull": pull, "push": push}
    return {"prepare": sum(s["seconds"] for s in prefix.values()),
            "prepare_bytes": sum(s["cache_entry_bytes"] or 0 for s in prefix.values()), "targets": targets}


def make_zoo(tasks: dict, p: dict, training: dict | None = None) -> list[dict]:
    """The synthetic zoo: per model one prepare task, then its targets (each depends on the prepare task). With
    `training` (part 1's numbers for p["training_target"]), the GPU-labelled targets take that target's times."""
    rng = random.Random(p["seed"])
    kinds = {m: task_times(tasks, m) for m in ("tinygaze", "gazeresnet18")}
    if training:
        for m, kind in kinds.items():
            kind["targets"]["gpu"] = training_times(tasks, training, m, p["training_target"])
    measured = [t for t in kinds["tinygaze"]["targets"] if t in kinds["gazeresnet18"]["targets"] and t != "gpu"]
    extra = [rng.choice(measured) for _ in range(p["extra_targets"])]
    targets = [(t, t, False) for t in measured] + [(f"{t}#{i + 1}", t, i < p["gpu_targets"]) for i, t in enumerate(extra)]
    zoo = []
    for _ in range(p["models"]):
        big = rng.random() < p["big_fraction"]
        kind = kinds["gazeresnet18" if big else "tinygaze"]
        scale = rng.uniform(*p["model_scale"])
        zoo.append({"prepare": kind["prepare"] * scale, "prepare_bytes": kind["prepare_bytes"], "big": big,
                    "targets": [{"name": name, "gpu": gpu,
                                 **{**kind["targets"]["gpu" if gpu and training else src]},
                                 "seconds": kind["targets"]["gpu" if gpu and training else src]["seconds"] * scale}
                                for name, src, gpu in targets[:p["targets"]]]})
    return zoo


def training_times(tasks: dict, training: dict, model: str, target: str) -> dict:
    """A training target's times for `model`: measured if part 1 ran it for that model, else (an estimate) the
    tinygaze measurement times the ratio of the model's onnx-int8 task time to tinygaze's."""
    rows = {r["target"]: r for r in training.get(model, {}).get("targets", []) if r.get("steps")}
    if target in rows:
        return task_times(training, model)["targets"][target]
    small = task_times(training, "tinygaze")["targets"][target]
    ratio = (task_times(tasks, model)["targets"]["onnx-int8"]["seconds"]
             / task_times(tasks, "tinygaze")["targets"]["onnx-int8"]["seconds"])
    return {**small, "seconds": small["seconds"] * ratio, "estimated_ratio": ratio}


class Link:
    """The shared store's link: transfers one at a time, in the order they are asked for (FIFO)."""

    def __init__(self, gbit: float | None):
        self.bytes_per_s = gbit * 1e9 / 8 if gbit else None
        self.free_at = 0.0
        self.busy = 0.0

    def transfer(self, now: float, nbytes: int) -> float:
        """When a transfer asked for at `now` ends."""
        if not self.bytes_per_s or not nbytes:
            return now
        seconds = nbytes / self.bytes_per_s
        self.free_at = max(now, self.free_at) + seconds
        self.busy += seconds
        return self.free_at


def simulate(zoo: list[dict], nodes: int, p: dict, gbit: float | None, gpu: bool, overhead: bool,
             gpu_every: int = 1, slowdown: float = 1.0) -> dict:
    """Discrete events: a free CPU slot takes the ready task with the longest chain still ahead of it (prepare tasks
    first: they unlock the most work; then the longest targets); a GPU task also needs its node's GPU. A target
    pulls its inputs from the shared store before it computes and pushes its outputs after, holding its slot; the
    prepare task pushes the prefix entries. gpu_every: one node in that many has a GPU; slowdown: every task's
    compute time x this (two tasks sharing a node run slower than one alone)."""
    link = Link(gbit)
    has_gpu = [n % gpu_every == 0 for n in range(nodes)]
    idle = [(n, s) for n in range(nodes) for s in range(p["cpus_per_node"])]
    gpu_busy = [False] * nodes
    warm: set = set()
    ready = [(-(m["prepare"] + max(t["seconds"] for t in m["targets"])), i, None) for i, m in enumerate(zoo)]
    events: list = []  # (time, seq, what, payload)
    seq = 0
    now = work = 0.0

    def dispatch() -> None:
        nonlocal seq, work
        ready.sort()
        for n, s in list(idle):
            k = next((k for k, (_, i, j) in enumerate(ready)
                      if j is None or not (gpu and zoo[i]["targets"][j]["gpu"] and (gpu_busy[n] or not has_gpu[n]))),
                     None)
            if k is None:
                continue
            _, i, j = ready.pop(k)
            idle.remove((n, s))
            task = zoo[i]["targets"][j] if j is not None else None
            uses_gpu = gpu and task is not None and task["gpu"]
            gpu_busy[n] = gpu_busy[n] or uses_gpu
            run = slowdown * (zoo[i]["prepare"] if task is None else
                              task["seconds"] / (p["gpu_speedup"] if uses_gpu else 1.0))
            if overhead:
                run += p["task_overhead_s"] + (p["worker_start_s"] if (n, s) not in warm else 0.0)
                warm.add((n, s))
            work += run
            start = link.transfer(now, task["pull"]) if task else now
            heapq.heappush(events, (start + run, seq, "computed", (n, s, i, j, uses_gpu)))
            seq += 1

    dispatch()
    while events:
        now, _, what, (n, s, i, j, uses_gpu) = heapq.heappop(events)
        if what == "computed":  # push the outputs, still holding the slot
            out = zoo[i]["targets"][j]["push"] if j is not None else zoo[i]["prepare_bytes"]
            heapq.heappush(events, (link.transfer(now, out), seq, "done", (n, s, i, j, uses_gpu)))
            seq += 1
            continue
        idle.append((n, s))
        gpu_busy[n] = gpu_busy[n] and not uses_gpu
        if j is None:
            ready.extend((-t["seconds"], i, jj) for jj, t in enumerate(zoo[i]["targets"]))
        dispatch()
    gpu_work = sum(t["seconds"] / p["gpu_speedup"] for m in zoo for t in m["targets"] if gpu and t["gpu"])
    return {"makespan_s": now, "cpu_bound_s": work / (nodes * p["cpus_per_node"]),
            "chain_s": slowdown * max(m["prepare"] + max(t["seconds"] for t in m["targets"]) for m in zoo),
            "link_busy_s": link.busy, "gpu_bound_s": slowdown * gpu_work / sum(has_gpu)}


BOUNDS = {"cpu_bound_s": "CPU work / CPUs", "chain_s": "longest chain", "link_busy_s": "cache traffic",
          "gpu_bound_s": "GPU tasks / GPUs"}


def limit_of(r: dict) -> str:
    """The lower bound closest to the makespan: what limits this case."""
    key = max(BOUNDS, key=lambda k: r[k])
    return f"{BOUNDS[key]} ({r[key] / r['makespan_s']:.0%})"


def sim_params(data: dict) -> dict:
    """SIM, with Ray's per-task and worker-start cost as part 2 measured them here when it did."""
    cost = data.get("speedup", {}).get("ray_cost", {})
    if "per_empty_task_s" not in cost:
        return {**SIM, "ray_cost_from": "docs/build.md (not measured by this run)"}
    pairs = quiet_rounds(data["speedup"]["runs"])
    slowdown = statistics.median(b["task_s_sum"] / a["task_s_sum"] for a, b, _ in pairs)
    costs = data["speedup"].get("ray_costs") or [cost]
    return {**SIM, "task_overhead_s": statistics.median(c["per_empty_task_s"] for c in costs),
            "worker_start_s": statistics.median(c["first_tasks_import_edgekit_s"] for c in costs),
            "ray_cost_from": "part 2 (measured here, median of its rounds)", "slowdown": round(slowdown, 2),
            "slowdown_from": f"the {len(pairs)} quiet round(s) of part 2"}


QUIET = 0.5  # a round whose first build started under this 1-minute load average ran on a quiet host


def quiet_rounds(runs: dict) -> list[tuple]:
    """Part 2's rounds (jobs 1, jobs 2, Ray) that started on a quiet host; all of them when none did."""
    rounds = list(zip(runs["jobs1"], runs["jobs2"], runs["ray2"]))
    return [r for r in rounds if r[0]["load_before"][0] < QUIET] or rounds


def run_simulation(tasks: dict, p: dict, training: dict | None = None) -> dict:
    for need in ("tinygaze", "gazeresnet18"):
        if not any(r.get("steps") for r in tasks.get(need, {}).get("targets", [])):
            raise SystemExit(f"--simulate needs part 1's numbers for {need}; run --tasks first")
    zoo = make_zoo(tasks, p)
    gpu_zoo = make_zoo(tasks, p, training) if training else zoo  # the same models (the same seed), 4 targets train
    g = p["bandwidths_gbit"]
    slow = p.get("slowdown")
    ray10 = dict(gbit=g[-1], gpu=False, overhead=True)
    variants = {"ideal: no Ray overhead, no transfers": dict(gbit=None, gpu=False, overhead=False),
                "Ray overhead, no transfers (a local disk)": dict(gbit=None, gpu=False, overhead=True),
                **{f"Ray overhead + {b} Gbit/s shared store": dict(gbit=b, gpu=False, overhead=True) for b in g},
                **({f"Ray overhead + {g[-1]} Gbit/s, every task x {slow:.2f} (two at once on a node, as "
                    f"{p['slowdown_from']} measured)": {**ray10, "slowdown": slow}} if slow else {}),
                f"Ray overhead + {g[-1]} Gbit/s + {p['gpu_targets']} training targets, 1 GPU per node":
                    {**ray10, "gpu": True},
                f"Ray overhead + {g[-1]} Gbit/s + {p['gpu_targets']} training targets, 1 GPU per 8 nodes":
                    {**ray10, "gpu": True, "gpu_every": 8}}
    out = {"params": p, "zoo": {
        "tasks": sum(1 + len(m["targets"]) for m in zoo),
        "work_s": round(sum(m["prepare"] + sum(t["seconds"] for t in m["targets"]) for m in zoo), 1),
        "big_models": sum(1 for m in zoo if m["big"]),
        "bytes": sum(m["prepare_bytes"] + sum(t["pull"] + t["push"] for t in m["targets"]) for m in zoo),
        "targets": [t["name"] for t in zoo[0]["targets"]],
        "gpu_targets": [t["name"] for t in zoo[0]["targets"] if t["gpu"]],
        "gpu_work_s": round(sum(t["seconds"] for m in gpu_zoo for t in m["targets"] if t["gpu"]), 1),
        "refused": {m: [t for t, v in task_times(tasks, m)["targets"].items() if v.get("refused")]
                    for m in ("tinygaze", "gazeresnet18")},
        "training": ({m: training_times(tasks, training, m, p["training_target"]) for m in ("tinygaze", "gazeresnet18")}
                     if training else None)}, "variants": {}}
    for name, kw in variants.items():
        z = gpu_zoo if kw["gpu"] else zoo
        rows = [{"nodes": n, **{k: round(v, 1) for k, v in simulate(z, n, p, **kw).items()}} for n in p["nodes"]]
        for r in rows:
            r["speedup"] = round(rows[0]["makespan_s"] / r["makespan_s"], 2)
            r["efficiency"] = round(r["speedup"] / r["nodes"], 2)
            r["limit"] = limit_of(r)
        out["variants"][name] = rows
    return out


# ---- Markdown ------------------------------------------------------------------------------------------------------

def mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}"


def fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def md_tasks(tasks: dict) -> list[str]:
    out = ["## 1. Per-task times (measured)", "",
           "Each (model, target) is one `edgekit build --jobs 1` of a one-target project, in its own process, with one "
           "EDGEKIT_CACHE_DIR per model that starts empty: the model's first target runs the shared prefix (fold_bn, "
           "and export_onnx for the ONNX targets), later ones find it cached, as in one build of every target. "
           "*task*: the manifest's seconds (the compile and its verification, in the process, without the process's "
           "start and `import torch`); *process*: the wall time of the whole `edgekit build` command. *prefix*: "
           "fold_bn + export_onnx as this task ran them (c: served from the cache); *own passes*: the target's other "
           "passes; *load + verify*: the rest of the task (source model, evaluation sets, reference outputs, "
           "verification, writing the report). Each task pays its own lazy imports (onnxruntime, TensorFlow, "
           "coremltools, Lava's venv), as a fresh worker would. Sizes: the artifact, and the pass-cache entries the "
           "task wrote (bytes on disk).", ""]
    return out + md_task_tables(tasks)


def md_task_tables(tasks: dict) -> list[str]:
    out = []
    for model, res in tasks.items():
        rows = res["targets"]
        out += [f"### {model} ({res.get('when', '')})", "",
                "| target | status | task (s) | process (s) | prefix (s) | own passes (s) | load + verify (s) | "
                "artifact (MB) | new cache entries (MB) | load avg before |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            steps = r.get("steps", [])
            pre = leading_prefix(steps)
            own = steps[len(pre):]
            pre_txt = " + ".join(f"{s['seconds']:.2f}{' c' if s['cached'] else ''}" for s in pre) or "-"
            own_txt = ", ".join(f"{s['pass'].split('(')[0]} {s['seconds']:.1f}{' c' if s['cached'] else ''}" for s in own) or "-"
            new = sum(s.get("cache_entry_bytes") or 0 for s in steps if not s["cached"]) if steps else None
            out.append(f"| {r['target']} | {r['status']} | {fmt(r.get('seconds'))} | {fmt(r['wall_s'])} | {pre_txt} | "
                       f"{own_txt} | {fmt(r.get('rest_s'))} | {mb(r.get('artifact_bytes'))} | {mb(new)} | "
                       f"{r['load_before'][0]:.2f} |")
        done = [r for r in rows if r.get("seconds") is not None]
        total = sum(r["seconds"] for r in done)
        split = [sum(r.get(k) or 0 for r in done) for k in ("prefix_s", "own_s", "rest_s")]
        if len(done) > 1 and total:
            slow = max(done, key=lambda r: r["seconds"])
            out += ["", f"Where {model}'s task time goes: prefix {split[0]:.1f} s ({split[0] / total:.0%}), own "
                        f"passes {split[1]:.1f} s ({split[1] / total:.0%}), load + verify {split[2]:.1f} s "
                        f"({split[2] / total:.0%}); the slowest task, {slow['target']}, is {slow['seconds']:.1f} s "
                        f"({slow['seconds'] / total:.0%} of the model's total)."]
            out += [prefix_reruns(done)]
        out += ["", f"Sum of task times: {total:.1f} s over {len(done)} tasks; sum of process times "
                    f"{sum(r['wall_s'] for r in rows):.1f} s. Pass cache at the end: {mb(res['cache_passes_bytes'])} MB; "
                    + ", ".join(f"{k} {mb(v)} MB" for k, v in sorted(res["cache_other_bytes"].items())) + "."]
        failed = [r for r in rows if r["status"] not in ("passed", "gate_failed")]
        for r in failed:
            out.append(f"- **{r['target']}: {r['status']}** - {r.get('reason', '').splitlines()[0] if r.get('reason') else ''}")
        gates = [r["target"] for r in rows if r["status"] == "gate_failed"]
        if gates:
            out.append(f"- built but a gate failed (the artifact is there; the time counts): {', '.join(gates)}")
        out.append("")
    return out


def loads(runs: list[dict]) -> str:
    return "; ".join(f"{r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f}" for r in runs)


def prefix_reruns(rows: list[dict]) -> str:
    """How often each prefix pass ran uncached, and whether those runs gave the same bytes."""
    parts = []
    for name in PREFIX:
        runs = [(r["target"], s) for r in rows for s in leading_prefix(r.get("steps", [])) if s["pass"] == name
                and not s["cached"]]
        if runs:
            same = len({s["sha256"] for _, s in runs}) == 1
            parts.append(f"{name} ran uncached {len(runs)}x ({', '.join(t for t, _ in runs)}"
                         f"{'; the same output digest each time' if same and len(runs) > 1 else ''})")
    return "Prefix: " + "; ".join(parts) + "." if parts else ""


def md_speedup(sp: dict) -> list[str]:
    runs = sp["runs"]
    med = {m: statistics.median(r["wall_s"] for r in rs) for m, rs in runs.items() if rs}
    label = {"jobs1": "`--jobs 1`", "jobs2": "`--jobs 2`", "ray2": "`--executor ray --jobs 2` (local Ray)"}
    out = ["## 2. Speed-up of a local Ray build (measured)", "",
           f"The project {sp['model']} x {len(sp['targets'])} targets (edgekit.yaml's), each build from an empty cache "
           f"and an empty dist/, {sp['repeats']} run(s) of each mode, interleaved (jobs 1, jobs 2, Ray, then again), "
           f"at {sp.get('when', '')}. Wall: the `edgekit build` command from start to exit (process start, Ray's "
           "start and shutdown included); build: the manifest's seconds (inside the command). Ray ran with HEAD's "
           "executor: one Ray task per (model, target), so two targets of one model that run at once may both "
           "compute the shared prefix (the cache takes whichever lands first). Speed-up: the ratio of median wall "
           "times. `--jobs 1` is not one core: with a core spare, each compile runs its reference outputs in a "
           "second process (`edgekit/report/reference_prefetch.py`, `spare_core`); with two compiles at once it "
           "does not.", "",
           "| mode | wall (s), each run | build (s) | sum of task times (s) | speed-up over --jobs 1 | over --jobs 2 | "
           "load avg before -> after | statuses |",
           "|---|---|---|---|---|---|---|---|"]
    for m, rs in runs.items():
        if not rs:
            continue
        out.append(f"| {label[m]} | {', '.join(fmt(r['wall_s']) for r in rs)} | "
                   f"{', '.join(fmt(r['build_s']) for r in rs)} | {', '.join(fmt(r['task_s_sum']) for r in rs)} | "
                   f"{med['jobs1'] / med[m]:.2f}x | {med['jobs2'] / med[m]:.2f}x | "
                   f"{loads(rs)} | "
                   f"{', '.join(f'{k} {v}' for k, v in sorted(rs[0]['statuses'].items()))} |")
    rounds = zip(runs["jobs1"], runs["jobs2"], runs["ray2"])
    out += ["", "Per round (wall-time ratios, and the load average before the round's first build): " + "; ".join(
        f"round {k + 1}: jobs 2 {a['wall_s'] / b['wall_s']:.2f}x, Ray {a['wall_s'] / c['wall_s']:.2f}x over jobs 1, "
        f"Ray {b['wall_s'] / c['wall_s']:.2f}x over jobs 2 (load {a['load_before'][0]:.2f})"
        for k, (a, b, c) in enumerate(rounds)) + "."]
    costs = sp.get("ray_costs") or [sp.get("ray_cost", {})]
    out += ["", "Ray's own cost, measured alone after each round (a local Ray with 2 CPUs; RAY_COST in "
                "`benchmarks/scale.py`: `ray.init`, then two tasks that each start a worker and import "
                "edgekit.compiler, hence torch, then 200 empty tasks, then `ray.shutdown`):", ""]
    for k, c in enumerate(costs):
        out.append(f"- round {k + 1}: could not be measured: {c['error']}" if "error" in c else
                   f"- round {k + 1}: `import ray` {c['import_ray_s']:.2f} s, `ray.init` {c['init_s']:.2f} s, first "
                   f"two tasks {c['first_tasks_import_edgekit_s']:.2f} s, {c['per_empty_task_s'] * 1000:.1f} ms per "
                   f"empty task, `ray.shutdown` {c['shutdown_s']:.2f} s")
    return out + [""]


def md_simulation(sim: dict) -> list[str]:
    p, z = sim["params"], sim["zoo"]
    out = ["## 3. A 100-model x 20-target zoo on 1, 8 and 64 nodes: an ESTIMATE by simulation", "",
           "**Not measured: every number in this section is an estimate** from a discrete-event simulation "
           "(`simulate()` in `benchmarks/scale.py`, pure Python) fed with part 1's task times and cache-entry "
           "sizes. Assumptions:", "",
           f"- Nodes: {p['cpus_per_node']} CPUs each, like this machine, one task per CPU (a task declares 1 CPU); a "
           "task runs as fast as it did here, whatever else runs (part 1 measured tasks one at a time; part 2 shows "
           "what two at once cost on 2 shared vCPUs).",
           f"- Models: {p['models']}, each tinygaze-sized (probability {1 - p['big_fraction']:.1f}) or gazeresnet18-sized "
           f"({p['big_fraction']:.1f}; {z['big_models']} drawn), every time of a model multiplied by one factor "
           f"uniform in {p['model_scale']} (seed {p['seed']}): a zoo's models are not all one of two sizes.",
           f"- Targets: {p['targets']} = the {p['targets'] - p['extra_targets']} measured ones + {p['extra_targets']} "
           f"drawn from them with replacement (seed {p['seed']}), each taking the drawn target's times and sizes: "
           f"{', '.join(t for t in z['targets'] if '#' in t)}.",
           "- Refused targets stay in the graph with the seconds they took to refuse, as measured: "
           + "; ".join(f"{m}-sized: {', '.join(ts)}" for m, ts in z.get("refused", {}).items() if ts) + ".",
           "- Task graph (as the Ray executor being written schedules it): per model one *prepare* task running the "
           "shared prefix (fold_bn + export_onnx, their uncached times from part 1), then the model's targets, which "
           "depend on it; a target's time is its measured task time less its prefix (own passes + load + verify).",
           "- Scheduling: a free CPU takes the ready task with the longest chain ahead of it (prepare tasks first, "
           "then the longest targets).",
           f"- Ray overhead (where the variant says so): {p['task_overhead_s']:.3f} s per task and "
           f"{p['worker_start_s']:.2f} s once per worker (its first task imports torch and edgekit), from "
           f"{p.get('ray_cost_from', 'SIM')}; cluster start and shutdown not counted.",
           "- Cache traffic (where the variant says so): the pass cache and dist/ live on one shared store behind one "
           "link every node shares, one transfer at a time (FIFO); a target pulls its prefix entries, the "
           "evaluation set and reference outputs before it computes and pushes its own pass entries and its artifact "
           "after, holding its CPU meanwhile; a prepare task pushes the prefix entries. Latency, metadata operations "
           f"and compression are ignored. {z['bytes'] / 1e9:.1f} GB move in all.",
           f"- GPU variants: the targets {', '.join(z['gpu_targets'])} stand for training targets (QAT, distillation, "
           "fine-tuning: `onnx-int8-qat`, `loihi-distill`, `loihi-finetuned`); each also needs a GPU (one on every "
           "node, or one on every 8th node: a cluster with a few GPU nodes) "
           + (f"and takes the times of `{p['training_target']}` measured here on the CPU ("
              + ", ".join(f"{m}-sized: {v['seconds']:.1f} s" + (f" = tinygaze's x {v['estimated_ratio']:.2f}, the ratio "
                          "of the two models' onnx-int8 task times: an estimate" if "estimated_ratio" in v else
                          " measured") for m, v in z["training"].items())
              + f"), on the GPU as long as on one CPU (no GPU speed-up assumed: none was measured here); its "
              f"training targets add up to {z['gpu_work_s'] / 3600:.2f} GPU-hours" if z.get("training") else
              f"and lasts its drawn CPU time / {p['gpu_speedup']} (no GPU speed-up assumed)") + ".",
           f"- The zoo: {z['tasks']} tasks, {z['work_s'] / 3600:.2f} CPU-hours of work without overhead.",
           "",
           "Lower bounds shown beside each makespan: CPU work / CPUs, the longest chain (one model's prepare + its "
           "longest target), the link's busy time (cache traffic), GPU work / GPUs. *Limited by*: the largest "
           "bound, and how much of the makespan it is.", ""]
    for name, rows in sim["variants"].items():
        out += [f"### {name}", "",
                "| nodes | CPUs | makespan | speed-up vs 1 node (this variant) | efficiency | CPU work / CPUs | longest chain | "
                "cache traffic | GPU tasks / GPUs | limited by |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            out.append(f"| {r['nodes']} | {r['nodes'] * p['cpus_per_node']} | {hms(r['makespan_s'])} | "
                       f"{r['speedup']:.1f}x | {r['efficiency']:.0%} | {hms(r['cpu_bound_s'])} | {hms(r['chain_s'])} | "
                       f"{hms(r['link_busy_s'])} | {hms(r['gpu_bound_s'])} | {r['limit']} |")
        out += ["", crossover(rows, p), ""]
    return out


def crossover(rows: list[dict], p: dict) -> str:
    """From the 1-node row: about how many nodes it takes before the chain, the link or the GPUs limit more than
    the CPUs (CPU work / CPUs falls as 1/nodes; the others do not, or fall slower)."""
    one = rows[0]
    work = one["cpu_bound_s"] * p["cpus_per_node"]  # CPU-seconds in all
    parts = [f"CPU work / CPUs falls below the longest chain at about {work / p['cpus_per_node'] / one['chain_s']:.0f} "
             "nodes"]
    if one["link_busy_s"]:
        parts.append(f"below the link's busy time at about {work / p['cpus_per_node'] / one['link_busy_s']:.0f} nodes")
    if one["gpu_bound_s"]:
        ratio = rows[-1]["gpu_bound_s"] / rows[-1]["cpu_bound_s"]
        parts.append(f"GPU work / GPUs is {ratio:.0%} of CPU work / CPUs at {rows[-1]['nodes']} nodes (both fall as "
                     f"1/nodes), so the GPUs {'limit' if ratio >= 1 else 'do not limit'}")
    return "Where the limit moves (an estimate from the bounds): " + "; ".join(parts) + "."


def hms(seconds: float) -> str:
    if not seconds:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def md_summary(data: dict) -> list[str]:
    """The headline numbers, each from the sections below."""
    out = ["## Summary", ""]
    for model, res in data.get("tasks", {}).items():
        rows = res["targets"]
        ok = [r for r in rows if r["status"] in ("passed", "gate_failed")]
        bad = [f"{r['target']} ({r['status']})" for r in rows if r not in ok]
        slow = max(ok, key=lambda r: r["seconds"]) if ok else None
        out.append(f"- {model}: {len(ok)} of {len(rows)} targets built, {sum(r['seconds'] for r in ok):.0f} s of task "
                   f"time in all" + (f", the slowest {slow['target']} {slow['seconds']:.0f} s" if slow else "")
                   + (f"; not built: {', '.join(bad)}" if bad else "") + " (measured).")
    twice = [m for m, res in data.get("tasks", {}).items()
             if sum(1 for r in res["targets"] for s in leading_prefix(r.get("steps", []))
                    if s["pass"] == "fold_bn" and not s["cached"]) > 1]
    if twice:
        out.append(f"- The shared prefix ran twice per model ({', '.join(twice)}), with the same output digests: once "
                   "for the targets without a calibration set, once for those with one, because the pass cache's key "
                   "holds the calibration set's digest for every pass (`edgekit/cache.py`), fold_bn and export_onnx "
                   "too (measured; part 3 assumes one prepare task per model).")
    sp = data.get("speedup")
    if sp:
        quiet = [r for r in quiet_rounds(sp["runs"]) if r[0]["load_before"][0] < QUIET]
        for label, rounds in ((f"on a quiet host ({len(quiet)} round(s) that started under load {QUIET})", quiet),
                              (f"all {sp['repeats']} rounds, most beside other work (medians)",
                               list(zip(sp["runs"]["jobs1"], sp["runs"]["jobs2"], sp["runs"]["ray2"])))):
            if not rounds:
                continue
            j1, j2, ray = (statistics.median(r[k]["wall_s"] for r in rounds) for k in range(3))
            out.append(f"- {sp['model']} x {len(sp['targets'])} targets from a cold cache, {label}: `--jobs 1` "
                       f"{j1:.0f} s, `--jobs 2` {j2:.0f} s ({j1 / j2:.2f}x), local Ray with 2 CPUs {ray:.0f} s "
                       f"({j1 / ray:.2f}x over `--jobs 1`, {j2 / ray:.2f}x over `--jobs 2`) (measured).")
    sim = data.get("simulation")
    if sim:
        for name, rows in sim["variants"].items():
            if name.startswith("ideal") or "local disk" in name:
                continue
            r = rows[-1]
            out.append(f"- ESTIMATE, {name}: {r['nodes']} nodes {hms(r['makespan_s'])} against "
                       f"{hms(rows[0]['makespan_s'])} on 1 node ({r['speedup']:.0f}x, {r['efficiency']:.0%} "
                       f"efficient), limited by {r['limit']}.")
    return out + [""]


def render(data: dict) -> str:
    host = next((v["host"] for k in ("tasks", "speedup") for v in ([data[k]] if k == "speedup" and k in data
                 else data.get(k, {}).values()) if "host" in v), {})
    out = ["# How `edgekit build` scales: task times, a local Ray build, and a zoo on a cluster (estimated)", "",
           "Produced by `benchmarks/scale.py` (every number is in `scale.json`; this page is regenerated from it). "
           "Reproduce: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py --tasks --speedup --simulate` "
           "(parts 1-2 take tens of minutes on 2 cores; `--simulate` alone takes seconds).", ""]
    if host:
        v = host["versions"]
        out += [f"Machine: {host['cpu']}, {host['cpus']} shared vCPUs; OMP_NUM_THREADS={host['omp_num_threads']}; "
                f"Python {v['python']}, torch {v['torch']}, ray {v['ray']}, onnxruntime {v['onnxruntime']}; edgekit "
                f"at {host['commit']}. Not a quiet host: other work (another engineer's test runs) shared the two "
                "cores at times; the load average before each build is in the tables and in the JSON (before and "
                "after). Parts 1 and 2 are measured; part 3 is an estimate.", ""]
    out += md_summary(data)
    if data.get("notes"):
        out += ["Notes on the conditions:", ""] + [f"- {n}" for n in data["notes"]] + [""]
    if data.get("tasks"):
        out += md_tasks(data["tasks"])
    if data.get("training"):
        out += ["### A training target, for part 3's GPU variant (measured, on the CPU)", "",
                "The same way, on its own empty cache (so it pays its own fold_bn), "
                "`--tasks --targets onnx-int8-qat --into training`:", ""]
        out += [line.replace("### ", "#### ", 1) for line in md_task_tables(data["training"])]
    if data.get("speedup"):
        out += md_speedup(data["speedup"])
    if data.get("simulation"):
        out += md_simulation(data["simulation"])
    return "\n".join(out).rstrip() + "\n"


def write_markdown(data: dict, path: Path) -> None:
    path.write_text(render(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", action="store_true", help="part 1: per-task times")
    ap.add_argument("--speedup", action="store_true", help="part 2: --jobs 1 / --jobs 2 / local Ray")
    ap.add_argument("--simulate", action="store_true", help="part 3: the zoo simulation (an estimate)")
    ap.add_argument("--models", default="tinygaze,temporalgaze,gazeresnet18")
    ap.add_argument("--targets", default=None, help="comma-separated (default: edgekit.yaml's)")
    ap.add_argument("--repeats", type=int, default=1, help="part 2: interleaved rounds")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per build before it is killed")
    ap.add_argument("--into", default="tasks", help="part 1: the JSON key to record under (e.g. `training` for "
                    "targets the zoo's GPU variant uses)")
    ap.add_argument("--note", action="append", default=[], help="a line for the page's notes (what else ran, ...)")
    ap.add_argument("--json", type=Path, default=HERE / "scale.json")
    ap.add_argument("--out", type=Path, default=HERE / "scale.md")
    args = ap.parse_args()
    targets = args.targets.split(",") if args.targets else yaml.safe_load((ROOT / "edgekit.yaml").read_text())["targets"]
    data = json.loads(args.json.read_text()) if args.json.is_file() else {}
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    host = {"cpu": cpu_label(), "cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "versions": versions(), "commit": head}

    def save() -> None:
        args.json.write_text(json.dumps(data, indent=1, default=str) + "\n")

    data.setdefault("notes", []).extend(args.note)
    if args.tasks:
        for model in args.models.split(","):
            res = measure_tasks(model, targets, args.timeout)
            data.setdefault(args.into, {})[model] = {**res, "host": host, "when": time.strftime("%Y-%m-%d %H:%M")}
            save()  # after each model: a later model that runs long leaves the earlier ones recorded
    if args.speedup:
        res = measure_speedup("tinygaze", targets, args.repeats, args.timeout)
        old = data.get("speedup")
        if old and old["targets"] == targets:  # another round: keep the earlier runs beside it
            res["runs"] = {m: old["runs"][m] + rs for m, rs in res["runs"].items()}
            res["repeats"] += old["repeats"]
            res["ray_costs"] = old.get("ray_costs", [old["ray_cost"]]) + [res["ray_cost"]]
            res["when"] = f"{old['when']} and {time.strftime('%Y-%m-%d %H:%M')}"
        data["speedup"] = {"when": time.strftime("%Y-%m-%d %H:%M"), **res, "host": host}
        save()
    if args.simulate:
        data["simulation"] = run_simulation(data.get("tasks", {}), sim_params(data), data.get("training"))
        save()
    write_markdown(data, args.out)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
