"""`edgekit build --executor ray`: each (model, target) is one Ray task running build.run_job, on a local Ray started
for the build (and shut down after it) or on a running cluster (--address, or RAY_ADDRESS).

Ray is an extra, imported here only. The tasks write into dist/ and the pass cache themselves, exactly as the local
workers do, so on a cluster of several nodes both must be paths every node shares. A task whose worker dies (kill -9,
out of memory) is retried --max-retries times, then recorded as an error; Ctrl-C cancels every task, and the staging
folders the killed tasks leave in dist/ are removed (only those: edgekit's, with no live run holding them).
"""

from __future__ import annotations

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
from edgekit._optional import require
from edgekit.environment import cache_root
from edgekit.errors import BadInputError
from edgekit.outdir import INNER_STAGING, WORK_PREFIX, remove_stale

TASK_MEMORY = 2 << 30  # bytes Ray reserves per task; measured peak RSS: 0.49 GB tinygaze, 0.85 GB gazeresnet18 (onnx-int8)
KILL_HOOK = "EDGEKIT_TEST_KILL_RAY_TASK"  # tests: "model/target"; that task's worker kills itself before its output commits
KILL_LOG = "EDGEKIT_TEST_KILL_RAY_LOG"  # tests: a file that gets one line per attempt of that task
_PASSED_ON = ("OMP_NUM_THREADS", "EDGEKIT_TEST_KILL_RAY_TASK", "EDGEKIT_TEST_KILL_RAY_LOG")


def run_on_ray(todo: list, jobs: int | None, address: str | None, max_retries: int,
               finished: Callable[[dict, int], bool]) -> None:
    """Run every job as a Ray task; `finished(entry, parallel)` gets each manifest entry as it ends and returns True
    to stop (--fail-fast: the rest are cancelled and stay unbuilt)."""
    ray = require("ray", "edgekit build --executor ray")
    address = address or os.environ.get("RAY_ADDRESS") or None
    todo = [dataclasses.replace(j, out=j.out.absolute()) for j in todo]  # a worker's cwd need not be the driver's
    made = _missing_folders(todo)
    try:
        _init(ray, address, jobs)  # inside: Ctrl-C while Ray starts still shuts down what started
        slots = _slots(ray)
        limit = min(jobs, slots) if jobs else slots  # on a cluster, --jobs caps the tasks in flight
        task = ray.remote(edgekit_task).options(num_cpus=1, memory=TASK_MEMORY, max_retries=max_retries, retry_exceptions=False)
        queue, running = list(todo), {}
        try:
            while queue or running:
                while queue and len(running) < limit:
                    job = queue.pop(0)
                    running[task.remote(job, limit)] = job
                [ref], _ = ray.wait(list(running), num_returns=1)
                job = running.pop(ref)
                if finished(_entry(ray, ref, job, max_retries), limit):
                    break
        finally:  # --fail-fast, Ctrl-C or SIGTERM: stop what still runs; its outputs are staging folders, removed below
            for ref in running:
                ray.cancel(ref, force=True)
            _wait_cancelled(ray, list(running))
    finally:
        ray.shutdown()
        _clean(todo, made, local=address is None)


def _init(ray, address: str | None, jobs: int | None) -> None:
    env = {"EDGEKIT_CACHE_DIR": str(cache_root().absolute())}  # the driver's cache: shared by every task
    env.update({k: os.environ[k] for k in _PASSED_ON if k in os.environ})
    if address is None and os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]  # the same edgekit on this machine (a cluster has its own)
    options = dict(runtime_env={"env_vars": env}, include_dashboard=False, log_to_driver=False,
                   logging_level=logging.ERROR)
    if address is None:  # "local": a fresh instance even if `ray start` left one running
        options.update(address="local", num_cpus=jobs or os.cpu_count() or 1)
    else:
        options.update(address=address)
    if address is not None:
        _check_reachable(address)
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(**options)
    except ConnectionError as exc:
        raise BadInputError(f"cannot reach the Ray cluster at {address} ({exc}); fix: check --address or RAY_ADDRESS, "
                            f"or leave both unset for a local Ray") from None
    finally:
        # ray.init's own SIGTERM handler exits at once: edgekit's removes partial outputs first
        if sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)


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


def edgekit_task(job, slots: int) -> dict:
    """In a Ray worker (`ps` shows it as ray::edgekit_task): quiet, signal-safe (as the local pool's workers), then
    one compile."""
    global _STARTED
    if not _STARTED:
        _build._worker_started(slots)
        _STARTED = True
    if os.environ.get(KILL_HOOK) == f"{job.model.name}/{job.target}":
        _kill_when_staging(job)
    return _build.run_job(job)


_STARTED = False


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


def _entry(ray, ref, job, max_retries: int) -> dict:
    """The task's manifest entry, or an error entry when Ray could not run it to the end."""
    try:
        return ray.get(ref)
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
