import pytest

import edgekit.compiler as ek
from edgekit._optional import require

require("executorch.runtime", "ExecuTorch tests")


@pytest.fixture(scope="package")
def tinygaze_builds(tmp_path_factory):
    """TinyGaze compiled for both ExecuTorch targets, shared by every test module of this folder. Through the test
    session's cache: pytest-xdist runs this folder's modules on both workers, between other packages' modules, so
    the fixture is set up several times a session (four builds of ~17 s each without the cache). test_rebuild.py
    compares these programs with a build in another process that uses no cache."""
    out = tmp_path_factory.mktemp("executorch")
    return {t: ek.compile(None, t, out=out / t) for t in ("executorch", "executorch-int8")}
