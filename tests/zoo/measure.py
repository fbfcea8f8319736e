"""Validation sets and error measurement for the zoo models, shared by scripts/train_zoo.py and the tests.

Image models are measured the way `edgekit.compile` feeds them (edgekit.evalset.model_inputs: card
preprocessing, head pose where the card declares it). Gaze360Temporal is windowed here, because
edgekit's temporal contract reads every temporal output as forecast horizons (B, H, 3): a window of 7
frames is scored against the gaze of its middle frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgekit.data import synthetic
from edgekit.data.metrics import accuracy
from edgekit.data.npz import GazeSet
from edgekit.evalset import model_inputs, render_options, to_vectors
from edgekit.models.card import ModelCard
from edgekit.models.evaluate import preprocessed_images, sequence_windows
from edgekit.models.io import load_into, read_state_dict
from edgekit.torch_module import build_arch

WEIGHTS_DIR = Path(__file__).parent / "weights"
VAL_IMAGES = 1000
VAL_SEQUENCES, SEQUENCE_LENGTH, VAL_STRIDE = 60, 24, 3


def card_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.card.json"


def weights_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


def is_temporal(card: ModelCard) -> bool:
    return card.image_input.layout == "NTCHW"


def val_set(card: ModelCard) -> GazeSet:
    """The held-out validation set of a card: 'val' seed, the card's input size, head pose and views where the model
    takes them."""
    if is_temporal(card):
        return synthetic.synthetic_sequences(VAL_SEQUENCES, SEQUENCE_LENGTH, synthetic.SEEDS["val"], card.image_size,
                                             role="val")
    return synthetic.standard_set("val", VAL_IMAGES, card.image_size, **render_options(card))


def temporal_windows(seqs: GazeSet, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (M, window) of windows within sequences, and the row of each window's middle frame (M,)."""
    obs, _ = sequence_windows(seqs, window, 0, stride=stride)
    return obs, obs[:, window // 2]


@torch.inference_mode()
def predict_vectors(model: torch.nn.Module, card: ModelCard, gs: GazeSet, batch: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """(predicted unit vectors, true unit vectors), float64, for every sample of the set."""
    model = model.eval()
    if is_temporal(card):
        window = card.image_input.shape[1]
        x = preprocessed_images(card, gs)
        obs, mid = temporal_windows(gs, window, VAL_STRIDE)
        outs = [model(torch.from_numpy(x[obs[i:i + batch]])).double().numpy() for i in range(0, len(obs), batch)]
        return to_vectors(np.concatenate(outs), card), gs.gaze[mid].astype(np.float64)
    inputs = model_inputs(card, gs)
    names = [s.name for s in card.inputs]
    outs = [model(*(torch.from_numpy(inputs.arrays[n][i:i + batch]) for n in names)).double().numpy()
            for i in range(0, len(inputs), batch)]
    return to_vectors(np.concatenate(outs), card), inputs.truth


def measure(model: torch.nn.Module, card: ModelCard, gs: GazeSet) -> dict:
    """The accuracy block of the card: model and predict-the-mean baseline summaries."""
    pred, true = predict_vectors(model, card, gs)
    return {"accuracy": accuracy(pred, true).model_dump()}


def set_info(card: ModelCard, gs: GazeSet) -> dict:
    info = {"source": gs.meta["source"], "n": len(gs), "seed": gs.meta.get("seed"), "digest": gs.digest(),
            "head_pose": gs.head_pose is not None}
    if is_temporal(card):
        obs, _ = temporal_windows(gs, card.image_input.shape[1], VAL_STRIDE)
        info.update({"n_sequences": VAL_SEQUENCES, "length": SEQUENCE_LENGTH, "window_stride": VAL_STRIDE,
                     "n_windows": len(obs), "scored": "middle frame of each window"})
    return info


def load_zoo(name: str) -> tuple[torch.nn.Module, ModelCard]:
    """A committed zoo model through edgekit's own loaders (build_arch + strict safetensors load), and its card."""
    card = ModelCard.load(card_path(name))
    module = load_into(build_arch(card.arch, card.arch_config), read_state_dict(weights_path(name)), name)
    return module, card
