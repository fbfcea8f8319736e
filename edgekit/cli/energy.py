"""`edgekit energy`: energy per inference of one model across targets, estimated and (where possible) measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit import outdir, progress
from edgekit.cli.options import (ForceOpt, FormatOpt, OutDirOpt, OutputFormat, QuietOpt, TargetsAliasOpt, TargetsOpt,
                                 VerboseOpt, set_verbosity, split_targets)
from edgekit.errors import BadInputError

DEFAULT_TARGETS = ["onnx", "onnx-fp16", "onnx-int8"]
DEFAULT_OUT = Path("build/energy")


def energy_command(
    model: Annotated[str | None, typer.Argument(help="Model as for `edgekit compile` (default: the demo).")] = None,
    target: TargetsOpt = None,
    targets: TargetsAliasOpt = None,
    out: OutDirOpt = None,
    force: ForceOpt = False,
    report_dir: Annotated[Path | None, typer.Option(readable=False,
        help="Also write the sample report in this folder: demo.md, demo.json (static numbers) and compare.html.")] = None,
    output_format: FormatOpt = OutputFormat.human,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Compare energy per inference of the whole network across targets (default onnx, onnx-fp16, onnx-int8; `-t sample`:
    every target of the committed sample report). Artifacts and reports go to --out (default build/energy), one folder
    per target. Rows are estimates (count x cited per-op constant) unless labelled measured; ratios are printed only
    between rows of the same profile, device and level, and an FP16 figure for a runtime that computes in FP32 is
    marked, never shown as a saving."""
    # why: lazy, imports torch; `edgekit --help` must stay fast
    from edgekit.compiler import compile as run_compile
    from edgekit.recipe import load_recipe
    from edgekit.report.sample import SAMPLE_TARGETS, energy_rows, write_sample
    from edgekit.report.summary import energy_range

    set_verbosity(quiet, verbose)
    given = split_targets(target, DEFAULT_TARGETS, targets)
    names = [n for g in given for n in (SAMPLE_TARGETS if g == "sample" else [g])]
    if len(set(names)) != len(names):
        raise BadInputError(f"--target names {', '.join(sorted({n for n in names if names.count(n) > 1}))} twice; "
                            "fix: name each target once (`sample` already holds every sample target)")
    out = out or DEFAULT_OUT
    for name in names:  # every target and output folder is checked before any is compiled
        load_recipe(name)
        outdir.check(out / Path(name).stem, force=force)
    human = output_format == OutputFormat.human
    reports, paths = {}, []
    for i, name in enumerate(names, 1):
        progress.info(f"[{i}/{len(names)}] {name}")
        # bars only for a human reader, and never with -q (compile's progress=True would lift the level)
        result = run_compile(model, name, out=out / Path(name).stem, force=force, progress=human and not quiet,
                             log=progress.info)
        reports[name] = result.report
        paths.append(result.out_dir / "report.json")
    rows, notes = energy_rows(reports)
    if report_dir is not None:
        for path in write_sample(reports, paths, report_dir):
            progress.info(f"wrote {path}")
    if not human:
        typer.echo(json.dumps({"rows": rows, "notes": notes, "out": str(out)}, indent=2))
        return
    typer.echo("energy per inference of the whole network (every layer; spiking: host encoder and readout included)")
    table = [["target", "profile", "device", "level", "uJ per inference", "vs first (same profile/device/level)"]]
    table += [[r["target"], r["profile"], r["device"], r["level"],
               energy_range(r["low_uj"], r["high_uj"]) if r["low_uj"] else "-", r["ratio_to_first"]] for r in rows]
    widths = [max(len(row[k]) for row in table) for k in range(len(table[0]) - 1)]
    for row in table:
        typer.echo("  ".join(v.rjust(w) if k == 4 else v.ljust(w) for k, (v, w) in enumerate(zip(row, widths))) + "  " + row[-1])
    for r in rows:
        if r["level"] == "measured" and not r["low_uj"]:
            typer.echo(f"{r['target']}: {r['assumptions']}")
            break
    for n in notes:
        typer.echo(n)
    typer.echo("estimates: Horowitz ISSCC 2014 (45 nm) and KerasSpiking's device table; see each report's Energy section for sources")
