"""`edgekit build`: the CI entry point."""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from edgekit import progress as _progress
from edgekit.cli.options import FormatOpt, NoCacheOpt, OutputFormat, QuietOpt, RemeasureOpt, VerboseOpt, set_verbosity
from edgekit.errors import GateFailedError, error_document


class Executor(str, Enum):
    local = "local"
    ray = "ray"


def build_command(
    project: Annotated[Path, typer.Argument(readable=False, help="Project file: models x targets (see the README).")] = Path("edgekit.yaml"),
    dist: Annotated[Path, typer.Option("--out", "-o", "--dist", readable=False, help="Output folder (--dist is an alias).")] = Path("dist"),
    jobs: Annotated[int | None, typer.Option(min=1, show_default=False, help="Build this many (model, target) pairs in "
                                             "parallel (default 1; with --executor ray, every CPU of the local Ray, or "
                                             "every task the cluster fits at once).")] = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failure (default: keep going).")] = False,
    executor: Annotated[Executor, typer.Option(help="local: this process, or --jobs worker processes. ray: each (model, "
                                               "target) as a Ray task (pip install 'edgekit\\[ray]'), on a local Ray "
                                               "started for the build, or on the cluster at --address.")] = Executor.local,
    address: Annotated[str | None, typer.Option(show_default=False, help="Ray cluster to run on (as `ray.init`: "
                                                "host:port or ray://host:10001; default: $RAY_ADDRESS, else a local "
                                                "Ray); needs --executor ray. dist/ and the edgekit cache must then be "
                                                "paths every node shares, or add --no-shared-cache.")] = None,
    max_retries: Annotated[int, typer.Option(min=0, help="With --executor ray: run a task again this many times when "
                                             "its worker dies (killed, out of memory) before recording it as failed.")] = 2,
    no_shared_cache: Annotated[bool, typer.Option("--no-shared-cache", help="With --executor ray, for clusters whose "
                                                  "nodes share no path: each task gets its own empty cache; a model's "
                                                  "shared passes and each task's output travel through Ray's object "
                                                  "store, and only this process writes --out.")] = False,
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

    def progress(entry: dict, done: int, total: int, counts: dict) -> None:
        mark = {"passed": "ok", "gate_failed": "GATE FAILED", "error": "ERROR"}[entry["status"]]
        cached = " (cached)" if entry.get("cached") else ""
        left = f"; {counts['queued']} queued, {counts['running']} running, ETA {_duration(counts['eta_s'])}" if done < total else ""
        _progress.info(f"[{done}/{total}] {entry['model']} -> {entry['target']}: {mark}{cached}"
                       + (f": {entry['reason']}" if entry["status"] == "error" else "") + left)

    manifest = build(project, dist, jobs=jobs if executor == Executor.ray else jobs or 1, fail_fast=fail_fast,
                     progress=progress, cache=not no_cache, remeasure=remeasure, executor=executor.value,
                     address=address, max_retries=max_retries, shared_cache=not no_shared_cache)
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


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
