"""The committed sample report: the demo model across every target, energy rows side by side.

`make sample-report` (edgekit energy --target ... --report-dir reports) writes reports/demo.md (read it),
reports/demo.json (the static numbers: what a rebuild must reproduce; no latency, no measured energy, no
dates) and reports/compare.html. A test regenerates demo.json and compares.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekit.fileio import atomic_write_text
from edgekit.report.compare import write_compare
from edgekit.report.model import Report
from edgekit.report.summary import energy_range
from edgekit.report.whole_network import WHOLE, add_ratios, left_out, scope, whole_network_estimates

# one target per backend and precision (recipes that add pruning, QAT or other compressions are left out), in the
# order the comparison reads best: float first, then smaller and cheaper, then spiking
SAMPLE_TARGETS = ("onnx", "onnx-fp16", "onnx-int8", "coreml", "coreml-int8", "tflite", "tflite-fp16", "tflite-int8",
                  "executorch", "executorch-int8", "snn", "loihi", "loihi-sdnn")


def energy_rows(reports: dict[str, Report]) -> tuple[list[dict], list[str]]:
    """One row per target x whole-network estimate (profile, device, level; edgekit.report.whole_network) plus the
    measured row; ratios only within one profile, device and level (spiking accumulates against INT8 MACs only), low
    end against low end. Parts of a network (a spiking report's host encoder or its spiking layers alone) are never
    rows: a note names them; an FP16 row that ran as FP32 says so instead of a ratio."""
    rows, notes = [], []
    for target, report in reports.items():
        energy = report.energy
        if energy.why is not None:
            notes.append(f"{target}: {energy.why}")
            continue
        rows += [{"target": target, **r} for r in whole_network_estimates(report)]
        measured = energy.measured
        rows.append({"target": target, "profile": "host", "device": measured.meter, "level": "measured", "arithmetic": None,
                     "low_uj": measured.dynamic_uj_per_inference, "high_uj": measured.dynamic_uj_per_inference,
                     "method": "measured" if measured.dynamic_uj_per_inference else "not measured",
                     "source": measured.runtime, "assumptions": measured.how, "scope": WHOLE, "on_this_device": None})
        parts = left_out(report)
        if parts:
            notes.append(f"{target}: parts of the network, summed into the whole-network rows above or left out, never "
                         f"compared alone: {'; '.join(parts)}")
    add_ratios(rows)
    marked = {r["target"]: r["on_this_device"] for r in rows if r["on_this_device"]}
    notes += [f"{target} (horowitz-45nm rows): {why}" for target, why in marked.items()]
    return rows, notes


def _sig(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else float(f"{x:.{digits}g}")


def static_numbers(target: str, report: Report) -> dict:
    """What a rebuild from the same inputs reproduces on this host (rounded where float sums may reorder)."""
    acc = report.accuracy
    energy = report.energy
    return {
        "target": target, "pipeline": report.pipeline, "format": report.artifact.format, "sha256": report.artifact.sha256,
        "bytes_across_hosts": report.artifact.reproducible.across_hosts,
        "size_bytes": report.size["artifact"].value, "params": report.compute["params"].value,
        "macs": report.compute["macs"].value, "macs_by_precision": energy.macs_by_precision or None,
        "error_deg": round(acc.artifact.mean_deg, 3), "reference_error_deg": round(acc.reference.mean_deg, 3),
        "diff_mean_deg": round(acc.diff_from_reference.mean_deg, 3), "diff_max_deg": round(acc.diff_from_reference.max_deg, 3),
        "gates": {g.name: g.passed for g in report.gates},
        "energy_estimates_uj": [{"profile": e.profile, "device": e.device, "level": e.level, "arithmetic": e.arithmetic,
                                 "scope": scope(report, e), "low": _sig(e.low_uj), "high": _sig(e.high_uj)}
                                for e in energy.estimates],
    }


def write_sample(reports: dict[str, Report], report_paths: list[Path], out: Path) -> list[Path]:
    model = next(iter(reports.values())).model.name
    host = next(iter(reports.values())).host
    # digests of host-dependent artifacts (INT8, spiking) are compared only on a host with the same CPU and flags
    numbers = {"model": model, "host": {k: getattr(host, k) for k in ("cpu", "machine", "isa_flags")},
               "targets": [static_numbers(t, r) for t, r in reports.items()]}
    rows, notes = energy_rows(reports)
    lines = [f"# {model} on every target", "",
             "Regenerate with `make sample-report`. Every energy figure is an estimate (counts from the artifact x cited "
             "per-op constants; sources in each row), except rows labelled measured. Every energy row is one inference of "
             "the whole network (every layer; for spiking targets the host encoder and the readout included). Ratios "
             "compare rows of the same profile, device and level only; an FP16 figure for a runtime that computes in FP32 "
             "is marked, not compared.", "",
             "| target | pipeline | size (MB) | MACs (M) by precision | error (deg) | diff max (deg) | gates |", "|---|---|---|---|---|---|---|"]
    for t in numbers["targets"]:
        precisions = ", ".join(f"{k} {v / 1e6:.2f}" for k, v in (t["macs_by_precision"] or {}).items())
        pipeline = t["pipeline"].replace("|", "\\|")  # a bare | would end the table cell
        lines.append(f"| {t['target']} | `{pipeline}` | {t['size_bytes'] / 1e6:.2f} | {precisions} | {t['error_deg']:.3f} | "
                     f"{t['diff_max_deg']:.3f} | {'pass' if all(t['gates'].values()) else 'FAIL'} |")
    lines += ["", "| target | profile | device | level | arithmetic | uJ per inference, whole network | vs first of its kind |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['target']} | {r['profile']} | {r['device']} | {r['level']} | {r['arithmetic'] or '-'} | "
                     f"{energy_range(r['low_uj'], r['high_uj']) if r['low_uj'] else 'not measured'} | {r['ratio_to_first']} |")
    lines += [""] + [f"- {n}" for n in notes]
    sources = sorted({f"{r['profile']}: {r['source']}" for r in rows if r["level"] != "measured"})
    lines += ["", "Sources:"] + [f"- {s}" for s in sources] + [""]
    out.mkdir(parents=True, exist_ok=True)  # everything is computed before the first file is written
    atomic_write_text(out / "demo.json", json.dumps(numbers, indent=2) + "\n")
    atomic_write_text(out / "demo.md", "\n".join(lines))
    write_compare(report_paths, out / "compare.html")
    return [out / "demo.json", out / "demo.md", out / "compare.html"]
