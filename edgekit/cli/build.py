"""`edgekit build`: the CI entry point."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from edgekit import progress as _progress
from edgekit.cli.options import FormatOpt, NoCacheOpt, OutputFormat, QuietOpt, RemeasureOpt, VerboseOpt, set_verbosity
from edgekit.errors import GateFailedError, error_document


def build_command(
    project: Annotated[Path, typer.Argument(readable=False, help="Project file: models x targets (see the README).")] = Path("edgekit.yaml"),
    dist: Annotated[Path, typer.Option("--out", "-o", "--dist", readable=False, help="Output folder (--dist is an alias).")] = Path("dist"),
    jobs: Annotated[int, typer.Option(help="Build this many (model, target) pairs in parallel.")] = 1,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failure (default: keep going).")] = False,
    no_cache: NoCacheOpt = False,
    remeasure: RemeasureOpt = False,
    output_format: FormatOpt = OutputFormat.human,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Build every model x target of a project into dist/ with manifest.json, a comparison page, summary.md and
    junit.xml. Exits 1 when any gate or build failed, after building everything else."""
    # why: lazy, imports torch; `edgekit --help` must stay fast
    from edgekit.build import build

    set_verbosity(quiet, verbose)

    def progress(entry: dict, done: int, total: int) -> None:
        mark = {"passed": "ok", "gate_failed": "GATE FAILED", "error": "ERROR"}[entry["status"]]
        cached = " (cached)" if entry.get("cached") else ""
        _progress.info(f"[{done}/{total}] {entry['model']} -> {entry['target']}: {mark}{cached}"
                       + (f": {entry['reason']}" if entry["status"] == "error" else ""))

    manifest = build(project, dist, jobs=jobs, fail_fast=fail_fast, progress=progress, cache=not no_cache,
                     remeasure=remeasure)
    summary_path = dist / "summary.md"
    summary = summary_path.read_text()
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as fh:
            fh.write(summary)
    written = [dist / f for f in manifest["outputs"]]  # summary.md first: the build names its summary last thing
    failure = None
    if not manifest["ok"]:
        failed = [f"{e['model']}/{e['target']} ({e['status']})" for e in manifest["artifacts"] if e["status"] != "passed"]
        failure = GateFailedError(f"{len(failed)} of {len(manifest['artifacts'])} builds failed: {', '.join(failed)}; "
                                  f"fix: see {summary_path} and each failure's reason in {dist / 'manifest.json'}")
    if output_format == OutputFormat.json:
        doc = {**manifest, "written": [str(p) for p in written]}
        if failure is not None:
            doc.update(error_document(failure))
            failure.json_printed = True
        typer.echo(json.dumps(doc, indent=2))
    else:
        if not quiet:
            typer.echo(summary)
        typer.echo(f"wrote {', '.join(str(p) for p in written)}")
    if failure is not None:
        raise failure
