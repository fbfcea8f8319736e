"""edgekit/evalset.py: what a temporal model's output describes (future horizons, or one frame of its window) decides
the windows it is fed and the gaze it is scored against; a set of another image size than the model's is refused
unless resized on request (and then noted), and sets under 100 samples are warned about."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgekit.data.gaze import pitchyaw_to_vector
from edgekit.data.npz import GazeSet, make_meta
from edgekit.data.synthetic import synthetic_sequences, synthetic_set
from edgekit.errors import BadInputError
from edgekit.evalset import (FRAME_STRIDE, default_eval_set, fit_to_model, model_inputs, small_set_warning,
                             temporal_frame)
from edgekit.models.card import InputSpec, ModelCard, OutputSpec


@pytest.fixture(autouse=True)
def _progress_off_after_each_test():
    """The CLI sets the process's verbosity with pytest's captured stderr, closed after the test: later tests that
    render sets would write progress into it."""
    yield
    from edgekit import progress

    progress.configure(progress.QUIET)


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


# --- fitting a set to the model: another image size is refused unless resize is asked for, and then noted ---

def eye_card(size=(40, 64), face: tuple[int, int] | None = None) -> ModelCard:
    inputs = [InputSpec(name="image", shape=[1, 1, *size])]
    if face:
        inputs.append(InputSpec(name="face", shape=[1, 1, *face], source="face"))
    return ModelCard(name="m", arch="x", inputs=inputs, output=OutputSpec(shape=[1, 3]))


def eyes(n=12, size=(36, 60), **extras) -> GazeSet:
    rng = np.random.default_rng(4)
    gaze = pitchyaw_to_vector(rng.uniform(-0.5, 0.5, (n, 2))).astype(np.float32)
    return GazeSet(images=rng.integers(0, 256, (n, *size), dtype=np.uint8), gaze=gaze, meta=make_meta("eyes.npz"),
                   extras={k: rng.integers(0, 256, (n, *v), dtype=np.uint8) for k, v in extras.items()})


@pytest.mark.parametrize("role, name", [("eval", "evaluation set"), ("calib", "calibration set")])
def test_a_set_of_another_size_is_refused_naming_both_sizes_and_the_fix(role, name):
    with pytest.raises(BadInputError) as caught:
        fit_to_model(eyes(), eye_card(), role, resize=False)
    assert str(caught.value) == (
        f"{name} 'eyes.npz' has 36x60 images but the model takes 40x64; fix: pass --resize (resize=True in Python) to "
        "resize them (aspect ratio 1.67 -> 1.60), or write a resized copy once with "
        "`edgekit data convert npz IN.npz OUT.npz --size 40x64`")
    assert caught.value.exit_code == 2


def test_resize_when_asked_and_the_note_says_how_the_aspect_ratio_changed():
    gs = eyes()
    fitted, notes = fit_to_model(gs, eye_card(), "eval", resize=True)
    assert notes == ["evaluation set resized from 36x60 to 40x64 (aspect ratio 1.67 -> 1.60)"]
    expected = np.stack([cv2.resize(im, (64, 40), interpolation=cv2.INTER_AREA) for im in gs.images])
    np.testing.assert_array_equal(fitted.images, expected)
    np.testing.assert_array_equal(fitted.gaze, gs.gaze)  # labels untouched
    assert fitted.meta["preprocessing"] == "resized from 36x60 to 40x64 (cv2.INTER_AREA)"
    assert fitted.digest() != gs.digest()  # cache keys and reports tell the resized set from the file
    # the model is then fed exactly the resized images, preprocessed once
    x = model_inputs(eye_card(), fitted).arrays["image"]
    np.testing.assert_array_equal(x, eye_card().preprocessing.apply(expected, 1, (40, 64)))


def test_a_set_that_fits_comes_back_as_it_is():
    gs = eyes(size=(40, 64))
    for resize in (False, True):
        fitted, notes = fit_to_model(gs, eye_card(), "calib", resize=resize)
        assert fitted is gs and notes == []
    _, notes = fit_to_model(eyes(size=(80, 128)), eye_card(), "eval", resize=True)  # same shape, twice the size
    assert notes == ["evaluation set resized from 80x128 to 40x64 (aspect ratio 1.60 kept)"]


def test_extra_image_inputs_are_fitted_to_their_own_input():
    card = eye_card(face=(32, 32))
    gs = eyes(size=(40, 64), face=(64, 48))
    with pytest.raises(BadInputError, match=r"evaluation set 'eyes.npz': extra 'face' has 64x48 images but the model's "
                                            r"input fed from it takes 32x32; fix: pass --resize"):
        fit_to_model(gs, card, "eval", resize=False)
    fitted, notes = fit_to_model(gs, card, "eval", resize=True)
    assert fitted.extras["face"].shape == (12, 32, 32) and fitted.images.shape == (12, 40, 64)
    assert notes == ["evaluation set's extra 'face' resized from 64x48 to 32x32 (aspect ratio 0.75 -> 1.00)"]


def test_temporal_sets_are_checked_frame_by_frame(seqs):
    assert fit_to_model(seqs, card([1, 5, 3]), "eval", resize=False) == (seqs, [])  # 36x60 frames, a 36x60 model
    wide = card([1, 5, 3]).model_copy(update={"inputs": [InputSpec(name="frames", shape=[1, 7, 1, 40, 64], layout="NTCHW")]})
    with pytest.raises(BadInputError, match="has 36x60 images but the model takes 40x64"):
        fit_to_model(seqs, wide, "eval", resize=False)


@pytest.mark.parametrize("n, role, warning", [
    (10, "eval", "evaluation set has 10 samples: the mean error and the predict-the-mean baseline are not meaningful "
                 "under 100"),
    (1, "eval", "evaluation set has 1 sample: the mean error and the predict-the-mean baseline are not meaningful under 100"),
    (99, "calib", "calibration set has 99 samples: INT8 ranges calibrated on under 100 samples may not cover real inputs"),
    (100, "eval", None),
])
def test_sets_under_100_samples_get_a_warning(n, role, warning):
    assert small_set_warning(eyes(n=n), role) == warning


# --- the compile path: edgekit.compile(resize=) and `edgekit compile --resize` call fit_to_model for both sets ---

@pytest.fixture(scope="module")
def small_36x60(tmp_path_factory):
    """Ten 36x60 eye images (TinyGaze takes 40x64), written as a plain numpy file would be."""
    gs = synthetic_set(10, seed=31, size=(36, 60), cache=False, workers=1)
    path = tmp_path_factory.mktemp("sets") / "eyes36x60.npz"
    np.savez(path, images=gs.images, gaze=gs.gaze)
    return path


@pytest.mark.parametrize("kind, role", [("eval", "evaluation set"), ("calib", "calibration set")])
def test_compile_refuses_a_set_of_another_size_before_any_work(small_36x60, tmp_path, kind, role):
    import edgekit.compiler as ek

    target = "onnx" if kind == "eval" else "onnx-int8"
    with pytest.raises(BadInputError, match=f"{role} 'eyes36x60.npz' has 36x60 images but the model takes 40x64; fix: "
                                            "pass --resize"):
        ek.compile(None, target, out=tmp_path / "out", **{kind: small_36x60})
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_compile_with_resize_notes_the_resize_and_the_small_set(small_36x60, tmp_path):
    import edgekit.compiler as ek

    res = ek.compile(None, "onnx", eval=small_36x60, out=tmp_path / "out", resize=True)
    assert "evaluation set resized from 36x60 to 40x64 (aspect ratio 1.67 -> 1.60)" in res.report.notes
    assert ("evaluation set has 10 samples: the mean error and the predict-the-mean baseline are not meaningful "
            "under 100") in res.report.notes


@pytest.mark.slow
def test_cli_compile_refuses_without_resize_and_notes_it_with(small_36x60, tmp_path, capsys):
    from edgekit.cli import run

    argv = ["compile", "--target", "onnx", "--eval-set", str(small_36x60)]
    assert run([*argv, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: evaluation set 'eyes36x60.npz' has 36x60 images") and "--resize" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "refused").exists()
    assert run([*argv, "--resize", "--out", str(tmp_path / "resized")]) == 0
    report = json.loads((tmp_path / "resized" / "report.json").read_text())
    assert "evaluation set resized from 36x60 to 40x64 (aspect ratio 1.67 -> 1.60)" in report["notes"]
