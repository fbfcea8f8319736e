"""`edgekit energy`: energy per inference of one model across targets, estimated and (where possible) measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit import outdir
from edgekit.cli.options import ForceOpt, FormatOpt, OutputFormat
from edgekit.errors import BadInputError


def energy_command(
    model: Annotated[str | None, typer.Argument(help="Model as for `edgekit compile` (default: the demo).")] = None,
    targets: Annotated[str, typer.Option(
        help="Comma-separated targets to compare; `sample`: every target of the committed sample report.")] = "onnx,onnx-fp16,onnx-int8",
    out: Annotated[Path, typer.Option(readable=False, help="Folder for the compiled artifacts and reports.")] = Path("build/energy"),
    force: ForceOpt = False,
    report_dir: Annotated[Path | None, typer.Option(readable=False, 
        help="Also write the sample report there: demo.md, demo.json (static numbers) and compare.html.")] = None,
    output_format: FormatOpt = OutputFormat.human,
) -> None:
    """Compare energy per inference across targets. Rows are estimates (count x cited per-op constant) unless
    labelled measured; ratios are printed only between rows of the same profile, device and level."""
    # why: lazy, imports torch; `edgekit --help` must stay fast
    from edgekit.compiler import compile as run_compile
    from edgekit.recipe import load_recipe
    from edgekit.report.sample import SAMPLE_TARGETS, energy_rows, write_sample
    from edgekit.report.summary import energy_range

    names = list(SAMPLE_TARGETS) if targets.strip() == "sample" else [t.strip() for t in targets.split(",") if t.strip()]
    if not names:
        raise BadInputError(f"--targets {targets!r} names no target; fix: e.g. --targets onnx,onnx-fp16")
    for target in names:  # every target and output folder is checked before any is compiled
        load_recipe(target)
        outdir.check(out / Path(target).stem, force=force)
    reports, paths = {}, []
    for target in names:
        result = run_compile(model, target, out=out / Path(target).stem, force=force)
        reports[target] = result.report
        paths.append(result.out_dir / "report.json")
    rows, notes = energy_rows(reports)
    if report_dir is not None:
        for path in write_sample(reports, paths, report_dir):
            typer.echo(f"wrote {path}", err=True)
    if output_format == OutputFormat.json:
        typer.echo(json.dumps({"rows": rows, "notes": notes}, indent=2))
        return
    typer.echo(f"{'target':<12} {'profile':<14} {'device':<18} {'level':<15} {'uJ per inference':>18}  vs first (same profile/level)")
    for r in rows:
        value = energy_range(r["low_uj"], r["high_uj"]) if r["low_uj"] else "-"
        typer.echo(f"{r['target']:<12} {r['profile']:<14} {r['device'][:18]:<18} {r['level']:<15} {value:>18}  {r['ratio_to_first']}")
    for r in rows:
        if r["level"] == "measured" and not r["low_uj"]:
            typer.echo(f"{r['target']}: {r['assumptions']}")
            break
    for n in notes:
        typer.echo(n)
    typer.echo("estimates: Horowitz ISSCC 2014 (45 nm) and KerasSpiking's device table; see each report's Energy section for sources")
