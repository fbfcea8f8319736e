"""Turn a gaze set into exactly what a model takes (every declared input) and the truth to score it by."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgekit.data import synthetic
from edgekit.data.gaze import pitchyaw_to_vector
from edgekit.data.npz import GazeSet
from edgekit.errors import BadInputError
from edgekit.models.card import ModelCard
from edgekit.models.evaluate import preprocessed_images, sequence_windows

EVAL_SEQUENCE_LENGTH = 120
Runner = Callable[[dict[str, np.ndarray]], np.ndarray]  # a runtime's run(): inputs by name -> output 0


@dataclass(frozen=True)
class ModelInputs:
    """arrays: input name -> float32 (N, ...); truth: (N, 3) or (N, H, 3) unit gaze the outputs are scored against."""

    arrays: dict[str, np.ndarray]
    truth: np.ndarray

    def __len__(self) -> int:
        return len(self.truth)

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """Batch-1 inputs of sample i."""
        return {k: v[i:i + 1] for k, v in self.arrays.items()}

    def take(self, n: int) -> ModelInputs:
        return ModelInputs({k: v[:n] for k, v in self.arrays.items()}, self.truth[:n])


def is_temporal(card: ModelCard) -> bool:
    return card.image_input.layout == "NTCHW"


def model_inputs(card: ModelCard, gs: GazeSet) -> ModelInputs:
    """Preprocess images (card.preprocessing), add head pose where declared, window sequences for temporal models."""
    spec = card.image_input
    images = preprocessed_images(card, gs)
    if is_temporal(card):
        window, horizons = spec.shape[1], card.output.shape[1]
        obs, fut = sequence_windows(gs, window, horizons, stride=max(1, horizons))
        arrays = {spec.name: images[obs]}
        truth = gs.gaze[fut]
    else:
        arrays = {spec.name: images}
        truth = gs.gaze
    for extra in card.inputs[1:]:
        if extra.source != "head_pose":
            raise BadInputError(f"input {extra.name!r}: only one image input is supported; fix: declare source head_pose")
        if gs.head_pose is None:
            raise BadInputError(f"the model takes head pose ({extra.name!r}) but the evaluation set has none; "
                                "fix: use a set with head_pose (synthetic sets render it for such models)")
        if is_temporal(card) or extra.shape[1:] != [2]:
            raise BadInputError(f"input {extra.name!r} shape {extra.shape}: head pose must be (1, 2); fix: --input-shape")
        arrays[extra.name] = gs.head_pose.astype(np.float32)
    return ModelInputs(arrays, truth.astype(np.float64))


def to_vectors(outputs: np.ndarray, card: ModelCard) -> np.ndarray:
    """Model outputs in the card's convention -> unit gaze vectors (float64)."""
    out = np.asarray(outputs, dtype=np.float64)
    if card.output.convention == "pitchyaw_rad":
        return pitchyaw_to_vector(out)
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)


def run_batches(run: Runner, inputs: ModelInputs, batch: int) -> np.ndarray:
    """Outputs for every sample, `batch` samples per call (the last call may hold fewer); errors propagate."""
    return np.concatenate([run({k: v[i:i + batch] for k, v in inputs.arrays.items()}) for i in range(0, len(inputs), batch)])


def run_all(run: Runner, inputs: ModelInputs, batch: int = 64) -> np.ndarray:
    """Outputs for every sample, in batches where the model allows it, else one by one."""
    n = len(inputs)
    try:
        parts = [run({k: v[i:i + batch] for k, v in inputs.arrays.items()}) for i in range(0, n, batch)]
        out = np.concatenate(parts)
        if len(out) == n:
            return out
    except Exception:  # static batch-1 graphs refuse bigger batches
        pass
    return np.concatenate([run(inputs.sample(i)) for i in range(n)])


def default_eval_set(card: ModelCard, n: int, role: str = "eval") -> GazeSet:
    """Synthetic images (or sequences for temporal models) of the model's input size, with the role's own seed."""
    head_pose = any(s.source == "head_pose" for s in card.inputs)
    if is_temporal(card):
        window, horizons = card.image_input.shape[1], card.output.shape[1]
        per_seq = (EVAL_SEQUENCE_LENGTH - window - horizons) // horizons + 1
        return synthetic.synthetic_sequences(-(-n // per_seq), EVAL_SEQUENCE_LENGTH, synthetic.SEEDS[role], card.image_size,
                                             head_pose=head_pose, role=role)
    return synthetic.standard_set(role, n, card.image_size, head_pose=head_pose)
