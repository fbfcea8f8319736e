import json

import pytest

from edgekit.models.io import load_model
from edgekit.models.card import ModelCard
from edgekit.models.train import train_image_model


@pytest.mark.slow
def test_training_a_narrow_tinygaze_learns_and_writes_a_card(tmp_path):
    card = train_image_model("tinygaze", tmp_path, n_train=3000, epochs=4, batch=64, n_val=300, progress=False,
                             config={"width": 8})
    acc = card.validation["accuracy"]
    # it learns: far below predicting the mean gaze on held-out images
    assert acc["model"]["mean_deg"] < 0.6 * acc["predict_mean_baseline"]["mean_deg"]
    saved = ModelCard.load(tmp_path / "tinygaze.json")
    assert saved.arch_config["width"] == 8 and saved.training["n_train"] == 3000
    assert json.loads((tmp_path / "tinygaze.json").read_text())["weights"]["sha256"] == card.weights["sha256"]
    load_model(tmp_path / "tinygaze.safetensors", saved)  # loads strictly with its card
