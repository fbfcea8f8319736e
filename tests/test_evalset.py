"""edgekit/evalset.py: what a temporal model's output describes (future horizons, or one frame of its window) decides
the windows it is fed and the gaze it is scored against."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.data.synthetic import synthetic_sequences
from edgekit.errors import BadInputError
from edgekit.evalset import FRAME_STRIDE, default_eval_set, model_inputs, temporal_frame
from edgekit.models.card import InputSpec, ModelCard, OutputSpec


def card(shape: list[int], frame: str | None = None, window: int = 7) -> ModelCard:
    return ModelCard(name="t", arch="x", inputs=[InputSpec(name="frames", shape=[1, window, 1, 36, 60], layout="NTCHW")],
                     output=OutputSpec(shape=shape, convention="pitchyaw_rad" if shape[-1] == 2 else "unit_vector",
                                       frame=frame))


@pytest.fixture(scope="module")
def seqs():
    return synthetic_sequences(2, 30, seed=5, size=(36, 60), cache=False, workers=1)


def test_which_frames_an_output_describes():
    assert temporal_frame(card([1, 5, 3])) == "future"  # a (1, H, C) output: H future frames
    assert temporal_frame(card([1, 2], "middle")) == "middle"
    with pytest.raises(BadInputError, match=r"outputs shape \[1, 2\]: one frame's gaze, and its card does not say which "
                                            r"frame; fix: set output.frame in the card to 'last' or 'middle'"):
        temporal_frame(card([1, 2]))
    with pytest.raises(BadInputError, match="output.frame 'last' needs an output of shape \\(1, C\\)"):
        temporal_frame(card([1, 5, 3], "last"))


@pytest.mark.parametrize("frame, offset", [("last", 6), ("middle", 3)])
def test_one_frame_models_are_scored_against_that_frame_of_each_window(seqs, frame, offset):
    inputs = model_inputs(card([1, 2], frame), seqs)
    per_seq = (30 - 7) // FRAME_STRIDE + 1
    assert inputs.arrays["frames"].shape == (2 * per_seq, 7, 1, 36, 60) and inputs.truth.shape == (2 * per_seq, 3)
    # window k of the first sequence starts at frame k * stride: its truth is frame k * stride + offset
    np.testing.assert_array_equal(inputs.truth[1], seqs.gaze[FRAME_STRIDE + offset])


def test_forecast_models_keep_their_future_frames(seqs):
    inputs = model_inputs(card([1, 5, 3]), seqs)
    assert inputs.truth.shape[1:] == (5, 3)
    np.testing.assert_array_equal(inputs.truth[0], seqs.gaze[7:12])  # the 5 frames after the first window


def test_default_evaluation_sets_hold_enough_windows_of_either_kind():
    assert len(model_inputs(card([1, 2], "middle"), default_eval_set(card([1, 2], "middle"), 64))) >= 64


def test_output_frame_flag_sets_the_card_and_is_checked(tmp_path):
    from edgekit.source import load_source

    loaded = load_source("temporalgaze", tmp_path / "a", output_frame="future")
    assert loaded.card.output.frame == "future" and temporal_frame(loaded.card) == "future"
    wrong = load_source("temporalgaze", tmp_path / "b", output_frame="last")  # its output is (1, 5, 3): horizons
    with pytest.raises(BadInputError, match=r"output.frame 'last' needs an output of shape \(1, C\)"):
        temporal_frame(wrong.card)
    with pytest.raises(BadInputError, match="--output-frame last describes temporal models, but tinygaze takes NCHW"):
        load_source("tinygaze", tmp_path / "c", output_frame="last")
    with pytest.raises(BadInputError, match="--output-frame 'first'; fix: use last, middle or future"):
        load_source("temporalgaze", tmp_path / "d", output_frame="first")
