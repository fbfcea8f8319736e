"""`edgekit targets`, `edgekit passes`, `edgekit schema`: what can be compiled to, with what, and how recipes look."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.options import TARGETS_DIR, FormatOpt, OutputFormat, QuietOpt, VerboseOpt, set_verbosity, target_names
from edgekit.errors import BadInputError
from edgekit.fileio import atomic_write_text


def targets(output_format: FormatOpt = OutputFormat.human, quiet: QuietOpt = False, verbose: VerboseOpt = False) -> None:
    """List the shipped target recipes: backend, passes, gates, device."""
    set_verbosity(quiet, verbose)
    rows = [_target_row(TARGETS_DIR / f"{name}.yaml") for name in target_names()]
    if output_format == OutputFormat.json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        gates = ", ".join(f"{k} {v:g}" for k, v in row["gates"].items()) or "none"
        typer.echo(f"{row['name']:<18} {row['backend']:<7} {' | '.join(row['passes']):<34} gates: {gates}")
        if not quiet:
            typer.echo(f"{'':<27}{row['description']}")


def _target_row(path) -> dict:
    """A shipped recipe as written (read as YAML: listing targets must not import torch, which the recipe schema does;
    `edgekit compile` validates the recipe fully)."""
    import yaml

    doc = yaml.safe_load(path.read_text())
    passes = [entry if isinstance(entry, str) else next(iter(entry)) for entry in doc.get("passes", [])]
    return {"name": doc.get("name", path.stem), "backend": doc.get("backend"), "passes": passes,
            "options": {next(iter(e)): e[next(iter(e))] for e in doc.get("passes", []) if isinstance(e, dict)},
            "gates": {k: v for k, v in (doc.get("gates") or {}).items() if v is not None},
            "device": doc.get("device", "host-cpu"), "description": doc.get("description", "")}


def passes(output_format: FormatOpt = OutputFormat.human, quiet: QuietOpt = False, verbose: VerboseOpt = False) -> None:
    """List the passes with what they consume and produce and their options."""
    set_verbosity(quiet, verbose)
    # why: lazy, imports torch; `edgekit --help` must stay fast
    import edgekit.backends  # noqa: F401  (registers the conversion passes)
    from edgekit.passes import REGISTRY

    rows = []
    for name, cls in sorted(REGISTRY.items()):
        opts = {k: {"default": f.get_default(call_default_factory=True), "description": f.description} for k, f in cls.model_fields.items()}
        rows.append({"name": name, "consumes": sorted(f.value for f in cls.consumes), "produces": cls.produces.value,
                     "summary": cls.summary, "options": opts})
    if output_format == OutputFormat.json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    for row in rows:
        typer.echo(f"{row['name']:<12} {'/'.join(row['consumes'])} -> {row['produces']}: {row['summary']}")
        for k, o in row["options"].items():
            typer.echo(f"{'':<14}{k} = {o['default']!r}  {o['description'] or ''}")


def schema(out: Annotated[Path | None, typer.Option("--out", "-o", readable=False, help="Write <kind>.schema.json into "
                                                     "this folder instead of printing it.")] = None,
           kind: Annotated[str, typer.Option(help="recipe or report.")] = "recipe",
           quiet: QuietOpt = False, verbose: VerboseOpt = False) -> None:
    """Print the JSON Schema of target recipes (or of reports): JSON, always."""
    set_verbosity(quiet, verbose)
    if kind == "recipe":
        # why: lazy, imports torch; `edgekit --help` must stay fast
        from edgekit.recipe import recipe_schema

        doc = recipe_schema()
    elif kind == "report":
        # why: lazy, imports torch and cv2; `edgekit --help` must stay fast
        from edgekit.report.model import Report

        doc = Report.model_json_schema(by_alias=True)
    else:
        raise BadInputError(f"--kind {kind!r}; fix: use recipe or report")
    text = json.dumps(doc, indent=2)
    if out:
        if out.exists() and not out.is_dir():
            raise BadInputError(f"--out {out} is a file; --out names a folder; fix: e.g. --out {out.parent}")
        written = atomic_write_text(out / f"{kind}.schema.json", text + "\n")
        typer.echo(f"wrote {written}")
    else:
        typer.echo(text)
