"""Render a Report as report.json, report.md and one self-contained report.html (no external resources)."""

from __future__ import annotations

import html
import json
from pathlib import Path

from edgekit import userfile
from edgekit.errors import BadInputError
from edgekit.fileio import atomic_write_text
from edgekit.report.model import REPORT_SCHEMA_VERSION, Measurement, Report
from edgekit.report.spiking import spiking_markdown
from edgekit.report.summary import energy_range


def _fmt(m: Measurement | None) -> str:
    if m is None or m.value is None:
        return "not measured"
    v = m.value
    if m.unit == "bytes":
        return f"{v / 1e6:.3f} MB"
    if m.unit in ("count", "MAC"):
        return f"{v / 1e6:.3f} M" if v >= 1e5 else f"{v:.0f}"
    return f"{v:.3f} {m.unit}"


def _rows(report: Report) -> list[tuple[str, str, str, str]]:
    """(section, quantity, value, method + how) for every number in the report."""
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
            rows.append((section, key, _fmt(m), f"{m.method}: {m.how}"))
    return rows


def reproducible_text(report: Report) -> str:
    """Whether a rebuild elsewhere gives the same bytes (reports older than this field say nothing)."""
    rep = report.artifact.reproducible
    where = "identical when rebuilt on any x86-64 host" if rep.across_hosts else "identical when rebuilt on this host only"
    return f"{where} ({rep.why})"


def to_markdown(report: Report) -> str:
    status = "PASSED" if report.passed else "FAILED"
    lines = [f"# edgekit report: {report.model.name} -> {report.target.name} ({status})", "",
             f"- pipeline: `{report.pipeline}`",
             f"- artifact: `{report.artifact.path}` ({report.artifact.format}, {report.artifact.precision}), "
             f"sha256 `{report.artifact.sha256[:16]}`, I/O contract `{report.artifact.sidecar}`",
             f"- bytes: {reproducible_text(report)}",
             f"- model: {report.model.source} ({report.model.kind}), inputs "
             + ", ".join(f"{i.name} {'x'.join(map(str, i.shape))}" for i in report.model.inputs)
             + f", output {report.model.output.convention}",
             f"- runtime: {report.runtime.runtime}",
             f"- host: {report.host.cpu} ({', '.join(report.host.isa_flags)})", "",
             "## Gates", "", "| gate | limit | value | result |", "|---|---|---|---|"]
    for g in report.gates:
        lines.append(f"| {g.name} ({g.detail}) | {g.limit:g} | {'n/a' if g.value is None else f'{g.value:.5f}'} | {'pass' if g.passed else 'FAIL'} |")
    if not report.gates:
        lines.append("| (none declared) | | | |")
    if report.parity:
        lines += ["", f"Per-layer parity: {report.parity.model_dump_json(exclude_none=True)}"]
    lines += ["", "## Measurements", "", "| section | quantity | value | how |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in _rows(report)]
    lines += _quant_markdown(report)
    lines += _energy_markdown(report)
    lines += _spiking_markdown(report)
    lines += ["", "## Pipeline steps", "", "| pass | format | sha256 | cached | seconds | notes |", "|---|---|---|---|---|---|"]
    lines += [f"| {s.pass_} | {s.format} | `{s.sha256[:12]}` | {s.cached} | {s.seconds:.2f} | {'; '.join(s.notes)} |" for s in report.steps]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    lines += ["", "## Provenance", "", f"- tools: {', '.join(f'{k} {v}' for k, v in report.tools.items())}",
              f"- input digests: {', '.join(f'{k} `{v[:16]}`' for k, v in report.inputs_digest.items())}",
              f"- created {report.created}, report schema v{report.schema_version}", "",
              "Resolved recipe:", "", "```json", json.dumps(report.recipe, indent=2), "```", ""]
    return "\n".join(lines)


def _spiking_markdown(report: Report) -> list[str]:
    return spiking_markdown(report.spiking.model_dump()) if report.spiking else []


_ENERGY_HEAD = ["profile", "device", "level", "energy per inference (uJ)", "method", "assumptions", "source"]


def _energy_rows(report: Report) -> list[list[str]]:
    return [[e.profile, e.device, e.level, energy_range(e.low_uj, e.high_uj), e.method, e.assumptions, e.source] for e in report.energy.estimates]


def _energy_markdown(report: Report) -> list[str]:
    energy = report.energy
    if energy.why is None and not energy.estimates and energy.measured is None:
        return []
    lines = ["", "## Energy", ""]
    if energy.why is not None:
        return lines + [energy.why]
    m = energy.measured
    lines.append("- measured: " + (f"{m.dynamic_uj_per_inference:.2f} uJ dynamic, {m.total_uj_per_inference:.2f} uJ total "
                                     f"per inference ({m.how})" if m and m.dynamic_uj_per_inference else m.how if m else "n/a"))
    lines.append(f"- MACs by precision: {', '.join(f'{k} {v / 1e6:.2f} M' for k, v in energy.macs_by_precision.items())}")
    lines.append("- estimates are count x cited per-op constant; compare only rows of the same profile, device and level")
    lines += ["", "| " + " | ".join(_ENERGY_HEAD) + " |", "|" + "---|" * len(_ENERGY_HEAD)]
    lines += ["| " + " | ".join(r) + " |" for r in _energy_rows(report)]
    return lines


def _quant_rows(report: Report) -> list[list[str]]:
    return [[lp.name, lp.op, f"{lp.macs / 1e6:.3f}", f"{lp.weights}", "INT8" if lp.int8 else "float",
             "" if lp.sensitivity_deg is None else f"{lp.sensitivity_deg:+.4f}",
             "" if lp.weight_error is None else f"{lp.weight_error:.4f}", lp.reason]
            for lp in report.quantization.layers]


SENSITIVITY_MEANS = ("the layer alone in INT8 on the calibration set: the mean difference from FP32 (ONNX) or the "
                     "error increase (TFLite), in degrees")
_QUANT_HEAD = ["layer", "op", "MMACs", "weights", "precision", "sensitivity alone in INT8 (deg)", "weight rel. RMS error", "why"]


def _quant_markdown(report: Report) -> list[str]:
    q, c = report.quantization, report.comparison
    if not q:
        return []
    plan = q.plan
    lines = ["", "## Quantization", "",
             f"- INT8 share: {q.int8_mac_fraction:.1%} of MACs, {q.int8_weight_fraction:.1%} of weights; "
             f"float layers: {', '.join(f.name + ' (' + f.reason + ')' for f in q.float_layers) or 'none'}",
             f"- weights {plan.weights}; activations {plan.activations}",
             f"- calibration: {plan.calibration.get('source')}, {plan.calibration.get('n')} samples, digest "
             f"`{str(plan.calibration.get('digest'))[:16]}`", f"- {q.host_vs_profile}"]
    lines += [f"- mixed precision: {d}" for d in plan.decisions]
    if c:
        lines.append(f"- against FP32 (same pipeline, measured interleaved in one run): size {c.size_fp32_bytes / 1e6:.2f} -> "
                     f"{c.size_int8_bytes / 1e6:.2f} MB ({c.size_ratio:.2f}x smaller); latency p50 "
                     f"{c.latency_fp32['p50'].value:.3f} -> {c.latency_int8['p50'].value:.3f} ms "
                     f"({c.speedup_p50:.2f}x)")
    lines.append(f"- sensitivity: {SENSITIVITY_MEANS}")
    lines += ["", "| " + " | ".join(_QUANT_HEAD) + " |", "|" + "---|" * len(_QUANT_HEAD)]
    lines += ["| " + " | ".join(r) + " |" for r in _quant_rows(report)]
    return lines


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0;width:100%}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}
th{background:#f3f3f3}.pass{color:#176b1f;font-weight:bold}.fail{color:#b00020;font-weight:bold}code,pre{background:#f6f6f6}
pre{padding:8px;overflow:auto}"""


def to_html(report: Report) -> str:
    e = html.escape
    status = '<span class="pass">PASSED</span>' if report.passed else '<span class="fail">FAILED</span>'
    gates = "".join(f"<tr><td>{e(g.name)}</td><td>{e(g.detail)}</td><td>{g.limit:g}</td><td>{'n/a' if g.value is None else f'{g.value:.5f}'}</td>"
                    f"<td class=\"{'pass' if g.passed else 'fail'}\">{'pass' if g.passed else 'FAIL'}</td></tr>" for g in report.gates)
    rows = "".join(f"<tr><td>{e(a)}</td><td>{e(b)}</td><td>{e(c)}</td><td>{e(d)}</td></tr>" for a, b, c, d in _rows(report))
    steps = "".join(f"<tr><td>{e(s.pass_)}</td><td>{e(s.format)}</td><td><code>{s.sha256[:12]}</code></td><td>{s.cached}</td>"
                    f"<td>{s.seconds:.2f}</td><td>{e('; '.join(s.notes))}</td></tr>" for s in report.steps)
    notes = "".join(f"<li>{e(n)}</li>" for n in report.notes)
    parity = f"<p>Per-layer parity: <code>{e(report.parity.model_dump_json(exclude_none=True))}</code></p>" if report.parity else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>edgekit report: {e(report.model.name)} -> {e(report.target.name)}</title>
<style>{_CSS}</style></head><body>
<h1>{e(report.model.name)} &rarr; {e(report.target.name)} {status}</h1>
<p>Pipeline <code>{e(report.pipeline)}</code>; artifact <code>{e(report.artifact.path)}</code> ({e(report.artifact.format)},
{e(report.artifact.precision)}), sha256 <code>{report.artifact.sha256[:16]}</code>; runtime {e(report.runtime.runtime)};
host {e(report.host.cpu)}.</p>
<p>Bytes: {e(reproducible_text(report))}.</p>
<h2>Gates</h2><table><tr><th>gate</th><th>what</th><th>limit</th><th>value</th><th>result</th></tr>{gates or '<tr><td colspan=5>none declared</td></tr>'}</table>{parity}
<h2>Measurements</h2><table><tr><th>section</th><th>quantity</th><th>value</th><th>how</th></tr>{rows}</table>
{_quant_html(report)}{_energy_html(report)}{_spiking_html(report)}
<h2>Pipeline steps</h2><table><tr><th>pass</th><th>format</th><th>sha256</th><th>cached</th><th>seconds</th><th>notes</th></tr>{steps}</table>
<h2>Notes</h2><ul>{notes}</ul>
<h2>Provenance</h2><p>Tools: {e(', '.join(f'{k} {v}' for k, v in report.tools.items()))}</p>
<pre>{e(json.dumps(report.recipe, indent=2))}</pre>
<p>Created {e(report.created)}, report schema v{report.schema_version}.</p></body></html>
"""


def _spiking_html(report: Report) -> str:
    """The Spiking section's Markdown (lists and pipe tables), as preformatted text: readable, self-contained."""
    lines = _spiking_markdown(report)
    return f"<h2>Spiking</h2><pre>{html.escape(chr(10).join(lines[3:]))}</pre>" if lines else ""


def _quant_html(report: Report) -> str:
    if not report.quantization:
        return ""
    e = html.escape
    items = "".join(f"<li>{e(line[2:])}</li>" for line in _quant_markdown(report) if line.startswith("- "))
    head = "".join(f"<th>{e(h)}</th>" for h in _QUANT_HEAD)
    rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in _quant_rows(report))
    return f"<h2>Quantization</h2><ul>{items}</ul><table><tr>{head}</tr>{rows}</table>"


def _energy_html(report: Report) -> str:
    lines = _energy_markdown(report)
    if not lines:
        return ""
    e = html.escape
    items = "".join(f"<li>{e(line[2:])}</li>" for line in lines if line.startswith("- "))
    if report.energy.why is not None:
        return f"<h2>Energy</h2><p>{e(report.energy.why)}</p>"
    head = "".join(f"<th>{e(h)}</th>" for h in _ENERGY_HEAD)
    rows = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in _energy_rows(report))
    return f"<h2>Energy</h2><ul>{items}</ul><table><tr>{head}</tr>{rows}</table>"


def write_reports(report: Report, folder: Path, formats: tuple[str, ...] = ("json", "md", "html")) -> list[Path]:
    folder = Path(folder)
    written = []
    if "json" in formats:
        written.append(atomic_write_text(folder / "report.json", report.model_dump_json(indent=2, by_alias=True) + "\n"))
    if "md" in formats:
        written.append(atomic_write_text(folder / "report.md", to_markdown(report)))
    if "html" in formats:
        written.append(atomic_write_text(folder / "report.html", to_html(report)))
    return written


def load_report(path: Path) -> Report:
    """A report.json, validated against the schema; every problem is one line naming the file and the field."""
    from pydantic import ValidationError

    fix = "pass the report.json written by edgekit compile"
    text = userfile.read_text(path, "edgekit report", fix)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:  # say where, before the schema says "invalid JSON"
        raise BadInputError(f"{path}: not an edgekit report: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                            f"{exc.msg}); fix: {fix} (truncated? compile again)") from None
    version = doc.get("schema_version") if isinstance(doc, dict) else None
    if isinstance(version, int) and version != REPORT_SCHEMA_VERSION:
        raise BadInputError(f"{path}: report schema v{version}, and this edgekit reads v{REPORT_SCHEMA_VERSION}; fix: "
                            "compile the model again with this edgekit (or render it with the edgekit that wrote it)")
    try:
        return Report.model_validate_json(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise BadInputError(f"{path}: not an edgekit report: field {field}: {err['msg']}{more}; fix: {fix}") from None
