"""A damaged .pte given to the reader (counts) or the runner (the ExecuTorch runtime) is one BadInputError naming the
file and the fix, never a traceback, and never an abort of the process."""

import json
import subprocess
import sys

import pytest

from edgekit.backends.executorch import program as pte
from edgekit.errors import BadInputError

CASES = ["truncated", "header-only", "empty", "garbage", "foreign-identifier", "damaged-delegate"]


def _damaged_copies(good: bytes) -> dict[str, bytes]:
    payload = good.find(b"XN0")  # the XNNPACK delegate's header magic (XN00/XN01) at bytes 4-8 of its payload
    assert payload > 4
    return {
        "truncated": good[:len(good) // 2],
        "header-only": good[:100],
        "empty": b"",
        "garbage": bytes(range(256)) * 64,
        # a file identifier that is not UTF-8: ExecuTorch 1.5.1 logs it as is and its Python bindings abort on that
        "foreign-identifier": good[:4] + b"\xcf\x82\xff\xfe" + good[8:],
        "damaged-delegate": good[:payload + 60] + b"\xff" * 256 + good[payload + 316:],
    }


@pytest.fixture(scope="module")
def damaged(tinygaze_builds, tmp_path_factory):
    folder = tmp_path_factory.mktemp("damaged")
    good = tinygaze_builds["executorch"].artifact.read_bytes()
    paths = {}
    for name, data in _damaged_copies(good).items():
        paths[name] = folder / f"{name}.pte"
        paths[name].write_bytes(data)
    return paths


def _one_line(message: str, path) -> None:
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"{path.name}: ") and "; fix: " in message, message


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_reader_refuses_a_damaged_program_in_one_line(damaged, case):
    with pytest.raises(BadInputError) as err:
        pte.read(damaged[case])
    message = str(err.value)
    _one_line(message, damaged[case])
    assert "not a readable ExecuTorch program" in message and "edgekit compile --target executorch" in message


RUNNER_SCRIPT = """
import json, sys
import numpy as np
from edgekit.backends.executorch.runner import ExecuTorchRunner
from edgekit.errors import BadInputError
for path in sys.argv[1:]:
    try:
        ExecuTorchRunner(path).run({"image": np.zeros((1, 1, 40, 64), np.float32)})
        print(json.dumps({"path": path, "error": None}), flush=True)
    except BadInputError as exc:
        print(json.dumps({"path": path, "error": str(exc)}), flush=True)
"""


@pytest.mark.slow
def test_runner_refuses_damaged_programs_in_one_line_without_aborting(damaged):
    """In a child process: a runtime that aborts must fail this test, not end the test session."""
    proc = subprocess.run([sys.executable, "-c", RUNNER_SCRIPT, *[str(damaged[c]) for c in CASES]],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["path"] for r in results] == [str(damaged[c]) for c in CASES]
    for case, result in zip(CASES, results):
        assert result["error"] is not None, f"{case}: the runtime ran a damaged program"
        _one_line(result["error"], damaged[case])


def test_missing_file_is_one_line_too(tmp_path):
    from edgekit.backends.executorch.runner import ExecuTorchRunner

    with pytest.raises(BadInputError, match=r"gone\.pte: cannot read it .*; fix: pass the path of an ExecuTorch \.pte"):
        ExecuTorchRunner(tmp_path / "gone.pte")
