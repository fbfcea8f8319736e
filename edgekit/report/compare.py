"""One self-contained HTML page comparing artifacts (no scripts, no CDN): a table and inline SVG plots of
error against energy, error against latency, and size after each pass step."""

from __future__ import annotations

import html
from pathlib import Path

from edgekit.fileio import atomic_write_text
from edgekit.report.model import Report
from edgekit.report.render import load_report
from edgekit.report.summary import energy_range

_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]


def _label(r: Report) -> str:
    return f"{r.model.name} / {r.target.name}"


def _energy(r: Report, level: str) -> tuple[float, float] | None:
    row = next((e for e in r.energy.estimates if e.profile == "horowitz-45nm" and e.level == level), None)
    return (row.low_uj, row.high_uj) if row else None


def scatter_svg(title: str, xlabel: str, ylabel: str, points: list[tuple[str, float, float, str]], width=520, height=340,
                log_x: bool = False) -> str:
    """Inline SVG scatter plot with axes, ticks and a legend; points = (label, x, y, colour)."""
    import math

    e = html.escape
    pts = [p for p in points if p[1] is not None and p[2] is not None and (not log_x or p[1] > 0)]
    if not pts:
        return f'<p class="plot-missing">{e(title)}: no comparable values</p>'
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    xs, ys = [fx(p[1]) for p in pts], [p[2] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = 0.0, max(ys) * 1.15 or 1.0
    if x1 - x0 < 1e-12:
        x0, x1 = x0 - 0.5, x1 + 0.5
    pad = 0.08 * (x1 - x0)
    x0, x1 = x0 - pad, x1 + pad
    L, R, T, B = 60, 20, 30, 50
    sx = lambda v: L + (fx(v) - x0) / (x1 - x0) * (width - L - R)  # noqa: E731
    sy = lambda v: height - B - (v - y0) / (y1 - y0) * (height - T - B)  # noqa: E731
    ticks = "".join(f'<line x1="{L - 4}" x2="{L}" y1="{sy(y0 + k * (y1 - y0) / 4):.1f}" y2="{sy(y0 + k * (y1 - y0) / 4):.1f}" stroke="#333"/>'
                    f'<text x="{L - 6}" y="{sy(y0 + k * (y1 - y0) / 4) + 4:.1f}" text-anchor="end" font-size="11">{y0 + k * (y1 - y0) / 4:.2f}</text>'
                    for k in range(5))
    xticks = ""
    for k in range(5):
        v = x0 + k * (x1 - x0) / 4
        shown = 10 ** v if log_x else v
        px = L + (v - x0) / (x1 - x0) * (width - L - R)
        xticks += (f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{height - B}" y2="{height - B + 4}" stroke="#333"/>'
                   f'<text x="{px:.1f}" y="{height - B + 16}" text-anchor="middle" font-size="11">{shown:.3g}</text>')
    dots = "".join(f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="{c}"><title>{e(lab)}: {x:.4g}, {y:.4g}</title></circle>'
                   for lab, x, y, c in pts)
    base = height - B - 10 - 14 * (len(pts) - 1)  # legend at the bottom right, away from the error values at the top
    legend = "".join(f'<circle cx="{width - R - 170}" cy="{base + 14 * i}" r="4" fill="{c}"/>'
                     f'<text x="{width - R - 162}" y="{base + 4 + 14 * i}" font-size="11">{e(lab)}</text>'
                     for i, (lab, _, _, c) in enumerate(pts))
    return (f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{e(title)}">'
            f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{e(title)}</text>'
            f'<line x1="{L}" y1="{height - B}" x2="{width - R}" y2="{height - B}" stroke="#333"/>'
            f'<line x1="{L}" y1="{T}" x2="{L}" y2="{height - B}" stroke="#333"/>{ticks}{xticks}{dots}{legend}'
            f'<text x="{(L + width - R) / 2}" y="{height - 10}" text-anchor="middle" font-size="12">{e(xlabel)}</text>'
            f'<text x="14" y="{(T + height - B) / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 14 {(T + height - B) / 2})">{e(ylabel)}</text></svg>')


def size_steps_svg(reports: list[Report], width=520, height=340) -> str:
    """Artifact size after each pass (from the pipeline steps), one line per artifact."""
    e = html.escape
    series = []
    for i, r in enumerate(reports):
        sizes = [s.size_bytes / 1e6 for s in r.steps if getattr(s, "size_bytes", None)]
        if sizes:
            series.append((_label(r), [s.pass_.split("(")[0] for s in r.steps if getattr(s, "size_bytes", None)], sizes,
                           _PALETTE[i % len(_PALETTE)]))
    if not series:
        return '<p class="plot-missing">size per pass step: no step sizes recorded</p>'
    L, R, T, B = 60, 20, 30, 60
    n = max(len(s[1]) for s in series)
    top = max(max(s[2]) for s in series) * 1.15
    sx = lambda k: L + (k + 0.5) / n * (width - L - R)  # noqa: E731
    sy = lambda v: height - B - v / top * (height - T - B)  # noqa: E731
    body = ""
    for lab, names, sizes, c in series:
        path = " ".join(f"{'M' if k == 0 else 'L'}{sx(k):.1f},{sy(v):.1f}" for k, v in enumerate(sizes))
        body += f'<path d="{path}" fill="none" stroke="{c}" stroke-width="2"/>'
        body += "".join(f'<circle class="point" cx="{sx(k):.1f}" cy="{sy(v):.1f}" r="4" fill="{c}"><title>{e(lab)} after {e(nm)}: '
                        f'{v:.3f} MB</title></circle>' for k, (nm, v) in enumerate(zip(names, sizes)))
    labels = "".join(f'<text x="{sx(k):.1f}" y="{height - B + 16}" text-anchor="middle" font-size="11">step {k + 1}</text>' for k in range(n))
    legend = "".join(f'<text x="{L + 8}" y="{T + 4 + 14 * i}" font-size="11" fill="{s[3]}">{e(s[0])}: {" | ".join(s[1])}</text>'
                     for i, s in enumerate(series))
    return (f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="size per pass step">'
            f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">Size after each pass step (MB)</text>'
            f'<line x1="{L}" y1="{height - B}" x2="{width - R}" y2="{height - B}" stroke="#333"/>'
            f'<line x1="{L}" y1="{T}" x2="{L}" y2="{height - B}" stroke="#333"/>'
            f'<text x="{L - 6}" y="{sy(top / 1.15) + 4:.1f}" text-anchor="end" font-size="11">{top / 1.15:.2f}</text>'
            f'{body}{labels}{legend}</svg>')


def _energy_text(r: Report) -> str:
    row = next((e for e in r.energy.estimates if e.profile == "horowitz-45nm" and e.level == "compute"), None)
    return energy_range(row.low_uj, row.high_uj) if row else html.escape((r.energy.why or "-")[:60])


def compare_html(reports: list[Report]) -> str:
    e = html.escape
    rows = ""
    for r in reports:
        acc, lat, size = r.accuracy, r.latency.get("p50"), r.size.get("artifact")
        rows += (f"<tr><td>{e(_label(r))}</td><td>{e(r.artifact.precision)}</td><td>{size.value / 1e6:.3f}</td>"
                 f"<td>{'not measured' if lat is None or lat.value is None else f'{lat.value:.3f}'}</td>"
                 f"<td>{acc.artifact.mean_deg:.3f}</td><td>{acc.diff_from_reference.max_deg:.4f}</td>"
                 f"<td>{_energy_text(r)}</td><td>{'PASSED' if r.passed else 'FAILED'}</td></tr>")
    colour = {id(r): _PALETTE[i % len(_PALETTE)] for i, r in enumerate(reports)}
    energy_pts = [(_label(r), (_energy(r, "compute") or (None, None))[1], r.accuracy.artifact.mean_deg, colour[id(r)]) for r in reports]
    latency_pts = [(_label(r), r.latency["p50"].value if r.latency.get("p50") else None, r.accuracy.artifact.mean_deg, colour[id(r)])
                   for r in reports]
    hosts = sorted({r.host.cpu for r in reports})
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>edgekit comparison</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:14px;text-align:left}}th{{background:#f3f3f3}}.plots{{display:flex;flex-wrap:wrap;gap:16px}}</style>
</head><body><h1>edgekit comparison of {len(reports)} artifacts</h1>
<table><tr><th>model / target</th><th>precision</th><th>size (MB)</th><th>latency p50 (ms, measured)</th><th>error (deg, measured)</th>
<th>max diff from reference (deg)</th><th>energy, compute only (uJ, estimated: Horowitz 45 nm)</th><th>gates</th></tr>{rows}</table>
<p>Latency was measured on {e(', '.join(hosts))}; compare latencies only between rows measured on the same host. Energy values are
estimates of the same kind and level (count x cited per-op constant, compute only) and are never mixed with measured energy.</p>
<div class="plots">{scatter_svg("Error against energy (estimated, compute only)", "energy per inference (uJ, log scale)", "mean angular error (deg)", energy_pts, log_x=True)}
{scatter_svg("Error against latency (measured)", "latency p50 (ms)", "mean angular error (deg)", latency_pts)}
{size_steps_svg(reports)}</div></body></html>
"""


def write_compare(report_paths: list[Path], out: Path) -> Path:
    return atomic_write_text(out, compare_html([load_report(p) for p in report_paths]))
