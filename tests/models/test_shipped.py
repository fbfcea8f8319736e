"""The shipped demo weights: load safely, and reproduce the error recorded in their cards."""

import pytest

from edgekit.data import synthetic
from edgekit.models.evaluate import evaluate_images, evaluate_temporal
from edgekit.models.io import load_shipped


def test_tinygaze_card_number_reproduces_within_0_05_degrees():
    model, card = load_shipped("tinygaze")
    recorded = card.validation["accuracy"]["model"]["mean_deg"]
    val = synthetic.standard_set("val", card.validation["set"]["n"], card.image_size)
    assert val.digest() == card.validation["set"]["digest"]  # the very same held-out images
    measured = evaluate_images(model, card, val)
    assert card.validation["set"]["n"] >= 2000
    assert abs(measured.model.mean_deg - recorded) <= 0.05
    assert measured.model.mean_deg < 5.0
    assert measured.predict_mean_baseline.mean_deg > 4 * measured.model.mean_deg


def test_tinygaze_generalises_to_the_evaluation_seed():
    model, card = load_shipped("tinygaze")
    rep = evaluate_images(model, card, synthetic.standard_set("eval", 1000, card.image_size))
    assert rep.model.mean_deg < 5.0 and abs(rep.model.pitch.bias_deg) < 1.0 and abs(rep.model.yaw.bias_deg) < 1.0


@pytest.mark.slow
def test_gazeresnet18_ships_under_5_degrees_in_fp16():
    model, card = load_shipped("gazeresnet18")
    assert card.weights["dtype"] == "float16" and card.validation["set"]["n"] >= 2000
    assert card.validation["accuracy"]["model"]["mean_deg"] < 5.0
    rep = evaluate_images(model, card, synthetic.standard_set("eval", 300, card.image_size))
    assert rep.model.mean_deg < 5.0


@pytest.mark.slow
def test_temporalgaze_beats_both_baselines():
    model, card = load_shipped("temporalgaze")
    fc = card.validation["forecast"]
    for key in ("hold_last_deg", "constant_velocity_deg"):
        assert sum(fc["model_deg"]) < sum(fc[key]), key
    seqs = synthetic.synthetic_sequences(20, 120, synthetic.SEEDS["eval"], card.image_size, role="eval")
    rep = evaluate_temporal(model, card, seqs)["forecast"]
    assert rep.model_mean < min(sum(rep.hold_last_deg), sum(rep.constant_velocity_deg)) / 5
