"""Output and work folders: edgekit never deletes or moves what it did not write, and what a killed run left
behind is removed by the next run.

- Every output folder edgekit writes holds MARKER, listing the entries edgekit put there. A non-empty folder
  without one is the user's: refused (exit 2) unless force, and even then edgekit only adds its own entries beside
  the user's; an entry of the same name that edgekit did not write, or an input of the run, is never replaced.
- Staging and work folders hold PIDFILE, locked by their run for its lifetime. One whose lock is free belongs to a
  dead run: the next run removes it. A live run's folders, and folders without a pid file, are never touched.
- Runs compiling into one --out at once each fill their own staging folder; the move into place happens under an
  flock on the folder holding --out, so the second waits for the first's move and the folder always holds one
  run's complete output (the last to finish), never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from edgekit import signals
from edgekit.errors import BadInputError
from edgekit.fileio import atomic_write_text

MARKER = ".edgekit-output.json"
PIDFILE = ".edgekit-pid"
WORK_PREFIX = "edgekit-work-"
INNER_STAGING = ".edgekit-staging-"  # staging inside --out, when the output is added to an existing folder
OUTPUT_NAMES = ("io.json", "report.json", "report.md", "report.html")  # besides the artifact, model.<format>


# --- pid files: which run made this folder, and is it still alive?
# The run holds an flock on its pid file for as long as it lives; the kernel drops it when the process dies, however it
# dies. So a pid file whose lock can be taken belongs to a dead run, whatever its pid namespace or host name says.

_held: dict[str, int] = {}  # pid file -> the open descriptor that holds its lock


def write_pidfile(folder: Path) -> None:
    path = folder / PIDFILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
    _held[str(path)] = fd


def release_pidfile(folder: Path) -> None:
    fd = _held.pop(str(folder / PIDFILE), None)
    if fd is not None:
        os.close(fd)


def is_stale(folder: Path) -> bool:
    """True only when FOLDER holds an edgekit pid file whose run is gone; a folder without one is never stale."""
    try:
        fd = os.open(folder / PIDFILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:  # held by its live run (or locks unsupported here): leave it
        return False
    finally:
        os.close(fd)


def remove_stale(folder: Path, pattern: str) -> list[Path]:
    """Remove the stale edgekit folders named like PATTERN in FOLDER."""
    removed = []
    try:
        candidates = list(folder.glob(pattern))
    except OSError:
        return removed
    for path in candidates:
        if path.is_dir() and not path.is_symlink() and is_stale(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


# --- work folders (temporary files of the passes)

@contextlib.contextmanager
def work_folder() -> Iterator[Path]:
    """A fresh temporary folder, removed afterwards; stale ones of killed runs are removed first."""
    remove_stale(Path(tempfile.gettempdir()), WORK_PREFIX + "*")
    work = None
    try:
        with signals.deferred():  # a signal between mkdtemp and the pid file would leave a folder nobody removes
            work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
            write_pidfile(work)
        yield work
    finally:
        if work is not None:
            _remove(work)


def _remove(folder: Path) -> None:
    """Remove a folder this run made, whole: a signal in the middle of rmtree (a job finishing as Ctrl-C comes) would
    leave half of it, with its pid file still locked by this live process."""
    with signals.deferred():
        shutil.rmtree(folder, ignore_errors=True)
        release_pidfile(folder)


# --- output folders

def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(path)))


def owned_entries(folder: Path) -> set[str] | None:
    """The entries edgekit wrote into FOLDER per its marker; None when it has no readable marker."""
    try:
        return set(json.loads((folder / MARKER).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return _legacy_output(folder)


def _legacy_output(folder: Path) -> set[str] | None:
    """An output folder of an edgekit from before markers (`make demo` run earlier): nothing but an artifact named
    model.*, io.json naming that artifact, and reports. Anything else in it makes it the user's."""
    try:
        entries = set(os.listdir(folder))
        sidecar = json.loads((folder / "io.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(sidecar, dict) or "edgekit" not in sidecar or sidecar.get("artifact") not in entries:
        return None
    if entries <= set(OUTPUT_NAMES) | {sidecar["artifact"]}:  # any other file (a user's model.pt) makes it the user's
        return entries
    return None


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive flock on FOLDER (held for milliseconds: stale clean-up and the move into place)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # a folder we may write but not read: go on unlocked rather than fail
        fd = None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _mkdirs(path: Path) -> list[Path]:
    """mkdir -p; returns the folders it created, deepest first (removed again if the run fails)."""
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = path.parent
    for p in reversed(missing):
        p.mkdir(exist_ok=True)
    return missing


class Output:
    """An output folder being written: fill `staging`, then `commit()` moves it into place atomically."""

    def __init__(self, out_dir: str | os.PathLike, force: bool = False, protect: Iterable[str | os.PathLike] = ()):
        self.shown = Path(out_dir)  # as the user wrote it, for messages
        self.target = _real(out_dir)
        self.force = force
        self.protect = tuple(_real(p) for p in protect)
        self.staging: Path | None = None
        self._made: list[Path] = []

    def plan(self, names: Iterable[str] | None = None) -> str:
        """'swap' (the folder is absent or holds only edgekit's entries: replace it whole) or 'merge' (add and
        replace only edgekit's entries); raises BadInputError when it must not be written. NAMES: the entries this
        run writes (None before the work: the usual ones)."""
        t, shown = self.target, self.shown
        if t == t.parent:
            raise BadInputError(f"--out {shown} is the file system root; fix: choose a folder for edgekit's output")
        if not os.path.lexists(t):
            above = t.parent
            while not os.path.lexists(above):
                above = above.parent
            if not above.is_dir():
                raise BadInputError(f"--out {shown}: {above} is a file, not a folder; fix: choose a folder path")
            return "swap"
        if not t.is_dir():
            raise BadInputError(f"--out {shown} is a file, not a folder; fix: choose a folder path (edgekit writes the "
                                f"artifact and its reports into it)")
        entries = set(os.listdir(t))
        live_inner = {e for e in entries if e.startswith(INNER_STAGING)}
        entries -= live_inner | {MARKER}
        owned = owned_entries(t)
        foreign = entries - (owned or set())
        if owned is None and foreign and not self.force:
            count = f"{len(foreign)} {'entry' if len(foreign) == 1 else 'entries'}"
            raise BadInputError(f"--out {shown} is a folder edgekit did not write ({count}, e.g. {sorted(foreign)[0]}); "
                                f"fix: choose a new or empty folder, or pass --force to add edgekit's files beside "
                                f"them (edgekit never deletes files it did not write)")
        inputs = [p for p in self.protect if p == t or t in p.parents]
        try:
            cwd = Path.cwd().resolve()
        except OSError:
            cwd = None
        holds_cwd = cwd is not None and (cwd == t or t in cwd.parents)
        if owned is not None and not foreign and not inputs and not holds_cwd and not live_inner:
            return "swap"
        replaced = set(names) if names is not None else set(OUTPUT_NAMES) | {e for e in entries if e.startswith("model.")}
        clash = sorted(n for n in replaced & entries if n not in (owned or set()))
        if clash:
            raise BadInputError(f"--out {shown} already holds {clash[0]}, which edgekit did not write; fix: choose "
                                f"another --out (edgekit never replaces files it did not write)")
        hit = sorted(str(p) for p in inputs if p == t or p.relative_to(t).parts[0] in replaced)
        if hit:
            raise BadInputError(f"--out {shown} would replace this run's input {hit[0]}; fix: choose another --out")
        return "merge"

    def begin(self) -> None:
        """Refuse (exit 2) before any work, remove what killed runs left here, and make the staging folder."""
        mode = self.plan()
        parent = self.target.parent
        self._made = _mkdirs(parent)
        with _locked(parent):
            remove_stale(parent, ".*.staging-*")
            for old in parent.glob(".*.old-*"):  # the previous output of a run killed mid-swap (swaps hold this lock)
                if (old / MARKER).is_file():
                    shutil.rmtree(old, ignore_errors=True)
            if mode == "merge":
                remove_stale(self.target, INNER_STAGING + "*")
            with signals.deferred():  # self.staging set as the folder appears, so that abort() finds it
                if mode == "merge":
                    self.staging = Path(tempfile.mkdtemp(dir=self.target, prefix=INNER_STAGING))
                else:
                    self.staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{self.target.name}.staging-"))
                    os.chmod(self.staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the output gets the usual mode
                write_pidfile(self.staging)

    def commit(self) -> None:
        """Move the complete staging folder into place (whole, or entry by entry beside the user's files)."""
        names = sorted(e for e in os.listdir(self.staging) if e != PIDFILE)
        self._made = []  # from here on the parent folders hold the output
        with _locked(self.target.parent), signals.deferred():
            mode = self.plan(names)
            if self.staging.parent == self.target:
                mode = "merge"  # the staging folder lives inside: never rename the folder around it
            if mode == "swap":
                (self.staging / MARKER).write_text(json.dumps({"written_by": "edgekit", "files": names}, indent=2) + "\n")
                (self.staging / PIDFILE).unlink()
                release_pidfile(self.staging)
                old = None
                if os.path.lexists(self.target):
                    old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}-{time.time_ns()}")
                    os.rename(self.target, old)
                os.rename(self.staging, self.target)
                self.staging = None
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
                return
            owned = (owned_entries(self.target) or set()) | set(names)
            for name in names:
                dest = self.target / name
                if dest.is_dir() and not dest.is_symlink():  # a package folder (.mlpackage): rename it aside first
                    os.rename(dest, self.staging / f".replaced-{name}")
                os.replace(self.staging / name, dest)
            atomic_write_text(self.target / MARKER, json.dumps({"written_by": "edgekit", "files": sorted(owned)}, indent=2) + "\n")
            _remove(self.staging)
            self.staging = None

    def abort(self) -> None:
        """Remove the staging folder, and the parent folders this run created if they are empty."""
        if self.staging is not None:
            _remove(self.staging)
            self.staging = None
        for made in self._made:
            try:
                made.rmdir()
            except OSError:
                break


@contextlib.contextmanager
def output_folder(out_dir: str | os.PathLike, *, force: bool = False,
                  protect: Iterable[str | os.PathLike] = ()) -> Iterator[Output]:
    """Output(out_dir) begun; whatever ends the block before commit() (an error, Ctrl-C, SIGTERM) leaves no trace."""
    out = Output(out_dir, force, protect)
    try:
        out.begin()
        yield out
    finally:
        out.abort()


def check(out_dir: str | os.PathLike, *, force: bool = False, protect: Iterable[str | os.PathLike] = ()) -> None:
    """Raise BadInputError now if OUT_DIR would be refused (for commands that compile several targets)."""
    Output(out_dir, force, protect).plan()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
