"""Progress for long steps, at one verbosity for the whole process.

Level 0 (-q): nothing. Level 1 (default): a rich bar with elapsed time and ETA on a terminal, or one line per step
on stderr when it is not a terminal (CI logs). Level 2 (-v): also each pass's details (`detail`).
The CLI sets the level (edgekit.cli.options.set_verbosity); the Python API is quiet unless configured.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

QUIET, NORMAL, VERBOSE = 0, 1, 2
_level = QUIET


def configure(level: int) -> None:
    """Set the verbosity for this process: 0 quiet, 1 progress and step lines, 2 also pass details."""
    global _level
    _level = level


def level() -> int:
    return _level


def _terminal() -> bool:
    return sys.stderr.isatty()


def _line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def info(message: str) -> None:
    """A step line (level 1 and above)."""
    if _level >= NORMAL:
        _line(message)


def detail(message: str) -> None:
    """A pass's details (level 2, -v)."""
    if _level >= VERBOSE:
        _line(f"  {message}")


def track(items: Iterable[T], total: int | None = None, description: str = "", enabled: bool = True) -> Iterator[T]:
    """Yield from `items` with a bar on a terminal, or a start and an end line otherwise; nothing when quiet."""
    if not enabled or _level < NORMAL:
        yield from items
        return
    if not _terminal():
        start = time.perf_counter()
        _line(f"{description} ...")
        count = 0
        for item in items:
            count += 1
            yield item
        _line(f"{description}: {count}{f'/{total}' if total else ''} done in {time.perf_counter() - start:.1f} s")
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


@contextlib.contextmanager
def step(description: str) -> Iterator[None]:
    """A step whose length is unknown (a conversion, one runtime call): a spinner with elapsed time on a terminal,
    a start and an end line otherwise."""
    if _level < NORMAL:
        yield
        return
    start = time.perf_counter()
    if not _terminal():
        _line(f"{description} ...")
        yield
        _line(f"{description}: done in {time.perf_counter() - start:.1f} s")
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True) as bar:
        bar.add_task(description, total=None)
        yield
    _line(f"{description}: done in {time.perf_counter() - start:.1f} s")
