"""Run a lava artifact in Lava's CPU simulator: a subprocess in the separate Python 3.10 environment (edgekit's main
environment never imports Lava). Missing environment -> MissingDependencyError with the set-up command."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.backends.base import Availability
from edgekit.errors import EdgekitError, MissingDependencyError
from edgekit.progress import track

SCRIPT = Path(__file__).with_name("lava_script.py")
PROGRESS = "edgekit-progress"  # the line lava_script.py prints on stderr after each sample


@dataclass
class LavaResult:
    v_start: np.ndarray  # (N, out) readout v after S steps
    v_end: np.ndarray  # after S + T steps (S = readout_start: delays + warm-up)
    trains: list[np.ndarray]  # per spiking layer (N, S + T, neurons) bool
    seconds: float  # simulator wall time of `steps` steps (every sample's and drain's; compilation excluded)
    steps: int
    wall_seconds: float  # the whole subprocess, Python start and compilation included


def lava_python() -> Path:
    """The Python of the separate Lava environment (Lava needs Python 3.10 and numpy<2).

    Same place `scripts/setup-lava.sh` (`make lava`) uses: `$EDGEKIT_LAVA_VENV`, default `.venv-lava`; a relative
    path is relative to the repository root when edgekit runs from a source checkout, else to the working folder.
    """
    venv = Path(os.environ.get("EDGEKIT_LAVA_VENV") or ".venv-lava")
    if not venv.is_absolute():
        repo = Path(__file__).resolve().parents[3]
        venv = (repo if (repo / "scripts" / "setup-lava.sh").exists() else Path.cwd()) / venv
    return venv / "bin" / "python"


# Runs inside the Lava venv. It imports Lava's core and reads the versions, and deliberately does not import
# lava.lib.dl.netx: netx pulls in torch-only modules (lava-dl pins torch 2.3 and is installed with --no-deps),
# so it needs the torch shim that the Loihi backend provides, and importing it bare here would always fail.
_LAVA_CHECK = (
    "import importlib.metadata as m, lava, lava.magma.core.run_configs, numpy; "
    "assert int(numpy.__version__.split('.')[0]) < 2, 'numpy ' + numpy.__version__ + ' (Lava needs numpy<2)'; "
    "print(m.version('lava-nc'), m.version('lava-dl'))"
)


def lava_available() -> tuple[bool, str]:
    py = lava_python()
    venv = py.parent.parent
    if not py.exists():
        return False, f"no Lava environment at {venv}; fix: make lava (needs Python 3.10 from pyenv)"
    try:
        out = subprocess.run([str(py), "-I", "-c", _LAVA_CHECK], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{py} did not run ({exc}); fix: rm -r {venv} && make lava"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["unknown error"])[-1]
        return False, f"Lava does not import in {venv} ({last}); fix: rm -r {venv} && make lava"
    try:
        nc, dl = out.stdout.split()
    except ValueError:
        return False, f"unexpected version output from {py} ({out.stdout.strip()!r}); fix: rm -r {venv} && make lava"
    return True, f"lava-nc {nc}, lava-dl {dl} in {venv} (CPU simulator; Loihi hardware needs Intel's package)"


class LavaChecked:
    """For the Loihi backends (lava, sdnn): building and verifying needs the netx writer's extra; Lava's simulator,
    in its own environment, adds the check against edgekit's fixed-point mirror."""

    def available(self) -> Availability:
        exported = super().available()
        if not exported.usable:
            return exported
        ok, why = lava_available()
        return Availability(True, why if ok else f"fixed-point mirror only; Lava's simulator check: {why}")


def run_script(script: Path, args: list[str], cwd: Path, total: int, timeout: float, description: str
               ) -> tuple[str, bool, int]:
    """A script in the Lava environment, its progress lines (PROGRESS, one per sample) driving a bar: (the other
    stderr lines, whether it finished before `timeout`, its exit code)."""
    py = lava_python()
    if not py.exists():
        raise MissingDependencyError(f"this target runs Lava's simulator in {py.parent.parent}, which does not exist; "
                                     "fix: make lava (needs Python 3.10)")
    # -I: isolated (no user site, no script folder on sys.path: lava's own top-level `tests` cannot shadow ours)
    proc = subprocess.Popen([str(py), "-I", str(script), *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    stderr, finished = _follow(proc, total, timeout, description)
    return stderr, finished, proc.returncode


def run_lava(folder: Path, input_bias: np.ndarray, timeout: float = 900) -> LavaResult:
    """Every sample through Lava's simulator in the Lava environment; progress per sample from the script's stderr."""
    import time

    with tempfile.TemporaryDirectory(prefix="edgekit-lava-") as tmp:
        inputs, out = Path(tmp) / "inputs.npz", Path(tmp) / "out.npz"
        np.savez(inputs, input_bias=input_bias.astype(np.int32))
        started = time.perf_counter()
        described = f"Lava's simulator on {len(input_bias)} images (start-up and compilation in the first)"
        stderr, finished, code = run_script(SCRIPT, [str(folder.resolve()), str(inputs), str(out)], Path(tmp),
                                            len(input_bias), timeout, described)
        wall = time.perf_counter() - started
        if not finished:
            raise EdgekitError(f"Lava's simulator on {folder.name} did not finish in {timeout:.0f} s; fix: lower the "
                               "recipe's lava_samples (to_netx) or check `edgekit doctor`")
        if code != 0 or not out.exists():
            raise lava_failure(folder, stderr, "to_netx")
        data = np.load(out)
        trains = [data[f"train_{k}"] for k in range(len([f for f in data.files if f.startswith("train_")]))]
        return LavaResult(v_start=data["v_start"], v_end=data["v_end"], trains=trains, seconds=float(data["seconds"]),
                          steps=int(data["steps"]), wall_seconds=wall)


def lava_failure(folder: Path, stderr: str, writer: str) -> EdgekitError:
    """One line for a failed Lava run: the layer netx could not load (lava scripts name it), else the last line."""
    last = (stderr.strip().splitlines() or ["no output"])[-1]
    if last.startswith("netx could not load"):
        return EdgekitError(f"Lava's simulator on {folder.name}: {last}; fix: re-export the network with {writer} "
                            "(netx builds input, conv, flatten and dense layers only)")
    return EdgekitError(f"Lava's simulator failed on {folder.name} ({last}); fix: check `edgekit doctor` and the netx file")


def _follow(proc: subprocess.Popen, total: int, timeout: float, description: str) -> tuple[str, bool]:
    """Read the script's stderr to its end: each progress line advances the bar (edgekit.progress), every other line
    is kept for the error message. Returns (those lines, whether it finished): a run past `timeout` is killed."""
    import threading

    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    watchdog = threading.Timer(timeout, kill)
    watchdog.start()
    kept: list[str] = []

    def samples():
        for line in proc.stderr:
            if line.startswith(PROGRESS):
                yield line
            else:
                kept.append(line)

    try:
        for _ in track(samples(), total=total, description=description):
            pass
        proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    return "".join(kept), not timed_out.is_set()
