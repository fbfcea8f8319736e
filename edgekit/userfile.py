"""Opening files the user named: every OS failure becomes one BadInputError that says the real reason.

`Path.is_file()` answers False for a folder, a missing file and (on some paths) an unreadable one alike, so
a permission problem used to read "no such file". Here the file is opened and the errno decides the message.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from edgekit.errors import BadInputError


def why(exc: OSError, path: str | os.PathLike) -> tuple[str, str]:
    """(problem, fix) for an OSError raised while opening `path`."""
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied", f"make it readable by this user (e.g. chmod u+r {path}) or run as its owner"
    if code == errno.EISDIR:
        return "is a directory, not a file", "give the file inside it"
    if code == errno.ENOENT:
        return "no such file", "check the path"
    if code == errno.ENOTDIR:
        return "a part of the path is a file, not a directory", "check the path"
    if code == errno.ELOOP:
        return "symbolic link loop", "check the link"
    return (exc.strerror or str(exc)).lower(), "check the file"


def fail(path: str | os.PathLike, exc: OSError, what: str, fix: str | None = None) -> BadInputError:
    """The one-line error for `exc`; `fix` replaces the generic one where the file does not exist."""
    problem, generic = why(exc, path)
    if exc.errno == errno.ENOENT and fix:
        generic = fix
    return BadInputError(f"{path}: {problem} ({what}); fix: {generic}")


def read_bytes(path: str | os.PathLike, what: str, fix: str | None = None) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise fail(path, exc, what, fix) from None


def read_text(path: str | os.PathLike, what: str, fix: str | None = None) -> str:
    """UTF-8 text; a binary file says so instead of raising UnicodeDecodeError."""
    data = read_bytes(path, what, fix)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r}; {what}); "
                            "fix: give a text file, saved as UTF-8") from None


def is_file(path: str | os.PathLike) -> bool:
    """Path.is_file() that raises the one-line error where the answer is unknown (no permission to look)."""
    try:
        return Path(path).is_file()
    except OSError as exc:
        raise fail(path, exc, "cannot look at it") from None
