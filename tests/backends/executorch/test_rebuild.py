"""A rebuild gives the same .pte bytes: TinyGaze's INT8 program built in this session (tinygaze_builds) and again in a
fresh process (tests/determinism_probe.py runs the target's pipeline without cache and prints the artifact's sha256).
The FP32 program is rebuilt in a fresh process, without cache and under another ISA's kernels, by
tests/test_determinism.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).resolve().parents[2] / "determinism_probe.py"
TARGETS = ["executorch-int8"]


@pytest.mark.slow
def test_another_process_without_cache_writes_identical_programs(tinygaze_builds, tmp_path):
    log = tmp_path / "probe.log"  # stderr to a file: converters log a lot
    with open(log, "w") as err:
        proc = subprocess.run([sys.executable, str(PROBE), "tinygaze", ",".join(TARGETS)], stdout=subprocess.PIPE,
                              stderr=err, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, log.read_text()[-2000:]
    there = json.loads(proc.stdout.strip().splitlines()[-1])
    here = {f"tinygaze/{t}": tinygaze_builds[t].report.artifact.sha256 for t in TARGETS}
    assert here == there
