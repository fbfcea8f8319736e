"""Turn a gaze set into exactly what a model takes (every declared input) and the truth to score it by."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgekit.data import synthetic
# fit_to_model and small_set_warning live beside the format (numpy and cv2 only, for `edgekit data check`); the
# compiler fits its evaluation and calibration sets through this module with the rest of what a model is fed
from edgekit.data.fit import fit_to_model, small_set_warning  # noqa: F401 (re-exported)
from edgekit.data.gaze import pitchyaw_to_vector
from edgekit.data.npz import EXTRA_PREFIX, GazeSet
from edgekit.data.views import RENDERED_VIEWS
from edgekit.errors import BadInputError
from edgekit.models.card import InputSpec, ModelCard
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

    def pick(self, indices: np.ndarray) -> ModelInputs:
        """The samples at `indices`, in that order."""
        return ModelInputs({k: v[indices] for k, v in self.arrays.items()}, self.truth[indices])


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
    """Preprocess images (card.preprocessing), add every further declared input (head pose, extra arrays), window
    sequences for temporal models."""
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
        arrays[extra.name] = _extra_input(card, extra, gs)
    return ModelInputs(arrays, truth.astype(np.float64))


def _extra_input(card: ModelCard, spec: InputSpec, gs: GazeSet) -> np.ndarray:
    """The array feeding a model input beyond the first: head pose, or the set's extra array named by its source."""
    if is_temporal(card):
        raise BadInputError(f"input {spec.name!r}: temporal models take one image sequence only; fix: drop the extra "
                            "input or use a per-frame model")
    if spec.source == "head_pose":
        if gs.head_pose is None:
            raise BadInputError(f"the model takes head pose ({spec.name!r}) but the evaluation set has none; "
                                "fix: use a set with head_pose (synthetic sets render it for such models)")
        if spec.shape[1:] != [2]:
            raise BadInputError(f"input {spec.name!r} shape {spec.shape}: head pose must be (1, 2); fix: --input-shape")
        return gs.head_pose.astype(np.float32)
    if spec.source == "image":
        raise BadInputError(f"input {spec.name!r} also declares source 'image'; fix: give each further crop its own "
                            f"source, an extra array of the set (e.g. second_eye, face)")
    arr = gs.extras.get(spec.source)
    if arr is None:
        rendered = f"; synthetic sets render {', '.join(RENDERED_VIEWS)}" if spec.source not in RENDERED_VIEWS else ""
        raise BadInputError(f"input {spec.name!r} is fed from the set's extra array {spec.source!r}, which the set lacks "
                            f"(it has {sorted(gs.extras) or 'none'}); fix: store it as '{EXTRA_PREFIX}{spec.source}' in the "
                            f".npz{rendered}")
    if arr.dtype == np.uint8 and arr.ndim in (3, 4) and len(spec.shape) == 4:  # an image: preprocessed like the eye
        return card.preprocessing.apply(arr, spec.shape[1], tuple(spec.shape[2:]))
    if arr[0].size != int(np.prod(spec.shape[1:])):
        raise BadInputError(f"input {spec.name!r} {spec.shape} cannot take the set's '{EXTRA_PREFIX}{spec.source}' of shape "
                            f"{arr.shape} (per sample {arr[0].size} values); fix: store one {spec.shape[1:]} entry per image")
    return np.ascontiguousarray(arr.reshape(len(arr), *spec.shape[1:]).astype(np.float32))


def render_options(card: ModelCard) -> dict:
    """What the synthetic renderer must draw for a model: head pose, and the extra views its inputs take."""
    sources = {s.source: s for s in card.inputs[1:]}
    views = {name: list(s.shape[-2:]) for name, s in sources.items() if name in RENDERED_VIEWS}
    return {"head_pose": "head_pose" in sources or bool(views), **({"views": views} if views else {})}


def to_vectors(outputs: np.ndarray, card: ModelCard) -> np.ndarray:
    """Model outputs in the card's convention -> unit gaze vectors (float64)."""
    out = np.asarray(outputs, dtype=np.float64)
    if card.output.convention == "pitchyaw_rad":
        return pitchyaw_to_vector(out)
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)


def run_batches(run: Runner, inputs: ModelInputs, batch: int, description: str | None = None) -> np.ndarray:
    """Outputs for every sample, `batch` samples per call (the last call may hold fewer); errors propagate.
    description: show progress over the batches (edgekit.progress), for runs that take long (verification)."""
    from edgekit.progress import track

    starts = range(0, len(inputs), batch)
    batches = track(starts, total=len(starts), description=description) if description else iter(starts)
    try:
        return np.concatenate([run({k: v[i:i + batch] for k, v in inputs.arrays.items()}) for i in batches])
    finally:
        if description:
            batches.close()  # a failed run ends its bar now (a caller may retry at batch 1), not when collected


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


def default_eval_set(card: ModelCard, n: int, role: str = "eval", seed: int | None = None) -> GazeSet:
    """Synthetic images (or sequences for temporal models) of the model's input size, with the role's own seed
    (`seed`: another one, for a set no role ever draws, e.g. a benchmark's unseen images)."""
    seed = synthetic.SEEDS[role] if seed is None else seed
    if is_temporal(card):
        window = card.image_input.shape[1]
        if temporal_frame(card) == "future":
            horizons = card.output.shape[1]
            per_seq = (EVAL_SEQUENCE_LENGTH - window - horizons) // horizons + 1
        else:
            per_seq = (EVAL_SEQUENCE_LENGTH - window) // FRAME_STRIDE + 1
        return synthetic.synthetic_sequences(-(-n // per_seq), EVAL_SEQUENCE_LENGTH, seed, card.image_size,
                                             head_pose=render_options(card)["head_pose"], role=role)
    return synthetic.synthetic_set(n, seed, card.image_size, role=role, **render_options(card))
