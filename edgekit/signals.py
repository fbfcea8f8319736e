"""SIGTERM and Ctrl-C as an exception (edgekit.errors.Interrupted), so every `finally` removes its partial output
before the process ends; and a way to hold them off while a finished output is renamed into place."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from edgekit.errors import Interrupted

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
received: int | None = None  # the signal that interrupted this run (click hands back only an exit code)


def raise_interrupted(signum, frame) -> None:
    # Only the first signal raises: a second one (an impatient Ctrl-C) would cut the clean-up short. The later ones
    # go to a do-nothing handler, not SIG_IGN: Python raises "Signal ignored due to race condition" for a signal that
    # arrived just before SIG_IGN was set.
    global received
    received = signum
    for s in _SIGNALS:
        signal.signal(s, _ignore)
    raise Interrupted(signum)


def _ignore(signum, frame) -> None:
    pass


def install() -> dict:
    """Make SIGINT and SIGTERM raise Interrupted where they still have their default action; returns the old
    handlers for restore(). A signal the caller chose to ignore (nohup, a background job) stays ignored."""
    global received
    received = None
    if threading.current_thread() is not threading.main_thread():
        return {}
    old = {s: signal.getsignal(s) for s in _SIGNALS}
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    for s, handler in old.items():
        if handler is defaults[s]:
            signal.signal(s, raise_interrupted)
    return old


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
    """Hold SIGINT and SIGTERM until the block ends (a few renames that must not be cut in half); a signal that
    arrived meanwhile is delivered right after."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
