"""The spiking energy comparison of issue 20: FP32 vs INT8 vs CUBA (loihi) vs sigma-delta (loihi-sdnn), one inference
of the whole network, the same cited constants and levels, read from the reports `make sample-report` writes.

    .venv/bin/python benchmarks/snn_energy_table.py [build/sample-report]

Prints a Markdown table (benchmarks/snn.md holds its output). A sigma-delta network gets two rows: a single frame
from rest (what every report's energy is) and a frame of a 60 Hz sequence (its sigma_delta section).
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgekit.report.model import Report

TARGETS = ("onnx", "onnx-int8", "loihi", "loihi-sdnn")
PROFILES = (("horowitz-45nm", "45 nm CMOS", "45 nm, compute"), ("keras-spiking", "loihi", "KerasSpiking Loihi"))


def _range(rows: list[dict], profile: str, device: str) -> str:
    row = next((r for r in rows if r["profile"] == profile and r["device"] == device and r["level"] == "compute"), None)
    if row is None:
        return "-"
    return f"{row['low_uj']:.3f}" if row["low_uj"] == row["high_uj"] else f"{row['low_uj']:.3f}-{row['high_uj']:.3f}"


def main(folder: Path) -> None:
    head = ["target", "what runs", "error (deg)", "work per inference"] + [label + " (uJ)" for *_, label in PROFILES]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for target in TARGETS:
        report = Report.model_validate_json((folder / target / "report.json").read_text())
        rows = [e.model_dump() for e in report.energy.estimates]
        error = f"{report.accuracy.artifact.mean_deg:.3f}"
        if report.sigma_delta is not None:
            sd = report.sigma_delta
            frames = [("single frame from rest", sd.single_frame, error), ("60 Hz sequence frame", sd.sequence,
                                                                            f"{sd.sequence.error_deg:.3f} (sequences)")]
            for label, counts, err in frames:
                work = f"{counts.synops / 1e6:.2f} M synaptic ops, {counts.messages / 1e3:.1f} k messages"
                print(f"| {target} | {label} | {err} | {work} | "
                      + " | ".join(_range(counts.energy, p, d) for p, d, _ in PROFILES) + " |")
            continue
        if report.spiking is not None:
            total = report.spiking.counts.total
            work = (f"{total['effective_acs'] / 1e6:.2f} M synaptic ops over {report.spiking.counts.steps} steps "
                    f"+ {total['effective_macs'] / 1e6:.2f} M FP32 MACs (host encoder)")
            what = "CUBA, T=" + str(report.spiking.timesteps)
        else:
            work = ", ".join(f"{k} {v / 1e6:.2f} M MACs" for k, v in report.energy.macs_by_precision.items())
            what = "INT8 ANN" if "int8" in report.energy.macs_by_precision else "FP32 ANN"
        print(f"| {target} | {what} | {error} | {work} | " + " | ".join(_range(rows, p, d) for p, d, _ in PROFILES) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/sample-report"))
