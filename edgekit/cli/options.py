"""Option aliases shared by commands: one name per concept across the CLI."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


class OutputFormat(str, Enum):
    human = "human"
    json = "json"


FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="human: tables; json: one JSON document on stdout.")]
SeedOpt = Annotated[int, typer.Option(help="Renderer seed (sets with different seeds share no image).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Write into an existing folder edgekit did not write: edgekit's "
                                          "files are added beside the others, none of which is deleted or replaced.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print results only: no progress, no step lines.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Also print each pass's details.")]
TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"  # read here without importing the recipe module (torch)


def target_names() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.yaml"))


def complete_target(incomplete: str) -> list[str]:
    """Shell completion of --target: the shipped target names (the part after the last comma)."""
    head, _, last = incomplete.rpartition(",")
    return [f"{head},{n}" if head else n for n in target_names() if n.startswith(last)]


TARGETS_DEPRECATED = "--targets is deprecated; use --target (repeatable or comma-separated)"


def _warn_targets_alias(values: list[str] | None) -> list[str] | None:
    if values:
        typer.echo(TARGETS_DEPRECATED, err=True)
    return values


# --target is repeatable and takes comma-separated names; --targets stays as a deprecated alias of it, hidden and warning.
# why two options: click does not tell a callback which of an option's names was typed
TargetsOpt = Annotated[list[str] | None, typer.Option("--target", "-t", show_default=False, autocompletion=complete_target,
                                                      help="Target names (see `edgekit targets`) or recipe .yaml files: "
                                                           "repeat or separate by commas (--targets is a deprecated alias).")]
TargetsAliasOpt = Annotated[list[str] | None, typer.Option("--targets", hidden=True, show_default=False,
                                                           autocompletion=complete_target, callback=_warn_targets_alias,
                                                           help="Deprecated alias of --target.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Run every pass and verify again, ignoring the pass and report "
                                                           "caches.")]
RemeasureOpt = Annotated[bool, typer.Option("--remeasure", help="Reuse a cached verification but time the artifact again "
                                                                "(latency, memory, FP32 vs INT8) under the present load.")]
OutDirOpt = Annotated[Path | None, typer.Option("--out", "-o", readable=False, help="Output folder.")]


def split_targets(values: list[str] | None, default: list[str], alias: list[str] | None = None) -> list[str]:
    """`-t a,b -t c` -> [a, b, c], then the names given with the deprecated --targets; nothing given -> default."""
    names = [t.strip() for v in [*(values or []), *(alias or [])] for t in v.split(",") if t.strip()]
    return names or list(default)


def set_verbosity(quiet: bool, verbose: bool) -> int:
    """0 quiet, 1 normal, 2 verbose; sets edgekit.progress for the command (see edgekit.progress.configure)."""
    from edgekit import progress

    level = 0 if quiet else 2 if verbose else 1
    progress.configure(level)
    return level
