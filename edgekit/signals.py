"""SIGTERM and Ctrl-C as an exception (edgekit.errors.Interrupted), so every `finally` removes its partial output
before the process ends; and a way to hold them off while a finished output is renamed into place."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator

from edgekit.errors import Interrupted

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
received: int | None = None  # the signal that interrupted this run (click hands back only an exit code)
_deferring = 0  # depth of deferred() blocks: inside one, a signal is recorded in _pending and raised when the last ends
_pending: int | None = None
_owner = 0  # the process that installed the handler (a forked child inherits it before it sets its own)


def raise_interrupted(signum, frame) -> None:
    # Only the first signal raises: a second one (an impatient Ctrl-C) would cut the clean-up short. The later ones
    # go to a do-nothing handler, not SIG_IGN: Python raises "Signal ignored due to race condition" for a signal that
    # arrived just before SIG_IGN was set.
    global received, _pending
    if _deferring:
        _pending = signum
        return
    received = signum
    for s in _SIGNALS:
        signal.signal(s, _ignore)
    raise Interrupted(signum)


def _interrupt(signum, frame) -> None:
    """The handler install() sets. A process forked from this one (a build worker) runs it until its own start-up
    replaces it; a signal in that window (the parent stopping its workers) ends the child quietly: it has no output
    yet, and an exception raised inside multiprocessing's after-fork hooks prints a traceback."""
    if os.getpid() != _owner:
        os._exit(128 + signum)
    raise_interrupted(signum, frame)


def _ignore(signum, frame) -> None:
    pass


def install() -> dict:
    """Make SIGINT and SIGTERM raise Interrupted where they still have their default action; returns the old
    handlers for restore(). A signal the caller chose to ignore (nohup, a background job) stays ignored."""
    global received, _owner
    received = None
    if threading.current_thread() is not threading.main_thread():
        return {}
    settle_tempdir()
    _owner = os.getpid()
    old = {s: signal.getsignal(s) for s in _SIGNALS}
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    for s, handler in old.items():
        if handler is defaults[s]:
            signal.signal(s, _interrupt)
    return old


def settle_tempdir() -> None:
    """tempfile's first gettempdir() probes the folder with a file it writes and removes: a signal in between leaves
    that file (an empty one named like 5033qs7v) in the user's TMPDIR. Called before signals raise; the result is
    cached for the process and the workers it forks."""
    tempfile.gettempdir()


def restore(old: dict) -> None:
    for s, handler in old.items():
        if handler is not None:
            signal.signal(s, handler)


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    old = install()
    try:
        yield
    finally:
        restore(old)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends (a few renames, or making or removing a folder, that must not be
    cut in half); a signal that arrived meanwhile is raised right after the outermost block. A signal mask would not
    do: it holds only this thread's signals, and torch's and onnxruntime's threads would take the signal, whose Python
    handler still runs in the main thread."""
    global _deferring, _pending
    if not _deferring:
        _pending = None
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending is not None:
            signum, _pending = _pending, None
            raise_interrupted(signum, None)
