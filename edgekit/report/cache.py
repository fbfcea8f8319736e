"""Verification results cached by everything that determines them, so an unchanged rebuild skips re-running.

Key = sha256 of (artifact digest, source model digest, resolved recipe, pipeline, evaluation and calibration set
digests, the model card, tool versions, edgekit's own source code, this host's CPU and ISA flags). Latency and memory in a reused report were measured on
this host by the run that stored it; the report says when and under which load (its `timing`), and `remeasure`
(edgekit.report.timing) measures them again. Entries are written whole and renamed into place, and carry
the sha256 of their own content: a truncated or edited entry is discarded on read, never reused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from pathlib import Path

from edgekit.artifact import digest_path
from edgekit.cache import REBUILT
from edgekit.environment import host_info, tool_versions
from edgekit.fileio import atomic_write_text
from edgekit.report.build import step_rows
from edgekit.report.model import Report
from edgekit.report.timing import describe

VERSION = 2  # bump when the report's content changes for the same inputs
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # edgekit/, not edgekit/report/: every backend decides a report


@functools.cache
def code_digest() -> str:
    """sha256 of edgekit's Python sources and target files: a changed backend or report must not reuse old reports."""
    root = PACKAGE_ROOT
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def report_key(src, recipe, pipeline, art, eval_set, calib_set) -> str:
    host = host_info()
    blob = json.dumps({"version": VERSION, "artifact": _shipped_digest(art), "model": src.artifact.sha256,
                       "source": src.source, "card": src.card.model_dump(mode="json"),
                       "recipe": recipe.resolved(), "pipeline": str(pipeline), "eval": eval_set.digest(),
                       "calib": calib_set.digest() if calib_set else None, "tools": tool_versions(), "code": code_digest(),
                       "host": {k: host.get(k) for k in ("cpu", "machine", "isa_flags")}}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _shipped_digest(art) -> str:
    """The digest of the bytes on disk, not the one the artifact claims: a report is reused only for what it verified."""
    return digest_path(art.path) if art.path.exists() else art.sha256


def _note(message: str) -> None:
    print(message, file=sys.stderr)


def load(root: Path, key: str, artifact=None, log=_note) -> Report | None:
    """The cached report, if its entry is intact (recorded digest) and it describes `artifact`'s exact bytes (when
    given); a corrupted or tampered entry is discarded with a note and None returned, so the artifact is verified again."""
    path = root / f"{key}.json"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        return _discard(path, f"unreadable: {type(exc).__name__}", log)
    try:
        entry = json.loads(text)
        body, digest, described = entry["report"], entry["sha256"], entry["artifact_sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        return _discard(path, f"not a complete cache entry ({type(exc).__name__}: truncated or not written by edgekit)", log)
    if not isinstance(body, str) or _digest(described, body) != digest:
        return _discard(path, "its content differs from its recorded sha256 (tampered or corrupted)", log)
    try:
        report = Report.model_validate_json(body)
    except ValueError:  # intact but of an older schema: verify again, quietly
        path.unlink(missing_ok=True)
        return None
    if report.artifact.sha256 != described:
        return _discard(path, "the report describes another artifact than its entry records", log)
    if artifact is not None and _shipped_digest(artifact) != described:
        log(f"note: the cached report {key[:12]} describes other bytes than the artifact being shipped; verifying again")
        return None
    return report


def _digest(artifact_sha256: str, body: str) -> str:
    return hashlib.sha256(f"{artifact_sha256}\n{body}".encode()).hexdigest()


def _discard(path: Path, problem: str, log) -> None:
    path.unlink(missing_ok=True)
    log(f"note: discarded a corrupted report-cache entry {path.stem[:12]} ({problem}); verifying the artifact again")
    return None


def store(root: Path, key: str, report: Report) -> None:
    """Keep the report, unless part of its verification could not run here (Lava absent): that may change.
    The entry records the report's sha256 and the artifact digest it describes, so `load` detects any change."""
    lava = report.spiking.lava if report.spiking else report.sigma_delta.lava if report.sigma_delta else None
    if lava and not lava.ran:
        return
    # what happened to the pass cache in this run is not true of the runs that reuse the report
    body = report.model_copy(update={"notes": [n for n in report.notes if not n.startswith(REBUILT)]}).model_dump_json()
    described = report.artifact.sha256
    entry = {"artifact_sha256": described, "sha256": _digest(described, body), "report": body}
    atomic_write_text(root / f"{key}.json", json.dumps(entry))


def reused(report: Report, steps, timing_reused: bool = True) -> Report:
    """The cached report with this run's pass steps, and a note saying what was reused: everything, timing included
    (with when and under which load that timing was measured), or, after `remeasure`, all but the timing."""
    note = (f"verification reused from the report cache: the artifact, inputs, recipe, tools and host match the run of "
            f"{report.created}, which measured accuracy")
    timing = report.timing
    if not timing_reused:
        note += "; latency, memory and the FP32 comparison were measured again in this run"
    elif timing is not None:
        note += f"; {describe(timing)}, reused from the cache (--remeasure measures it again)"
        timing = timing.model_copy(update={"reused_from_cache": True})
    return report.model_copy(update={"steps": step_rows(steps), "notes": report.notes + [note], "timing": timing})
