"""edgekit/finetune.py feeds every input a model declares: a head-pose model (MPIIGaze-style) fine-tunes for QAT, QCFS
and pruning like a single-image one; sequence models are refused in one line."""

from __future__ import annotations

import pytest
import torch

from edgekit.errors import BadInputError
from edgekit.finetune import fine_tune
from edgekit.models.card import InputSpec, ModelCard, OutputSpec
from tests.fixtures.gaze_models import PreActGaze

CARD = ModelCard(name="preact", arch="tests.fixtures.gaze_models:PreActGaze",
                 inputs=[InputSpec(name="image", shape=[1, 1, 36, 60]), InputSpec(name="head_pose", shape=[1, 2], source="head_pose")],
                 output=OutputSpec(shape=[1, 2], convention="pitchyaw_rad"))


def test_a_head_pose_model_fine_tunes_on_images_and_head_pose():
    torch.manual_seed(0)
    model = PreActGaze()
    before = model.fc.weight.detach().clone()
    fine_tune(model, CARD, steps=3, batch=8, lr=1e-2, label="test")
    changed = (model.fc.weight - before).abs()
    assert changed[:, -2:].sum() > 0  # the head-pose columns of the last layer were trained: head pose was fed


def test_sequence_models_are_refused_in_one_line():
    card = CARD.model_copy(update={"inputs": [InputSpec(name="frames", shape=[1, 7, 1, 36, 60], layout="NTCHW")]})
    with pytest.raises(BadInputError, match="^test trains on single eye images, not NTCHW sequences; fix: drop it"):
        fine_tune(PreActGaze(), card, steps=1, batch=2, lr=1e-3, label="test")
