"""Exceptions that the CLI maps to one-line messages and documented exit codes.

Exit codes: 0 ok, 1 gate failed, 2 bad input or config, 3 missing dependency, 130 interrupted (143: SIGTERM).
"""

import errno
import os
import signal


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (a converter's may run to pages), or its type's name when empty."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


_GENERIC_FIX = {1: "see the report named above", 2: "correct the input named above",
                3: "install what is named above", 130: "run the command again", 143: "run the command again"}


def error_document(exc: BaseException | str, exit_code: int | None = None) -> dict:
    """{"error", "exit_code", "fix"} for --format json: messages read "...; fix: ...", so the fix splits off."""
    message = str(exc)
    code = exit_code if exit_code is not None else getattr(exc, "exit_code", 2)
    error, _, fix = message.partition("; fix: ")
    return {"error": error, "exit_code": code, "fix": fix or _GENERIC_FIX.get(code, "see the message")}


class EdgekitError(Exception):
    """Base class: the message is one line naming the thing and the fix."""

    exit_code = 2


class BadInputError(EdgekitError):
    """A file, shape, config value or dataset that edgekit cannot use."""

    exit_code = 2


class MissingDependencyError(EdgekitError):
    """An optional package or runtime is not installed; the message says how to install it."""

    exit_code = 3


class GateFailedError(EdgekitError):
    """A quality gate (error in degrees, size, ...) did not hold."""

    exit_code = 1


class PassFailedError(EdgekitError):
    """A pass crashed or broke the pass contract; the message names the pass and the passes before it."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(f"{message}; fix: check that the model converts for this target (README: which inputs reach "
                         "which targets), or report it with the model and the recipe")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM: a KeyboardInterrupt, so `except Exception` never swallows it and every
    `finally` removes its partial output on the way out. Exit code 128 + the signal number."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


_DISK_FULL = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
              errno.EFBIG: "file too large for the file system"}
_NOT_WRITABLE = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}


def from_os_error(exc: OSError) -> EdgekitError | None:
    """One line with the fix for the OS errors a user can act on (full disk, read-only or unwritable folder);
    None for the others, which are bugs and keep their traceback."""
    where = f"{exc.filename}: " if exc.filename else "writing output: "
    code = exc.errno if exc.errno is not None else _disk_full_in_text(str(exc))  # shutil.Error lists its files' errors
    if code in _DISK_FULL:
        return BadInputError(f"{where}{_DISK_FULL[code]}; fix: free space there, or write elsewhere "
                             f"(--out, --dist, or TMPDIR for edgekit's work folders)")
    if exc.errno in _NOT_WRITABLE:
        return BadInputError(f"{where}{_NOT_WRITABLE[exc.errno]}; fix: choose a folder you can write (--out, --dist), "
                             f"or change this path's permissions")
    if exc.errno == errno.ENOTDIR:
        return BadInputError(f"{where}a part of this path is a file, not a folder; fix: choose a folder path")
    return None


def _disk_full_in_text(text: str) -> int | None:
    """The errno whose OS wording ("No space left on device") a message quotes, among the full-disk ones."""
    return next((code for code in _DISK_FULL if os.strerror(code) in text), None)


def disk_full(exc: BaseException | None) -> EdgekitError | None:
    """The one-line full-disk error when `exc`, or an exception it was raised while handling, is the OS saying a disk is
    full: a pass's converter may wrap it in its own error (safetensors' SafetensorError keeps only the OS's words, the
    ONNX exporter's error is re-raised as a trace failure), which would otherwise send the user to their model."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = exc.errno if isinstance(exc, OSError) and exc.errno is not None else _disk_full_in_text(str(exc))
        if code in _DISK_FULL:
            return from_os_error(exc if isinstance(exc, OSError) else OSError(code, str(exc)))
        exc = exc.__cause__ or exc.__context__
    return None
