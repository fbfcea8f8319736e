"""A rebuild gives the same .pte bytes: TinyGaze's INT8 program built in this session (tinygaze_builds) and again in a
fresh process from an empty pass cache (tests/determinism_probe.py).
The FP32 program is rebuilt in a fresh process, without cache and under another ISA's kernels, by
tests/test_determinism.py."""

import pytest

from tests.determinism_probe import in_fresh_process

TARGETS = ["executorch-int8"]


@pytest.mark.slow
def test_another_process_without_cache_writes_identical_programs(tinygaze_builds, tmp_path):
    there = in_fresh_process(["tinygaze"], TARGETS, tmp_path / "probe.log", timeout=600)
    here = {f"tinygaze/{t}": tinygaze_builds[t].report.artifact.sha256 for t in TARGETS}
    assert here == there
