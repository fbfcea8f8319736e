"""`edgekit compile` and `edgekit report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.options import ForceOpt, FormatOpt, OutputFormat
from edgekit.errors import BadInputError, GateFailedError, error_document


def compile_command(
    model: Annotated[str | None, typer.Argument(help="Built-in name, weights (.safetensors/.pt with --arch), TorchScript, "
                                                     "torch.export .pt2 or .onnx. Omitted: the shipped demo (tinygaze).")] = None,
    target: Annotated[str, typer.Option("--target", "-t", help="Target name (see `edgekit targets`) or a recipe .yaml.")] = "onnx",
    out: Annotated[Path | None, typer.Option(readable=False, help="Output folder (default build/<model>/<target>).")] = None,
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
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run every pass and verify again, ignoring the pass and report caches.")] = False,
    output_format: FormatOpt = OutputFormat.human,
) -> None:
    """Compile a gaze model for a target, verify the artifact against the model on eye images, and write its report.

    Exit codes: 0 ok, 1 a gate failed (artifact and report are kept), 2 bad input or config, 3 missing dependency.
    """
    # why: lazy, imports torch; `edgekit --help` must stay fast
    from edgekit.compiler import compile as run_compile

    config = None
    if arch_config:
        try:
            config = json.loads(arch_config)
            assert isinstance(config, dict)
        except (json.JSONDecodeError, AssertionError):
            raise BadInputError(f"--arch-config {arch_config!r} is not a JSON object; fix: e.g. '{{\"width\": 8}}'") from None
    human = output_format == OutputFormat.human
    result = run_compile(model, target, calib=calib_set, eval=eval_set, out=out, arch=arch, arch_config=config,
                         input_shape=input_shape, output_convention=output_convention, output_frame=output_frame, card=card,
                         cache=not no_cache, force=force,
                         progress=human, log=(lambda msg: typer.echo(msg, err=True)) if human else (lambda msg: None))
    failure = None
    if not result.passed:
        failed = [g.name for g in result.report.gates if not g.passed]
        failure = GateFailedError(f"gate(s) {', '.join(failed)} failed for {result.report.target.name}; artifact and "
                                  f"report kept in {result.out_dir}; fix: see report.md (the first layer that departs "
                                  f"from the reference), or relax the gate in a recipe (edgekit schema)")
    if human:
        # why: lazy, imports torch and cv2; `edgekit --help` must stay fast
        from edgekit.report.summary import summary

        typer.echo(summary(result.report, result.out_dir))
    else:
        doc = {"passed": result.passed, "artifact_path": str(result.artifact),
               "report_path": str(result.out_dir / "report.json"),
               "report": json.loads(result.report.model_dump_json(by_alias=True))}
        if failure is not None:  # one JSON object on stdout, also for this failure (see edgekit.cli.run)
            doc.update(error_document(failure))
            failure.json_printed = True
        typer.echo(json.dumps(doc, indent=2))
    if failure is not None:
        raise failure


def report_command(
    path: Annotated[Path, typer.Argument(readable=False, help="A report.json written by edgekit compile.")],
    html: Annotated[bool, typer.Option("--html", help="Write report.html beside it.")] = False,
    markdown: Annotated[bool, typer.Option("--md", help="Write report.md beside it.")] = False,
    compare: Annotated[list[Path] | None, typer.Option("--compare", readable=False, help="More report.json files: write one comparison page.")] = None,
    out: Annotated[Path, typer.Option(readable=False, help="The comparison page (with --compare).")] = Path("build/compare.html"),
) -> None:
    """Re-render a report without recompiling (validates it against the schema), or compare several in one HTML page."""
    # why: lazy, imports torch and cv2; `edgekit --help` must stay fast
    from edgekit.report.render import load_report, write_reports
    from edgekit.report.summary import summary

    for given in (path, *(compare or [])):
        _refuse_folder(given)
    if compare:
        # why: lazy, imports torch and cv2; `edgekit --help` must stay fast
        from edgekit.report.compare import write_compare

        typer.echo(f"wrote {write_compare([path, *compare], out)}")
        return
    report = load_report(path)
    formats = tuple(f for f, on in (("html", html), ("md", markdown)) if on)
    for written in write_reports(report, path.parent, formats):
        typer.echo(f"wrote {written}")
    if not formats:
        typer.echo(summary(report, path.parent))


def _refuse_folder(path: Path) -> None:
    if path.is_dir():
        fix = f"pass {path / 'report.json'}" if (path / "report.json").is_file() else "pass the report.json written by edgekit compile"
        raise BadInputError(f"{path} is a folder, not a report.json; fix: {fix}")
