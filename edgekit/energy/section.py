"""The energy section of a report, from per-layer count rows: MACs by precision, cited estimates, a RAPL reading."""

from __future__ import annotations

from edgekit.energy.estimate import estimate
from edgekit.energy.meters import RaplSource, Reading, measure


def energy_section(rows: list[dict], runner, sample, device: str, not_measurable: str | None = None) -> dict:
    """`rows` as edgekit.backends.onnx.energy_counts gives them (layer, op, precision, macs, weight and activation sizes).

    `device`: the recipe's device profile, which chooses the estimates. `not_measurable`: why this host's energy would
    not describe the artifact's runtime (then nothing is measured)."""
    macs_by_precision: dict[str, int] = {}
    for r in rows:
        macs_by_precision[r["precision"]] = macs_by_precision.get(r["precision"], 0) + r["macs"]
    reading = (Reading(None, None, 0, 0.0, f"not measured: {not_measurable}") if not_measurable
               else measure(RaplSource(), lambda: runner.run(sample)))
    return {"macs_by_precision": macs_by_precision, "layers": rows, "estimates": estimate(rows, device),
            "measured": reading.__dict__ | {"meter": "none" if not_measurable else "RAPL (powercap)", "runtime": runner.describe()}}
