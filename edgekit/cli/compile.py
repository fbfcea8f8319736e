"""`edgekit compile` and `edgekit report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit import progress
from edgekit.cli.options import (ForceOpt, FormatOpt, NoCacheOpt, OutputFormat, QuietOpt, RemeasureOpt, TargetsAliasOpt,
                                 TargetsOpt, VerboseOpt, set_verbosity, split_targets)
from edgekit.errors import BadInputError, GateFailedError, error_document


def compile_command(
    model: Annotated[str | None, typer.Argument(help="Built-in name, weights (.safetensors/.pt with --arch), TorchScript, "
                                                     "torch.export .pt2 or .onnx. Omitted: the shipped demo (tinygaze).")] = None,
    target: TargetsOpt = None,
    targets: TargetsAliasOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", readable=False, help="Output folder (default build/<model>/<target>; "
                                             "with several targets, one subfolder per target).")] = None,
    force: ForceOpt = False,
    arch: Annotated[str | None, typer.Option(help="Architecture for a weights file: built-in name or package.module:Class.")] = None,
    arch_config: Annotated[str | None, typer.Option(help="JSON constructor arguments for --arch.")] = None,
    input_shape: Annotated[list[str] | None, typer.Option(help="Input shape, e.g. 1x1x40x64 or head_pose=1x2 (repeat per input).")] = None,
    output_convention: Annotated[str | None, typer.Option(help="What the model outputs: vector (3-D gaze) or pitchyaw (radians).")] = None,
    output_frame: Annotated[str | None, typer.Option(help="Temporal models: which frame the output is: last or middle (of the "
                                                           "input window), or future (1xHx3 forecast horizons).")] = None,
    card: Annotated[Path | None, typer.Option(readable=False, help="Model card JSON (input spec, preprocessing, output convention).")] = None,
    calib_set: Annotated[Path | None, typer.Option(readable=False, help="Calibration .npz (default: synthetic, its own seed).")] = None,
    eval_set: Annotated[Path | None, typer.Option(readable=False, help="Evaluation .npz (default: synthetic, its own seed).")] = None,
    resize: Annotated[bool, typer.Option("--resize", help="Resize sets whose image size differs from the model's input "
                                                          "(the report says so); without it they are refused.")] = False,
    no_cache: NoCacheOpt = False,
    remeasure: RemeasureOpt = False,
    output_format: FormatOpt = OutputFormat.human,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Compile a gaze model for one or more targets, verify each artifact against the model on eye images, and write its report.

    Exit codes: 0 ok, 1 a gate failed (artifact and report are kept), 2 bad input or config, 3 missing dependency.
    """
    # why: lazy, imports torch; `edgekit --help` must stay fast
    from edgekit.compiler import compile as run_compile
    from edgekit.compiler import default_out_dir
    from edgekit.recipe import load_recipe

    set_verbosity(quiet, verbose)
    config = None
    if arch_config:
        try:
            config = json.loads(arch_config)
            assert isinstance(config, dict)
        except (json.JSONDecodeError, AssertionError):
            raise BadInputError(f"--arch-config {arch_config!r} is not a JSON object; fix: e.g. '{{\"width\": 8}}'") from None
    names = split_targets(target, ["onnx"], targets)
    recipes = [load_recipe(t) for t in names]  # every target is checked before any is compiled
    human = output_format == OutputFormat.human
    results, failures = [], []
    for name, recipe in zip(names, recipes):
        where = out if len(names) == 1 else (out or default_out_dir(model, recipe).parent) / recipe.name
        result = run_compile(model, name, calib=calib_set, eval=eval_set, out=where, arch=arch, arch_config=config,
                             input_shape=input_shape, output_convention=output_convention, output_frame=output_frame,
                             card=card, cache=not no_cache, remeasure=remeasure, resize=resize, force=force,
                             progress=not quiet, log=progress.info)
        results.append(result)
        if not result.passed:
            failed = [g.name for g in result.report.gates if not g.passed]
            failures.append(f"gate(s) {', '.join(failed)} failed for {result.report.target.name}; artifact and report kept in "
                            f"{result.out_dir}")
        if human:
            # why: lazy, imports torch and cv2; `edgekit --help` must stay fast
            from edgekit.report.summary import summary

            typer.echo(summary(result.report, result.out_dir))
    failure = None
    if failures:
        failure = GateFailedError("; ".join(failures) + "; fix: see report.md (the first layer that departs from the "
                                  "reference), or relax the gate in a recipe (edgekit schema)")
    if not human:
        docs = [{"passed": r.passed, "target": r.target, "artifact_path": str(r.artifact),
                 "report_path": str(r.report_path), "report": json.loads(r.report.model_dump_json(by_alias=True))}
                for r in results]
        doc = docs[0] if len(docs) == 1 else {"passed": all(r.passed for r in results), "results": docs}
        if failure is not None:  # one JSON object on stdout, also for this failure (see edgekit.cli.run)
            doc.update(error_document(failure))
            failure.json_printed = True
        typer.echo(json.dumps(doc, indent=2))
    if failure is not None:
        raise failure


def report_command(
    path: Annotated[Path, typer.Argument(readable=False, help="A report.json written by edgekit compile.")],
    html: Annotated[bool, typer.Option("--html", help="Write report.html.")] = False,
    markdown: Annotated[bool, typer.Option("--md", help="Write report.md.")] = False,
    compare: Annotated[list[Path] | None, typer.Option("--compare", readable=False, help="More report.json files: write one "
                                                                                          "comparison page, compare.html.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", readable=False, help="Output folder (default: beside the report; "
                                                                                 "build/ for --compare); given alone, it "
                                                                                 "writes report.html there.")] = None,
    output_format: FormatOpt = OutputFormat.human,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Re-render a report without recompiling (validates it against the schema), or compare several in one HTML page."""
    # why: lazy, imports torch and cv2; `edgekit --help` must stay fast
    from edgekit.report.render import load_report, write_reports
    from edgekit.report.summary import summary

    set_verbosity(quiet, verbose)
    for given in (path, *(compare or [])):
        _refuse_folder(given)
    if out is not None and out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file; --out names a folder; fix: give a folder, e.g. --out {out.parent}")
    written: list[Path] = []
    if compare:
        # why: lazy, imports torch and cv2; `edgekit --help` must stay fast
        from edgekit.report.compare import write_compare

        written.append(write_compare([path, *compare], (out or Path("build")) / "compare.html"))
    report = load_report(path)
    formats = tuple(f for f, on in (("html", html), ("md", markdown)) if on)
    if out is not None and not formats and not compare:  # a folder was asked for: write the shareable page into it
        formats = ("html",)
    if formats:
        written += write_reports(report, out or path.parent, formats)
    if output_format == OutputFormat.json:
        typer.echo(json.dumps({"written": [str(p) for p in written], "passed": report.passed,
                               "report": json.loads(report.model_dump_json(by_alias=True))}, indent=2))
        return
    for item in written:
        typer.echo(f"wrote {item}")
    if not formats and not compare and not quiet:
        typer.echo(summary(report, path.parent))


def _refuse_folder(path: Path) -> None:
    if path.is_dir():
        fix = f"pass {path / 'report.json'}" if (path / "report.json").is_file() else "pass the report.json written by edgekit compile"
        raise BadInputError(f"{path} is a folder, not a report.json; fix: {fix}")
