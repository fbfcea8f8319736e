"""`edgekit energy`: energy per inference of one model across targets, estimated and (where possible) measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.options import FormatOpt, OutputFormat


def energy_command(
    model: Annotated[str | None, typer.Argument(help="Model as for `edgekit compile` (default: the demo).")] = None,
    targets: Annotated[str, typer.Option(help="Comma-separated targets to compare.")] = "onnx,onnx-fp16,onnx-int8",
    out: Annotated[Path, typer.Option(help="Folder for the compiled artifacts and reports.")] = Path("build/energy"),
    output_format: FormatOpt = OutputFormat.human,
) -> None:
    """Compare energy per inference across targets. Rows are estimates (count x cited per-op constant) unless
    labelled measured; ratios are printed only between rows of the same profile, device and level."""
    from edgekit.compiler import compile as run_compile
    from edgekit.report.summary import _range

    rows, notes = [], []
    for target in [t.strip() for t in targets.split(",") if t.strip()]:
        result = run_compile(model, target, out=out / target)
        energy = result.report.energy
        if "why" in energy:
            notes.append(f"{target}: {energy['why']}")
            continue
        for e in energy["estimates"]:
            rows.append({"target": target, **{k: e[k] for k in ("profile", "device", "level", "low_uj", "high_uj", "method",
                                                                 "source", "assumptions")}})
        measured = energy["measured"]
        rows.append({"target": target, "profile": "host", "device": measured["meter"], "level": "measured",
                     "low_uj": measured["dynamic_uj_per_inference"], "high_uj": measured["dynamic_uj_per_inference"],
                     "method": "measured" if measured["dynamic_uj_per_inference"] else "not measured",
                     "source": measured["runtime"], "assumptions": measured["how"]})
    first: dict[tuple, dict] = {}
    for r in rows:  # ratios only within one profile, device and level; low with low, high with high
        base = first.setdefault((r["profile"], r["device"], r["level"]), r)
        r["ratio_to_first"] = ""
        if r is not base and r["low_uj"] and base["low_uj"]:
            lo, hi = base["low_uj"] / r["low_uj"], base["high_uj"] / r["high_uj"]
            r["ratio_to_first"] = (f"{lo:.1f}x less than {base['target']}" if abs(lo - hi) < 0.05 else
                                   f"{lo:.1f}x (low end) / {hi:.1f}x (high end) less than {base['target']}")
    if output_format == OutputFormat.json:
        typer.echo(json.dumps({"rows": rows, "notes": notes}, indent=2))
        return
    typer.echo(f"{'target':<12} {'profile':<14} {'device':<18} {'level':<15} {'uJ per inference':>18}  vs first (same profile/level)")
    for r in rows:
        value = _range(r) if r["low_uj"] else "-"
        typer.echo(f"{r['target']:<12} {r['profile']:<14} {r['device'][:18]:<18} {r['level']:<15} {value:>18}  {r['ratio_to_first']}")
    for r in rows:
        if r["level"] == "measured" and not r["low_uj"]:
            typer.echo(f"{r['target']}: {r['assumptions']}")
            break
    for n in notes:
        typer.echo(n)
    typer.echo("estimates: Horowitz ISSCC 2014 (45 nm) and KerasSpiking's device table; see each report's Energy section for sources")
