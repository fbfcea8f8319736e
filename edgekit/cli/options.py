"""Option aliases shared by commands."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer


class OutputFormat(str, Enum):
    human = "human"
    json = "json"


FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="human: tables; json: one JSON document on stdout.")]
SeedOpt = Annotated[int, typer.Option(help="Renderer seed (sets with different seeds share no image).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Write into an existing folder edgekit did not write: edgekit's "
                                          "files are added beside the others, none of which is deleted or replaced.")]
