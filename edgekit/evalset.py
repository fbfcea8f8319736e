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
FRAME_STRIDE = 4  # windows of a one-frame temporal model start every 4th frame: 512 windows span 19 sequences
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


def temporal_frame(card: ModelCard) -> str:
    """Which frames a temporal model's output describes: 'future' (horizons), 'last' or 'middle' (of its window)."""
    out, ndim = card.output, len(card.output.shape)
    frame = out.frame or ("future" if ndim == 3 else None)
    if frame is None:
        raise BadInputError(f"the temporal model outputs shape {out.shape}: one frame's gaze, and its card does not say "
                            "which frame; fix: set output.frame in the card to 'last' or 'middle' (or 'future' for a "
                            "(1, H, C) forecast)")
    if (frame == "future") != (ndim == 3):
        want = "(1, H, C): H future frames" if frame == "future" else "(1, C): one frame"
        raise BadInputError(f"the card's output.frame {frame!r} needs an output of shape {want}, but it declares "
                            f"{out.shape}; fix: correct output.shape or output.frame in the card")
    return frame


def model_inputs(card: ModelCard, gs: GazeSet) -> ModelInputs:
    """Preprocess images (card.preprocessing), add head pose where declared, window sequences for temporal models."""
    spec = card.image_input
    images = preprocessed_images(card, gs)
    if is_temporal(card) and temporal_frame(card) == "future":
        window, horizons = spec.shape[1], card.output.shape[1]
        obs, fut = sequence_windows(gs, window, horizons, stride=max(1, horizons))
        arrays = {spec.name: images[obs]}
        truth = gs.gaze[fut]
    elif is_temporal(card):  # the gaze of one frame of the observed window
        window = spec.shape[1]
        obs, _ = sequence_windows(gs, window, 0, stride=FRAME_STRIDE)
        arrays = {spec.name: images[obs]}
        truth = gs.gaze[obs[:, window - 1 if temporal_frame(card) == "last" else window // 2]]
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
        out = run_batches(run, inputs, batch)
        if len(out) == n:
            return out
    except Exception:  # static batch-1 graphs refuse bigger batches
        pass
    return np.concatenate([run(inputs.sample(i)) for i in range(n)])


def default_eval_set(card: ModelCard, n: int, role: str = "eval") -> GazeSet:
    """Synthetic images (or sequences for temporal models) of the model's input size, with the role's own seed."""
    head_pose = any(s.source == "head_pose" for s in card.inputs)
    if is_temporal(card):
        window = card.image_input.shape[1]
        if temporal_frame(card) == "future":
            horizons = card.output.shape[1]
            per_seq = (EVAL_SEQUENCE_LENGTH - window - horizons) // horizons + 1
        else:
            per_seq = (EVAL_SEQUENCE_LENGTH - window) // FRAME_STRIDE + 1
        return synthetic.synthetic_sequences(-(-n // per_seq), EVAL_SEQUENCE_LENGTH, synthetic.SEEDS[role], card.image_size,
                                             head_pose=head_pose, role=role)
    return synthetic.standard_set(role, n, card.image_size, head_pose=head_pose)
