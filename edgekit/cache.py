"""Content-addressed cache of pass outputs.

Key = sha256 of (pass name, pass version, options, input digest, calibration digest, card, tool
versions, the digest of the pass's own code). An entry is a folder holding the pass's output, `artifact.json` and `entry.json` (the sha256 of every
other file); it is renamed into place only when complete, so concurrent or interrupted runs never see half an
entry, and it is checked against those digests on every read, so a corrupted or truncated one is rebuilt, not used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from edgekit.artifact import Artifact

def cache_key(pass_name: str, pass_version: int, options: dict, input_digest: str, calib_digest: str | None,
              card: dict, tools: dict[str, str], code: str) -> str:
    """`code`: the digest of the pass's source and the edgekit modules it imports (code_digest), so that a changed
    pass never serves what its old code made."""
    blob = json.dumps({"pass": pass_name, "version": pass_version, "options": options, "input": input_digest,
                       "calib": calib_digest, "card": card, "tools": tools, "code": code}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


MANIFEST = "entry.json"  # sha256 of every other file in the entry, written last, before the rename
REBUILT = "a corrupted pass-cache entry was discarded and rebuilt"  # a note about one run, never cached in a report


class Cache:
    """Entries are checked against their recorded digests on every read: a corrupted or truncated entry is
    discarded (with a note through `log`) and the caller rebuilds it; `discarded` keeps why, per key."""

    def __init__(self, root: Path, log=lambda message: None):
        self.root = Path(root)
        self.log = log
        self.discarded: dict[str, str] = {}

    def get(self, key: str) -> Artifact | None:
        entry = self.root / key[:2] / key
        if not entry.is_dir():
            return None
        problem = _check_entry(entry)
        if problem is None:
            art = Artifact.model_validate_json((entry / "artifact.json").read_text())
            # stored paths are relative to the entry, so the cache can move
            return art.model_copy(update={"path": entry / art.path})
        self._discard(key, entry, problem)
        return None

    def put(self, key: str, art: Artifact, out_dir: Path) -> Artifact:
        """Move `out_dir` (which holds the artifact) into the cache; returns the artifact at its cached path."""
        entry = self.root / key[:2] / key
        entry.parent.mkdir(parents=True, exist_ok=True)
        rel = art.path.relative_to(out_dir)
        (out_dir / "artifact.json").write_text(art.model_copy(update={"path": rel}).model_dump_json(indent=2))
        staging = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{key[:12]}."))
        shutil.rmtree(staging)
        shutil.copytree(out_dir, staging)
        (staging / MANIFEST).write_text(json.dumps({"files": _file_digests(staging)}, indent=1, sort_keys=True))
        for _ in range(2):
            try:
                os.rename(staging, entry)  # atomic: readers see no entry or a whole one
                return art.model_copy(update={"path": entry / rel})
            except OSError:  # another process stored the same key first: theirs is equivalent, if intact
                theirs = self.get(key)  # a corrupt one is discarded here, and the rename is tried again
                if theirs is not None:
                    shutil.rmtree(staging, ignore_errors=True)
                    return theirs
        shutil.rmtree(staging, ignore_errors=True)
        return art  # could not store it: use the pass output where it is

    def _discard(self, key: str, entry: Path, problem: str) -> None:
        # renamed away first, so no reader ever sees a half-deleted entry
        trash = entry.with_name(f".{key[:12]}.discarded-{os.getpid()}-{time.monotonic_ns()}")
        try:
            os.rename(entry, trash)
        except OSError:  # another process discarded (or replaced) it already
            return
        shutil.rmtree(trash, ignore_errors=True)
        self.discarded[key] = problem
        self.log(f"note: discarded a corrupted pass-cache entry {key[:12]} ({problem}); rebuilding it")


def _file_digests(folder: Path) -> dict[str, str]:
    return {str(f.relative_to(folder)): _sha256(f) for f in sorted(folder.rglob("*")) if f.is_file() and f.name != MANIFEST}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_entry(entry: Path) -> str | None:
    """None if every recorded file is there with its recorded digest; else what is wrong. Files added later (a
    runtime's side files) are not part of the entry's content and are ignored."""
    try:
        recorded = json.loads((entry / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return f"no {MANIFEST}: written by an older edgekit or cut short"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{MANIFEST} unreadable: {type(exc).__name__}"
    if not isinstance(recorded, dict) or "artifact.json" not in recorded:
        return f"{MANIFEST} lists no artifact.json"
    for name, digest in sorted(recorded.items()):
        if Path(name).is_absolute() or ".." in Path(name).parts:
            return f"{MANIFEST} names a file outside the entry: {name}"
        f = entry / name
        if not f.is_file():
            return f"{name}: missing"
        try:
            if _sha256(f) != digest:
                return f"{name}: content differs from its recorded sha256 (corrupted or truncated)"
        except OSError as exc:
            return f"{name}: unreadable ({exc.strerror})"
    try:
        art = Artifact.model_validate_json((entry / "artifact.json").read_text())
    except (OSError, ValueError) as exc:
        return f"artifact.json unreadable: {type(exc).__name__}"
    target = (entry / art.path).resolve()
    if entry.resolve() not in target.parents or not target.exists():  # a path out of the entry is never followed
        return f"artifact path {art.path} is not inside the entry"
    return None
