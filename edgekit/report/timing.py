"""The timing part of a report: latency, peak memory and, for an INT8 artifact, the interleaved comparison with its FP32
counterpart; when, on which CPU and under which load it was measured; and `remeasure`, which measures it again for a
cached report and keeps the rest.

Latency on a shared machine moves with the load (a warm compile once served 47.3 ms measured under load where the
same artifact ran in 7.09 ms a minute before), so every timed report records os.getloadavg() before and after timing,
and a report served from the cache says that its timing is an earlier run's.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from edgekit import progress
from edgekit.artifact import Artifact
from edgekit.backends import get_backend
from edgekit.environment import host_info
from edgekit.report.measure import interleaved_latency, latency_histogram, latency_runs, peak_memory
from edgekit.report.model import Measurement, Report, Timing
from edgekit.report.sections import Comparison

REMEASURED = "timing measured again (--remeasure)"  # the note's prefix: one such note per report, the latest


@dataclass(frozen=True)
class Timed:
    latency: dict[str, Measurement]
    memory: Measurement
    comparison: dict | None  # the Comparison section, for an INT8 artifact with an FP32 counterpart
    timing: Timing | None  # None when the backend measures no speed here


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # no load average on this platform
        return []


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def comparison(art: Artifact, fp32: Artifact, runner, fp32_runner, sample, recipe) -> dict:
    """Size and latency of the INT8 artifact against its FP32 counterpart, both in the same runtime with the same
    threads, timed alternately in one loop so the machine's load hits both alike."""
    lat = interleaved_latency({"fp32": fp32_runner.run, "int8": runner.run}, sample, recipe.verify.latency_runs,
                              recipe.verify.warmup_runs, runner.describe())
    return {"fp32_sha256": fp32.sha256, "size_fp32_bytes": fp32.size_bytes(), "size_int8_bytes": art.size_bytes(),
            "size_ratio": fp32.size_bytes() / max(art.size_bytes(), 1),
            "latency_fp32": {k: m.model_dump() for k, m in lat["fp32"].items()},
            "latency_int8": {k: m.model_dump() for k, m in lat["int8"].items()},
            "speedup_p50": lat["fp32"]["p50"].value / lat["int8"]["p50"].value}


def measure(backend, art: Artifact, runner, sample, recipe, fp32: Artifact | None = None) -> Timed:
    """Latency, peak memory and (with `fp32`) the interleaved FP32 comparison, with the load they were measured under."""
    if not backend.measures_speed:
        lat = {q: Measurement(value=None, unit="ms", method="not_measured", how=backend.why_no_speed)
               for q in ("p50", "p90", "p99")}
        return Timed(lat, Measurement(value=None, unit="MiB", method="not_measured", how=backend.why_no_speed), None, None)
    threads = recipe.verify.threads
    started, load_start = _now(), _load()
    # a line, not a progress.step: this runs inside the caller's verification step, and a terminal shows one bar at once
    progress.detail(f"timing the artifact: {recipe.verify.latency_runs} runs"
                    + (", then as many interleaved with its FP32 counterpart" if fp32 else "") + f", load {load_start}")
    lat, times = latency_runs(runner.run, sample, recipe.verify.latency_runs, recipe.verify.warmup_runs, runner.describe())
    memory = peak_memory(lambda: backend.runner(art.path, threads=threads).run(sample))
    compared = (comparison(art, fp32, runner, backend.runner(fp32.path, threads=threads), sample, recipe)
                if fp32 is not None else None)
    host = host_info()
    timing = Timing(measured_at=started, host=host["cpu"], cores=host["cores"], threads=threads, load_start=load_start,
                    load_end=_load(), latency_histogram=latency_histogram(times))
    return Timed(lat, memory, compared, timing)


def describe(timing: Timing) -> str:
    """'latency measured at <time> under load <l1>/<l5> on <host>' (load: the 1- and 5-minute averages at the start)."""
    load = "/".join(f"{x:.2f}" for x in timing.load_start[:2]) or "unknown"
    end = "/".join(f"{x:.2f}" for x in timing.load_end[:2])
    return (f"latency measured at {timing.measured_at} under load {load}{f' (at the end {end})' if end else ''} "
            f"on {timing.host}")


def timing_line(report: Report) -> str | None:
    """The summary's line on the timing, or None when nothing was timed."""
    t = report.timing
    if t is None:
        return None
    how = (", reused from the cache (--remeasure measures it again)" if t.reused_from_cache
           else ", measured again (--remeasure)" if t.remeasured else "")
    return f"  timing   {describe(t)}{how}"


def remeasure(report: Report, recipe, pipeline, steps, art: Artifact, inputs, source: Artifact, card, work,
              cache: bool = True, log=lambda message: None) -> Report:
    """`report` with its latency, memory, FP32 comparison and timing measured again for artifact `art` (the bytes
    the report describes); accuracy, gates and everything else stay as verified."""
    from edgekit.report.counterpart import fp32_counterpart  # why: it imports the pipeline and passes

    if report.artifact.sha256 != art.sha256:
        raise ValueError(f"remeasure: the report describes {report.artifact.sha256[:12]}, not the artifact "
                         f"{art.sha256[:12]}")
    backend = get_backend(recipe.backend)
    if not backend.measures_speed:  # nothing here to measure again (Core ML, Lava)
        return report
    runner = backend.runner(art.path, threads=recipe.verify.threads)
    fp32, why_not = (fp32_counterpart(art, steps, pipeline, source, card, work, cache, log) if art.meta.quant_plan
                     else (None, None))
    timed = measure(backend, art, runner, inputs.sample(0), recipe, fp32)
    timing = timed.timing.model_copy(update={"remeasured": True})
    note = (f"{REMEASURED} at {timing.measured_at}; accuracy and gates are from the verification of {report.created}"
            + (f"; no FP32 comparison: {why_not}" if why_not else ""))
    return report.model_copy(update={
        "latency": timed.latency, "memory": {**report.memory, "peak_rss_increase": timed.memory},
        "comparison": Comparison.model_validate(timed.comparison) if timed.comparison else None,
        "timing": timing, "notes": [n for n in report.notes if not n.startswith(REMEASURED)] + [note]})
