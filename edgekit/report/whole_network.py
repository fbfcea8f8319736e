"""Whole-network energy rows, like for like: what the comparison page and `edgekit energy` compare.

A spiking report's estimates include parts of the network: the host encoder alone (45 nm, first layer) and the
spiking layers on a spiking chip without that encoder. Shown next to an ANN's whole network, the encoder's 0.42 uJ
made the SNN look 3x cheaper than INT8 when the whole network costs up to 1.3x more. Here every row is one inference
of the whole network (every layer, the host encoder and readout included); parts are summed or left out, never shown.

An artifact stored in FP16 but run by a CPU runtime that computes in FP32 (onnxruntime's CPU provider up-casts the
weights, LiteRT's CPU kernels dequantize them) has FP16 estimates that say nothing about the device it ran on: such
rows are marked, and never shown as a saving.
"""

from __future__ import annotations

from edgekit.report.model import Report

WHOLE = "whole network"
ENCODER = "host encoder"
SPIKING_LAYERS = "spiking layers"
NOT_A_SAVING = "not a saving on this device"

# the one row every comparison shows (page, summary.md, JUnit, the compile summary): one profile, device and level
SHOWN_PROFILE, SHOWN_DEVICE, SHOWN_LEVEL = "horowitz-45nm", "45 nm CMOS", "compute"
ARITHMETIC = {"float": "float MACs", "integer": "integer MACs", "integer-accumulate": "integer accumulates (spiking)",
              "integer-graded": "integer MACs on graded messages (sigma-delta)"}
LIKE_INT8 = ("integer-accumulate", "integer-graded")  # a neuromorphic network's integer work: compared with INT8 only


def scope(report: Report, estimate) -> str:
    """Which part of the network an estimate covers. Derived, as the report model has no field for it: a spiking
    report's (edgekit.snn.counts.energy_estimates) 45 nm integer-accumulate row is the whole inference with the encoder;
    its other 45 nm row is the host encoder alone and its KerasSpiking rows the spiking layers without the encoder."""
    if getattr(report, "spiking", None) is None or estimate.arithmetic == "integer-accumulate":
        return WHOLE
    return ENCODER if estimate.profile == "horowitz-45nm" else SPIKING_LAYERS


def fp16_not_computed(report: Report) -> str | None:
    """Why the artifact's FP16 MACs ran as FP32 arithmetic on the device that ran it, or None (no FP16 MACs, not run
    here, or FP16 arithmetic as far as the report shows)."""
    if not report.energy.macs_by_precision.get("fp16"):
        return None
    runtime = getattr(report, "runtime", None)
    if runtime is None or not runtime.executed_here:
        return None
    fp16 = runtime.fp16_execution
    if fp16 is not None and fp16.weights_fp16_fraction_after_ort_optimisation < 0.5:
        return (f"{runtime.runtime.split(',')[0]} up-casts to FP32 ({fp16.weights_fp16_fraction_after_ort_optimisation:.0%} "
                "of weight values stay FP16 after its graph optimisations): FP16 saves file size, not arithmetic")
    if report.target.backend == "tflite" and (runtime.op_histogram or {}).get("DEQUANTIZE"):
        return ("LiteRT's CPU kernels compute in FP32: DEQUANTIZE ops turn the FP16 weights into FP32 before the compute "
                "ops; FP16 saves file size, not arithmetic")
    return None


def _row(estimate, **changes) -> dict:
    fields = ("profile", "device", "level", "arithmetic", "low_uj", "high_uj", "method", "source", "assumptions")
    return {**{k: getattr(estimate, k) for k in fields}, "scope": WHOLE, "on_this_device": None, **changes}


def whole_network_estimates(report: Report) -> list[dict]:
    """The report's estimates of one whole inference, in the report's order: its whole-network rows as they are, and
    each spiking-chip row plus the host encoder (the network's other part) as one derived row. Rows of an FP16
    artifact that ran in FP32 carry why in `on_this_device`."""
    parts = {ENCODER: [], SPIKING_LAYERS: []}
    rows = []
    for e in report.energy.estimates:
        part = scope(report, e)
        if part == WHOLE:
            rows.append(_row(e))
        else:
            parts[part].append(e)
    encoder = parts[ENCODER][0] if len(parts[ENCODER]) == 1 else None
    for chip in parts[SPIKING_LAYERS] if encoder is not None else []:  # without its encoder a chip row is a part: left out
        rows.append(_row(chip, profile=f"{chip.profile} + {encoder.profile}", device=f"{chip.device} + host encoder (45 nm)",
                         low_uj=chip.low_uj + encoder.low_uj, high_uj=chip.high_uj + encoder.high_uj,
                         source=f"{chip.source}; {encoder.source}",
                         assumptions=f"spiking layers: {chip.assumptions}; plus the host encoder: {encoder.assumptions}"))
    why = fp16_not_computed(report)
    if why:  # only the 45 nm rows depend on the precision (KerasSpiking's per-op energies do not)
        rows = [{**r, "on_this_device": f"{NOT_A_SAVING}: {why}"} if r["profile"] == "horowitz-45nm" else r for r in rows]
    return rows


def shown_row(report: Report) -> dict | None:
    """The whole-network row at the shown profile, device and level, or None when the report has none."""
    return next((r for r in whole_network_estimates(report)
                 if (r["profile"], r["device"], r["level"]) == (SHOWN_PROFILE, SHOWN_DEVICE, SHOWN_LEVEL)), None)


def shown_label(report: Report, row: dict) -> str:
    """'45 nm CMOS, compute; float MACs (FP32)': the device, level and arithmetic the row counts."""
    kind = ARITHMETIC.get(row["arithmetic"], row["arithmetic"] or "")
    precisions = ", ".join(k.upper() for k in report.energy.macs_by_precision) if row["arithmetic"] == "float" else ""
    return f"{row['device']}, {row['level']}; {kind}{f' ({precisions})' if precisions else ''}"


def left_out(report: Report) -> list[str]:
    """The partial rows of a report, for a note ('host encoder 0.424 uJ (horowitz-45nm)')."""
    return [f"{scope(report, e)} {e.low_uj:.3g}{'' if e.high_uj == e.low_uj else f'-{e.high_uj:.3g}'} uJ ({e.profile}, {e.device})"
            for e in report.energy.estimates if scope(report, e) != WHOLE]


def times(ratio: float) -> str:
    """base / row: '3.1x less' when the row uses less energy, '1.3x more' when it uses more."""
    return f"{ratio:.1f}x less" if ratio >= 1 else f"{1 / ratio:.1f}x more"


def add_ratios(rows: list[dict]) -> None:
    """Set each row's `ratio_to_first`: against the first row of the same profile, device and level, low end against
    low end. A spiking or sigma-delta network's integer work compares with integer MACs (INT8) only, never with FP32 MACs; a
    row not describing its device is neither a base nor compared."""
    first: dict[tuple, dict] = {}
    first_integer: dict[tuple, dict] = {}
    for r in rows:
        r["ratio_to_first"] = ""
        if r.get("on_this_device"):
            r["ratio_to_first"] = NOT_A_SAVING
            continue
        key = (r["profile"], r["device"], r["level"])
        if r.get("arithmetic") == "integer":
            first_integer.setdefault(key, r)
        base = first_integer.get(key) if r.get("arithmetic") in LIKE_INT8 else first.setdefault(key, r)
        if base is not None and r is not base and r["low_uj"] and base["low_uj"]:
            lo, hi = base["low_uj"] / r["low_uj"], base["high_uj"] / r["high_uj"]
            r["ratio_to_first"] = (f"same as {base['target']}" if max(abs(lo - 1), abs(hi - 1)) < 0.05 else
                                   f"{times(lo)} than {base['target']}" if abs(lo - hi) < 0.05 else
                                   f"{times(lo)} (low end) / {times(hi)} (high end) than {base['target']}")
