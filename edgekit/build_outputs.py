"""What `edgekit build` writes beside its artifacts, from the manifest: summary.md (a table people read in a CI job
summary) and junit.xml (a check CI systems show: one case per model x target with its build time and gate values)."""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

from edgekit.report.summary import energy_range
from edgekit.report.whole_network import NOT_A_SAVING

_TAG = re.compile(r"<(?=[A-Za-z/!?])")  # '<class ...>' in a reason would vanish as an HTML tag; '<=' stays
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")  # control characters XML 1.0 cannot hold (a runtime's raw output)


def gate_text(gate: dict) -> str:
    """'max_error_increase_deg 0.12 <= 0.5' (passed), 'max_diff_deg 0.2 > 0.1' (missed)."""
    upper = not gate["name"].startswith("min_")  # min_int8_mac_fraction is the one lower bound
    if gate["value"] is None:
        return f"{gate['name']} not measured (limit {gate['limit']:g})"
    op = ("<=" if upper else ">=") if gate["passed"] else (">" if upper else "<")
    return f"{gate['name']} {gate['value']:.4g} {op} {gate['limit']:g}"


def energy_text(energy: dict | None) -> str:
    """The whole-network estimate with its device, level and arithmetic, marked when it says nothing about this device
    (as on the comparison page: edgekit.report.summary.network_energy)."""
    if not energy or "why" in energy:
        return "-"
    mark = f"; {NOT_A_SAVING}" if energy.get("note") else ""
    return f"{energy_range(energy['low_uj'], energy['high_uj'])} ({energy['label']}{mark})"


def _cell(value) -> str:
    """A Markdown table cell: no '|' or line break, and no '<' GitHub would take for an HTML tag (a Python repr)."""
    return _TAG.sub("&lt;", str(value)).replace("|", "/").replace("\n", " ")


def summary_markdown(manifest: dict) -> str:
    lines = ["## edgekit build", "",
             "| model | target | status | error (deg) | latency p50 (ms) | size (MB) | energy (uJ, estimated) | build (s) | gates |",
             "|---|---|---|---:|---:|---:|---|---:|---|"]
    notes = []
    for e in manifest["artifacts"]:
        name = f"{e['model']}/{e['target']}"
        gates = ", ".join(gate_text(g) + ("" if g["passed"] else " FAILED") for g in e.get("gates", [])) or e.get("reason", "")
        err = f"{e['error_deg']:.3f}" if e.get("error_deg") is not None else "-"
        latency = f"{e['latency_p50_ms']:.3f}" if e.get("latency_p50_ms") is not None else "-"
        size = f"{e['size_bytes'] / 1e6:.2f}" if e.get("size_bytes") else "-"
        seconds = f"{e['seconds']:.1f}" + (" (cached)" if e.get("cached") else "") if e.get("seconds") is not None else "-"
        cells = [e["model"], e["target"], e["status"], err, latency, size, energy_text(e.get("energy_uj")), seconds, gates]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        if e.get("report") and e.get("latency_p50_ms") is None:
            notes.append(f"{name} latency: {e.get('latency_how', 'not measured')}")
        energy = e.get("energy_uj") or {}
        if energy.get("why") or energy.get("note"):
            notes.append(f"{name} energy: {energy.get('why') or energy['note']}")
    lines += ["", "All artifacts passed." if manifest["ok"] else "Some artifacts failed: see the reasons above.", "",
              "Latency: p50 on the host that verified each artifact (its report names the host). Energy: the whole-network "
              "compute estimate (count x cited per-op constant, no memory), comparable only between rows of one device, level "
              "and arithmetic (a spiking network's integer accumulates with INT8 MACs); never a measurement."]
    if notes:
        lines += [""] + [f"- {_cell(n)}" for n in notes]
    return "\n".join(lines) + "\n"


def _text(s: str) -> str:
    return escape(_NOT_XML.sub("?", s))


def _attr(s: str) -> str:
    return quoteattr(_NOT_XML.sub("?", s))


def _testcase(e: dict) -> tuple[str, str | None]:
    """One <testcase> per model x target: its build time, each gate's measured value as properties and text, and a
    failure naming the missed gates (an error for a build that did not finish, skipped for one not started)."""
    name = f"{e['model']}/{e['target']}"
    head = f'  <testcase classname="edgekit.build" name={_attr(name)} time="{e.get("seconds", 0.0):.3f}"'
    if e["status"] == "skipped":
        return f"{head}><skipped message={_attr(e['reason'])}/></testcase>", "skipped"
    if e["status"] == "error":
        body = e["reason"] + ("\n" + e["trace"] if e.get("trace") else "")
        return (f"{head}><error message={_attr(e['reason'][:300])} type=\"build error\">{_text(body)}</error></testcase>",
                "error")
    props = []
    for g in e["gates"]:
        props += [(f"gate.{g['name']}", g["value"]), (f"gate.{g['name']}.limit", g["limit"])]
    energy = e.get("energy_uj") or {}
    props += [("error_deg", e.get("error_deg")), ("latency_p50_ms", e.get("latency_p50_ms")), ("size_bytes", e.get("size_bytes")),
              ("energy_uj", energy_text(energy)), ("cached", str(bool(e.get("cached"))).lower())]
    properties = "".join(f"\n      <property name={_attr(k)} value={_attr('' if v is None else str(v))}/>" for k, v in props)
    lines = [f"{gate_text(g)} {'ok' if g['passed'] else 'FAILED'}: {g['detail']}" for g in e["gates"]] or ["no gates"]
    missed = [gate_text(g) for g in e["gates"] if not g["passed"]]
    failure = (f'\n    <failure message={_attr("; ".join(missed))} type="gate">{_text(chr(10).join(lines))}</failure>'
               if missed else "")
    out = "\n".join(lines + [f"latency p50: {e['latency_p50_ms']} ms" if e.get("latency_p50_ms") is not None
                             else f"latency: {e.get('latency_how', 'not measured')}",
                             f"energy: {energy_text(energy)}", f"report: {e['report']}"])
    return (f"{head}>\n    <properties>{properties}\n    </properties>{failure}\n    <system-out>{_text(out)}</system-out>\n"
            f"  </testcase>", "failure" if missed else None)


def junit_xml(manifest: dict) -> str:
    cases = [_testcase(e) for e in manifest["artifacts"]]
    count = {kind: sum(k == kind for _, k in cases) for kind in ("failure", "error", "skipped")}
    total = sum(e.get("seconds", 0.0) for e in manifest["artifacts"])
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<testsuite name="edgekit build" tests="{len(cases)}" failures="{count["failure"]}" errors="{count["error"]}" '
            f'skipped="{count["skipped"]}" time="{manifest.get("seconds", total):.3f}">\n'
            f'  <properties>\n    <property name="project" value={_attr(manifest["project"])}/>\n  </properties>\n'
            + "\n".join(c for c, _ in cases) + "\n</testsuite>\n")
