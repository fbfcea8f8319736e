"""The charts of a single report.html, each drawn from numbers the report already holds (edgekit/report/plots.py
draws them). A chart whose numbers the report does not have is left out; the tables beside it still say why."""

from __future__ import annotations

import re

from edgekit.report.model import Report
from edgekit.report.plots import Bar, Series, bar_chart, histogram, line_chart


def error_vs_timesteps(report: Report) -> str | None:
    sp = report.spiking
    if sp is None or not sp.error_vs_timesteps:
        return None
    series = [Series("converted SNN", [(r.timesteps, r.error_deg) for r in sp.error_vs_timesteps])]
    if sp.naive_baseline and sp.naive_baseline.error_vs_timesteps:
        series.append(Series("naive conversion", [(r.timesteps, r.error_deg) for r in sp.naive_baseline.error_vs_timesteps]))
    ts = [r.timesteps for r in sp.error_vs_timesteps]
    series.append(Series("ANN (reference)", [(0, sp.reference_error_deg), (max(ts), sp.reference_error_deg)], dashed=True))
    return line_chart(series, title=f"Mean angular error against timesteps T (report's T = {sp.timesteps})",
                      x_label="timesteps T", y_label="mean error (deg)")


def int8_sensitivity(report: Report) -> str | None:
    q = report.quantization
    layers = [lp for lp in q.layers if lp.sensitivity_deg is not None] if q else []
    if not layers:
        return None
    bars = [Bar(lp.name, lp.sensitivity_deg, group="INT8 in the artifact" if lp.int8 else "kept float") for lp in layers]
    return bar_chart(bars, title="Per-layer INT8 sensitivity: each layer alone in INT8 (calibration set)",
                     value_label="sensitivity alone in INT8 (deg)")


def _percentile_bars(latency: dict, group: str) -> list[Bar]:
    """The pNN entries of a latency map, in percentile order (other keys are not points of the distribution)."""
    points = sorted((int(m.group(1)), v.value) for k, v in latency.items()
                    if (m := re.fullmatch(r"p(\d+)", k)) and v.value is not None)
    return [Bar(f"p{q} {group}", value, group=group) for q, value in points]


def latency_histogram(report: Report) -> str | None:
    """Every timed run of the artifact: how its latency spreads on this host (a long tail is the machine's load)."""
    hist = report.timing.latency_histogram if report.timing else None
    if hist is None:
        return None
    return histogram(hist.edges_ms, hist.counts, title=f"Latency of {sum(hist.counts)} batch-1 runs on this host "
                                                       f"({report.runtime.runtime})", x_label="latency (ms)", y_label="runs")


def latency_distribution(report: Report) -> str | None:
    """The latency percentiles; with the interleaved FP32 run of an INT8 report, both artifacts side by side."""
    c = report.comparison
    if c is not None:
        pairs = zip(_percentile_bars(c.latency_fp32, "FP32 (interleaved)"), _percentile_bars(c.latency_int8, "INT8 (interleaved)"))
        bars = [b for pair in pairs for b in pair]
    else:
        bars = _percentile_bars(report.latency, "this artifact")
    if not bars:
        return None
    runtime = report.runtime.runtime
    return bar_chart(bars, title=f"Latency percentiles at batch 1 on this host ({runtime})", value_label="latency (ms)")


def energy_by_target(report: Report) -> list[str]:
    """One chart per profile (rows of different profiles use different constants: they are never compared)."""
    charts = []
    profiles = list(dict.fromkeys(e.profile for e in report.energy.estimates))
    for profile in profiles:
        rows = [e for e in report.energy.estimates if e.profile == profile]
        bars = [Bar(f"{e.device}, {e.level}" + (f" ({e.arithmetic})" if e.arithmetic else ""), e.low_uj,
                    high=e.high_uj if e.high_uj != e.low_uj else None, group=e.level) for e in rows]
        charts.append(bar_chart(bars, title=f"Estimated energy per inference by device and level, profile {profile} "
                                            "(lighter: the low-high range)", value_label="energy per inference (uJ)"))
    return charts


def diff_histogram(report: Report) -> str | None:
    acc = report.accuracy
    hist = acc.diff_from_reference.histogram if acc else None
    if hist is None:
        return None
    n = sum(hist.counts)
    return histogram(hist.edges_deg, hist.counts, title=f"Per-sample angular difference from the reference ({n} outputs)",
                     x_label="difference from reference (deg)", y_label="outputs")
