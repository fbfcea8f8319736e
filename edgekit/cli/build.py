"""`edgekit build`: the CI entry point."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from edgekit.errors import GateFailedError


def build_command(
    project: Annotated[Path, typer.Argument(readable=False, help="Project file: models x targets (see the README).")] = Path("edgekit.yaml"),
    dist: Annotated[Path, typer.Option(readable=False, help="Output folder.")] = Path("dist"),
    jobs: Annotated[int, typer.Option(help="Build this many (model, target) pairs in parallel.")] = 1,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failure (default: keep going).")] = False,
) -> None:
    """Build every model x target of a project into dist/ with manifest.json, a comparison page, summary.md and
    junit.xml. Exits 1 when any gate or build failed, after building everything else."""
    # why: lazy, imports torch; `edgekit --help` must stay fast
    from edgekit.build import build

    def progress(entry: dict, done: int, total: int) -> None:
        mark = {"passed": "ok", "gate_failed": "GATE FAILED", "error": "ERROR"}[entry["status"]]
        cached = " (cached)" if entry.get("cached") else ""
        typer.echo(f"[{done}/{total}] {entry['model']} -> {entry['target']}: {mark}{cached}"
                   + (f": {entry['reason']}" if entry["status"] == "error" else ""), err=True)

    manifest = build(project, dist, jobs=jobs, fail_fast=fail_fast, progress=progress)
    summary = (dist / "summary.md").read_text()
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as fh:
            fh.write(summary)
    typer.echo(summary)
    typer.echo(f"wrote {dist / 'manifest.json'}, {dist / 'compare.html'}, {dist / 'junit.xml'}")
    if not manifest["ok"]:
        failed = [f"{e['model']}/{e['target']} ({e['status']})" for e in manifest["artifacts"] if e["status"] != "passed"]
        raise GateFailedError(f"{len(failed)} of {len(manifest['artifacts'])} builds failed: {', '.join(failed)}; "
                              f"fix: see {dist / 'summary.md'} and each failure's reason in {dist / 'manifest.json'}")
