"""lava_script.use_sparse_conv: Lava's Conv through its own conv_to_sparse matrix, checked against its scipy
convolution before first use. Runs in the Lava environment (Python 3.10), as the simulator check does."""

import subprocess
from pathlib import Path

import pytest

SCRIPT_DIR = Path(__file__).resolve().parents[3] / "edgekit" / "backends" / "lava"

PROBE = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import lava_script
from lava.proc.conv import utils

scipy_conv = utils.conv
lava_script.use_sparse_conv()
rng = np.random.default_rng(1)
# (input x, y, c), (out, kx, ky, in / groups), stride, padding, dilation, groups: TinyGaze's and harder ones
for shape, kernel, stride, padding, dilation, groups in [((20, 32, 16), (32, 3, 3, 16), (2, 2), (1, 1), (1, 1), 1),
                                                          ((9, 7, 4), (6, 3, 2, 2), (2, 1), (1, 0), (1, 2), 2),
                                                          ((8, 8, 3), (5, 1, 1, 3), (1, 1), (0, 0), (1, 1), 1)]:
    weight = rng.integers(-128, 128, kernel).astype(np.int32)
    for spikes in (rng.random(shape) < 0.4, rng.integers(-1000, 1000, shape)):
        args = (weight, kernel[1:3], stride, padding, dilation, groups)
        assert np.array_equal(utils.conv(spikes, *args), scipy_conv(spikes, *args)), (shape, kernel)
try:  # a matrix that disagrees with Lava's scipy convolution stops the run
    lava_script._sparse_conv(lambda *a: scipy_conv(*a) + 1, (6, 6, 2), weight[:, :, :, :2], (1, 1), (1, 1), (0, 0),
                             (1, 1), 1)
except RuntimeError as exc:
    print("refused:", exc)
"""


def test_sparse_convolution_equals_lavas_scipy_convolution_and_a_difference_stops_the_run():
    from edgekit.backends.lava.simulator import lava_available, lava_python

    ok, why = lava_available()
    if not ok:
        pytest.skip(f"Lava environment unavailable: {why}")
    out = subprocess.run([str(lava_python()), "-I", "-c", PROBE, str(SCRIPT_DIR)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("refused: Lava's sparse convolution differs from its scipy convolution"), out.stdout
