"""Model cards: what a model takes and returns, how it was trained, and its measured error.

A card is JSON beside the weights. Input spec and preprocessing are what verification and every
target respect; `validation` holds the numbers measured by the command that made the weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekit.errors import BadInputError
from edgekit.fileio import atomic_write_text

CARD_SCHEMA_VERSION = 1


class InputSpec(BaseModel):
    """One model input. `source` says what feeds it: `image` (the eye image, preprocessed), `head_pose` (pitch, yaw) or
    the name of an extra array of the gaze set (`extra_<name>` in the .npz; the renderer draws second_eye, face and
    face_grid), preprocessed like the eye image when it is a uint8 image."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = "image"
    shape: list[int]  # with batch 1, e.g. [1, 1, 40, 64]
    dtype: Literal["float32"] = "float32"
    layout: str = "NCHW"
    color: Literal["gray", "rgb", "bgr", "none"] = "gray"
    source: str = Field("image", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @property
    def takes_pixels(self) -> bool:
        """Whether the input is an image preprocessed like the eye (the eye itself, or a 4-D crop such as a face)."""
        return self.source == "image" or (self.source != "head_pose" and len(self.shape) == 4)

    def meaning(self) -> str:
        """What the values mean, for sidecars and model descriptions."""
        if self.takes_pixels:
            return f"{self.color} pixels of the {'eye image' if self.source == 'image' else self.source}, x = pixel * scale + offset"
        if self.source == "head_pose":
            return "head pitch, yaw in radians (gaze convention)"
        return f"the gaze set's extra array {self.source!r} as float32"


class OutputSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = "gaze"
    shape: list[int]
    convention: Literal["unit_vector", "pitchyaw_rad"] = "unit_vector"
    # temporal models only: "future" = the next H frames' gaze, shape (1, H, C) (edgekit's temporalgaze); "last" or
    # "middle" = the gaze of that frame of the observed window, shape (1, C) (a tracker's current frame, Gaze360).
    # Unset: "future" for a (1, H, C) output; a (1, C) output must say which frame.
    frame: Literal["future", "last", "middle"] | None = None


class Preprocessing(BaseModel):
    """x = image * scale + offset, after optional histogram equalisation; applied outside the graph."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    scale: float = 1 / 127.5
    offset: float = -1.0
    equalize_hist: bool = False

    def apply(self, images: np.ndarray, channels: int, size: tuple[int, int]) -> np.ndarray:
        """uint8 (N,H,W) or (N,H,W,C) -> float32 (N,C,H,W) at `size`, with `channels` channels."""
        import cv2

        imgs = np.asarray(images)
        if imgs.ndim == 3:
            imgs = imgs[..., None]
        if imgs.shape[-1] == 3 and channels == 1:
            imgs = np.stack([cv2.cvtColor(im, cv2.COLOR_BGR2GRAY) for im in imgs])[..., None]
        if tuple(imgs.shape[1:3]) != tuple(size):
            resized = [cv2.resize(im, (size[1], size[0]), interpolation=cv2.INTER_AREA) for im in imgs]
            imgs = np.stack(resized).reshape(len(imgs), size[0], size[1], -1)
        if self.equalize_hist and imgs.shape[-1] == 1:
            imgs = np.stack([cv2.equalizeHist(im[..., 0]) for im in imgs])[..., None]
        if imgs.shape[-1] == 1 and channels == 3:
            imgs = np.repeat(imgs, 3, axis=-1)
        # written once into a fresh C-order NCHW array (for one channel numpy would keep the NHWC strides, which torch
        # reads as channels_last: a model's x.view(x.size(0), -1) after a conv then failed in the reference run), with
        # the float32 arithmetic of astype, multiply, add: through four 245 MB temporaries a training set's 24,000
        # images took 4.7 s in a fresh process, written in place 0.15 s, the same bytes
        n, height, width, c = imgs.shape
        x = np.empty((n, c, height, width), np.float32)
        np.multiply(imgs.transpose(0, 3, 1, 2), np.float32(self.scale), out=x)
        x += np.float32(self.offset)
        return x


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = CARD_SCHEMA_VERSION
    name: str
    arch: str
    arch_config: dict = Field(default_factory=dict)
    description: str = ""
    inputs: list[InputSpec]
    output: OutputSpec
    preprocessing: Preprocessing = Preprocessing()
    weights: dict = Field(default_factory=dict)  # file, sha256, dtype
    renderer: dict = Field(default_factory=dict)  # synthetic data the model was trained on
    training: dict = Field(default_factory=dict)  # recipe: optimiser, steps, data sizes and seeds, wall time
    validation: dict = Field(default_factory=dict)  # measured error with its baseline, set seed and digest
    provenance: dict = Field(default_factory=dict)  # edgekit/torch versions, host, device, date

    @property
    def image_input(self) -> InputSpec:
        return self.inputs[0]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.image_input.shape[-2:])

    @property
    def channels(self) -> int:
        return self.image_input.shape[-3]

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        path = Path(path)
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except FileNotFoundError:
            raise BadInputError(f"{path}: model card not found; fix: pass the .json written beside the weights") from None
        except (json.JSONDecodeError, ValidationError) as exc:
            first = str(exc).splitlines()[0:3]
            raise BadInputError(f"{path}: not a valid model card ({' '.join(first)}); fix: regenerate it with `edgekit demo train`") from None
