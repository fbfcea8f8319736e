"""edgekit/extras.py is the one table of optional dependencies: pyproject.toml, the backend registry and the install
hints of missing modules must agree with it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from edgekit import extras
from edgekit._optional import require
from edgekit.errors import MissingDependencyError
from edgekit.extras import CORE, EXTRAS, extra_for_module, install_hint

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
META_EXTRAS = {"all", "dev", "report"}  # extras of extras, and the empty `report`
# tflite pins these only to spare pip's resolver (see the comment above `tflite =` in pyproject.toml); they are not
# what the extra provides
CONSTRAINT_ONLY = {"tflite": {"typing-extensions", "cattrs", "pydantic"}}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_name(requirement: str) -> str:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - packaging ships with pip and pytest
        return _normalize(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))
    return _normalize(Requirement(requirement).name)


def _pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def test_dist_name_strips_specifiers_and_extras():
    assert _dist_name("onnxruntime>=1.20") == "onnxruntime"
    assert _dist_name("litert-torch==0.10.0") == "litert-torch"
    assert _dist_name("edgekit[all]") == "edgekit"
    assert _dist_name("Torch_Pruning ==1.6.1") == "torch-pruning"


def test_pyproject_extras_name_exactly_the_distributions_of_extras_py():
    declared = _pyproject()["optional-dependencies"]
    real = {name: {_dist_name(r) for r in reqs} - CONSTRAINT_ONLY.get(name, set())
            for name, reqs in declared.items() if name not in META_EXTRAS}
    table = {name: {_normalize(d) for d in e.distributions} for name, e in EXTRAS.items()}
    assert real == table


def test_constraint_only_pins_are_pinned_in_pyproject_and_not_claimed_by_any_extra():
    declared = _pyproject()["optional-dependencies"]
    for name, pins in CONSTRAINT_ONLY.items():
        assert pins <= {_dist_name(r) for r in declared[name]}, f"{name}: the constraint pins moved; update this test"
        for extra in EXTRAS.values():
            assert not pins & {_normalize(d) for d in extra.distributions}


def test_meta_extras_cover_every_real_extra():
    declared = _pyproject()["optional-dependencies"]
    [all_req] = declared["all"]
    inside = set(re.fullmatch(r"edgekit\[(.*)\]", all_req).group(1).split(","))
    assert set(EXTRAS) <= inside
    assert "edgekit[all]" in declared["dev"]


def test_core_distributions_are_project_dependencies():
    deps = {_dist_name(r) for r in _pyproject()["dependencies"]}
    assert {_normalize(d) for d in CORE.distributions} <= deps


def test_every_backend_names_an_extra_that_exists():
    from edgekit.backends import REGISTRY

    assert "null" in REGISTRY
    for name, backend in REGISTRY.items():
        if name == "null":
            assert backend.extra == ""
        else:
            assert backend.extra in EXTRAS, f"backend {name} names extra {backend.extra!r}, not in edgekit/extras.py"


def test_null_backend_is_always_available():
    from edgekit.backends import REGISTRY

    assert REGISTRY["null"].available().usable


def test_backend_availability_reports_a_missing_module_with_its_install_hint(monkeypatch):
    """Backend.available() reads the modules of its extra from the table: a missing one is named, with the fix."""
    from edgekit.backends import REGISTRY

    onnx = REGISTRY["onnx"]
    assert onnx.available().usable  # installed in the dev environment
    monkeypatch.setitem(EXTRAS, "onnx", EXTRAS["onnx"]._replace(modules=("onnx", "edgekit_no_such_module_xyz")))
    usable, detail = onnx.available()
    assert not usable
    assert detail == "missing edgekit_no_such_module_xyz; fix: pip install 'edgekit[onnx]'"


def test_extra_for_module_maps_import_names_to_extras():
    assert extra_for_module("onnxruntime") == "onnx"
    assert extra_for_module("onnxruntime.quantization") == "onnx"  # the top-level module decides
    assert extra_for_module("coremltools") == "coreml"
    assert extra_for_module("sklearn") == "coreml"
    assert extra_for_module("litert_torch") == "tflite"
    assert extra_for_module("torch_pruning") == "prune"
    assert extra_for_module("nir") == "snn"
    assert extra_for_module("h5py") == "datasets"  # the first extra naming it
    assert extra_for_module("torch") is None  # core, not an extra
    assert extra_for_module("some_missing_module_xyz") is None


def test_install_hint_quotes_the_extra_for_the_shell():
    assert install_hint("onnx") == "pip install 'edgekit[onnx]'"


def test_require_missing_module_raises_one_line_with_a_generic_hint():
    with pytest.raises(MissingDependencyError) as err:
        require("some_missing_module_xyz", "the frobnicator")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("the frobnicator needs some_missing_module_xyz, which is not installed")
    assert msg.endswith("fix: pip install some_missing_module_xyz")


def test_require_missing_module_of_an_extra_names_the_extra(monkeypatch):
    """A module that an extra provides but that is absent here: the hint installs the extra, not the bare module."""
    monkeypatch.setitem(EXTRAS, "onnx", EXTRAS["onnx"]._replace(modules=(*EXTRAS["onnx"].modules, "edgekit_absent_onnx_helper")))
    with pytest.raises(MissingDependencyError) as err:
        require("edgekit_absent_onnx_helper.sub", "ONNX export")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("ONNX export needs edgekit_absent_onnx_helper.sub")
    assert msg.endswith("fix: pip install 'edgekit[onnx]'")


def test_require_returns_the_module_when_installed():
    import json

    assert require("json", "tests") is json


def test_versioned_distributions_start_with_edgekit_and_core_and_have_no_duplicates():
    names = extras.versioned_distributions()
    assert names[:3] == ("edgekit", "torch", "numpy")
    assert len(names) == len(set(names))
    for e in EXTRAS.values():
        if e.versioned:
            assert set(e.distributions + e.also_versioned) <= set(names)
    assert "ray" not in names  # it schedules builds: a report must not change with whether it is installed


FREEZE_PROBE = """
import gc
from edgekit._optional import freeze_imports, require
require("colorsys", "a caller's process")
caller = gc.get_freeze_count()  # the API alone freezes nothing in its caller's process
freeze_imports()
frozen = gc.get_freeze_count()
require("xml.dom.minidom", "edgekit's own process")  # a first import: what it holds leaves full collections too
after = gc.get_freeze_count()
require("xml.dom.minidom", "edgekit's own process")  # imported already: nothing more
print(caller, frozen, after, gc.get_freeze_count())
"""


def test_freeze_imports_keeps_the_modules_out_of_full_collections_in_edgekits_own_processes_only():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FREEZE_PROBE], capture_output=True, text=True, check=True).stdout
    caller, frozen, after, again = map(int, out.split())
    assert caller == 0 and frozen > 1000 and after > frozen and again == after
