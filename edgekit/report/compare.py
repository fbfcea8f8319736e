"""One self-contained HTML page comparing artifacts (no scripts, no CDN): a table and inline SVG plots of
error against energy, error against latency, and size after each pass step.

Energy is one inference of the whole network at one profile, device and level (edgekit.report.whole_network): never a
part of a spiking network next to a whole ANN, and an FP16 figure for a runtime that computes in FP32 is marked and
left out of the plot rather than shown as a saving. Axes start at zero; every point has its own colour and a label."""

from __future__ import annotations

import colorsys
import html
import math
from pathlib import Path

from edgekit.fileio import atomic_write_text
from edgekit.report.model import Report
from edgekit.report.render import load_report
from edgekit.report.summary import energy_range
from edgekit.report.whole_network import NOT_A_SAVING, add_ratios, shown_label, shown_row

ENERGY_HEAD = "energy per inference, whole network (uJ, estimated: Horowitz 45 nm CMOS, compute level)"
CHAR_PX = 6.2  # width of one character of an 11 px label, for placing labels apart


def colours(n: int) -> list[str]:
    """n distinct colours for any n: hues spread evenly round the wheel, alternate ones darker (neighbours in a
    long list differ in lightness as well as hue)."""
    out = []
    for i in range(n):
        r, g, b = colorsys.hls_to_rgb((0.58 + i / max(n, 1)) % 1.0, 0.30 if i % 2 else 0.42, 0.85)
        out.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return out


def _label(r: Report) -> str:
    return f"{r.model.name} / {r.target.name}"


def _energy_rows(reports: list[Report]) -> list[dict | None]:
    """Per report its whole-network row at the page's profile, device and level (None if it has none), with ratios
    against the first comparable row."""
    chosen = []
    for r in reports:
        row = shown_row(r)
        chosen.append(None if row is None else {**row, "target": _label(r)})
    add_ratios([row for row in chosen if row is not None])
    return chosen


def _ticks(top: float) -> list[float]:
    """Round tick values from 0 to at least `top` (at most six: steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if top <= 0:
        return [0.0, 1.0]
    step = 10 ** math.floor(math.log10(top / 4))
    for m in (1, 2, 2.5, 5, 10):
        if top / (m * step) <= 5:
            step *= m
            break
    return [k * step for k in range(int(math.ceil(top / step - 1e-9)) + 1)]


def _place_labels(points: list[tuple[float, float, float, str]], right: float, top: float, bottom: float
                  ) -> list[tuple[float, float, str, str, str]]:
    """Text positions next to marks spanning x_left..x_right at y (right of the mark, or left of it near the right
    edge). Labels that would overlap are pushed down a line at a time, then up from `bottom`, keeping their top-to-bottom
    order; returns (x, y, text-anchor, text, leader): leader is an SVG line from a moved label back to its mark."""
    items = []
    for x_left, x_right, py, text in sorted(points, key=lambda p: p[2]):
        w = CHAR_PX * len(text)
        anchor, x0 = ("start", x_right + 8) if x_right + 8 + w <= right else ("end", x_left - 8 - w)
        items.append({"x_left": x_left, "x_right": x_right, "py": py, "text": text, "anchor": anchor, "x0": x0, "x1": x0 + w,
                      "y": py + 4})
    crosses = lambda a, b: a["x0"] < b["x1"] and b["x0"] < a["x1"]  # noqa: E731
    # the other marks, as label-sized boxes: a label's text never hides another dot
    marks = [{"x0": it["x_left"] - 6, "x1": it["x_right"] + 6, "y": it["py"] + 4} for it in items]
    for i, it in enumerate(items):  # down: below every earlier label and every other mark it would cross
        while True:
            hit = [o["y"] + 12 for o in items[:i] + marks[:i] + marks[i + 1:] if crosses(o, it) and abs(o["y"] - it["y"]) < 12]
            if not hit:
                break
            it["y"] = max(hit)
    for it in items:
        it["down"] = it["y"]
    for i in range(len(items) - 1, -1, -1):  # up: nothing below the axis, still above the labels below it that it crosses
        it = items[i]
        below = [o["y"] - 12 for o in items[i + 1:] if crosses(o, it) and o["down"] >= it["down"]]
        it["y"] = max(top + 10, min([it["y"], bottom] + below))
    out = []
    for it in items:
        mark_x, text_x = (it["x_right"] + 5, it["x0"] - 1) if it["anchor"] == "start" else (it["x_left"] - 5, it["x_left"] - 7)
        leader = (f'<line x1="{mark_x:.1f}" y1="{it["py"]:.1f}" x2="{text_x:.1f}" y2="{it["y"] - 4:.1f}" stroke="#999" '
                  'stroke-width="0.8"/>' if abs(it["y"] - (it["py"] + 4)) > 1 else "")
        out.append((it["x0"] if it["anchor"] == "start" else it["x_left"] - 8, it["y"], it["anchor"], it["text"], leader))
    return out


def scatter_svg(title: str, xlabel: str, ylabel: str, points: list[tuple], width=560, height=360) -> str:
    """Inline SVG scatter plot, both axes linear from zero; points = (label, x, y, colour) or (label, x, y, colour,
    x_low, x_high) for a range drawn as a line through the dot. Each dot is labelled (dots at one place share a label)."""
    e = html.escape
    pts = [p for p in points if p[1] is not None and p[2] is not None]
    if not pts:
        return f'<p class="plot-missing">{e(title)}: no comparable values</p>'
    L, R, T, B = 60, 20, 30, 50
    xt = _ticks(max(max(p[5] if len(p) > 5 else p[1] for p in pts), 1e-12) * 1.05)
    yt = _ticks(max(max(p[2] for p in pts), 1e-12) * 1.1)
    sx = lambda v: L + v / xt[-1] * (width - L - R)  # noqa: E731
    sy = lambda v: height - B - v / yt[-1] * (height - T - B)  # noqa: E731
    grid = "".join(f'<line x1="{L - 4}" x2="{L}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#333"/>'
                   f'<text x="{L - 6}" y="{sy(v) + 4:.1f}" text-anchor="end" font-size="11">{v:g}</text>' for v in yt)
    grid += "".join(f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{height - B}" y2="{height - B + 4}" stroke="#333"/>'
                    f'<text x="{sx(v):.1f}" y="{height - B + 16}" text-anchor="middle" font-size="11">{v:g}</text>' for v in xt)
    dots, at = "", {}
    for p in pts:
        lab, x, y, c = p[:4]
        if len(p) > 5 and p[5] > p[4]:
            dots += (f'<line x1="{sx(p[4]):.1f}" x2="{sx(p[5]):.1f}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="{c}" '
                     f'stroke-width="2"/>')
        span = f" ({p[4]:.3g}-{p[5]:.3g})" if len(p) > 5 and p[5] > p[4] else ""
        dots += (f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="{c}"><title>{e(lab)}: '
                 f'{x:.4g}{span}, {y:.4g}</title></circle>')
        lo, hi = (sx(p[4]), sx(p[5])) if len(p) > 5 else (sx(x), sx(x))
        group = at.setdefault((round(sx(x) / 4), round(sy(y) / 4)), [lo, hi, sy(y), []])
        group[0], group[1] = min(group[0], lo), max(group[1], hi)
        group[3].append(lab)
    labels = ""
    for lx, ly, anchor, text, leader in _place_labels([(lo, hi, y, ", ".join(labs)) for lo, hi, y, labs in at.values()],
                                                      width - R, T, height - B - 2):
        labels += f'{leader}<text class="point-label" x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" font-size="11">{e(text)}</text>'
    return (f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{e(title)}">'
            f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{e(title)}</text>'
            f'<line x1="{L}" y1="{height - B}" x2="{width - R}" y2="{height - B}" stroke="#333"/>'
            f'<line x1="{L}" y1="{T}" x2="{L}" y2="{height - B}" stroke="#333"/>{grid}{dots}{labels}'
            f'<text x="{(L + width - R) / 2}" y="{height - 10}" text-anchor="middle" font-size="12">{e(xlabel)}</text>'
            f'<text x="14" y="{(T + height - B) / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 14 {(T + height - B) / 2})">{e(ylabel)}</text></svg>')


def size_steps_svg(reports: list[Report], palette: list[str], short: list[str], width=560, height=360) -> str:
    """Artifact size after each pass (from the pipeline steps), one line per artifact, y from zero, each line labelled."""
    e = html.escape
    series = []
    for r, c, name in zip(reports, palette, short):
        steps = [s for s in r.steps if getattr(s, "size_bytes", None)]
        if steps:
            series.append((name, [s.pass_.split("(")[0] for s in steps], [s.size_bytes / 1e6 for s in steps], c))
    if not series:
        return '<p class="plot-missing">size per pass step: no step sizes recorded</p>'
    L, R, T, B = 60, 20, 30, 50
    n = max(len(s[1]) for s in series)
    yt = _ticks(max(max(s[2]) for s in series) * 1.1)
    right = width - R - 110  # room for the line labels
    sx = lambda k: L + (k + 0.5) / n * (right - L)  # noqa: E731
    sy = lambda v: height - B - v / yt[-1] * (height - T - B)  # noqa: E731
    body, ends = "", {}
    for lab, names, sizes, c in series:
        path = " ".join(f"{'M' if k == 0 else 'L'}{sx(k):.1f},{sy(v):.1f}" for k, v in enumerate(sizes))
        body += f'<path d="{path}" fill="none" stroke="{c}" stroke-width="2"/>'
        body += "".join(f'<circle class="point" cx="{sx(k):.1f}" cy="{sy(v):.1f}" r="4" fill="{c}"><title>{e(lab)} after {e(nm)}: '
                        f'{v:.3f} MB</title></circle>' for k, (nm, v) in enumerate(zip(names, sizes)))
        end = ends.setdefault((len(sizes), round(sy(sizes[-1]) / 4)), [sx(len(sizes) - 1), sx(len(sizes) - 1), sy(sizes[-1]), []])
        end[3].append(lab)  # lines ending at one place share a label
    grid = "".join(f'<line x1="{L - 4}" x2="{L}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#333"/>'
                   f'<text x="{L - 6}" y="{sy(v) + 4:.1f}" text-anchor="end" font-size="11">{v:g}</text>' for v in yt)
    grid += "".join(f'<text x="{sx(k):.1f}" y="{height - B + 16}" text-anchor="middle" font-size="11">step {k + 1}</text>'
                    for k in range(n))
    labels = "".join(f'{leader}<text class="point-label" x="{x:.1f}" y="{y:.1f}" text-anchor="{a}" font-size="11">{e(t)}</text>'
                     for x, y, a, t, leader in _place_labels([(*end[:3], ", ".join(end[3])) for end in ends.values()],
                                                             width - R, T, height - B - 2))
    return (f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="size per pass step">'
            f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">Size after each pass step (MB)</text>'
            f'<line x1="{L}" y1="{height - B}" x2="{width - R}" y2="{height - B}" stroke="#333"/>'
            f'<line x1="{L}" y1="{T}" x2="{L}" y2="{height - B}" stroke="#333"/>{grid}{body}{labels}'
            f'<text x="{(L + width - R) / 2}" y="{height - 10}" text-anchor="middle" font-size="12">pass step (hover a point for its pass)</text></svg>')


def _energy_cell(r: Report, row: dict | None) -> str:
    e = html.escape
    if row is None:
        return e(r.energy.why or "no whole-network estimate at this profile and level")
    label = shown_label(r, row)
    value = energy_range(row["low_uj"], row["high_uj"])
    if row["on_this_device"]:
        return (f'<s>{value}</s> <small>{e(label)}</small><br><strong class="not-a-saving">{e(NOT_A_SAVING)}</strong>: '
                f'<small>{e(row["on_this_device"].split(": ", 1)[-1])}</small>')
    return f'{value} <small>{e(label)}</small>'


def _different_inputs(reports: list[Report]) -> str:
    """A visible warning when the reports are of different models (or errors measured on different sets)."""
    e = html.escape
    out = ""
    models = sorted({(r.model.name, r.model.digest) for r in reports})
    if len(models) > 1:
        names = ", ".join(f"{n} ({d[:12]})" for n, d in models)
        out += (f'<p class="warning"><strong>Different models:</strong> these reports are of {len(models)} models ({e(names)}). '
                "Differences in error, energy, latency and size are differences between models as well as targets.</p>")
    sets = sorted({r.accuracy.set.digest for r in reports if r.accuracy})
    if len(sets) > 1:
        out += (f'<p class="warning"><strong>Different evaluation sets:</strong> the errors were measured on {len(sets)} '
                "different sets and do not compare directly.</p>")
    return out


def compare_html(reports: list[Report]) -> str:
    e = html.escape
    palette = colours(len(reports))
    one_model = len({(r.model.name, r.model.digest) for r in reports}) == 1
    short = [r.target.name if one_model else _label(r) for r in reports]  # point labels: the target when one model
    energy = _energy_rows(reports)
    rows = ""
    for r, c, row in zip(reports, palette, energy):
        acc, lat, size = r.accuracy, r.latency.get("p50"), r.size.get("artifact")
        error = "not measured" if acc is None else f"{acc.artifact.mean_deg:.3f}"
        diff = "not measured" if acc is None else f"{acc.diff_from_reference.max_deg:.4f}"
        rows += (f'<tr><td><span class="swatch" style="background:{c}"></span>{e(_label(r))}</td><td>{e(r.target.device)}</td>'
                 f"<td>{e(r.artifact.precision)}</td><td>{'-' if size is None else f'{size.value / 1e6:.3f}'}</td>"
                 f"<td>{'not measured' if lat is None or lat.value is None else f'{lat.value:.3f}'}</td>"
                 f"<td>{error}</td><td>{diff}</td><td>{_energy_cell(r, row)}</td>"
                 f"<td>{e(row['ratio_to_first']) if row else ''}</td><td>{'PASSED' if r.passed else 'FAILED'}</td></tr>")
    energy_pts, left_out = [], []
    for r, c, name, row in zip(reports, palette, short, energy):
        if row is None or r.accuracy is None:
            continue
        if row["on_this_device"]:
            left_out.append(name)
            continue
        energy_pts.append((name, (row["low_uj"] + row["high_uj"]) / 2, r.accuracy.artifact.mean_deg, c, row["low_uj"], row["high_uj"]))
    latency_pts = [(name, r.latency["p50"].value if r.latency.get("p50") else None, r.accuracy.artifact.mean_deg if r.accuracy else None, c)
                   for r, c, name in zip(reports, palette, short)]
    hosts = sorted({r.host.cpu for r in reports})
    omitted = (f"<p>Left out of the energy plot ({e(NOT_A_SAVING)}: FP16 stored, FP32 computed where it ran): "
               f"{e(', '.join(left_out))}.</p>" if left_out else "")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>edgekit comparison</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222}}table{{border-collapse:collapse;width:100%}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:14px;text-align:left;vertical-align:top}}th{{background:#f3f3f3}}
.plots{{display:flex;flex-wrap:wrap;gap:16px}}.swatch{{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:50%}}
.warning{{background:#fff3cd;border:1px solid #e0b400;padding:8px 12px}}.not-a-saving{{color:#a15c00}}small{{color:#555}}</style>
</head><body><h1>edgekit comparison of {len(reports)} artifacts</h1>{_different_inputs(reports)}
<table><tr><th>model / target</th><th>device profile</th><th>precision</th><th>size (MB)</th><th>latency p50 (ms, measured)</th>
<th>error (deg, measured)</th><th>max diff from reference (deg)</th><th>{e(ENERGY_HEAD)}</th><th>energy vs first of its kind</th>
<th>gates</th></tr>{rows}</table>
<p>Latency was measured on {e(', '.join(hosts))}; compare latencies only between rows measured on the same host. Energy values are
estimates of one inference of the whole network (every layer; a spiking network's host encoder and readout included) at one profile,
device and level (count x cited per-op constant, compute only), never mixed with measured energy. Integer accumulates of a spiking
network are compared with integer MACs (INT8) only. A range is low-high: the plot draws it as a line through its middle.</p>{omitted}
<div class="plots">{scatter_svg("Error against energy (estimated, whole network, 45 nm compute)", "energy per inference (uJ)", "mean angular error (deg)", energy_pts)}
{scatter_svg("Error against latency (measured)", "latency p50 (ms)", "mean angular error (deg)", latency_pts)}
{size_steps_svg(reports, palette, short)}</div></body></html>
"""


def write_compare(report_paths: list[Path], out: Path) -> Path:
    return atomic_write_text(out, compare_html([load_report(p) for p in report_paths]))
