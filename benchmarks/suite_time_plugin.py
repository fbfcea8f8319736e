"""pytest plugin for benchmarks/suite_time.py: each test's wall and CPU seconds (its process and the children it
waited for), and the garbage collector's time by generation, written per pytest process to $SUITE_TIME_DIR."""

import gc
import json
import os
import time

import pytest

_gc = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
_started = [0.0]
_tests: list = []


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _on_gc(phase, info):
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        entry = _gc[info["generation"]]
        entry[0] += 1
        entry[1] += time.perf_counter() - _started[0]


def pytest_configure(config):
    gc.callbacks.append(_on_gc)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    wall, cpu = time.time(), _cpu()
    result = yield
    _tests.append({"test": item.nodeid, "start": wall, "wall_s": time.time() - wall, "cpu_s": _cpu() - cpu})
    return result


def pytest_sessionfinish(session):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "controller")
    record = {"worker": worker, "tests": _tests, "gc": {str(g): {"collections": n, "seconds": s} for g, (n, s) in _gc.items()}}
    with open(os.path.join(os.environ["SUITE_TIME_DIR"], f"{worker}.json"), "w") as f:
        json.dump(record, f)
