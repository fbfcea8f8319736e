"""The reference's outputs computed on a spare core while the passes run.

Verification runs the reference (the model as loaded, before any pass) on the evaluation set at the artifact's batch,
after the passes: GazeResNet18 at batch 1 spends 4-14 s there. Those outputs depend only on the model, the set and the
batch, so when this process leaves a core idle, a second Python process computes them while the passes run, and
verification takes them. The worker starts as soon as the model is loaded and imports torch and loads the module while
the sets are rendered; it reads the path of its inputs from its stdin once they exist. A worker still starting when
verification wants the outputs (a small model, whose passes end before torch is imported: TinyGaze's onnx compile
took 3.1 s instead of 2.5 s waiting for it) is stopped, and verification runs the reference itself.

A process, not a thread: torch.fx tracing and torch.export patch torch.nn.Module.__call__ process-wide while they
trace, and an eager forward in another thread then fails (measured: "module is not installed as a submodule"). The
worker is `python -m edgekit.report.reference_prefetch`, never a re-run of the caller's script (multiprocessing's
spawn would re-import the user's __main__); it loads the source artifact the pipeline starts from (an edgekit module
folder: built-in models, weights files, module folders) with the same architecture, runs it at the same batch and
thread count, and writes .npy files read back without pickle. Idle means: the cores this process may use hold torch's
thread count twice (passes and reference) for every compile running side by side (`edgekit build --jobs N`), beside
what the load average says other processes keep busy.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgekit.environment import parallel_compiles, usable_cores


def spare_core(threads: int, cores: int | None = None, load: float | None = None) -> bool:
    """Whether a second torch thread pool fits beside the passes of every compile running now and what else keeps the
    machine busy: the 1-minute load average beyond these compiles' own threads (another test worker, another build).
    On a busy machine the worker would only share a core and cost a Python start (1.3 CPU-s, measured 11 times in one
    test suite run on 2 cores)."""
    own = threads * parallel_compiles()
    others = max(0.0, (_load_average() if load is None else load) - own)
    return 2 * own + others <= (usable_cores() if cores is None else cores)


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # no load average on this platform: assume nothing else runs
        return 0.0


class ReferencePrefetch:
    """The reference at `batch`, computed by a worker process started now: it imports torch and loads the module while
    the caller renders its sets; `feed` hands it the inputs, `take` waits for the outputs."""

    def __init__(self, module_folder: Path, arch: str, batch: int, threads: int, work: Path):
        import edgekit

        self.batch, self.work, self.out, self.fed = batch, work, work / "reference-outputs.npy", False
        self.ready = _ready_marker(self.out)
        code = str(Path(edgekit.__file__).resolve().parents[1])  # the worker imports this very edgekit
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [code, os.environ.get("PYTHONPATH")])),
               "OMP_NUM_THREADS": str(threads)}
        self._worker = subprocess.Popen([sys.executable, "-m", "edgekit.report.reference_prefetch", str(module_folder),
                                         arch, str(batch), str(threads), str(self.out)],
                                        env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

    def feed(self, arrays: dict[str, np.ndarray]) -> ReferencePrefetch:
        """Hand the worker the inputs (a .npz file it reads without pickle): it runs the reference on them now."""
        inputs = self.work / "reference-inputs.npz"
        np.savez(inputs, **{f"input{k}": v for k, v in enumerate(arrays.values())})
        try:
            self._worker.stdin.write(f"{inputs}\n".encode())
            self._worker.stdin.close()
        except OSError:  # the worker ended already (it could not load the module): take() says so
            pass
        self.fed = True
        return self

    def take(self, batch: int) -> np.ndarray | None:
        """The outputs, when the artifact ran at the batch the worker ran the reference at and it succeeded; else None
        (verification runs the reference itself, and reports its errors the usual way). A worker that has not loaded
        the module yet is stopped: running the reference here is quicker than waiting for torch to import."""
        if batch != self.batch or not self.fed or not self.started():
            self.cancel()
            return None
        if self._worker.wait() != 0:
            return None
        try:
            return np.load(self.out, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def started(self, timeout: float = 0.0) -> bool:
        """Whether the worker has loaded the module (so it is computing, once fed) or ended, waiting up to `timeout`
        seconds for it."""
        deadline = time.monotonic() + timeout
        while not (self.ready.exists() or self._worker.poll() is not None):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def cancel(self) -> None:
        if self._worker.poll() is None:
            self._worker.kill()
            self._worker.wait()
        if self._worker.stdin is not None and not self._worker.stdin.closed:
            self._worker.stdin.close()


def start(src, batch: int, work: Path) -> ReferencePrefetch | None:
    """A prefetch when a core is spare and the source is an edgekit module folder (not a module handed over live,
    whose class the worker cannot import). Started as soon as the model is loaded, before the sets are rendered: the
    caller feeds it the inputs, or cancels it when the reference cache holds the outputs already (the worker then
    spent its start on a core nobody used)."""
    import torch

    from edgekit.artifact import Format  # why here: the worker runs this module and needs none of it

    threads = torch.get_num_threads()
    if src.kind == "module" or src.artifact.format != Format.torch or not spare_core(threads):
        return None
    return ReferencePrefetch(src.artifact.path, src.card.arch, batch, threads, work)


def _ready_marker(out: Path) -> Path:
    """The empty file the worker writes once its module is loaded, beside its outputs."""
    return out.with_name(out.name + ".ready")


def _worker(module_folder: str, arch: str, batch: str, threads: str, out: str) -> None:
    import torch

    from edgekit.evalset import ModelInputs, run_batches
    from edgekit.fileio import atomic_write_bytes
    from edgekit.torch_module import load_module, torch_runner

    torch.set_num_threads(int(threads))
    module = load_module(Path(module_folder), trusted_arch=arch)[0].eval()
    _ready_marker(Path(out)).touch()
    inputs = sys.stdin.readline().strip()  # the caller's inputs, once it has them
    if not inputs:  # it needs no reference after all (cached), or it stopped
        return
    with np.load(inputs, allow_pickle=False) as data:
        arrays = {k: data[k] for k in sorted(data.files, key=lambda k: int(k.removeprefix("input")))}
    outputs = run_batches(torch_runner(module), ModelInputs(arrays, np.zeros((len(next(iter(arrays.values()))), 3))),
                          int(batch))
    buffer = io.BytesIO()
    np.save(buffer, outputs, allow_pickle=False)
    atomic_write_bytes(Path(out), buffer.getvalue())


if __name__ == "__main__":
    _worker(*sys.argv[1:])
