"""`edgekit build`: every model of a project file times every target, into dist/, with a manifest.

Each (model, target) is compiled like `edgekit compile` (content-addressed pass cache, atomic output folder);
one failing does not stop the others unless fail_fast. dist/ gets per-artifact folders, one comparison page,
manifest.json, a Markdown summary and JUnit XML with each gate's value (build_outputs.py), each written atomically.
"""

from __future__ import annotations

import json
import os
import re
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekit import signals
from edgekit.compiler import compile as run_compile
from edgekit.build_outputs import junit_xml, summary_markdown
from edgekit.errors import BadInputError, EdgekitError
from edgekit.fileio import atomic_write_text
from edgekit.outdir import owned_entries
from edgekit.report.compare import write_compare
from edgekit.report.summary import network_energy


class ProjectModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    source: str | None = Field(None, description="as `edgekit compile MODEL` (default: the name as a built-in)")
    arch: str | None = None
    card: str | None = Field(None, description="the model card .json (as --card; default: the source's own card, e.g. "
                                               "weights.json beside weights.safetensors)")
    input_shape: list[str] | None = None
    output_convention: str | None = None
    output_frame: str | None = Field(None, description="temporal models: last, middle or future (as --output-frame)")
    eval_set: str | None = None
    calib_set: str | None = None


class Project(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[ProjectModel]
    targets: list[str]


PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a folder name under dist/: no '/', no '..', not absolute


def load_project(path: Path) -> Project:
    if not path.is_file():
        raise BadInputError(f"{path}: project file not found; fix: write an edgekit.yaml (see the README)")
    try:
        return _refuse_unsafe_names(path, Project.model_validate(yaml.safe_load(path.read_text())))
    except yaml.YAMLError as exc:
        raise BadInputError(f"{path}: not valid YAML ({exc}); fix: correct the syntax") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise BadInputError(f"{path}: {where}: {err['msg']}; fix: see the README's edgekit build section") from None


def _refuse_unsafe_names(path: Path, project: Project) -> Project:
    """Model names and targets become folders under dist/: plain names only, so nothing is written outside it. A
    target may also be a recipe .yaml inside the project folder (its folder is the file's stem)."""
    fix = "fix: use a plain name (letters, digits, '.', '_', '-'; no '/', '..' or absolute path)"
    folders: dict[str, str] = {}
    for i, m in enumerate(project.models):
        if not PLAIN_NAME.fullmatch(m.name):
            raise BadInputError(f"{path}: models.{i}.name {m.name!r} is not a plain name; {fix}")
        if m.name in folders:
            raise BadInputError(f"{path}: models.{i}.name {m.name!r} appears twice; fix: give each model its own name")
        folders[m.name] = m.name
    stems: set[str] = set()
    for i, t in enumerate(project.targets):
        recipe = Path(t)
        is_recipe = recipe.suffix in (".yaml", ".yml") and not recipe.is_absolute() and ".." not in recipe.parts
        if not (PLAIN_NAME.fullmatch(t) or (is_recipe and PLAIN_NAME.fullmatch(recipe.stem))):
            raise BadInputError(f"{path}: targets.{i} {t!r} is not a plain target name or a recipe .yaml inside the "
                                f"project folder; {fix}")
        if recipe.stem in stems:
            raise BadInputError(f"{path}: targets.{i} {t!r} writes the same folder as another target; fix: rename one")
        stems.add(recipe.stem)
    return project


@dataclass(frozen=True)
class Job:
    model: ProjectModel
    target: str
    out: Path
    root: Path  # project folder: relative paths in the project file are relative to it
    cache: bool = True  # reuse the pass and report caches (--no-cache: run and verify everything again)
    remeasure: bool = False  # reuse cached verifications but time the artifacts again


def _resolve(root: Path, value: str | None) -> str | None:
    if value is None:
        return None
    path = root / value
    return str(path) if path.exists() else value


def model_and_options(job: Job) -> tuple[str, dict]:
    """The model and the keyword arguments `edgekit.compile` gets for JOB's model (paths relative to the project)."""
    m = job.model
    return _resolve(job.root, m.source) or m.name, dict(
        arch=m.arch, input_shape=m.input_shape, output_convention=m.output_convention, output_frame=m.output_frame,
        eval=_resolve(job.root, m.eval_set), calib=_resolve(job.root, m.calib_set), card=_resolve(job.root, m.card))


def recipe_path(job: Job) -> str:
    """JOB's target as `edgekit.compile` takes it: a name, or a recipe .yaml in the project folder."""
    return _resolve(job.root, job.target)


_IN_WORKER = False
_BUSY = False  # a worker is compiling (else a signal just ends it: nothing to clean up)


def _worker_started(jobs: int = 1) -> None:
    """In each worker process: Ctrl-C and SIGTERM remove the running job's partial output, then end the worker; the
    compiles know that `jobs` of them share the cores."""
    import signal

    from edgekit import progress
    from edgekit._optional import freeze_imports
    from edgekit.environment import set_parallel_compiles

    set_parallel_compiles(jobs)
    freeze_imports()  # a worker of edgekit's own (edgekit._optional)

    global _IN_WORKER
    _IN_WORKER = True
    progress.configure(progress.QUIET)  # parallel jobs' step lines would interleave: the parent reports each job
    signals.settle_tempdir()  # forked workers inherit the parent's; a spawned one would probe under a signal
    for s in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(s) is not signal.SIG_IGN:  # ignored in the parent (nohup, a background job): here too
            signal.signal(s, _worker_signal)


def _worker_signal(signum, frame) -> None:
    if not _BUSY:
        os._exit(128 + signum)
    signals.raise_interrupted(signum, frame)


def _result(fut, job: Job) -> dict:
    try:
        return fut.result()
    except BrokenProcessPool:  # the worker was killed (out of memory, kill -9): this job failed, say so
        return {"model": job.model.name, "target": job.target, "status": "error",
                "reason": "the worker process building it died (killed, or out of memory); fix: run the build again, "
                          "with fewer --jobs if memory is short"}


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)  # forgets the manager thread: the `with` exit cannot join it
    for p in processes:
        if p.is_alive():
            p.terminate()  # SIGTERM: Interrupted in the worker, whose compile cleans up
    for p in processes:
        p.join(timeout=60)
    if manager is not None:
        # joined here: still closing its wakeup pipe at exit, it raced concurrent.futures' exit hook writing to that
        # pipe (CPython 3.11: "Exception ignored ... OSError: [Errno 9] Bad file descriptor" after the error line)
        manager.join(timeout=60)


def run_job(job: Job) -> dict:
    """Compile one (model, target); never raises: returns the manifest entry or the failure, with its build time."""
    start = time.perf_counter()
    entry = _run_job(job)
    return {**entry, "seconds": round(time.perf_counter() - start, 3)}


def _run_job(job: Job) -> dict:
    global _BUSY
    entry = {"model": job.model.name, "target": job.target}
    model, options = model_and_options(job)
    try:
        _BUSY = True
        res = run_compile(model, recipe_path(job), out=job.out, cache=job.cache, remeasure=job.remeasure, **options)
    except EdgekitError as exc:
        return {**entry, "status": "error", "reason": str(exc)}
    except KeyboardInterrupt as exc:
        if _IN_WORKER:  # the compile has cleaned up; a worker must not go on to the next job
            os._exit(getattr(exc, "exit_code", 130))
        raise
    except Exception as exc:  # a bug or a runtime crash: keep building the others, keep the reason
        return {**entry, "status": "error", "reason": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=3)}
    finally:
        _BUSY = False
    r = res.report
    p50 = r.latency.get("p50")
    measured = p50 is not None and p50.value is not None
    return {**entry, "status": "passed" if r.passed else "gate_failed", "pipeline": r.pipeline,
            "artifact": str(res.artifact.relative_to(job.out.parent.parent)), "sha256": r.artifact.sha256,
            "bytes_reproducible": r.artifact.reproducible.model_dump(),  # across hosts, or on this host only (and why)
            "size_bytes": int(r.size["artifact"].value), "precision": r.artifact.precision,
            "gates": [g.model_dump() for g in r.gates], "error_deg": r.accuracy.artifact.mean_deg if r.accuracy else None,
            "latency_p50_ms": p50.value if measured else None,
            "latency_how": p50.how if p50 is not None else "no latency in the report",
            "energy_uj": network_energy(r),  # the whole-network compute estimate, as the comparison page shows it
            "tools": r.tools, "host_isa": r.host.isa_flags, "inputs_digest": r.inputs_digest,
            "report": str((res.out_dir / "report.json").relative_to(job.out.parent.parent)),
            "cached": all(s.cached for s in r.steps)}


EXECUTORS = ("local", "ray")


def build(project_path: Path, dist: Path = Path("dist"), jobs: int | None = 1, fail_fast: bool = False, progress=None,
          cache: bool = True, remeasure: bool = False, executor: str = "local", address: str | None = None,
          max_retries: int = 2, shared_cache: bool = True) -> dict:
    """`progress(entry, done, total, counts)` after each job; counts: jobs queued and running, eta_s. jobs: parallel compiles (local), or the CPUs of the local Ray (None: all of them; on a cluster, the
    tasks in flight). executor "ray" runs each job as a Ray task (build_ray.py), retried max_retries times if its
    worker dies; shared_cache=False (Ray only) gives each task its own cache, sharing work and outputs through Ray's
    object store instead of paths."""
    if executor not in EXECUTORS:
        raise BadInputError(f"unknown executor {executor!r}; fix: use one of {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise BadInputError("--address needs --executor ray; fix: add --executor ray, or drop --address to build here")
    if not shared_cache and executor != "ray":
        raise BadInputError("--no-shared-cache needs --executor ray; fix: add --executor ray (a local build shares this "
                            "machine's cache)")
    if max_retries < 0:
        raise BadInputError(f"--max-retries {max_retries} is negative; fix: give 0 or more")
    _refuse_foreign_dist(dist)
    project = load_project(project_path)
    started = time.perf_counter()
    root = project_path.resolve().parent
    todo = [Job(m, t, dist / m.name / Path(t).stem, root, cache, remeasure) for m in project.models for t in project.targets]
    results: list[dict] = []

    def finished(entry: dict, parallel: int) -> bool:
        """Record a job's entry and report progress; True when the build must stop (--fail-fast)."""
        results.append(entry)
        if progress:
            progress(entry, len(results), len(todo), _counts(results, len(todo), parallel))
        return fail_fast and entry["status"] != "passed"

    if executor == "ray":
        from edgekit.build_ray import run_on_ray  # why: lazy, ray is an extra

        run_on_ray(todo, jobs, address, max_retries, finished, shared_cache)
    elif (jobs or 1) <= 1:
        for job in todo:
            if finished(run_job(job), 1):
                break
    else:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_worker_started, initargs=(jobs,)) as pool:
            try:
                futures = {pool.submit(run_job, job): job for job in todo}
                for fut in as_completed(futures):
                    if finished(_result(fut, futures[fut]), jobs):
                        for f in futures:
                            f.cancel()
                        break
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the workers remove their partial outputs, then exit
                _stop_workers(pool)
                raise
    order = {(j.model.name, j.target): i for i, j in enumerate(todo)}
    results.sort(key=lambda e: order[(e["model"], e["target"])])
    skipped = [{"model": j.model.name, "target": j.target, "status": "skipped", "reason": "not built (--fail-fast)"}
               for j in todo if (j.model.name, j.target) not in {(e["model"], e["target"]) for e in results}]
    manifest = {"schema_version": 1, "project": project_path.name, "artifacts": results + skipped,
                "ok": all(e["status"] == "passed" for e in results) and not skipped,
                "seconds": round(time.perf_counter() - started, 3),
                # relative to dist/, the summary first: what the CLI's last line names
                "outputs": ["summary.md", "manifest.json", "junit.xml"]
                           + (["compare.html"] if any(e.get("report") for e in results) else [])}
    _write_outputs(manifest, dist)
    return manifest


def _counts(results: list[dict], total: int, parallel: int) -> dict:
    """Jobs queued and running after this one, and the time left: the finished jobs' mean build time per round of
    `parallel` jobs."""
    left = total - len(results)
    running = min(left, max(1, parallel))
    mean = sum(e.get("seconds", 0.0) for e in results) / len(results)
    return {"queued": left - running, "running": running, "eta_s": mean * -(-left // max(1, parallel))}


BUILD_FILES = ("manifest.json", "summary.md", "junit.xml", "compare.html")


def _refuse_foreign_dist(dist: Path) -> None:
    """--dist must be absent, empty, or hold only what edgekit build writes (its files and, per model, edgekit's
    output folders), so the build never overwrites a file of the user's."""
    if os.path.lexists(dist) and not dist.is_dir():
        raise BadInputError(f"--dist {dist} is a file, not a folder; fix: choose a folder path for the build outputs")
    if not dist.is_dir():
        return
    for entry in sorted(dist.iterdir()):
        written_file = entry.name in BUILD_FILES or (entry.name.startswith(".") and entry.name.endswith(".tmp"))
        model_folder = entry.is_dir() and not entry.is_symlink() and all(  # edgekit outputs and hidden staging folders
            sub.name.startswith(".") or (sub.is_dir() and owned_entries(sub) is not None) for sub in entry.iterdir())
        ours = written_file or model_folder
        if not ours:
            raise BadInputError(f"--dist {dist} holds {entry.name}, which edgekit build did not write; fix: choose a new or "
                                f"empty folder for --dist")


def _write_outputs(manifest: dict, dist: Path) -> None:
    dist.mkdir(parents=True, exist_ok=True)
    reports = [dist / e["report"] for e in manifest["artifacts"] if e.get("report")]
    if "compare.html" in manifest["outputs"]:
        write_compare(reports, dist / "compare.html")
    atomic_write_text(dist / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    atomic_write_text(dist / "summary.md", summary_markdown(manifest))
    atomic_write_text(dist / "junit.xml", junit_xml(manifest))
