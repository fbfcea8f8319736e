"""A small sequential gaze CNN that regresses pitch and yaw in radians (card output.convention pitchyaw_rad), for the
spiking targets' pitch/yaw readout: conv/ReLU layers, a linear head with 2 outputs, no normalisation, trained for a
few hundred steps on synthetic eyes with edgekit.finetune.fine_tune (1x40x64, TinyGaze's preprocessing)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

ARCH = "tests.snn.pitchyaw_gaze:PitchYawGaze"


class PitchYawGaze(nn.Module):
    def __init__(self, width: int = 8, input_size: list = (40, 64)):
        super().__init__()
        h, w = (s // 8 for s in input_size)
        self.features = nn.Sequential(nn.Conv2d(1, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(2 * width, 2 * width, 3, 2, 1), nn.ReLU(), nn.Flatten())
        self.fc = nn.Linear(2 * width * h * w, 32)
        self.out = nn.Linear(32, 2)  # pitch, yaw in radians

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(self.features(x))))


def card_dict(weights: Path | None = None) -> dict:
    """TinyGaze's card with this model's arch and a pitch/yaw output."""
    from edgekit.models.io import WEIGHTS_DIR

    card = json.loads((WEIGHTS_DIR / "tinygaze.json").read_text())
    for key in ("training", "validation"):
        card.pop(key, None)
    card |= {"name": "pitchyaw_gaze", "arch": ARCH, "arch_config": {"width": 8, "input_size": [40, 64]},
             "description": "small sequential CNN regressing pitch and yaw (tests/snn/pitchyaw_gaze.py)",
             "output": {"name": "gaze", "shape": [1, 2], "convention": "pitchyaw_rad"}}
    if weights is not None:
        card["weights"] = {"file": weights.name, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(), "dtype": "float32"}
    return card


WEIGHTS = Path(__file__).with_name("weights") / "pitchyaw_gaze.safetensors"


def trained() -> nn.Module:
    """PitchYawGaze with the weights `train()` gives, committed in tests/snn/weights/ (training took 11 s of every test
    run; `python -m tests.snn.pitchyaw_gaze` trains and writes them again), in eval mode."""
    from safetensors.torch import load_file

    model = PitchYawGaze()
    model.load_state_dict(load_file(str(WEIGHTS)))
    return model.eval()


def train(steps: int = 200, seed: int = 0) -> nn.Module:
    """PitchYawGaze trained by edgekit.finetune.fine_tune (cosine loss on the vector the pitch/yaw output stands for)."""
    from edgekit.finetune import fine_tune
    from edgekit.models.card import ModelCard

    torch.manual_seed(seed)
    return fine_tune(PitchYawGaze(), ModelCard.model_validate(card_dict()), steps=steps, batch=64, lr=5e-3, seed=seed,
                     one_cycle=True)


def save(model: nn.Module, folder: Path) -> tuple[Path, Path]:
    """weights (safetensors) and card (json) in `folder`."""
    from safetensors.torch import save_file

    weights = folder / "pitchyaw_gaze.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    card = folder / "pitchyaw_gaze.card.json"
    card.write_text(json.dumps(card_dict(weights), indent=2))
    return weights, card


if __name__ == "__main__":
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    WEIGHTS.parent.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in train().state_dict().items()}, str(WEIGHTS))
