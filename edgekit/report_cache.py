"""Verification results cached by everything that determines them, so an unchanged rebuild skips re-running.

Key = sha256 of (artifact digest, source model digest, resolved recipe, pipeline, evaluation and calibration set
digests, the model card, tool versions, edgekit's own source code, this host's CPU and ISA flags). Latency and memory in a reused report were measured on
this host by the run that stored it; the report says so. Entries are written whole and renamed into place.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from edgekit.report.model import Report

VERSION = 1  # bump when the report's content changes for the same inputs


@functools.cache
def code_digest() -> str:
    """sha256 of edgekit's Python sources and target files: a changed backend or report must not reuse old reports."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def report_key(src, recipe, pipeline, art, eval_set, calib_set) -> str:
    from edgekit.cache import tool_versions
    from edgekit.verify import host_info

    host = host_info()
    blob = json.dumps({"version": VERSION, "artifact": art.sha256, "model": src.artifact.sha256, "source": src.source,
                       "card": src.card.model_dump(mode="json"),
                       "recipe": recipe.resolved(), "pipeline": str(pipeline), "eval": eval_set.digest(),
                       "calib": calib_set.digest() if calib_set else None, "tools": tool_versions(), "code": code_digest(),
                       "host": {k: host.get(k) for k in ("cpu", "machine", "isa_flags")}}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def load(root: Path, key: str) -> Report | None:
    path = root / f"{key}.json"
    if not path.is_file():
        return None
    try:
        return Report.model_validate_json(path.read_text())
    except ValueError:  # an entry from an older schema: verify again
        return None


def store(root: Path, key: str, report: Report) -> None:
    """Keep the report, unless part of its verification could not run here (Lava absent): that may change."""
    from edgekit.fileio import atomic_write_text

    lava = (report.spiking or {}).get("lava") or {}
    if lava and not lava.get("ran"):
        return
    atomic_write_text(root / f"{key}.json", report.model_dump_json())


def reused(report: Report, steps) -> Report:
    """The cached report with this run's pass steps, and a note saying what was reused."""
    from edgekit.verify_artifact import step_rows

    note = (f"verification reused from the report cache: the artifact, inputs, recipe, tools and host match the run of "
            f"{report.created}, which measured accuracy, latency and memory on this host")
    return report.model_copy(update={"steps": step_rows(steps), "notes": report.notes + [note]})
