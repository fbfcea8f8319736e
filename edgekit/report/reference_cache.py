"""The reference's outputs on an evaluation set, cached by everything that determines them.

Every target of one model in a build runs the same reference (the model as loaded) on the same images at the same
batch: GazeResNet18 spends 12-14 s of each verification there at batch 1. Key = sha256 of (the model's digest, its
source, card, the evaluation set's digest, the batch, tool versions, edgekit's source code, this host's CPU and ISA
flags), the same identity the report cache trusts. Entries are .npy files written whole and renamed into place and
read without pickle; the entry's sha256 is in its name beside the key, so a truncated or edited one is discarded.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from edgekit.environment import cache_root, host_info, tool_versions
from edgekit.evalset import run_batches
from edgekit.fileio import atomic_write_bytes

VERSION = 1


def reference_key(src, eval_digest: str, batch: int) -> str:
    from edgekit.report.cache import code_digest  # why: edgekit.report.cache imports edgekit.report.build

    host = host_info()
    blob = json.dumps({"version": VERSION, "model": src.artifact.sha256, "source": src.source,
                       "card": src.card.model_dump(mode="json"), "eval": eval_digest, "batch": batch,
                       "tools": tool_versions(), "code": code_digest(),
                       "host": {k: host.get(k) for k in ("cpu", "machine", "isa_flags")}}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_key(src, eval_digest: str, batch: int, cache: bool) -> str | None:
    """The reference cache's key where it applies: not for a module handed over live, whose code may change between
    runs while its weights, which the digest covers, stay the same."""
    return reference_key(src, eval_digest, batch) if cache and src.kind != "module" else None


def is_cached(key: str | None, samples: int, root: Path | None = None) -> bool:
    return key is not None and _load(root or cache_root() / "references", key, samples) is not None


def reference_outputs(src, inputs, eval_digest: str, batch: int, cache: bool, description: str | None = None,
                      computed: np.ndarray | None = None):
    """(outputs, reused): the reference on `inputs` at `batch` (or `computed`, those outputs computed elsewhere),
    through the cache where it applies."""
    run = (lambda: computed) if computed is not None else (
        lambda: run_batches(src.reference, inputs, batch, description=description))
    return cached_reference(run, cache_key(src, eval_digest, batch, cache), len(inputs))


def cached_reference(run, key: str | None, samples: int, root: Path | None = None):
    """(outputs, reused): `run()`'s outputs, or those an earlier run with the same key stored (`key` None: no cache)."""
    if key is None:
        return run(), False
    folder = (root or cache_root() / "references")
    found = _load(folder, key, samples)
    if found is not None:
        return found, True
    out = np.asarray(run())
    buffer = io.BytesIO()
    np.save(buffer, out, allow_pickle=False)
    data = buffer.getvalue()
    try:
        for stale in folder.glob(f"{key}-*.npy"):  # an entry that failed its check, or an older write of the same key
            stale.unlink(missing_ok=True)
        atomic_write_bytes(folder / f"{key}-{hashlib.sha256(data).hexdigest()[:16]}.npy", data)
    except OSError:  # a read-only or full cache costs the next run time, not this one its result
        pass
    return out, False


def _load(folder: Path, key: str, samples: int):
    for path in sorted(folder.glob(f"{key}-*.npy")) if folder.is_dir() else []:
        try:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest()[:16] != path.stem.rsplit("-", 1)[1]:
                continue
            out = np.load(io.BytesIO(data), allow_pickle=False)
        except (OSError, ValueError):
            continue
        if out.ndim >= 1 and out.shape[0] == samples and out.dtype.kind == "f":
            return out
    return None
