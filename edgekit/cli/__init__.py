"""The `edgekit` command line: a thin layer over the Python API.

Heavy modules (torch, cv2, ...) are imported inside each command so `edgekit --help` stays fast.
Every EdgekitError becomes one line on stderr and its exit code (0 ok, 1 gate failed, 2 bad input
or config, 3 missing dependency, 130 Ctrl-C, 143 SIGTERM); with --format json also one JSON object on stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from typing import Annotated

import typer

from edgekit.cli.build import build_command
from edgekit.cli.catalog import passes, schema, targets
from edgekit.cli.compile import compile_command, report_command
from edgekit.cli.data import data_app
from edgekit.cli.energy import energy_command
from edgekit.cli.demo import demo_app
from edgekit.cli.doctor import doctor
from edgekit import signals
from edgekit.errors import EdgekitError, Interrupted, error_document, from_os_error

app = typer.Typer(name="edgekit", no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False)


def _version(value: bool) -> None:
    if value:
        from edgekit._version import __version__

        typer.echo(f"edgekit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print edgekit's version and exit.")] = False) -> None:
    """Compile trained PyTorch gaze models into verified edge artifacts, with accuracy reports in degrees.

    Exit codes: 0 ok, 1 gate failed, 2 bad input or config, 3 missing dependency, 130 interrupted.
    Every command takes -q (results only) and -v (each pass's details); commands that print results take --format json.
    """


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


def _wants_json(argv: list[str]) -> bool:
    return "--format=json" in argv or any(a == "--format" and b == "json" for a, b in zip(argv, argv[1:]))


def run(argv: list[str] | None = None) -> int:
    """Run the CLI in-process and return its exit code. Every failure is one line on stderr (`error: ...; fix: ...`)
    and, with --format json, also one JSON object on stdout; SIGTERM and Ctrl-C remove partial output and exit 143/130."""
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(argv)

    def fail(message: str, code: int, exc: BaseException | None = None, line: bool = True) -> int:
        if line:
            typer.echo(f"error: {message}", err=True)
        if as_json and not getattr(exc, "json_printed", False):
            with contextlib.suppress(OSError):  # stdout may be the full disk itself
                typer.echo(json.dumps(error_document(message, code)))
        return code

    def interrupted(exc: BaseException) -> int:
        code = getattr(exc, "exit_code", 130)
        return fail(f"interrupted by {signal.Signals(code - 128).name}; partial output removed; fix: run the command again",
                    code, exc)

    with signals.interrupts_raise():
        try:
            code = app(args=argv, standalone_mode=False, prog_name="edgekit")
            if code == 130:  # typer turned the KeyboardInterrupt into Exit(130), which click returns
                return interrupted(Interrupted(signals.received or signal.SIGINT))
            return code if isinstance(code, int) else 0
        except EdgekitError as exc:
            return fail(str(exc), exc.exit_code, exc)
        except typer.Exit as exc:  # typer turns Ctrl-C (and our SIGTERM) into Exit(130) from the KeyboardInterrupt
            if isinstance(exc.__cause__, KeyboardInterrupt):
                return interrupted(exc.__cause__)
            return exc.exit_code
        except typer.TyperException as exc:  # usage errors: unknown option, missing argument, no arguments
            show = getattr(exc, "show", None)
            show() if show else typer.echo(f"error: {exc.format_message()}", err=True)
            return fail(f"{exc.format_message()}; fix: see edgekit --help", 2, line=False)
        except (typer.Abort, KeyboardInterrupt) as exc:
            return interrupted(exc.__cause__ if isinstance(exc.__cause__, KeyboardInterrupt) else exc)
        except OSError as exc:  # a full disk or an unwritable folder outside a compile (stdout on /dev/full, --out of schema)
            err = from_os_error(exc)
            if err is None:
                raise
            return fail(str(err), err.exit_code, err)


def main() -> None:
    from edgekit._optional import freeze_imports

    freeze_imports()  # this process is edgekit's own: the converters it imports stay out of full garbage collections
    code = run(sys.argv[1:])
    try:
        sys.stdout.flush()
    except OSError as exc:  # stdout is full or gone: say so once, and let nothing flush at exit
        err = from_os_error(exc)
        typer.echo(f"error: {err or exc}", err=True)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = code or 2
    sys.exit(code)
