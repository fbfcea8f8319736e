"""edgekit.report.build.check_gates: every gate kind passes at its limit and fails just past it; min_int8_mac_fraction
is the one lower bound; a gate whose quantity is missing fails. The report is a real one (null-backend compile of the
demo model) with the gated quantity set by hand, so the expected verdict is known."""

from __future__ import annotations

import copy
import json

import pytest

import edgekit
from edgekit.data.synthetic import standard_set
from edgekit.recipe import Gates, Recipe
from edgekit.report.build import check_gates
from edgekit.report.model import Report


@pytest.fixture(scope="module")
def base_doc(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("gates")
    recipe = folder / "null.yaml"
    recipe.write_text(json.dumps({"name": "null-gates", "backend": "null", "passes": ["identity"],
                                  "verify": {"eval_images": 8, "latency_runs": 2, "warmup_runs": 0}}))
    report = edgekit.compile(None, target=str(recipe), out=folder / "out", eval=standard_set("eval", 8)).report
    return json.loads(report.model_dump_json(by_alias=True))


def recipe(**gates) -> Recipe:
    return Recipe(name="t", backend="null", passes=["identity"], gates=Gates(**gates))


def quantization(frac: float) -> dict:
    """A quantization section valid for the report schema, with one INT8 and one float layer."""
    layer = {"op": "Conv", "weights": 72, "sensitivity_deg": None, "weight_error": None}
    return {"plan": {"weights": {"bits": 8}, "activations": {"observer": "minmax"}, "isa_profile": "portable",
                     "calibration": {"source": "synthetic", "n": 8, "digest": "0" * 64}, "decisions": []},
            "int8_mac_fraction": frac, "int8_weight_fraction": 0.5,
            "float_layers": [{"name": "fc", "reason": "kept float"}],
            "layers": [{**layer, "name": "conv", "node": "/conv/Conv", "macs": 90, "int8": True, "reason": "quantized"},
                       {**layer, "name": "fc", "node": "/fc/Gemm", "macs": 10, "int8": False, "reason": "kept float"}],
            "host_vs_profile": "test"}


def spiking(mismatched: list[int], readout_equal: bool, ran: bool = True) -> dict:
    curve = [{"timesteps": 8, "error_deg": 3.0, "increase_deg": 0.1, "diff_from_ann_mean_deg": 0.5}]
    return {"timesteps": 8, "latency_steps": 2, "reset": "zero", "reference_error_deg": 2.9, "error_vs_timesteps": curve,
            "conversion": {}, "counts": {"steps": 8, "layers": [], "total": {}, "how": "test"},
            "simulator_time": {"value": 1.0, "unit": "ms", "method": "measured", "how": "test"},
            "lava": {"ran": ran, "summary": "test", "mismatched_spikes_per_layer": mismatched, "readout_equal": readout_equal}}


def with_values(doc: dict, **values) -> Report:
    """The report with gated quantities replaced (accuracy in degrees, size in bytes)."""
    d = copy.deepcopy(doc)
    acc = d["accuracy"]
    if "error" in values:
        acc["artifact"]["mean_deg"] = values["error"]
    if "increase" in values:
        acc["error_increase_deg"] = values["increase"]
    if "max_diff" in values:
        acc["diff_from_reference"]["max_deg"] = values["max_diff"]
    if "p95_diff" in values:
        acc["diff_from_reference"]["p95_deg"] = values["p95_diff"]
    if "size_bytes" in values:
        d["size"]["artifact"]["value"] = values["size_bytes"]
    if "quantization" in values:
        d["quantization"] = values["quantization"]
    if "spiking" in values:
        d["spiking"] = values["spiking"]
    if values.get("no_accuracy"):
        d["accuracy"] = None
    return Report.model_validate(d)


def verdict(gates: list, name: str) -> tuple[bool, float | None]:
    [g] = [g for g in gates if g.name == name]
    return g.passed, g.value


# (gate, limit, report values at the limit, report values just past it, the gate's value at the limit)
UPPER = [
    ("max_error_deg", 2.5, {"error": 2.5}, {"error": 2.5 + 1e-9}, 2.5),
    ("max_error_increase_deg", 0.25, {"increase": 0.25}, {"increase": 0.2500001}, 0.25),
    ("max_diff_deg", 0.01, {"max_diff": 0.01}, {"max_diff": 0.0100001}, 0.01),
    ("p95_diff_deg", 0.5, {"p95_diff": 0.5}, {"p95_diff": 0.5000001}, 0.5),
    ("max_size_mb", 2.5, {"size_bytes": 2_500_000}, {"size_bytes": 2_500_001}, 2.5),
    ("max_lava_mismatched_spikes", 3, {"spiking": spiking([1, 2], True)}, {"spiking": spiking([1, 2], False)}, 3),
]


@pytest.mark.parametrize("name, limit, at, past, value", UPPER, ids=[u[0] for u in UPPER])
def test_upper_bound_gates_pass_at_the_limit_and_fail_past_it(base_doc, name, limit, at, past, value):
    r = recipe(**{name: limit})
    assert verdict(check_gates(r, with_values(base_doc, **at)), name) == (True, pytest.approx(value))
    passed, _ = verdict(check_gates(r, with_values(base_doc, **past)), name)
    assert passed is False


def test_max_error_increase_may_be_negative():
    """The only upper bound without gt=0: a recipe may demand that the artifact beat the reference."""
    assert recipe(max_error_increase_deg=-0.1).gates.max_error_increase_deg == -0.1


def test_min_int8_mac_fraction_is_a_lower_bound(base_doc):
    r = recipe(min_int8_mac_fraction=0.9)
    assert verdict(check_gates(r, with_values(base_doc, quantization=quantization(0.9))), "min_int8_mac_fraction") == (True, 0.9)
    assert verdict(check_gates(r, with_values(base_doc, quantization=quantization(1.0))), "min_int8_mac_fraction") == (True, 1.0)
    assert verdict(check_gates(r, with_values(base_doc, quantization=quantization(0.8999))), "min_int8_mac_fraction")[0] is False


def test_min_int8_mac_fraction_fails_without_a_quantization_section(base_doc):
    gates = check_gates(recipe(min_int8_mac_fraction=0.0), with_values(base_doc))
    assert [(g.name, g.value, g.passed) for g in gates] == [("min_int8_mac_fraction", None, False)]


def test_accuracy_gates_fail_when_the_report_has_no_accuracy(base_doc):
    gates = check_gates(recipe(max_error_deg=100.0, max_diff_deg=100.0), with_values(base_doc, no_accuracy=True))
    assert [(g.name, g.value, g.passed) for g in gates] == [("max_error_deg", None, False), ("max_diff_deg", None, False)]


def test_lava_gate_fails_when_lava_did_not_run(base_doc):
    gates = check_gates(recipe(max_lava_mismatched_spikes=1000), with_values(base_doc, spiking=spiking([], True, ran=False)))
    assert [(g.name, g.value, g.passed) for g in gates] == [("max_lava_mismatched_spikes", None, False)]
    gates = check_gates(recipe(max_lava_mismatched_spikes=1000), with_values(base_doc))  # not a spiking target at all
    assert gates[0].passed is False


def test_lava_mismatch_counts_spikes_and_a_differing_readout(base_doc):
    gates = check_gates(recipe(max_lava_mismatched_spikes=0), with_values(base_doc, spiking=spiking([0, 0, 0], True)))
    assert (gates[0].value, gates[0].passed) == (0, True)
    gates = check_gates(recipe(max_lava_mismatched_spikes=10), with_values(base_doc, spiking=spiking([4, 0, 3], False)))
    assert gates[0].value == 8  # 7 spikes + 1 for the readout


def test_no_gates_declared_means_no_rows(base_doc):
    assert check_gates(recipe(), with_values(base_doc)) == []


def test_every_declared_gate_gets_one_row_in_a_fixed_order(base_doc):
    r = recipe(max_error_deg=100.0, max_error_increase_deg=1.0, max_diff_deg=1.0, p95_diff_deg=1.0, max_size_mb=100.0,
               min_int8_mac_fraction=0.5)
    gates = check_gates(r, with_values(base_doc, quantization=quantization(0.9)))
    assert [g.name for g in gates] == ["max_error_deg", "max_error_increase_deg", "max_diff_deg", "p95_diff_deg",
                                       "max_size_mb", "min_int8_mac_fraction"]
    assert all(g.passed for g in gates)
    acc = base_doc["accuracy"]
    # the values are the report's own numbers (the demo's real error on renderer images, its real size)
    assert gates[0].value == acc["artifact"]["mean_deg"]
    assert gates[4].value == pytest.approx(base_doc["size"]["artifact"]["value"] / 1e6)


@pytest.mark.parametrize("field, bad", [("max_error_deg", 0.0), ("max_diff_deg", -1.0), ("p95_diff_deg", 0.0),
                                        ("max_size_mb", 0.0), ("max_lava_mismatched_spikes", -1),
                                        ("min_int8_mac_fraction", 1.5), ("min_int8_mac_fraction", -0.1)])
def test_impossible_limits_are_refused_by_the_recipe(field, bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=field):
        Gates(**{field: bad})
