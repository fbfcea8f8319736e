"""Render a Report as report.json, report.md and one self-contained report.html (edgekit/report/page.py: tables and
inline SVG charts, no external resources); load a report.json back."""

from __future__ import annotations

import json
from pathlib import Path

from edgekit import userfile
from edgekit.errors import BadInputError
from edgekit.fileio import atomic_write_text
from edgekit.report.model import REPORT_SCHEMA_VERSION, Report
from edgekit.report.page import to_html
from edgekit.report.rows import (ENERGY_HEAD, QUANT_HEAD, SENSITIVITY_MEANS, energy_facts, energy_rows, md_table,
                                 measurement_rows, parity_facts, quant_facts, quant_rows, reproducible_text, timing_facts)
from edgekit.report.sigma_delta import sigma_delta_markdown
from edgekit.report.spiking import spiking_markdown

__all__ = ["SENSITIVITY_MEANS", "load_report", "reproducible_text", "to_html", "to_markdown", "write_reports"]


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
        lines += ["", "Per-layer parity (the worst sample, layer by layer against PyTorch):", ""] + _facts(parity_facts(report))
    lines += ["", "## Measurements", "", "| section | quantity | value | how |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in measurement_rows(report)]
    if timing_facts(report):
        lines += ["", "Timing measured:", ""] + _facts(timing_facts(report))
    lines += _quant_markdown(report)
    lines += _energy_markdown(report)
    lines += spiking_markdown(report.spiking) if report.spiking else []
    lines += sigma_delta_markdown(report.sigma_delta) if report.sigma_delta else []
    lines += ["", "## Pipeline steps", "", "| pass | format | sha256 | cached | seconds | notes |", "|---|---|---|---|---|---|"]
    lines += [f"| {s.pass_} | {s.format} | `{s.sha256[:12]}` | {s.cached} | {s.seconds:.2f} | {'; '.join(s.notes)} |" for s in report.steps]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    lines += ["", "## Provenance", "", f"- tools: {', '.join(f'{k} {v}' for k, v in report.tools.items())}",
              f"- input digests: {', '.join(f'{k} `{v[:16]}`' for k, v in report.inputs_digest.items())}",
              f"- created {report.created}, report schema v{report.schema_version}", "",
              "Resolved recipe:", "", "```json", json.dumps(report.recipe, indent=2), "```", ""]
    return "\n".join(lines)


def _facts(facts: list[tuple[str, str]]) -> list[str]:
    return [f"- {label}: {text}" for label, text in facts]


def _energy_markdown(report: Report) -> list[str]:
    energy = report.energy
    if energy.why is None and not energy.estimates and energy.measured is None:
        return []
    lines = ["", "## Energy", ""]
    if energy.why is not None:
        return lines + [energy.why]
    return lines + _facts(energy_facts(report)) + [""] + md_table(ENERGY_HEAD, energy_rows(report))


def _quant_markdown(report: Report) -> list[str]:
    if not report.quantization:
        return []
    lines = ["", "## Quantization", ""] + _facts(quant_facts(report))
    lines += [f"- mixed precision: {d}" for d in report.quantization.plan.decisions]
    return lines + [""] + md_table(QUANT_HEAD, quant_rows(report))


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
