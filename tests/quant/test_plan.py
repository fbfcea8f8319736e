"""edgekit/quant/plan.py: layer naming, the plan's INT8 shares, keep_float and mixed precision, on hand-built plans whose
answers are known by hand."""

from __future__ import annotations

import pytest

from edgekit.quant.plan import (ISA_PROFILES, LayerPlan, QuantPlan, keep_float, layer_name, missed_targets,
                                return_sensitive_to_float, tensor_key)


def plan_of(**macs: int) -> QuantPlan:
    return QuantPlan(layers=[LayerPlan(name=n, op="Conv", node=f"/{n}/Conv", macs=m, weights=m // 10) for n, m in macs.items()])


@pytest.mark.parametrize("node, name", [
    ("/features/features.0/features.0.0/Conv", "features.0.0"),
    # attribute scopes build the full path: two stages' block1.conv1 are two layers, not one row
    ("/stage1/block1/conv1/Conv", "stage1.block1.conv1"),
    ("/stage2/block1/conv1/Conv", "stage2.block1.conv1"),
    ("/blocks/blocks.1/down/down.0/Conv", "blocks.1.down.0"),  # a Sequential inside a block
    ("/fc/Gemm", "fc"),
    ("/fc/Gemm/", "fc"),  # trailing slash: empty parts are ignored
    ("Conv_0", "Conv_0"),  # no module path: the node's own name
    ("", ""),
])
def test_layer_name_is_the_producing_module(node, name):
    assert layer_name(node) == name


def test_tensor_key_strips_slashes_and_numbers_extra_outputs():
    assert tensor_key("/features/features.0/Relu") == "features/features.0/Relu"
    assert tensor_key("/features/features.0/Relu", 0) == "features/features.0/Relu"
    assert tensor_key("/split/Split", 2) == "split/Split:2"


def test_int8_fraction_weighs_layers_by_macs_or_weights():
    plan = plan_of(a=100, b=300).with_float({"b"}, "test")
    assert plan.int8_fraction("macs") == pytest.approx(0.25)
    assert plan.int8_fraction("weights") == pytest.approx(10 / 40)
    assert QuantPlan().int8_fraction("macs") == 0.0  # no layers: no division by zero
    assert [lp.name for lp in plan.float_layers] == ["b"]


def test_with_float_keeps_the_first_reason_of_a_float_layer():
    plan = plan_of(a=1, b=1).with_float({"a"}, "first")
    again = plan.with_float({"a", "b"}, "second")
    assert [(lp.name, lp.int8, lp.reason) for lp in again.layers] == [("a", False, "first"), ("b", False, "second")]
    assert all(lp.int8 for lp in plan_of(a=1).layers)  # the original plan is not modified (a copy is returned)


def test_keep_float_matches_module_names_with_fnmatch():
    plan = QuantPlan(layers=[LayerPlan(name=n, op="Conv", node=n, macs=1, weights=1)
                             for n in ("features.0.0", "features.0.3", "features.1.0", "fc")])
    kept = keep_float(plan, ["features.0.*", "fc"])
    assert {lp.name: lp.int8 for lp in kept.layers} == {"features.0.0": False, "features.0.3": False,
                                                         "features.1.0": True, "fc": False}
    assert kept.layers[0].reason == "kept float by keep_float ['features.0.*', 'fc']"
    assert keep_float(plan, ["classifier*"]) is plan  # no match: the same plan
    assert keep_float(plan, []) is plan


def test_single_channel_convs_go_float_smallest_first_while_the_int8_share_holds():
    """XNNPACK pads a conv's input channels to 8 per kernel tap: 1-channel convs go float (pt2e plans), but never
    below min_int8_mac_fraction, and a layer already float keeps its first reason."""
    from torch import nn

    from edgekit.quant.pt2e import single_channel_convs_float

    module = nn.ModuleDict({"eye": nn.Conv2d(1, 8, 3), "face": nn.Conv2d(1, 8, 3), "body": nn.Conv2d(8, 8, 3),
                            "fc": nn.Linear(1, 3)})
    plan = plan_of(eye=5, face=20, body=80)
    plan = plan.model_copy(update={"layers": [*plan.layers, LayerPlan(name="fc", op="Gemm", node="/fc/Gemm", macs=5,
                                                                      weights=1)]})
    reason = "float: one input channel, which XNNPACK's INT8 conv pads to 8 (single_channel_convs)"
    both = single_channel_convs_float(plan, module, 0.7)  # 85 of 110 MACs stay INT8: both 1-channel convs go
    assert [(lp.name, lp.reason) for lp in both.float_layers] == [("eye", reason), ("face", reason)]
    one = single_channel_convs_float(plan, module, 0.8)  # face too would leave 0.77: only the smaller one goes
    assert [lp.name for lp in one.float_layers] == ["eye"] and one.int8_fraction("macs") == pytest.approx(105 / 110)
    assert single_channel_convs_float(plan, module, 0.99) is plan
    kept = single_channel_convs_float(keep_float(plan, ["eye"]), module, 0.0)
    assert [(lp.name, lp.reason) for lp in kept.float_layers] == [("eye", "kept float by keep_float ['eye']"),
                                                                  ("face", reason)]


class _Heads:
    """Modules whose last layers write the output directly, through a view, or through an op (not output layers)."""

    @staticmethod
    def build(kind: str):
        import torch.nn.functional as F
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1, self.fc2 = nn.Linear(6, 6), nn.Linear(6, 6)  # same sizes: fc1's freed output is reusable

            def forward(self, x):
                y = self.fc2(F.relu(self.fc1(x)))
                return {"direct": y, "view": y.reshape(2, 3), "normalised": F.normalize(y, dim=-1),
                        "tuple": (y, F.relu(self.fc1(x)))}[kind]
        return Net().eval()


@pytest.mark.parametrize("kind, names", [("direct", {"fc2"}), ("view", {"fc2"}), ("normalised", set()),
                                         ("tuple", {"fc2"})])
def test_output_layers_are_those_whose_output_is_the_models(kind, names):
    """By storage, with every layer output held until the end: fc1's output is freed before the model's output is
    allocated and the allocator could hand its memory out again (a false match by address)."""
    import torch

    from edgekit.quant.torch_plan import output_layer_names

    assert output_layer_names(_Heads.build(kind), (torch.zeros(1, 6),)) == names


def test_output_layers_go_float_while_the_int8_share_holds():
    import torch

    from edgekit.quant.pt2e import output_layers_float

    module = _Heads.build("direct")
    plan = QuantPlan(layers=[LayerPlan(name=n, op="Gemm", node=f"/{n}/Gemm", macs=36, weights=36) for n in ("fc1", "fc2")])
    reason = "float: writes the model's output, which INT8 would round and clip at its calibrated range (output_layers)"
    assert [(lp.name, lp.reason) for lp in output_layers_float(plan, module, (torch.zeros(1, 6),), 0.5).float_layers] \
        == [("fc2", reason)]
    assert output_layers_float(plan, module, (torch.zeros(1, 6),), 0.6) is plan  # 36 of 72 MACs would be under 0.6


def test_float_macs_outside_the_plan_count_against_the_int8_share():
    """ExecuTorch lowers an LSTM to float linear ops that its measured share counts: the 1-channel conv then stays
    INT8 where going float would leave that share under the minimum (the zoo's Gaze360 model failed its compile)."""
    import torch
    from torch import nn

    from edgekit.quant.pt2e import recurrent_macs, single_channel_convs_float

    lstm = nn.LSTM(6, 5, num_layers=2, batch_first=True, bidirectional=True)
    # per step and direction: 4 gates x 5 hidden x (6 inputs + 5 recurrent), then (10 + 5) in layer 2; 7 steps, batch 2
    assert recurrent_macs(lstm, (torch.zeros(2, 7, 6),)) == 2 * 7 * 2 * 4 * 5 * (11 + 15)
    assert recurrent_macs(nn.GRU(6, 5), (torch.zeros(7, 6),)) == 7 * 3 * 5 * 11  # unbatched
    assert recurrent_macs(nn.Conv2d(1, 1, 1), (torch.zeros(1, 1, 2, 2),)) == 0
    module = nn.ModuleDict({"stem": nn.Conv2d(1, 8, 3), "body": nn.Conv2d(8, 8, 3)})
    plan = plan_of(stem=5, body=95)
    assert [lp.name for lp in single_channel_convs_float(plan, module, 0.9).float_layers] == ["stem"]
    assert single_channel_convs_float(plan, module, 0.9, float_macs_outside=6) is plan  # 95 / 106 < 0.9


def test_weight_bits_of_each_isa_profile_follow_from_u8s8_saturation():
    """VPMADDUBSW adds two u8*s8 products into a signed 16-bit lane: with 8-bit weights 2*255*127 overflows, with 7-bit
    weights 2*255*64 does not. Profiles whose kernels can saturate must use 7 bits."""
    int16_max = 2**15 - 1
    assert 2 * 255 * 127 > int16_max
    assert 2 * 255 * 2 ** (7 - 1) <= int16_max
    assert {p: v["weight_bits"] for p, v in ISA_PROFILES.items()} == {
        "portable": 7, "x86-avx2": 7, "x86-vnni": 8, "arm64": 8, "xnnpack": 8}
    assert all(v["why"] for v in ISA_PROFILES.values())


def test_ptq_offers_only_known_isa_profiles():
    from typing import get_args

    from edgekit.backends.onnx.ptq import PTQ

    assert set(get_args(PTQ.model_fields["isa_profile"].annotation)) <= set(ISA_PROFILES)


class AdditiveScore:
    """A model whose error increase is the sum of its INT8 layers' sensitivities (known in advance)."""

    def __init__(self, sens: dict[str, float]):
        self.sens, self.calls = sens, 0

    def __call__(self, plan: QuantPlan):
        self.calls += 1
        return sum(self.sens[lp.name] for lp in plan.layers if lp.int8), "", []


SENS = {"a": 0.5, "b": 0.1, "c": 0.05}


class CountedSensitivity:
    """The sensitivity a pass would measure (one calibration run per layer), counting the times it is asked for."""

    def __init__(self, sens: dict[str, float]):
        self.sens, self.calls = sens, 0

    def __call__(self) -> dict[str, float]:
        self.calls += 1
        return self.sens


def mixed(plan, *, target=0.3, min_fraction=0.0, enabled=True, sens=SENS, sensitivity=None):
    score = AdditiveScore(sens)
    out = return_sensitive_to_float(plan, sensitivity or CountedSensitivity(sens), score, target=target,
                                    min_fraction=min_fraction, enabled=enabled, label="all INT8",
                                    where="on 4 calibration samples")
    return out, score


def test_mixed_precision_returns_the_most_sensitive_layer_until_the_target_holds():
    out, score = mixed(plan_of(a=10, b=60, c=30))
    assert {lp.name: lp.int8 for lp in out.layers} == {"a": False, "b": True, "c": True}
    # the reason names the layer's sensitivity and the target the model missed when it went
    assert out.layers[0].reason == "kept float: most sensitive layer left (+0.500 deg alone); error increase +0.650 > 0.3 deg"
    assert [lp.sensitivity_deg for lp in out.layers] == [0.5, 0.1, 0.05]
    assert out.decisions == ["all INT8: error increase +0.650 deg on 4 calibration samples",
                             "a -> float: error increase +0.150 deg"]
    assert score.calls == 2


def test_mixed_precision_goes_on_while_the_target_is_missed():
    out, _ = mixed(plan_of(a=10, b=60, c=30), target=0.06)
    assert [lp.name for lp in out.float_layers] == ["a", "b"]  # 0.65 -> 0.15 -> 0.05 <= 0.06
    assert out.int8_fraction("macs") == pytest.approx(0.3)


def test_mixed_precision_stops_at_the_minimum_int8_mac_share():
    out, _ = mixed(plan_of(a=10, b=60, c=30), min_fraction=0.95)
    assert out.float_layers == []
    assert out.decisions[-1] == ("stopped: moving a to float would leave 90.0% of MACs in INT8, below 95%; "
                                 "error increase +0.650 > 0.3 deg")  # and which target it still missed


def test_mixed_precision_skips_a_layer_too_big_to_leave_int8_and_takes_the_next_sensitive_one():
    """The most sensitive layer holds too many MACs for the floor: it stays INT8 (said once), and the next most
    sensitive layer that fits goes float, rather than mixed precision stopping at the first refusal."""
    out, _ = mixed(plan_of(a=50, b=5, c=45), target=0.52, min_fraction=0.9)
    assert [lp.name for lp in out.float_layers] == ["b"]  # 0.65 -> 0.55 (a cannot go), then c would leave 50%
    assert out.decisions[1:] == ["a stays INT8 (+0.500 deg alone): moving it to float would leave 50.0% of MACs in INT8, below 90%",
                                 "b -> float: error increase +0.550 deg",
                                 "stopped: moving a to float would leave 45.0% of MACs in INT8, below 90%; "
                                 "error increase +0.550 > 0.52 deg"]


def test_mixed_precision_boundary_share_is_allowed():
    out, _ = mixed(plan_of(a=10, b=60, c=30), min_fraction=0.9)  # exactly 90% left: allowed
    assert [lp.name for lp in out.float_layers] == ["a"]


def test_mixed_precision_disabled_only_scores():
    sensitivity = CountedSensitivity(SENS)
    out, score = mixed(plan_of(a=10, b=60, c=30), enabled=False, sensitivity=sensitivity)
    assert out.float_layers == [] and score.calls == 1 and sensitivity.calls == 0
    assert out.decisions == ["all INT8: error increase +0.650 deg on 4 calibration samples"]


def test_sensitivity_is_measured_only_when_it_can_change_a_decision():
    """A plan that holds every target with all layers in INT8 never pays for the per-layer runs; one that misses asks
    once, however many layers then go back to float."""
    holds = CountedSensitivity(SENS)
    out, score = mixed(plan_of(a=10, b=60, c=30), target=1.0, sensitivity=holds)
    assert holds.calls == 0 and score.calls == 1 and out.float_layers == []
    assert all(lp.sensitivity_deg is None for lp in out.layers)
    misses = CountedSensitivity(SENS)
    out, _ = mixed(plan_of(a=10, b=60, c=30), target=0.06, sensitivity=misses)
    assert misses.calls == 1 and len(out.float_layers) == 2


def test_mixed_precision_never_picks_a_layer_already_float_and_ends_when_none_is_left():
    plan = keep_float(plan_of(a=10, b=60, c=30), ["a"])
    out, score = mixed(plan, target=-1.0)  # unreachable: every INT8 layer goes float, then it stops
    assert {lp.name: lp.reason.split(" ")[0] for lp in out.layers} == {"a": "kept", "b": "kept", "c": "kept"}
    assert out.layers[0].reason.startswith("kept float by keep_float")
    assert out.decisions[1:] == ["b -> float: error increase +0.050 deg", "c -> float: error increase +0.000 deg"]
    assert score.calls == 3


def test_plan_round_trips_through_json():
    plan, _ = mixed(plan_of(a=10, b=60, c=30))
    assert QuantPlan.model_validate_json(plan.model_dump_json()) == plan


def test_mixed_precision_goes_on_while_another_accuracy_target_is_missed():
    """The error increase is within target from the start; a p95/max difference target still returns layers to float."""
    def score(plan):
        largest = sum(SENS[lp.name] for lp in plan.layers if lp.int8) * 4  # a stand-in difference that shrinks likewise
        return 0.0, "", missed_targets(largest / 2, largest, None, 0.3)

    out = return_sensitive_to_float(plan_of(a=10, b=60, c=30), CountedSensitivity(SENS), score, target=0.3, min_fraction=0.0, enabled=True,
                                    label="all INT8", where="here")
    assert [lp.name for lp in out.float_layers] == ["a", "b"]  # largest 2.6 -> 0.6 -> 0.2 <= 0.3


def test_missed_targets_names_each_target_missed():
    assert missed_targets(0.5, 2.0, 1.0, 3.0) == []
    assert missed_targets(1.5, 4.0, 1.0, 3.0) == ["p95 difference 1.500 > 1.0 deg", "largest difference 4.000 > 3.0 deg"]
    assert missed_targets(1.5, 4.0, None, None) == []


def test_recipes_fill_int8_difference_targets_from_their_gates():
    from edgekit.recipe import load_recipe

    ptq = load_recipe("onnx-int8").passes[-1]
    assert (ptq.target_p95_diff_deg, ptq.target_max_diff_deg) == (1.0, 3.0)  # gates p95_diff_deg / max_diff_deg
    qat = next(p for p in load_recipe("onnx-int8-qat").passes if p.name == "qat")
    assert (qat.target_p95_diff_deg, qat.target_max_diff_deg) == (1.0, 3.0)
    assert load_recipe("tflite-int8").passes[-1].target_max_diff_deg is None  # no such gate: no such target
    assert load_recipe("tflite").passes[-1].target_max_diff_deg is None  # FP32: nothing quantized, nothing to aim at
