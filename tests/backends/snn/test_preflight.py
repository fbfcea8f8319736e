"""to_snn refuses a model with several inputs before any pass runs: snn-qcfs would otherwise fine-tune for minutes
(and loihi-distill train a student) only to be refused at conversion."""

from __future__ import annotations

import pytest

import edgekit.compiler as ek
from edgekit.errors import BadInputError
from edgekit.models.card import ModelCard
from edgekit.passes.qcfs import QCFS
from tests.zoo import measure


def test_a_multi_input_model_is_refused_before_qcfs_trains(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(QCFS, "run", lambda self, *a, **k: ran.append("qcfs"))
    card = ModelCard.load(measure.card_path("mpiigaze_lenet"))
    with pytest.raises(BadInputError, match=r"^the model takes 2 inputs: input head_pose; to_snn converts single-input "
                                            r"image models only"):
        ek.compile(str(measure.weights_path("mpiigaze_lenet")), "snn-qcfs", card=measure.card_path("mpiigaze_lenet"),
                   arch=card.arch, out=tmp_path / "o", cache=False)
    assert ran == [] and not (tmp_path / "o").exists()
