"""Inputs beyond one eye image (iTracker: the other eye, a face crop, a face grid) are fed from named extra arrays of a
gaze set: `extra_<name>` in the .npz, rendered by edgekit.data.views for synthetic sets."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.data.npz import GazeSet, make_meta, read_gazeset, write_gazeset
from edgekit.data.synthetic import synthetic_set
from edgekit.data.views import GRID, render_views
from edgekit.errors import BadInputError
from edgekit.evalset import default_eval_set, model_inputs, render_options
from edgekit.models.card import InputSpec, ModelCard, OutputSpec
from edgekit.source import parse_input_shapes

EYE = InputSpec(name="right_eye", shape=[1, 1, 36, 60])
OTHER = InputSpec(name="left_eye", shape=[1, 1, 36, 60], source="second_eye")
FACE = InputSpec(name="face", shape=[1, 1, 32, 32], source="face")
GRID_IN = InputSpec(name="face_grid", shape=[1, 625], layout="NC", color="none", source="face_grid")
VIEWS = {"second_eye": [36, 60], "face": [32, 32], "face_grid": [1, 625]}


def itracker_card(inputs=(EYE, OTHER, FACE, GRID_IN)) -> ModelCard:
    return ModelCard(name="it", arch="x", inputs=list(inputs), output=OutputSpec(shape=[1, 3]))


@pytest.fixture(scope="module")
def views_set():
    return synthetic_set(16, 5, (36, 60), head_pose=True, views=VIEWS, cache=False, workers=1)


def test_views_do_not_change_the_eye_images(views_set):
    plain = synthetic_set(16, 5, (36, 60), head_pose=True, cache=False, workers=1)
    assert np.array_equal(views_set.images, plain.images) and np.array_equal(views_set.gaze, plain.gaze)
    assert views_set.digest() != plain.digest()  # the views are part of what the set is
    assert views_set.extras["second_eye"].shape == (16, 36, 60) and views_set.extras["face"].shape == (16, 32, 32)
    assert views_set.extras["face_grid"].shape == (16, GRID, GRID)


def test_second_eye_looks_the_same_way_and_the_face_grid_follows_the_head(views_set):
    from edgekit.data.render import render_eye, sample_appearance

    rng = np.random.default_rng(0)
    app = sample_appearance(rng, 60, head_pose=True)
    left, right = np.radians([0.0, -30.0]), np.radians([0.0, 30.0])
    dark_col = [render_views(app, g, render_eye(app, g, 36, 60, rng), {"second_eye": [36, 60]}, rng)["second_eye"]
                .astype(float).mean(axis=0).argmin() for g in (left, right)]
    eye_col = [render_eye(app, g, 36, 60, rng).astype(float).mean(axis=0).argmin() for g in (left, right)]
    # the pupil moves the same way in both eyes when the gaze turns from one side to the other
    assert np.sign(dark_col[1] - dark_col[0]) == np.sign(eye_col[1] - eye_col[0]) != 0
    heads = views_set.head_pose[:, 1]
    centre_x = [np.flatnonzero(g.any(axis=0)).mean() for g in views_set.extras["face_grid"]]
    assert np.corrcoef(heads, centre_x)[0, 1] > 0.9


def test_every_declared_input_is_fed_from_the_set(views_set):
    card = itracker_card()
    assert render_options(card) == {"head_pose": True, "views": VIEWS}
    inputs = model_inputs(card, views_set)
    assert [inputs.arrays[s.name].shape for s in card.inputs] == [(16, 1, 36, 60), (16, 1, 36, 60), (16, 1, 32, 32), (16, 625)]
    assert inputs.arrays["left_eye"].dtype == np.float32 and -1 <= inputs.arrays["face"].min() < inputs.arrays["face"].max() <= 1
    assert np.array_equal(inputs.arrays["face_grid"], views_set.extras["face_grid"].reshape(16, 625))
    assert len(default_eval_set(card, 8).extras) == 3


def test_extra_arrays_round_trip_through_npz(views_set, tmp_path):
    path = write_gazeset(views_set, tmp_path / "it.npz")
    back = read_gazeset(path)
    assert sorted(back.extras) == ["face", "face_grid", "second_eye"] and back.digest() == views_set.digest()
    with np.load(path) as npz:
        assert "extra_face" in npz.files  # plain numpy reads it
    assert back.subset(slice(0, 4)).extras["face"].shape == (4, 32, 32)


def test_a_missing_or_misshapen_extra_is_one_line(views_set, tmp_path):
    plain = GazeSet(images=views_set.images, gaze=views_set.gaze, meta=views_set.meta)
    with pytest.raises(BadInputError, match=r"input 'face' is fed from the set's extra array 'face', which the set lacks "
                                            r"\(it has none\); fix: store it as 'extra_face' in the .npz"):
        model_inputs(itracker_card((EYE, FACE)), plain)
    odd = GazeSet(images=views_set.images, gaze=views_set.gaze, meta=views_set.meta,
                  extras={"face_grid": np.zeros((16, 24, 24), np.float32)})
    with pytest.raises(BadInputError, match=r"input 'face_grid' \[1, 625\] cannot take the set's 'extra_face_grid'"):
        model_inputs(itracker_card((EYE, GRID_IN)), odd)
    bad = GazeSet(images=views_set.images, gaze=views_set.gaze, meta=make_meta("t"), extras={"face": np.zeros((3, 4, 4), np.uint8)})
    with pytest.raises(BadInputError, match=r"'extra_face' must have one row per image \(16, ...\)"):
        write_gazeset(bad, tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


def test_unknown_npz_keys_point_at_the_extra_prefix(views_set, tmp_path):
    path = tmp_path / "odd.npz"
    np.savez(path, images=views_set.images, gaze=views_set.gaze, meta=np.array('{"format_version": 1}'), face=views_set.images)
    with pytest.raises(BadInputError, match=r"unknown keys \['face'\].*name extra model inputs extra_<name>"):
        read_gazeset(path)


def test_input_shapes_name_their_source():
    specs = parse_input_shapes(["right_eye=1x1x36x60", "second_eye=1x1x36x60", "face=1x1x32x32", "face_grid=1x625",
                                "head_pose=1x2"])
    assert [s.source for s in specs] == ["image", "second_eye", "face", "face_grid", "head_pose"]
    assert [s.takes_pixels for s in specs] == [True, True, True, False, False]
    with pytest.raises(BadInputError, match="needs a name like face=1x1x32x32"):
        parse_input_shapes(["1x1x36x60", "1x1x32x32"])
