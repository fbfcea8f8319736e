"""Silence converters that print progress bars, warnings or whole graphs to stdout/stderr."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings


@contextlib.contextmanager
def quiet():
    """Redirect file descriptors 1 and 2 (C++ prints too), Python warnings and logging, for the block."""
    saved = [os.dup(1), os.dup(2)]
    previous = logging.root.manager.disable
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings(), open(os.devnull, "w") as devnull, \
            contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            logging.disable(previous)
