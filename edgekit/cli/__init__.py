"""The `edgekit` command line: a thin layer over the Python API.

Heavy modules (torch, cv2, ...) are imported inside each command so `edgekit --help` stays fast.
Every EdgekitError becomes one line on stderr and its exit code (0 ok, 1 gate failed, 2 bad input
or config, 3 missing dependency).
"""

from __future__ import annotations

import sys

import typer

from edgekit.cli.data import data_app
from edgekit.cli.demo import demo_app
from edgekit.cli.doctor import doctor
from edgekit.errors import EdgekitError

app = typer.Typer(name="edgekit", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Compile trained PyTorch gaze models into verified edge artifacts, with accuracy reports in degrees.\n\n"
                       "Exit codes: 0 ok, 1 gate failed, 2 bad input or config, 3 missing dependency.")
app.add_typer(demo_app, name="demo")
app.add_typer(data_app, name="data")
app.command()(doctor)


def main() -> None:
    try:
        app(standalone_mode=False)
    except EdgekitError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors carry their own exit code and message
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise
