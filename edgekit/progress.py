"""Progress for long steps, at one verbosity for the whole process.

Level 0 (-q): nothing. Level 1 (default of the CLI): on a terminal, a rich bar per running step with elapsed time
(and ETA when the number of items is known); off a terminal (CI logs), one line per step when it ends, and a line
every HEARTBEAT_S seconds while a long one runs. Every step ends with one line on both. Level 2 (-v): also each
pass's details (`detail`). The CLI sets the level (edgekit.cli.options.set_verbosity); the Python API is quiet unless
configured.

Nested steps (a pass, its calibration inside it) share one live display on a terminal. Progress writes to the
stderr the process had when `configure` was called, through its own file descriptor: converters silenced with
edgekit.quiet (which redirects descriptors 1 and 2) do not hide a running bar.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")

QUIET, NORMAL, VERBOSE = 0, 1, 2
HEARTBEAT_S = 30.0  # off a terminal, a step still running prints where it is this often

_level = QUIET
_stream: TextIO | None = None  # where progress writes (stderr at configure time)
_owned = False  # whether _stream is our own duplicate of descriptor 2 (closed on reconfigure)
_lock = threading.RLock()
_running: list[_Task] = []  # open steps, outermost first
_bar = None  # the live rich Progress the open steps share on a terminal


def configure(level: int) -> None:
    """Set the verbosity for this process: 0 quiet, 1 progress and step lines, 2 also pass details."""
    global _level, _stream, _owned
    with _lock:
        _close_owned()
        _level, _stream, _owned = level, None, False
        if level >= NORMAL:
            _stream, _owned = _own_stderr()


@atexit.register
def _close_owned() -> None:
    """Close our duplicate of stderr (on reconfigure, and at exit: an unclosed file is a ResourceWarning)."""
    if _owned and _stream is not None and not _stream.closed:
        _stream.close()


def level() -> int:
    return _level


def _own_stderr() -> tuple[TextIO, bool]:
    """The process's stderr through a duplicate descriptor (edgekit.quiet redirects descriptor 2 while converters run);
    a replaced sys.stderr (pytest's capture, a notebook) is used as it is."""
    err = sys.stderr
    if err is not None and err is sys.__stderr__:
        try:
            fd = os.dup(err.fileno())
        except (AttributeError, OSError, ValueError):
            return err, False
        return os.fdopen(fd, "w", buffering=1, encoding=getattr(err, "encoding", None) or "utf-8", errors="replace"), True
    return err, False


def _out() -> TextIO:
    """The configured stream, or today's stderr once that one is closed (a test runner's capture that has ended)."""
    return _stream if _stream is not None and not getattr(_stream, "closed", False) else sys.stderr


def _terminal() -> bool:
    try:
        return _out().isatty()
    except (AttributeError, ValueError):
        return False


def _write(text: str) -> None:
    with _lock:
        if _bar is not None:  # printed above the live bars
            _bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            out = _out()
            out.write(text + "\n")
            out.flush()


def info(message: str) -> None:
    """A step line (level 1 and above)."""
    if _level >= NORMAL:
        _write(message)


def detail(message: str) -> None:
    """A pass's details (level 2, -v)."""
    if _level >= VERBOSE:
        _write(f"  {message}")


def seconds(s: float) -> str:
    """12.3 s, or 2 min 05 s."""
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {int(s % 60):02d} s"


class _Task:
    """One open step: a row of the live bar on a terminal, heartbeat lines otherwise; its end line on success."""

    def __init__(self, description: str, total: int | None):
        self.description, self.total, self.count = description, total, 0
        self.started = time.perf_counter()
        self._row = None
        self._stop = threading.Event()
        self._thread = threading.get_ident()

    def __enter__(self) -> _Task:
        global _bar
        with _lock:
            _running.append(self)
            if _terminal():
                if _bar is None:
                    _bar = _live_bar()
                    _bar.start()
                self._row = _bar.add_task("  " * (len(_running) - 1) + self.description, total=self.total)
            else:
                threading.Thread(target=self._heartbeat, daemon=True, name="edgekit-progress").start()
        return self

    def advance(self) -> None:
        self.count += 1
        with _lock:
            if self._row is not None and _bar is not None:
                _bar.advance(self._row)

    def _close(self) -> None:
        self._stop.set()
        if self._row is not None and _bar is not None:
            _bar.remove_task(self._row)
        self._row = None

    def __exit__(self, exc_type, exc, tb) -> None:
        with _lock:
            if self not in _running:  # already closed by the step around it
                return
            # steps opened inside this one (by this thread) end with it: a track() whose loop raised stays open until
            # its generator is collected, which a caught exception's traceback can delay
            index = _running.index(self)
            inside = [task for task in _running[index:] if task._thread == self._thread]
            for task in reversed(inside):
                task._close()
                _running.remove(task)
            if exc_type is None:  # a failure is reported by whoever catches it
                _write(self.end_line())
            if not _running:
                _stop_bar()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def end_line(self) -> str:
        if self.total is None and not self.count:
            return f"{self.description}: done in {seconds(self.elapsed())}"
        of = f"/{self.total}" if self.total is not None else ""
        return f"{self.description}: {self.count}{of} done in {seconds(self.elapsed())}"

    def status_line(self) -> str:
        """Where a running step is (off a terminal): items done, elapsed time, and what is left when it can be told."""
        spent = self.elapsed()
        if self.total is None:
            done = f"{self.count} done, " if self.count else ""
            return f"{self.description}: {done}still running after {seconds(spent)}"
        left = f", about {seconds(spent / self.count * (self.total - self.count))} left" if self.count else ""
        return f"{self.description}: {self.count}/{self.total} after {seconds(spent)}{left}"

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with _lock:
                if _running and _running[-1] is self and not self._stop.is_set():  # the innermost step speaks
                    _write(self.status_line())


def _stop_bar() -> None:
    global _bar
    if _bar is not None:
        _bar.stop()
        _bar = None


def _close_all() -> None:
    """At exit: an error that escaped every step must not leave a live bar (and a hidden cursor) behind."""
    with _lock:
        for task in reversed(_running):
            task._close()
        _running.clear()
        _stop_bar()


atexit.register(_close_all)


def _live_bar():
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Column
    from rich.text import Text

    class Count(TextColumn):
        def __init__(self, table_column=None):
            super().__init__("", table_column=table_column)

        def render(self, task) -> Text:
            return Text(f"{int(task.completed)}/{int(task.total)}" if task.total is not None else "", style="progress.download")

    class Eta(TimeRemainingColumn):
        def render(self, task) -> Text:
            return Text.assemble("ETA ", super().render(task)) if task.total is not None else Text("")

    # the description takes what the counts, elapsed time and ETA leave, cut with an ellipsis on a narrow terminal
    fixed = {"no_wrap": True}
    columns = (SpinnerColumn(table_column=Column(**fixed)),
               TextColumn("{task.description}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
               BarColumn(bar_width=16, table_column=Column(**fixed)), Count(table_column=Column(**fixed)),
               TimeElapsedColumn(table_column=Column(**fixed)), Eta(table_column=Column(**fixed)))
    # stderr, never stdout: results (and --format json) go to stdout
    return Progress(*columns, console=Console(file=_out()), transient=True, expand=True, redirect_stdout=False,
                    redirect_stderr=True)


def track(items: Iterable[T], total: int | None = None, description: str = "", enabled: bool = True) -> Iterator[T]:
    """Yield from `items`: a bar with elapsed time and ETA on a terminal, heartbeat lines and one end line otherwise;
    nothing when quiet (or not `enabled`)."""
    if not enabled or _level < NORMAL:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with _Task(description, total) as task:
        for item in items:
            yield item
            task.advance()


@contextlib.contextmanager
def step(description: str) -> Iterator[None]:
    """A step whose length is unknown (a conversion, one runtime call): a spinner with elapsed time on a terminal,
    heartbeat lines otherwise, and one end line with its duration."""
    if _level < NORMAL:
        yield
        return
    with _Task(description, None):
        yield
