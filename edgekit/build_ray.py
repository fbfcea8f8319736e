"""`edgekit build --executor ray`: each (model, target) is one Ray task running build.run_job, on a local Ray started
for the build (and shut down after it) or on a running cluster (--address, or RAY_ADDRESS).

Ray is an extra, imported here only. The tasks write into dist/ and the pass cache themselves, exactly as the local
workers do, so on a cluster of several nodes both must be paths every node shares; where none is shared
(--no-shared-cache), each task has a private cache and dist/, and returns its output through Ray's object store for
this process to move into dist/. A model's passes that several of its targets share (fold_bn, export_onnx) run once,
in one task its target tasks wait for, which leaves them in the shared cache or hands them over as an object (never
through this process). A task whose worker dies (kill -9,
out of memory) is retried --max-retries times, then recorded as an error; Ctrl-C cancels every task, and the staging
folders the killed tasks leave in dist/ are removed (only those: edgekit's, with no live run holding them).
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import logging
import os
import re
import signal
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from edgekit import build as _build
from edgekit import build_shared
from edgekit._optional import require
from edgekit.environment import cache_root, usable_cores
from edgekit.errors import BadInputError
from edgekit.outdir import INNER_STAGING, WORK_PREFIX, remove_stale

TASK_MEMORY = 2 << 30  # bytes Ray reserves per task; measured peak RSS: 0.49 GB tinygaze, 0.85 GB gazeresnet18 (onnx-int8)
KILL_HOOK = "EDGEKIT_TEST_KILL_RAY_TASK"  # tests: "model/target"; that task's worker kills itself before its output commits
KILL_LOG = "EDGEKIT_TEST_KILL_RAY_LOG"  # tests: a file that gets one line per attempt of that task
_PASSED_ON = ("OMP_NUM_THREADS", "EDGEKIT_TEST_KILL_RAY_TASK", "EDGEKIT_TEST_KILL_RAY_LOG")


def run_on_ray(todo: list, jobs: int | None, address: str | None, max_retries: int,
               finished: Callable[[dict, int], bool], shared_cache: bool = True) -> None:
    """Run every job as a Ray task; `finished(entry, parallel)` gets each manifest entry as it ends and returns True
    to stop (--fail-fast: the rest are cancelled and stay unbuilt). A model whose targets share leading passes gets
    one task before them that runs those once (build_shared). shared_cache=False: each task has its own empty cache,
    the shared passes reach the targets and the outputs reach dist/ through Ray's object store."""
    ray = require("ray", "edgekit build --executor ray")
    address = address or os.environ.get("RAY_ADDRESS") or None
    todo = [dataclasses.replace(j, out=j.out.absolute()) for j in todo]  # a worker's cwd need not be the driver's
    made = _missing_folders(todo)
    printer = builtins.print
    try:
        _init(ray, address, jobs)  # inside: Ctrl-C while Ray starts still shuts down what started
        slots = _slots(ray)
        limit = min(jobs, slots) if jobs else slots  # on a cluster, --jobs caps the tasks in flight
        _run_tasks(ray, todo, limit, max_retries, finished, shared_cache)
    finally:
        ray.shutdown()
        # Ray's driver swaps the caller's print for its tqdm_ray.safe_print once a worker's output reaches it: the
        # process that called edgekit.build gets its own back
        builtins.print = printer
        _clean(todo, made, local=address is None)


def _run_tasks(ray, todo: list, limit: int, max_retries: int, finished, shared_cache: bool) -> None:
    """Keep `limit` tasks in flight: each model's shared-pass task first, its targets once it has ended. A task whose
    passes train on a GPU reserves one; one that needs more GPUs than the cluster has is an error at once (Ray would
    queue it for ever)."""
    options = dict(num_cpus=1, memory=TASK_MEMORY, max_retries=max_retries, retry_exceptions=False)
    build_task, prepare = ray.remote(edgekit_task), ray.remote(shared_passes_task)
    have = int(ray.cluster_resources().get("GPU", 0))
    gpus = {(j.model.name, j.target): build_shared.gpus(j) for j in todo}  # each recipe read once
    for job in [j for j in todo if gpus[j.model.name, j.target] > have]:
        todo.remove(job)
        if finished(_no_gpu_entry(job, have), limit):
            return
    plans = build_shared.shared_prefixes(todo)
    seeds: dict[str, object] = {}  # model -> the object holding its shared passes (None: in the shared cache)
    waiting = set(plans)  # models whose shared-pass task has not ended yet
    queue = [("prepare", m) for m in plans] + [("build", j) for j in todo]
    running: dict = {}  # object ref -> ("prepare", model, blob ref) or ("build", job)
    try:
        while queue or running:
            while len(running) < limit and (item := _next_ready(queue, waiting)):
                kind, what = item
                if kind == "prepare":
                    by_target = {j.target: j for j in todo if j.model.name == what}
                    prefix_gpus = max(build_shared.gpus(by_target[t], n) for t, n in plans[what])
                    done, blob = prepare.options(num_returns=2, num_gpus=prefix_gpus, **options).remote(
                        by_target, plans[what], shared_cache, limit)
                    running[done] = ("prepare", what, blob)
                else:
                    task = build_task.options(num_gpus=gpus[what.model.name, what.target], **options)
                    running[task.remote(what, limit, seeds.get(what.model.name), shared_cache)] = ("build", what)
            if not running:  # cannot happen: a queued build waits only on a running prepare
                break
            [ref], _ = ray.wait(list(running), num_returns=1)
            item = running.pop(ref)
            if item[0] == "prepare":
                waiting.discard(item[1])
                seeds[item[1]] = item[2] if _prepared(ray, ref) and not shared_cache else None
            elif finished(_entry(ray, ref, item[1], max_retries, shared_cache), limit):
                break
    finally:  # --fail-fast, Ctrl-C or SIGTERM: stop what still runs; its outputs are staging folders, removed after
        for ref in running:
            ray.cancel(ref, force=True)
        _wait_cancelled(ray, list(running))


def _no_gpu_entry(job, have: int) -> dict:
    return {"model": job.model.name, "target": job.target, "status": "error",
            "reason": f"its recipe trains on a GPU (device: cuda) and the Ray cluster has {have or 'no'} GPU{'s' * (have != 1)}; "
                      f"fix: add a node with a GPU to the cluster, or set device: cpu in the recipe"}


def _next_ready(queue: list, waiting: set):
    """The first queued item that can start: a shared-pass task, or a build whose model's shared passes are done."""
    for i, (kind, what) in enumerate(queue):
        if kind == "prepare" or what.model.name not in waiting:
            return queue.pop(i)
    return None


def _prepared(ray, ref) -> bool:
    """Whether a shared-pass task ended with its passes done; if not (it failed, or its worker died in every try),
    each target runs them itself and reports what goes wrong in its own manifest entry."""
    try:
        return bool(ray.get(ref))
    except ray.exceptions.RayError:
        return False


def _init(ray, address: str | None, jobs: int | None) -> None:
    env = {"EDGEKIT_CACHE_DIR": str(cache_root().absolute())}  # the driver's cache: shared by every task
    env.update({k: os.environ[k] for k in _PASSED_ON if k in os.environ})
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address is None:  # "local": a fresh instance even if `ray start` left one running
        # the cores this process may run on (a container's cpuset, taskset), not the machine's: Ray starts that many
        # workers at once
        options.update(address="local", num_cpus=jobs or usable_cores())
        # its raylet, and every worker that starts, inherit this process's environment as ray.init finds it (PYTHONPATH
        # too: the same edgekit). A job runtime_env would do the same but makes Ray start workers of its own beside the
        # ones it prestarts for the job, which then idle: 1.5 CPU-s more per local build (measured, 2 cores)
        environment = _environment(env)
    else:
        options.update(address=address, runtime_env={"env_vars": env})
        environment = contextlib.nullcontext()
        _check_reachable(address)
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with environment:
            ray.init(**options)
    except ConnectionError as exc:
        raise BadInputError(f"cannot reach the Ray cluster at {address} ({exc}); fix: check --address or RAY_ADDRESS, "
                            f"or leave both unset for a local Ray") from None
    finally:
        # ray.init's own SIGTERM handler exits at once: edgekit's removes partial outputs first
        if sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)


@contextlib.contextmanager
def _environment(env: dict[str, str]):
    """os.environ with `env` set, restored after."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _check_reachable(address: str) -> None:
    """Fail at once on a host:port nothing listens on: ray.init retries an unreachable cluster for minutes (measured:
    over 10 minutes for 127.0.0.1:1 with Ray 2.60.0). Addresses Ray resolves itself ("auto") are left to it."""
    target = address.split("://", 1)[-1]
    if "://" not in address:  # as ray.init reads it: localhost and 127.0.0.1 mean this node's own IP address
        from ray._private.services import canonicalize_bootstrap_address  # pinned ray 2.60.0

        with contextlib.suppress(Exception):
            target = canonicalize_bootstrap_address(address) or target
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise BadInputError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); fix: check --address or "
                            f"RAY_ADDRESS, or leave both unset for a local Ray") from None


def _slots(ray) -> int:
    """Tasks that fit at once; refuses a cluster with less memory in all than one task reserves (Ray would wait
    forever)."""
    resources = ray.cluster_resources()
    if resources.get("memory", 0) < TASK_MEMORY:
        raise BadInputError(f"the Ray cluster has {resources.get('memory', 0) / 2**30:.1f} GiB of memory for tasks, "
                            f"less than the {TASK_MEMORY / 2**30:.0f} GiB one build task reserves; fix: add memory or nodes")
    return max(1, int(resources.get("CPU", 1)))


def edgekit_task(job, slots: int, seed: bytes | None, shared_cache: bool):
    """In a Ray worker (`ps` shows it as ray::edgekit_task): quiet, signal-safe (as the local pool's workers), then
    one compile. Without a shared cache: in a private cache holding SEED (the model's shared passes) and a private
    dist/, returning (manifest entry, the output folder packed) for the driver to move into place."""
    _started(slots)
    if os.environ.get(KILL_HOOK) == f"{job.model.name}/{job.target}":
        _kill_when_staging(job)
    if shared_cache:
        return _build.run_job(job)
    with _private_cache(seed) as private:
        own = dataclasses.replace(job, out=private / "dist" / job.out.parent.name / job.out.name)
        entry = _build.run_job(own)
        return entry, (build_shared.pack(own.out) if own.out.is_dir() else None)


def shared_passes_task(jobs_by_target: dict, plan: list, shared_cache: bool, slots: int):
    """A model's shared passes (build_shared), run once before its targets: (done, the private cache packed or
    None). Never raises: when they fail, each target runs them itself and reports why."""
    _started(slots)
    try:
        if shared_cache:
            build_shared.warm(jobs_by_target, plan)
            return True, None
        with _private_cache(None) as private:
            build_shared.warm(jobs_by_target, plan)
            return True, build_shared.pack(private / "cache")
    except Exception:  # noqa: BLE001  the targets meet the same problem and report it
        return False, None


def _started(slots: int) -> None:
    global _STARTED
    if not _STARTED:
        _build._worker_started(slots)
        _STARTED = True


_STARTED = False


@contextlib.contextmanager
def _private_cache(seed: bytes | None):
    """A work folder with this task's own cache (EDGEKIT_CACHE_DIR, holding SEED) and dist/, removed after."""
    from edgekit import outdir

    with outdir.work_folder() as private:
        if seed is not None:
            build_shared.unpack(seed, private / "cache")
        with _environment({"EDGEKIT_CACHE_DIR": str(private / "cache")}):
            yield private


def _kill_when_staging(job) -> None:
    """Test hook: this worker SIGKILLs itself when the job's output is complete in its staging folder, just before
    the move into place (a worker dying mid-build, at the worst moment)."""
    from edgekit import outdir

    if os.environ.get(KILL_LOG):
        with open(os.environ[KILL_LOG], "a") as fh:
            fh.write(f"{os.getpid()}\n")

    def commit(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    outdir.Output.commit = commit  # this worker dies in this task: no other job sees it


def _entry(ray, ref, job, max_retries: int, shared_cache: bool = True) -> dict:
    """The task's manifest entry, or an error entry when Ray could not run it to the end. Without a shared cache the
    task returns its output folder too: moved into dist/ here, atomically, as a compile moves its own."""
    try:
        if shared_cache:
            return ray.get(ref)
        entry, output = ray.get(ref)
        if output is not None:
            _place_output(output, job.out)
        return entry
    except ray.exceptions.RayError as exc:
        head = {"model": job.model.name, "target": job.target, "status": "error"}
        if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError)):
            return {**head, "reason": f"the Ray worker building it died (killed, or out of memory) in each of "
                                      f"{max_retries + 1} attempts; fix: run the build again, with more memory per "
                                      f"node or a higher --max-retries"}
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(getattr(exc, "cause", None) or exc))  # without the terminal colours
        last = ([line.strip() for line in text.splitlines() if line.strip()] or [type(exc).__name__])[-1]
        if "failed to import on the worker" in text:  # a cluster whose nodes have another edgekit, or none
            return {**head, "reason": f"the Ray workers cannot load edgekit's build code ({last}); fix: install this "
                                      f"edgekit, with the same extras and constraints.txt, on every node"}
        return {**head, "reason": f"Ray could not run it ({last}); fix: see the Ray logs on the node "
                                  f"(/tmp/ray/session_latest/logs)"}


def _place_output(blob: bytes, out: Path) -> None:
    from edgekit import outdir

    with outdir.output_folder(out) as output:
        build_shared.unpack(blob, output.staging)
        (output.staging / outdir.MARKER).unlink(missing_ok=True)  # commit writes this dist's own
        output.commit()


def _wait_cancelled(ray, refs: list, timeout: float = 30.0) -> None:
    """Until the cancelled tasks have ended, so that their staging folders are free to remove."""
    if refs:
        ray.wait(refs, num_returns=len(refs), timeout=timeout)


def _missing_folders(todo: list) -> list[Path]:
    """dist/ and its model folders that do not exist yet: removed again if they end up empty."""
    folders = {j.out.parent.parent for j in todo} | {j.out.parent for j in todo}
    return sorted((f for f in folders if not os.path.lexists(f)), key=lambda p: len(p.parts), reverse=True)


def _clean(todo: list, made: list[Path], local: bool) -> None:
    """Remove what killed tasks left: their staging folders in dist/ (and, on this machine, their work folders), only
    those whose run is gone (edgekit's pid-file lock is free); then the folders this build made, if empty."""
    for j in todo:
        remove_stale(j.out.parent, f".{j.out.name}.staging-*")
        if j.out.is_dir():
            remove_stale(j.out, INNER_STAGING + "*")
    if local:
        remove_stale(Path(tempfile.gettempdir()), WORK_PREFIX + "*")
    for folder in made:  # deepest first
        try:
            folder.rmdir()
        except OSError:  # not empty (it holds outputs), or gone
            pass
