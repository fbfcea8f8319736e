"""The report's sections as plain rows and sentences, shared by report.md and report.html so both say the same thing.

Nothing here returns Markdown or HTML: `plain` turns any JSON-like value into readable text (never a Python or JSON
repr), and each section is a list of (label, text) facts or a header plus rows of cells.
"""

from __future__ import annotations

from edgekit.report.model import Measurement, Report
from edgekit.report.summary import energy_range, speed_against_fp32


def plain(value, nested: bool = False) -> str:
    """Readable text for a recipe option, a plan setting or a metadata value: `dtype int8, bits 7`, `(1, 1)`."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        text = ", ".join(f"{k} {plain(v, nested=True)}" for k, v in value.items()) or "none"
    elif isinstance(value, (list, tuple)):
        sep = "; " if any(isinstance(v, dict) for v in value) else ", "
        text = sep.join(plain(v, nested=True) for v in value) or "none"
    else:
        return str(value)
    return f"({text})" if nested and text != "none" else text


def measurement_value(m: Measurement | None) -> str:
    if m is None or m.value is None:
        return "not measured"
    v = m.value
    if m.unit == "bytes":
        return f"{v / 1e6:.3f} MB"
    if m.unit in ("count", "MAC"):
        return f"{v / 1e6:.3f} M" if v >= 1e5 else f"{v:.0f}"
    return f"{v:.3f} {m.unit}"


def how_text(m: Measurement) -> str:
    """`measured: onnxruntime ...`; a `how` that already starts with its method (`not measured: no Loihi here`) once."""
    method = m.method.replace("_", " ")
    return m.how if m.how.startswith(method) else f"{method}: {m.how}"


def measurement_rows(report: Report) -> list[tuple[str, str, str, str]]:
    """(section, quantity, value, how) for every number in the report."""
    rows = []
    acc = report.accuracy
    if acc:
        n = acc.set.n_images
        for label, s in (("reference", acc.reference), ("artifact", acc.artifact), ("predict-the-mean", acc.predict_mean_baseline)):
            rows.append(("accuracy", f"{label} error mean / median / p95 / max",
                         f"{s.mean_deg:.3f} / {s.median_deg:.3f} / {s.p95_deg:.3f} / {s.max_deg:.3f} deg",
                         f"measured on {n} images of {acc.set.source} against {acc.truth}"))
        d = acc.diff_from_reference
        rows.append(("accuracy", "difference from reference mean / p95 / max", f"{d.mean_deg:.5f} / {d.p95_deg:.5f} / {d.max_deg:.5f} deg",
                     f"measured: {acc.how}"))
        rows.append(("accuracy", "error increase over reference", f"{acc.error_increase_deg:+.4f} deg", "measured"))
    for section, group in (("latency", report.latency), ("memory", report.memory), ("size", report.size), ("compute", report.compute)):
        for key, m in group.items():
            row = (section, key, measurement_value(m), how_text(m))
            last = rows[-1] if rows else None
            if m.value is None and last and (last[0], last[2], last[3]) == (section, row[2], row[3]):
                rows[-1] = (section, f"{last[1]} / {key}", row[2], row[3])  # p50 / p90 / p99 not measured, for one reason
            else:
                rows.append(row)
    return rows


def reproducible_text(report: Report) -> str:
    """Whether a rebuild elsewhere gives the same bytes."""
    rep = report.artifact.reproducible
    where = "identical when rebuilt on any x86-64 host" if rep.across_hosts else "identical when rebuilt on this host only"
    return f"{where} ({rep.why})"


def parity_facts(report: Report) -> list[tuple[str, str]]:
    """The per-layer parity check of a failed report, field by field."""
    p = report.parity
    if p is None:
        return []
    facts = [("checked", "yes" if p.checked else "no")]
    if p.checked:
        facts.append(("first diverging layer", p.first_divergent_layer or "none"))
    if p.relative_error is not None:
        facts.append(("relative error (largest difference / largest reference value)", f"{p.relative_error:.3g}"))
    if p.tolerance is not None:
        facts.append(("tolerance", f"{p.tolerance:g}"))
    if p.layers_compared is not None:
        facts.append(("layers compared", str(p.layers_compared)))
    if p.why:
        facts.append(("why" if not p.checked else "note", p.why))
    return facts


# -- quantization ------------------------------------------------------------------------------------------------

SENSITIVITY_MEANS = ("the layer alone in INT8 on the calibration set: the mean difference from FP32 (ONNX) or the "
                     "error increase (TFLite), in degrees")
SENSITIVITY_SKIPPED = ("not measured: it only decides which layer returns to float, so it is measured when the all-INT8 "
                       "plan misses a target on the calibration set with mixed precision on")
QUANT_HEAD = ["layer", "op", "MMACs", "weights", "precision", "sensitivity alone in INT8 (deg)", "weight rel. RMS error", "why"]


def quant_facts(report: Report) -> list[tuple[str, str]]:
    q, c = report.quantization, report.comparison
    if not q:
        return []
    plan = q.plan
    cal = plan.calibration
    facts = [("INT8 share", f"{q.int8_mac_fraction:.1%} of the quantized layers' MACs, {q.int8_weight_fraction:.1%} of weights"),
             ("float layers", ", ".join(f"{f.name} ({f.reason})" for f in q.float_layers) or "none"),
             ("weights", plain(plan.weights)), ("activations", plain(plan.activations)),
             ("calibration", f"{cal.get('source')}, {cal.get('n')} samples, digest {str(cal.get('digest'))[:16]}"),
             ("profile and this host", q.host_vs_profile)]
    if c:
        facts.append(("against FP32 (same pipeline, measured interleaved in one run)",
                      f"size {c.size_fp32_bytes / 1e6:.2f} -> {c.size_int8_bytes / 1e6:.2f} MB ({c.size_ratio:.2f}x smaller); "
                      f"latency p50 {c.latency_fp32['p50'].value:.3f} -> {c.latency_int8['p50'].value:.3f} ms "
                      f"({speed_against_fp32(c.speedup_p50)})"))
    measured = any(lp.sensitivity_deg is not None for lp in q.layers)
    facts.append(("sensitivity", SENSITIVITY_MEANS if measured else SENSITIVITY_SKIPPED))
    return facts


def quant_rows(report: Report) -> list[list[str]]:
    return [[lp.name, lp.op, f"{lp.macs / 1e6:.3f}", f"{lp.weights}", "INT8" if lp.int8 else "float",
             "" if lp.sensitivity_deg is None else f"{lp.sensitivity_deg:+.4f}",
             "" if lp.weight_error is None else f"{lp.weight_error:.4f}", lp.reason]
            for lp in report.quantization.layers]


# -- energy ------------------------------------------------------------------------------------------------------

ENERGY_HEAD = ["profile", "device", "level", "energy per inference (uJ)", "method", "assumptions", "source"]
ENERGY_CAVEAT = "estimates are count x cited per-op constant; compare only rows of the same profile, device and level"


def energy_facts(report: Report) -> list[tuple[str, str]]:
    """Meter reading and MAC counts (an empty list when the section says why it has nothing, or has nothing)."""
    energy = report.energy
    if energy.why is not None or (not energy.estimates and energy.measured is None):
        return []
    m = energy.measured
    if m and m.dynamic_uj_per_inference is not None:
        reading = (f"{m.dynamic_uj_per_inference:.2f} uJ dynamic, {m.total_uj_per_inference:.2f} uJ total per inference "
                   f"({m.how})")
    else:
        reading = m.how if m else "no meter reading"
    return [("meter", reading),
            ("MACs by precision", ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in energy.macs_by_precision.items()) or "none"),
            ("how to read the estimates", ENERGY_CAVEAT)]


def energy_rows(report: Report) -> list[list[str]]:
    return [[e.profile, e.device, e.level, energy_range(e.low_uj, e.high_uj), e.method, e.assumptions, e.source]
            for e in report.energy.estimates]


def timing_facts(report: Report) -> list[tuple[str, str]]:
    """When, on which host and under which load the timing numbers were measured (reports that record it)."""
    t = getattr(report, "timing", None)
    if t is None:
        return []
    drawn = {"latency_histogram"}  # a chart of its own, not a fact
    return [(name.replace("_", " "), plain(value)) for name, value in t.model_dump().items()
            if value not in (None, []) and name not in drawn]


def md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines (report.md's sections)."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
