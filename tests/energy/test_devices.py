"""The recipe's device profile chooses the energy estimates (edgekit/targets/devices/), end to end on the null
backend, and an unknown device is refused when the recipe loads."""

from __future__ import annotations

import json

import pytest

import edgekit
from edgekit.data.synthetic import standard_set
from edgekit.energy.estimate import device_names, device_profile, estimate, profile
from edgekit.errors import BadInputError
from edgekit.recipe import load_recipe

ROWS = [{"layer": "conv", "op": "Conv", "precision": "fp32", "macs": 1000, "weight_bytes": 400, "act_in_elems": 100,
         "act_out_elems": 200, "act_bytes_per_elem": 4}]


def _recipe(folder, device: str):
    body = {"name": f"null-{device}", "backend": "null", "device": device, "passes": ["identity"],
            "verify": {"eval_images": 8, "latency_runs": 2, "warmup_runs": 0, "threads": 1}}
    path = folder / f"{device}.yaml"
    path.write_text(json.dumps(body))
    return path


def test_device_profiles_are_separate_from_energy_profiles():
    assert set(device_names()) >= {"host-cpu", "loihi2"}
    assert "horowitz-45nm" not in device_names()
    with pytest.raises(BadInputError, match="unknown energy profile 'host-cpu'"):
        profile("host-cpu")
    with pytest.raises(BadInputError, match="unknown device 'horowitz-45nm'"):
        device_profile("horowitz-45nm")


def test_each_device_gets_the_rows_its_profile_lists():
    host = [(e["profile"], e["device"], e["level"]) for e in estimate(ROWS, "host-cpu")]
    assert host == [("horowitz-45nm", "45 nm CMOS", "compute"), ("horowitz-45nm", "45 nm CMOS", "compute+memory"),
                    ("keras-spiking", "cpu", "compute"), ("keras-spiking", "gpu", "compute"),
                    ("keras-spiking", "arm", "compute")]
    loihi = [(e["profile"], e["device"], e["level"]) for e in estimate(ROWS, "loihi2")]
    assert loihi == [("horowitz-45nm", "45 nm CMOS", "compute"), ("keras-spiking", "loihi", "compute")]
    # the constants by hand: 1000 FP32 MACs x (3.7 + 0.9) pJ
    assert estimate(ROWS, "loihi2")[0]["low_uj"] == pytest.approx(1000 * 4.6e-6)


def test_the_recipes_device_chooses_the_reports_estimates(tmp_path):
    ev = standard_set("eval", 8)
    reports = {d: edgekit.compile(None, str(_recipe(tmp_path, d)), eval=ev, out=tmp_path / d, cache=False).report
               for d in ("host-cpu", "loihi2")}
    assert reports["host-cpu"].target.device == "host-cpu" and reports["loihi2"].target.device == "loihi2"
    assert {e.device for e in reports["host-cpu"].energy.estimates} == {"45 nm CMOS", "cpu", "gpu", "arm"}
    assert {e.device for e in reports["loihi2"].energy.estimates} == {"45 nm CMOS", "loihi"}


def test_unknown_device_is_refused_when_the_recipe_loads(tmp_path):
    with pytest.raises(BadInputError, match=r"device \(line 1\): unknown device 'tpu-v9' \(known: .*host-cpu.*loihi2"):
        load_recipe(_recipe(tmp_path, "tpu-v9"))
