"""`edgekit targets`, `edgekit passes`, `edgekit schema`: what can be compiled to, with what, and how recipes look."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from edgekit.cli.options import FormatOpt, OutputFormat
from edgekit.errors import BadInputError
from edgekit.fileio import atomic_write_text


def targets(output_format: FormatOpt = OutputFormat.human) -> None:
    """List the shipped target recipes: backend, pipeline, gates."""
    # why: lazy, imports torch; `edgekit --help` must stay fast
    from edgekit.recipe import list_targets, load_recipe

    rows = []
    for name in list_targets():
        r = load_recipe(name)
        gates = {k: v for k, v in r.gates.model_dump().items() if v is not None}
        rows.append({"name": name, "backend": r.backend, "pipeline": str(r.pipeline()), "gates": gates,
                     "description": r.description})
    if output_format == OutputFormat.json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        gates = ", ".join(f"{k} {v:g}" for k, v in row["gates"].items()) or "none"
        typer.echo(f"{row['name']:<14} {row['backend']:<6} {row['pipeline']:<40} gates: {gates}\n{'':<22}{row['description']}")


def passes(output_format: FormatOpt = OutputFormat.human) -> None:
    """List the passes with what they consume and produce and their options."""
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


def schema(out: Annotated[str | None, typer.Option(help="Write the JSON Schema to this file instead of stdout.")] = None,
           kind: Annotated[str, typer.Option(help="recipe or report.")] = "recipe") -> None:
    """Print the JSON Schema of target recipes (or of reports)."""
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
        atomic_write_text(out, text + "\n")
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text)
