import pytest

import edgekit.compiler as ek
from edgekit._optional import require

require("executorch.runtime", "ExecuTorch tests")


@pytest.fixture(scope="package")
def tinygaze_builds(tmp_path_factory):
    """TinyGaze compiled once (no cache: built in this process) for both ExecuTorch targets, shared by every test
    module of this folder."""
    out = tmp_path_factory.mktemp("executorch")
    return {t: ek.compile(None, t, out=out / t, cache=False) for t in ("executorch", "executorch-int8")}
