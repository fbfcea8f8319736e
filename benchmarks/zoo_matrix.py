"""Zoo matrix: every zoo model (tests/zoo) x every shipped target, one `edgekit compile` per cell.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zoo_matrix.py
     (options: --models a,b  --targets x,y  --out benchmarks/zoo.md  --jobs 1  --timeout 600  --workdir build/zoo-matrix;
      --update reruns the selected cells into an existing zoo.json; --render-only rewrites zoo.md from zoo.json)

Each cell is its own `python -m edgekit.cli compile ... --format json` process (cwd = the repo root, so
`tests.zoo.models` imports and this checkout's edgekit is the one that runs; OMP_NUM_THREADS=1), so a crash
or a hang in one cell cannot take the run down. A cell is one of:
  PASS      the artifact passed its gates: error increase and max difference from the model, in degrees
  FAIL      exit 1 with a report: the failing gates, value > limit
  EXIT n    exit 2 (bad input or config) / 3 (missing dependency) / 130 / 143: edgekit's one-line reason
  CRASH     any other exit (an uncaught exception): the last line of stderr
  TIMEOUT   the cell ran past --timeout seconds and was killed
  not run   left out with --skip (the reason is recorded)
Writes the Markdown table (--out) and a JSON dump next to it (same name, .json) that a test can compare.
Set EDGEKIT_CACHE_DIR for a private pass/report cache (otherwise the user cache is used and cells may be reused).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO_WEIGHTS = ROOT / "tests" / "zoo" / "weights"
EDGEKIT = [sys.executable, "-m", "edgekit.cli"]
SHORT_REASON = 160  # the one-line reason kept per cell (the full text goes in the JSON and the numbered list)
CELL_REASON = 44  # what the table cell shows of it

# column order: each backend's float target first, then its compressed variants (unknown targets go last)
PREFERRED = ["onnx", "onnx-fp16", "onnx-int8", "onnx-int8-qat", "onnx-pruned", "onnx-int8-pruned",
             "coreml", "coreml-fp32", "coreml-int8", "coreml-w8a8", "coreml-palettized", "coreml-pruned",
             "tflite", "tflite-fp16", "tflite-int8", "tflite-int8-io", "snn", "snn-qcfs", "loihi", "loihi-distill"]

GATE_ABBREV = {
    "max_error_increase_deg": "err+",
    "max_error_deg": "err",
    "max_diff_deg": "max_diff",
    "p95_diff_deg": "p95_diff",
    "max_size_mb": "size_mb",
    "max_lava_mismatched_spikes": "lava_mismatch",
    "min_int8_mac_fraction": "int8_macs",
}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def zoo_models() -> list[str]:
    """Model names in the order tests/zoo/models.py declares them (read from the cards, no torch import here)."""
    src = (ROOT / "tests" / "zoo" / "models.py").read_text()
    cards = {p.name.removesuffix(".card.json") for p in ZOO_WEIGHTS.glob("*.card.json")}
    m = re.search(r"^ZOO\b[^=]*=\s*\{(.*?)^\}", src, re.S | re.M)
    declared = re.findall(r"[\"'](\w+)[\"']\s*:", m.group(1)) if m else []
    return [n for n in declared if n in cards] + sorted(cards - set(declared))


def shipped_targets() -> list[dict]:
    """`edgekit targets --format json`: name, backend, pipeline, gates, description of every shipped recipe."""
    proc = subprocess.run(EDGEKIT + ["targets", "--format", "json"], cwd=ROOT, env=child_env(), capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout)


def _repo_relative(text: str) -> str:
    """Paths into a checkout (/any/where/tests/zoo/models.py) as repo-relative ones, so tables of two clones compare."""
    return re.sub(r"/[^\s:'\"()]*?/(tests|edgekit|build)/", r"\1/", text)


def one_line(text: str, limit: int = SHORT_REASON) -> str:
    line = " ".join(_repo_relative(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def parse_json_doc(stdout: str) -> dict | None:
    """The one JSON object `--format json` prints (indented over many lines); None if there is none."""
    start = stdout.find("{")
    if start < 0:
        return None
    try:
        doc, _ = json.JSONDecoder().raw_decode(stdout[start:])
    except json.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def classify(code: int, stdout: str, stderr: str) -> dict:
    """A cell's outcome from the exit code, the JSON document on stdout and stderr."""
    doc = parse_json_doc(stdout)
    if doc is not None and "report" in doc:
        rep = doc["report"]
        acc = rep.get("accuracy") or {}
        diff = acc.get("diff_from_reference") or {}
        gates = [{"name": g["name"], "value": g.get("value"), "limit": g.get("limit"), "passed": g.get("passed")}
                 for g in rep.get("gates") or []]
        cell = {"exit_code": code, "error_increase_deg": acc.get("error_increase_deg"),
                "max_diff_deg": diff.get("max_deg"), "p95_diff_deg": diff.get("p95_deg"),
                "reference_mean_deg": (acc.get("reference") or {}).get("mean_deg"),
                "artifact_mean_deg": (acc.get("artifact") or {}).get("mean_deg"), "gates": gates,
                "artifact_bytes": ((rep.get("size") or {}).get("artifact") or {}).get("value"),
                "precision": (rep.get("artifact") or {}).get("precision")}
        if doc.get("passed") and code == 0:
            return {"outcome": "PASS", **cell}
        failed = [g for g in gates if not g["passed"]]
        reason = "; ".join(f"{g['name']} {_num(g['value'])} vs limit {_num(g['limit'])}" for g in failed) or \
            one_line(doc.get("error", f"exit {code} without a failing gate"))
        return {"outcome": "FAIL", "reason": reason, "failed_gates": [g["name"] for g in failed], **cell}
    if doc is not None and "error" in doc and code in (1, 2, 3, 130, 143):
        full = doc["error"] + (f"; fix: {doc['fix']}" if doc.get("fix") else "")
        return {"outcome": f"EXIT {code}", "exit_code": code, "reason": one_line(doc["error"]),
                "full_reason": " ".join(_repo_relative(full).split())}
    line = last_line(stderr) or last_line(stdout) or f"exit {code}, no output"
    return {"outcome": "CRASH", "exit_code": code, "reason": one_line(line),
            "stderr_tail": "\n".join(stderr.strip().splitlines()[-15:])}


def _num(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def cell_args(model: str, target: str, workdir: Path) -> list[str]:
    """The `edgekit compile` arguments of one cell (tests/zoo/test_zoo_matrix.py runs them in its own process)."""
    card_path = ZOO_WEIGHTS / f"{model}.card.json"
    arch = json.loads(card_path.read_text())["arch"]
    return ["compile", str(ZOO_WEIGHTS / f"{model}.safetensors"), "--target", target, "--card", str(card_path),
            "--arch", arch, "--out", str(workdir / model / target), "--force", "--format", "json"]


def run_cell(model: str, target: str, workdir: Path, timeout: float) -> dict:
    cmd = EDGEKIT + cell_args(model, target, workdir)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        cell = {"outcome": "TIMEOUT", "exit_code": None, "reason": f"killed after {timeout:g} s"}
    else:
        cell = classify(proc.returncode, stdout, stderr)
    cell.update(model=model, target=target, seconds=round(time.perf_counter() - start, 1))
    return cell


# --- Markdown -------------------------------------------------------------------------------------------------------

def _short_gate(g: dict) -> str:
    name = GATE_ABBREV.get(g["name"], g["name"])
    op = "<" if g["name"].startswith("min_") else ">"
    return f"{name} {_num(g['value'])}{op}{_num(g['limit'])}"


def cell_text(cell: dict, ref: int | None) -> str:
    o = cell["outcome"]
    tag = f" [{ref}]" if ref else ""
    if o == "PASS":
        d = cell["max_diff_deg"]
        return f"PASS {cell['error_increase_deg']:+.2f} ({'<0.01' if d is not None and d < 0.01 else _num(d)})"
    if o == "FAIL":
        failed = [g for g in cell["gates"] if not g["passed"]]
        return "FAIL " + ", ".join(_short_gate(g) for g in failed) + tag if failed else "FAIL" + tag
    if o.startswith("EXIT"):
        # "export_onnx: ..." / "pass qat, after fold_bn failed: ...": the [n] note names the pass
        reason = re.sub(r"^(pass [a-z0-9_]+(, after [^:]*)? failed: |[a-z][a-z0-9_]*: )", "", cell["reason"])
        return f"exit {cell['exit_code']}: {one_line(reason, CELL_REASON)}{tag}"
    if o == "CRASH":
        return f"CRASH: {one_line(cell['reason'], CELL_REASON)}{tag}"
    if o == "TIMEOUT":
        return f"TIMEOUT{tag}"
    return f"not run{tag}"


def _full_reason(cell: dict) -> str:
    """The exact reason of one cell (the numbered notes show one per group; zoo.json keeps every cell's)."""
    o = cell["outcome"]
    if o == "FAIL":
        return f"FAIL: {cell['reason']}"
    if o.startswith("EXIT"):
        return f"exit {cell['exit_code']}: {cell.get('full_reason', cell['reason'])}"
    return f"{o}: {cell['reason']}"


def _reason_key(cell: dict) -> str:
    """Cells with one cause share a note: FAIL by its failing gates and limits; otherwise the message without the
    pass trailer ("[in pass X, after Y]"), the "pass X, after Y failed: " wrapper, and Core ML MIL variable names."""
    if cell["outcome"] == "FAIL":
        failed = [g for g in cell.get("gates", []) if not g["passed"]]
        return "FAIL: " + ("; ".join(f"{g['name']} beyond its limit {_num(g['limit'])}" for g in failed) or cell["reason"])
    text = _repo_relative(_full_reason(cell))
    text = re.sub(r"Node number \d+", "Node number N", text)
    text = re.sub(r" \[in pass [^\]]*\]$", "", text)
    text = re.sub(r"pass [a-z0-9_]+(, after [^:]*)? failed: ", "", text)
    return re.sub(r"(op [a-z0-9_]+) \([^)]*\)", r"\1 (...)", text)


def _where(cell: dict) -> str:
    """model/target, and for a FAIL the failing gates' values plus the error increase and max difference."""
    where = f"{cell['model']}/{cell['target']}"
    if cell["outcome"] != "FAIL":
        return where
    values = {GATE_ABBREV.get(g["name"], g["name"]): g["value"] for g in cell.get("gates", []) if not g["passed"]}
    values.setdefault("err+", cell.get("error_increase_deg"))
    values.setdefault("max_diff", cell.get("max_diff_deg"))
    return where + " (" + ", ".join(f"{k} {_num(v)}" for k, v in values.items()) + ")"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(cells: list[dict], models: list[str], targets: list[str], meta: dict) -> str:
    by = {(c["model"], c["target"]): c for c in cells}
    groups: dict[str, list[dict]] = {}  # reason key -> cells, numbered in table order
    texts: dict[tuple[str, str], str] = {}
    for m in models:
        for t in targets:
            c = by.get((m, t))
            if c is None:
                continue
            ref = None
            if c["outcome"] != "PASS":
                key = _reason_key(c)
                groups.setdefault(key, []).append(c)
                ref = list(groups).index(key) + 1
            texts[m, t] = cell_text(c, ref)
    counts: dict[str, int] = {}
    for c in cells:
        counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
    pace = "one cell at a time" if meta["jobs"] == 1 else f"{meta['jobs']} cells at a time"
    lines = [
        "# Zoo matrix: every zoo model x every shipped target",
        "",
        f"Regenerate: `{meta['command']}`",
        "",
        f"- commit: `{meta['commit']}`{' (edgekit/ had uncommitted changes)' if meta.get('dirty') else ''}",
        f"- host: {meta['cpu']}, {meta['cores']} cores, Python {meta['python']}, OMP_NUM_THREADS=1, {pace}",
        f"- started: {meta['date']}; took {meta['took_s'] / 60:.1f} min ({meta.get('cells_run', len(cells))} cells, "
        f"per-cell timeout {meta['timeout_s']:g} s)",
    ]
    for u in meta.get("updates", []):
        lines.append(f"- rerun {u['date']}: {', '.join(u['cells'])} ({u['took_s'] / 60:.1f} min)"
                     + (f"; why: {u['why']}" if u.get("why") else ""))
    if meta.get("cache_dir"):
        lines.append(f"- pass and report cache: EDGEKIT_CACHE_DIR={meta['cache_dir']}")
    if meta.get("lava_venv"):
        lines.append(f"- Lava simulator (loihi targets' spike-for-spike check): {meta['lava_venv']}")
    lines += [
        "- outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
        "",
        "Each cell is `edgekit compile tests/zoo/weights/M.safetensors --target T --card M.card.json --arch <card arch> "
        "--format json` in its own process. `PASS +e (d)`: passed its gates, error increase e deg over the PyTorch model "
        "(mean angular error of the artifact minus the model's, on the target's eval set) and max per-sample difference d deg. "
        "`FAIL gate v>limit`: exit 1, the failing gates (err+ = max_error_increase_deg, max_diff/p95_diff = max/p95 "
        "per-sample difference in deg, int8_macs = min_int8_mac_fraction, lava_mismatch = max_lava_mismatched_spikes). "
        "`exit 2` bad input or config, `exit 3` missing dependency: edgekit's one-line reason, trimmed. `CRASH`: any "
        "other exit (an uncaught exception), the last line of stderr. [n] refers to the reasons below.",
        "",
    ]
    if "loihi-distill" in targets:
        lines += ["loihi-distill compiles a distilled student (tinygaze) of the zoo model, not its architecture: its PASS "
                  "cells compare the student's error with the zoo model's.", ""]
    lines += [
        "| model | " + " | ".join(targets) + " |",
        "|---|" + "---|" * len(targets),
    ]
    for m in models:
        lines.append(f"| {m} | " + " | ".join(_escape(texts.get((m, t), "")) for t in targets) + " |")
    lines += ["", "## Reasons", "",
              "One note per cause; the message shown is the first cell's, verbatim (other cells of a note may differ in "
              "the pass named or a Core ML variable name; zoo.json has every cell's exact message).", ""]
    for n, (key, group) in enumerate(groups.items(), 1):
        shown = key if group[0]["outcome"] == "FAIL" else _repo_relative(_full_reason(group[0]))
        lines.append(f"{n}. {_escape(shown)}  \n   ({len(group)} cell{'s' if len(group) != 1 else ''}: "
                     f"{', '.join(_where(c) for c in group)})")
    lines.append("")
    return "\n".join(lines)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _lava_venv() -> str:
    """Where edgekit looks for the Lava simulator (EDGEKIT_LAVA_VENV, else .venv-lava in the repo root), and whether it is there."""
    venv = Path(os.environ.get("EDGEKIT_LAVA_VENV") or ".venv-lava")
    venv = venv if venv.is_absolute() else ROOT / venv
    return f"{venv} ({'present' if (venv / 'bin' / 'python').exists() else 'absent: loihi targets cannot run their Lava check'})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated zoo models (default: all)")
    ap.add_argument("--targets", help="comma-separated targets (default: every shipped target)")
    ap.add_argument("--skip", default="", help="comma-separated model/target cells (or */target, model/*) to leave "
                                               "as 'not run'")
    ap.add_argument("--skip-reason", default="not run (time)", help="the reason recorded for --skip cells")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "zoo.md")
    ap.add_argument("--jobs", type=int, default=1, help="cells at a time (each is one process)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per cell before it is killed (TIMEOUT)")
    ap.add_argument("--workdir", type=Path, default=ROOT / "build" / "zoo-matrix", help="artifacts and reports per cell")
    ap.add_argument("--update", action="store_true", help="rerun only the selected cells and merge them into the "
                                                          "existing <out>.json (the table keeps all its cells)")
    ap.add_argument("--why", default="", help="with --update: why these cells were rerun (shown in the header)")
    ap.add_argument("--render-only", action="store_true", help="rewrite <out> from <out>.json without compiling")
    args = ap.parse_args(argv)
    json_path = args.out.with_suffix(".json")
    command_args = argv if argv is not None else sys.argv[1:]

    if args.render_only:
        doc = json.loads(json_path.read_text())
        args.out.write_text(render(doc["cells"], doc["meta"]["models"], doc["meta"]["targets"], doc["meta"]))
        print(f"wrote {args.out} from {json_path}")
        return 0

    all_models = zoo_models()
    models = args.models.split(",") if args.models else all_models
    unknown = [m for m in models if m not in all_models]
    if unknown:
        ap.error(f"unknown zoo model(s) {unknown}; known: {all_models}")
    target_rows = shipped_targets()
    all_targets = sorted((r["name"] for r in target_rows),
                         key=lambda n: (PREFERRED.index(n) if n in PREFERRED else len(PREFERRED), n))
    targets = args.targets.split(",") if args.targets else all_targets
    unknown = [t for t in targets if t not in all_targets]
    if unknown:
        ap.error(f"unknown target(s) {unknown}; shipped: {all_targets}")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    def skipped(m: str, t: str) -> bool:
        return f"{m}/{t}" in skip or f"*/{t}" in skip or f"{m}/*" in skip

    todo = [(m, t) for m in models for t in targets if not skipped(m, t)]
    cells = [{"model": m, "target": t, "outcome": "not run", "exit_code": None, "reason": args.skip_reason,
              "seconds": 0.0} for m in models for t in targets if skipped(m, t)]
    args.workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")  # when the run started

    def one(mt: tuple[str, str]) -> dict:
        cell = run_cell(mt[0], mt[1], args.workdir, args.timeout)
        shown = cell_text(cell, None)
        print(f"[{time.perf_counter() - start:7.0f}s] {mt[0]:<20} {mt[1]:<18} {cell['seconds']:6.1f}s  {shown}", flush=True)
        return cell

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        cells += list(pool.map(one, todo))
    took = time.perf_counter() - start
    gates = {r["name"]: r["gates"] for r in target_rows if r["name"] in targets}

    if args.update and json_path.exists():
        doc = json.loads(json_path.read_text())
        meta = doc["meta"]
        rerun = {(c["model"], c["target"]) for c in cells}
        cells = [c for c in doc["cells"] if (c["model"], c["target"]) not in rerun] + cells
        models = meta["models"] + [m for m in models if m not in meta["models"]]
        targets = meta["targets"] + [t for t in targets if t not in meta["targets"]]
        meta.update(models=models, targets=targets)
        meta.setdefault("updates", []).append({"date": now, "took_s": round(took, 1), "why": args.why,
                                               "lava_venv": _lava_venv(),
                                               "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zoo_matrix.py "
                                                          + " ".join(command_args),
                                               "cells": [f"{m}/{t}" for m, t in sorted(rerun)]})
        gates = {**doc.get("gates", {}), **gates}
    else:
        meta = {"command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/zoo_matrix.py" +
                           "".join(f" {a}" for a in command_args),
                "commit": _git("rev-parse", "--short", "HEAD"),
                "dirty": bool(_git("status", "--porcelain", "--", "edgekit")),
                "cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version(), "date": now,
                "took_s": round(took, 1), "cells_run": len(todo), "timeout_s": args.timeout, "jobs": args.jobs,
                "cache_dir": os.environ.get("EDGEKIT_CACHE_DIR"), "lava_venv": _lava_venv(),
                "models": models, "targets": targets}
    order = {(m, t): i for i, (m, t) in enumerate((m, t) for m in models for t in targets)}
    cells.sort(key=lambda c: order.get((c["model"], c["target"]), len(order)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(cells, models, targets, meta))
    json_path.write_text(json.dumps({"meta": meta, "gates": gates, "cells": cells}, indent=1) + "\n")
    print(f"wrote {args.out} and {json_path} ({took / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
