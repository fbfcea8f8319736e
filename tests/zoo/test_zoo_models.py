"""The test model zoo: committed weights + cards load through edgekit's loaders and reproduce their cards' numbers.

No training here (scripts/train_zoo.py makes the weights). What each model gives on every target is the zoo matrix
(benchmarks/zoo.md); tests/zoo/test_zoo_matrix.py rebuilds two cells per model and compares them with it.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from edgekit.evalset import render_options
from edgekit.models.card import ModelCard
from edgekit.models.io import sha256_file
from tests.zoo import measure, models

NAMES = sorted(models.ZOO)


@pytest.fixture(scope="module")
def val_sets():
    """Validation sets by (temporal, what the renderer draws), rendered once per module (they are small)."""
    return {}


def _val(card: ModelCard, cache: dict):
    key = (measure.is_temporal(card), json.dumps(render_options(card), sort_keys=True))
    if key not in cache:
        cache[key] = measure.val_set(card)
    return cache[key]


@pytest.mark.parametrize("name", NAMES)
def test_card_and_weights_match(name):
    card = ModelCard.load(measure.card_path(name))
    weights = measure.weights_path(name)
    assert card.name == name
    assert card.arch == f"tests.zoo.models:{models.ZOO[name].__name__}"
    assert card.weights["file"] == weights.name
    assert sha256_file(weights) == card.weights["sha256"]
    assert weights.stat().st_size < 300 * 1024
    acc = card.validation["accuracy"]
    assert acc["model"]["mean_deg"] < 0.5 * acc["predict_mean_baseline"]["mean_deg"]


@pytest.mark.parametrize("name", NAMES)
def test_validation_error_reproduces(name, val_sets):
    torch.set_num_threads(1)
    module, card = measure.load_zoo(name)
    assert isinstance(module, models.ZOO[name])
    gs = _val(card, val_sets)
    assert gs.digest() == card.validation["set"]["digest"]
    got = measure.measure(module, card, gs)["accuracy"]
    want = card.validation["accuracy"]
    assert got["model"]["mean_deg"] == pytest.approx(want["model"]["mean_deg"], abs=0.05)
    assert got["predict_mean_baseline"]["mean_deg"] == pytest.approx(want["predict_mean_baseline"]["mean_deg"], abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_docstring_names_a_paper(name):
    doc = models.ZOO[name].__doc__
    assert doc and re.search(r"\b(19|20)\d\d\b", doc), f"{name}: docstring must name its paper with the year"
    assert '"' in doc  # the paper's title, quoted


def test_constructor_args_are_json_keywords():
    import inspect
    import json

    for cls in models.ZOO.values():
        for p in inspect.signature(cls).parameters.values():
            assert p.default is not inspect.Parameter.empty, f"{cls.__name__}.{p.name} needs a default"
            json.dumps(p.default)
