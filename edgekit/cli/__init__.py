"""The `edgekit` command line: a thin layer over the Python API.

Heavy modules (torch, cv2, ...) are imported inside each command so `edgekit --help` stays fast.
Every EdgekitError becomes one line on stderr and its exit code (0 ok, 1 gate failed, 2 bad input
or config, 3 missing dependency).
"""

from __future__ import annotations

import sys

import typer

from edgekit.cli.build import build_command
from edgekit.cli.catalog import passes, schema, targets
from edgekit.cli.compile import compile_command, report_command
from edgekit.cli.data import data_app
from edgekit.cli.energy import energy_command
from edgekit.cli.demo import demo_app
from edgekit.cli.doctor import doctor
from edgekit.errors import EdgekitError

app = typer.Typer(name="edgekit", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Compile trained PyTorch gaze models into verified edge artifacts, with accuracy reports in degrees.\n\n"
                       "Exit codes: 0 ok, 1 gate failed, 2 bad input or config, 3 missing dependency.")
app.command("compile")(compile_command)
app.command("report")(report_command)
app.command("build")(build_command)
app.command("energy")(energy_command)
app.command()(targets)
app.command()(passes)
app.command()(schema)
app.add_typer(demo_app, name="demo")
app.add_typer(data_app, name="data")
app.command()(doctor)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI in-process and return its exit code; errors become one line on stderr."""
    try:
        app(args=argv, standalone_mode=False, prog_name="edgekit")
        return 0
    except EdgekitError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:  # usage errors: unknown option, missing argument, no arguments
        show = getattr(exc, "show", None)
        show() if show else typer.echo(f"error: {exc.format_message()}", err=True)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130


def main() -> None:
    sys.exit(run(sys.argv[1:]))
