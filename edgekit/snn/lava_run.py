"""Run a lava artifact in Lava's CPU simulator: a subprocess in the separate Python 3.10 environment (edgekit's main
environment never imports Lava). Missing environment -> MissingDependencyError with the set-up command."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError, MissingDependencyError

SCRIPT = Path(__file__).with_name("lava_script.py")


@dataclass
class LavaResult:
    v_start: np.ndarray  # (N, out) readout v after S steps
    v_end: np.ndarray  # after S + T steps (S = readout_start: delays + warm-up)
    trains: list[np.ndarray]  # per spiking layer (N, S + T, neurons) bool
    seconds: float  # simulator wall time for the samples' S + T steps (compilation excluded)
    wall_seconds: float  # the whole subprocess, Python start and compilation included


def lava_available() -> tuple[bool, str]:
    from edgekit.cli.doctor import _lava_status

    return _lava_status()


def run_lava(folder: Path, input_bias: np.ndarray, timeout: float = 900) -> LavaResult:
    import time

    from edgekit.cli.doctor import lava_python

    py = lava_python()
    if not py.exists():
        raise MissingDependencyError(f"the loihi target runs Lava's simulator in {py.parent.parent}, which does not exist; "
                                     "fix: make lava (needs Python 3.10)")
    with tempfile.TemporaryDirectory(prefix="edgekit-lava-") as tmp:
        inputs, out = Path(tmp) / "inputs.npz", Path(tmp) / "out.npz"
        np.savez(inputs, input_bias=input_bias.astype(np.int32))
        started = time.perf_counter()
        # -I: isolated (no user site, no script folder on sys.path: lava's own top-level `tests` cannot shadow ours)
        proc = subprocess.run([str(py), "-I", str(SCRIPT), str(folder.resolve()), str(inputs), str(out)], cwd=tmp,
                              capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - started
        if proc.returncode != 0 or not out.exists():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise EdgekitError(f"Lava's simulator failed on {folder.name} ({last}); fix: check `edgekit doctor` and the "
                               "netx file")
        data = np.load(out)
        trains = [data[f"train_{k}"] for k in range(len([f for f in data.files if f.startswith("train_")]))]
        return LavaResult(v_start=data["v_start"], v_end=data["v_end"], trains=trains, seconds=float(data["seconds"]),
                          wall_seconds=wall)
