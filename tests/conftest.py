import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 threads on 2 shared cores ran 3-7x slower

import pytest  # noqa: E402

# The longest test files (45-120 s each on 2 quiet vCPUs, 2026-12-03) start first.
# pytest-xdist hands whole files to whichever worker is free (make test: --dist loadfile), by default those with the
# most tests first: single long tests came last, and one of them alone decided when the suite ended.
FIRST = ("tests/report/test_sample_report.py", "tests/test_build_ray.py", "tests/test_determinism.py",
         "tests/passes/test_prune.py", "tests/backends/coreml/test_coreml.py")


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False  # keep the order below (pytest-xdist would sort by test count)


def pytest_collection_modifyitems(config, items):
    """FIRST, then the other files with the most tests first (pytest-xdist's own order), each file's tests in order."""
    count: dict[str, int] = {}
    for item in items:
        file = item.nodeid.split("::")[0]
        count[file] = count.get(file, 0) + 1
    rank = {file: i for i, file in enumerate(FIRST)}
    items.sort(key=lambda item: (rank.get(item.nodeid.split("::")[0], len(FIRST)), -count[item.nodeid.split("::")[0]]))


def pytest_collection_finish(session):
    from edgekit._optional import freeze_imports

    freeze_imports()  # the test modules and what they imported, then each converter as a test first requires it


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After a file's last test and its module fixtures' teardown, what stays alive leaves the garbage collector's full
    collections too (edgekit._optional.freeze_imports). A worker holds every test module and the converters' libraries:
    each full collection traversed them all, about 0.4 s, one every few seconds of a compile (5 test folders on 2
    workers: 36 of 370 CPU-s in full collections, 5 s frozen at each file's end; wall 188 -> 166 s). What a file leaves
    alive that dies later in a reference cycle is freed only when the worker exits."""
    result = yield
    if nextitem is None or nextitem.path != item.path:
        from edgekit._optional import freeze_imports

        freeze_imports()
    return result


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Rendered sets are cached per test session, never in the user's cache; pytest-xdist's workers (make test runs
    one per core) share one cache, whose entries are written whole and renamed into place, and count as parallel
    compiles, so none starts the reference or a rendering pool on a core another worker uses."""
    import torch

    from edgekit.environment import set_parallel_compiles

    torch.set_num_threads(1)
    set_parallel_compiles(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    base = tmp_path_factory.getbasetemp()
    cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "edgekit-cache"
    cache.mkdir(exist_ok=True)
    old = os.environ.get("EDGEKIT_CACHE_DIR")
    os.environ["EDGEKIT_CACHE_DIR"] = str(cache)
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
