"""edgekit/finetune.py feeds every input a model declares: a head-pose model (MPIIGaze-style) fine-tunes for QAT, QCFS
and pruning like a single-image one; sequence models are refused in one line."""

from __future__ import annotations

import pytest
import torch

from edgekit.cli import run
from edgekit.errors import BadInputError
from edgekit.finetune import fine_tune
from edgekit.passes.base import REGISTRY, TrainingPass
from edgekit.recipe import load_recipe
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


TRAINING = sorted(name for name, cls in REGISTRY.items() if issubclass(cls, TrainingPass))


def test_training_passes_train_on_the_cpu_unless_told_and_ask_a_scheduler_for_a_gpu():
    assert TRAINING == ["distill", "finetune_snn", "prune", "qat", "qcfs"]
    for name in TRAINING:
        steps = {"fine_tune_steps": 5} if name == "prune" else {}
        cpu, gpu = REGISTRY[name](**steps), REGISTRY[name](**steps, device="cuda")
        assert (cpu.gpus(), gpu.gpus()) == (0, 1), name
        # the device is in the cache key when it is cuda; CPU recipes keep their keys
        assert "device" not in str(cpu) and "device=cuda" in str(gpu)
        assert cpu.host_dependence().endswith("the CPU") and "the GPU" in gpu.host_dependence()
    assert REGISTRY["prune"](device="cuda").gpus() == 0  # no fine-tuning: nothing trains
    assert [p.gpus() for p in load_recipe("onnx-int8-qat").passes] == [0, 0, 0, 0]  # every shipped recipe: the CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a CUDA GPU")
def test_a_gpu_where_there_is_none_is_a_one_line_error_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # as Ray sets it for a GPU task, on a node whose torch is a CPU build
    with pytest.raises(BadInputError, match=r"^qat: device cuda, but torch \S+ here has no CUDA GPU, "
                                            r"CUDA_VISIBLE_DEVICES=0; fix: set device: cpu in the recipe, or build where"):
        REGISTRY["qat"](device="cuda").training_device()
    assert REGISTRY["qat"]().training_device() == "cpu"
    recipe = tmp_path / "gpu.yaml"
    recipe.write_text("name: gpu\nbackend: onnx\npasses:\n  - fold_bn\n  - prune:\n      fine_tune_steps: 2\n"
                      "      device: cuda\n  - export_onnx\n")
    out = tmp_path / "out"
    assert run(["compile", "tinygaze", "--target", str(recipe), "--out", str(out), "--no-cache"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: prune: device cuda, but torch") and "Traceback" not in "".join(err)
    assert not out.exists()
