"""report.html: one self-contained page (inline CSS and SVG, no scripts, nothing fetched) with every section as an
HTML table and a chart wherever a picture says more than the table beside it (edgekit/report/figures.py)."""

from __future__ import annotations

from html import escape as e

from edgekit.report import figures, rows as R
from edgekit.report import sigma_delta, spiking
from edgekit.report.model import Report
from edgekit.report.summary import network_energy

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0;width:100%}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
font-size:14px;vertical-align:top}th{background:#f3f3f3}table.facts th{width:24%;font-weight:normal}
table table{margin:0}.pass{color:#176b1f;font-weight:bold}.fail{color:#b00020;font-weight:bold}code{background:#f6f6f6}
figure{margin:1em 0}figcaption{font-size:13px;color:#555}svg.plot{max-width:100%;height:auto}"""


def table(head: list[str], rows: list[list[str]], *, raw: bool = False) -> str:
    """A header row and rows of cells, escaped (raw: the cells are already HTML)."""
    cell = (lambda c: c) if raw else e
    return ("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>")


def facts_table(facts: list[tuple[str, str]]) -> str:
    return ('<table class="facts">' + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts) + "</table>"
            if facts else "")


def value_html(value) -> str:
    """Any JSON-like value as HTML: a dict as a two-column table, a list of dicts as a table with one row each, the
    rest as readable text (edgekit.report.rows.plain)."""
    if isinstance(value, dict) and value:
        return ('<table class="facts">' + "".join(f"<tr><th>{e(str(k))}</th><td>{value_html(v)}</td></tr>"
                                                  for k, v in value.items()) + "</table>")
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        keys = list(dict.fromkeys(k for v in value for k in v))
        return table(keys, [[value_html(v.get(k, "")) for k in keys] for v in value], raw=True)
    return e(R.plain(value))


def figure(svg: str | None, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{e(caption)}</figcaption></figure>" if svg else ""


def _head(report: Report) -> str:
    status = '<span class="pass">PASSED</span>' if report.passed else '<span class="fail">FAILED</span>'
    m, a = report.model, report.artifact
    facts = facts_table([
        ("artifact", f"{a.path} ({a.format}, {a.precision}), sha256 {a.sha256[:16]}, "
                                                    f"I/O contract {a.sidecar}"),
        ("bytes", R.reproducible_text(report)),
        ("model", f"{m.source} ({m.kind}), inputs " + ", ".join(f"{i.name} {'x'.join(map(str, i.shape))}" for i in m.inputs)
         + f", output {m.output.convention}"),
        ("runtime", report.runtime.runtime), ("host", f"{report.host.cpu} ({', '.join(report.host.isa_flags)})")])
    return (f"<h1>{e(report.model.name)} &rarr; {e(report.target.name)} {status}</h1>\n"
            f"<p>Pipeline <code>{e(report.pipeline)}</code>"
            + (f"; target {e(report.target.description)}" if report.target.description else "") + ".</p>"
            f"{facts}")


def _gates(report: Report) -> str:
    rows = "".join(f"<tr><td>{e(g.name)}</td><td>{e(g.detail)}</td><td>{g.limit:g}</td>"
                   f"<td>{'n/a' if g.value is None else f'{g.value:.5f}'}</td>"
                   f"<td class=\"{'pass' if g.passed else 'fail'}\">{'pass' if g.passed else 'FAIL'}</td></tr>" for g in report.gates)
    page = ("<h2>Gates</h2><table><tr><th>gate</th><th>what</th><th>limit</th><th>value</th><th>result</th></tr>"
            f"{rows or '<tr><td colspan=5>none declared</td></tr>'}</table>")
    if report.parity:
        page += "<h3>Per-layer parity (the worst sample, layer by layer against PyTorch)</h3>" + facts_table(R.parity_facts(report))
    return page


def _measurements(report: Report) -> str:
    page = "<h2>Measurements</h2>" + table(["section", "quantity", "value", "how"], [list(r) for r in R.measurement_rows(report)])
    page += figure(figures.diff_histogram(report), "How far each output of the artifact lies from the reference output "
                                                   "on the evaluation set; the gates max_diff_deg and p95_diff_deg read this spread.")
    page += figure(figures.latency_distribution(report), "Latency percentiles at batch 1 (lower is faster)" + (
        ": the FP32 and INT8 artifacts measured alternately in one run, so machine noise hits both alike."
        if report.comparison else ", measured on this host (see how in the table)."))
    page += figure(figures.latency_histogram(report), "Every timed run: a tight peak is a quiet machine; a long tail to "
                                                      "the right is other work on the host, not the artifact.")
    timing = R.timing_facts(report)
    return page + ("<h3>When and under which load the timing was measured</h3>" + facts_table(timing) if timing else "")


def _quantization(report: Report) -> str:
    q = report.quantization
    if not q:
        return ""
    page = "<h2>Quantization</h2>" + facts_table(R.quant_facts(report))
    if q.plan.decisions:
        page += "<h3>How the mixed-precision plan got here</h3>" + table(["step", "decision"], [
            [str(i), d] for i, d in enumerate(q.plan.decisions, 1)])
    page += figure(figures.int8_sensitivity(report), R.SENSITIVITY_MEANS + "; the layers most worth keeping in float "
                                                                            "have the longest bars.")
    return page + table(R.QUANT_HEAD, R.quant_rows(report))


def _energy(report: Report) -> str:
    energy = report.energy
    if energy.why is not None:
        return f"<h2>Energy</h2><p>{e(energy.why)}</p>"
    if not energy.estimates and energy.measured is None:
        return ""
    page = "<h2>Energy</h2>" + facts_table(R.energy_facts(report))
    note = network_energy(report).get("note")
    if note:
        page += f"<p><strong>{e(note)}</strong></p>"
    for svg in figures.energy_by_target(report):
        page += figure(svg, "Estimated energy per inference; compare bars of one chart only, and within it only the same level.")
    return page + table(R.ENERGY_HEAD, R.energy_rows(report))


def _spiking(report: Report) -> str:
    sp = report.spiking
    if sp is None:
        return ""
    page = "<h2>Spiking</h2>" + facts_table(spiking.facts(sp))
    page += figure(figures.error_vs_timesteps(report), "Error of the converted network as T grows, against a naive "
                                                       "conversion and the ANN it was converted from (dashed).")
    page += "<h3>Error against timesteps (evaluation set)</h3>" + table(spiking.CURVE_HEAD, spiking.curve_rows(sp))
    page += f"<h3>Spikes and synaptic operations</h3><p>{e(spiking.counts_caption(sp))}.</p>" + table(spiking.COUNTS_HEAD, spiking.counts_rows(sp))
    if spiking.lava_rows(sp):
        page += "<h3>Lava's simulator against the fixed-point mirror, spike for spike</h3>" + table(spiking.LAVA_HEAD, spiking.lava_rows(sp))
    if sp.conversion:
        page += "<h3>Conversion</h3>" + value_html(sp.conversion)
    return page


def _sigma_delta(report: Report) -> str:
    sd = report.sigma_delta
    if sd is None:
        return ""
    page = "<h2>Sigma-delta</h2>" + facts_table(sigma_delta.facts(sd))
    page += ("<h3>Traffic and energy per frame</h3><p>Energy from cited constants, compute only (Energy section).</p>"
             + table(sigma_delta.TRAFFIC_HEAD, sigma_delta.traffic_rows(sd)))
    page += "<h3>Per layer</h3>" + table(sigma_delta.LAYERS_HEAD, sigma_delta.layer_rows(sd))
    if sigma_delta.lava_rows(sd):
        page += ("<h3>Lava's simulator against the fixed-point mirror, message for message</h3>"
                 + table(sigma_delta.LAVA_HEAD, sigma_delta.lava_rows(sd)))
    return page + "<h3>Conversion</h3>" + value_html(sd.conversion)


def _runtime(report: Report) -> str:
    details = {k: v for k, v in report.runtime.model_dump().items() if v is not None and k != "runtime"}
    return "<h2>Runtime</h2>" + value_html({"runtime": report.runtime.runtime, **details})


def _steps_notes_provenance(report: Report) -> str:
    steps = [[s.pass_, s.format, s.sha256[:12], "yes" if s.cached else "no", f"{s.seconds:.2f}", "; ".join(s.notes)]
             for s in report.steps]
    page = "<h2>Pipeline steps</h2>" + table(["pass", "format", "sha256", "cached", "seconds", "notes"], steps)
    if report.notes:
        page += "<h2>Notes</h2>" + table(["#", "note"], [[str(i), n] for i, n in enumerate(report.notes, 1)])
    page += "<h2>Provenance</h2>" + facts_table([
        ("tools", ", ".join(f"{k} {v}" for k, v in report.tools.items())),
        ("input digests", ", ".join(f"{k} {v[:16]}" for k, v in report.inputs_digest.items())),
        ("created", f"{report.created}, report schema v{report.schema_version}")])
    return page + "<h3>Resolved recipe</h3>" + value_html(report.recipe)


def to_html(report: Report) -> str:
    title = f"edgekit report: {report.model.name} -> {report.target.name}"
    body = "\n".join([_head(report), _gates(report), _measurements(report), _quantization(report), _energy(report),
                      _spiking(report), _sigma_delta(report), _runtime(report), _steps_notes_provenance(report)])
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{e(title)}</title>\n<style>{_CSS}</style></head>'
            f"<body>\n{body}\n</body></html>\n")
