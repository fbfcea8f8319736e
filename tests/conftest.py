import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 threads on 2 shared cores ran 3-7x slower

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Rendered sets are cached per test session, never in the user's cache."""
    import torch

    torch.set_num_threads(1)
    old = os.environ.get("EDGEKIT_CACHE_DIR")
    os.environ["EDGEKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("edgekit-cache"))
    yield
    if old is None:
        os.environ.pop("EDGEKIT_CACHE_DIR", None)
    else:
        os.environ["EDGEKIT_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _quiet_after_each_test():
    """A CLI command sets the process's progress level; reset it so later tests do not print to a closed capture."""
    yield
    from edgekit import progress

    progress.configure(progress.QUIET)
