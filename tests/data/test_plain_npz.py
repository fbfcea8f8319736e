"""A set written with plain numpy is a valid set: meta optional, pitchyaw labels instead of gaze, numpy's default dtypes;
the digest is stable; `edgekit data` shows the format and warns about sets too small to mean anything."""

import json
import shutil

import numpy as np
import pytest

from edgekit.cli import run
from edgekit.cli.data import FORMAT_HELP
from edgekit.data import npz
from edgekit.data.gaze import CONVENTION, pitchyaw_to_vector, vector_to_pitchyaw
from edgekit.data.npz import GazeSet, make_meta, read_gazeset, write_gazeset
from edgekit.errors import BadInputError


@pytest.fixture(autouse=True)
def _progress_off_after_each_test():
    """The CLI sets the process's verbosity with pytest's captured stderr, closed after the test: later tests that
    render sets would write progress into it."""
    yield
    from edgekit import progress

    progress.configure(progress.QUIET)


def _labels(n=12, seed=0):
    rng = np.random.default_rng(seed)
    pitchyaw = rng.uniform(-0.6, 0.6, (n, 2))
    return rng.integers(0, 256, (n, 36, 60), dtype=np.uint8), pitchyaw


def test_plain_savez_of_images_and_gaze_reads_with_default_meta(tmp_path):
    images, pitchyaw = _labels()
    gaze = pitchyaw_to_vector(pitchyaw)  # float64, numpy's default: cast to the format's float32 on read
    np.savez(tmp_path / "eyes.npz", images=images, gaze=gaze)
    gs = read_gazeset(tmp_path / "eyes.npz")
    assert gs.meta == make_meta("eyes.npz")  # named after the file; layout and colour read off the images
    assert gs.meta["layout"] == "NHW" and gs.meta["color"] == "gray" and gs.meta["gaze_convention"] == CONVENTION
    assert gs.gaze.dtype == np.float32 and np.allclose(gs.gaze, gaze, atol=1e-7)
    np.testing.assert_array_equal(gs.images, images)
    np.testing.assert_allclose(gs.pitchyaw, pitchyaw, atol=1e-6)  # filled in, as write_gazeset does


def test_pitchyaw_labels_alone_become_gaze_vectors_in_edgekits_convention(tmp_path):
    images, pitchyaw = _labels()
    pitchyaw[0] = [0.0, 0.0]  # looks into the camera: (0, 0, -1)
    pitchyaw[1] = [0.3, 0.0]  # looks up: y is down in the camera frame, so g_y = -sin(0.3)
    np.savez(tmp_path / "py.npz", images=images, pitchyaw=pitchyaw.astype(np.float32))
    gs = read_gazeset(tmp_path / "py.npz")
    assert gs.gaze.shape == (12, 3) and gs.gaze.dtype == np.float32
    np.testing.assert_allclose(gs.gaze[0], [0, 0, -1], atol=1e-7)
    np.testing.assert_allclose(gs.gaze[1], [0, -np.sin(0.3), -np.cos(0.3)], atol=1e-6)
    np.testing.assert_allclose(vector_to_pitchyaw(gs.gaze), pitchyaw, atol=1e-5)


def test_the_digest_is_stable_across_reads_folders_and_an_edgekit_written_copy(tmp_path):
    images, pitchyaw = _labels()
    (tmp_path / "a").mkdir()
    np.savez(tmp_path / "a" / "eyes.npz", images=images, gaze=pitchyaw_to_vector(pitchyaw).astype(np.float32))
    first = read_gazeset(tmp_path / "a" / "eyes.npz")
    assert read_gazeset(tmp_path / "a" / "eyes.npz").digest() == first.digest()
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "eyes.npz", tmp_path / "b" / "eyes.npz")  # another folder, the same file name
    assert read_gazeset(tmp_path / "b" / "eyes.npz").digest() == first.digest()
    copy = write_gazeset(first, tmp_path / "c" / "eyes.npz")  # now with meta and pitchyaw stored
    assert read_gazeset(copy).digest() == first.digest()


def test_digest_of_an_edgekit_written_set_is_unchanged(tmp_path):
    """Cache keys and the digests in committed reports and cards come from this: a change to reading or digesting
    sets that already carry meta must not move it. Exact values only (no trigonometry), so every platform agrees."""
    rng = np.random.default_rng(0)
    gs = GazeSet(images=rng.integers(0, 256, (6, 8, 12), dtype=np.uint8), gaze=np.tile(np.float32([0, 0, -1]), (6, 1)),
                 pitchyaw=np.zeros((6, 2), np.float32), seq_id=np.arange(6, dtype=np.int32), meta=make_meta("pinned"))
    back = read_gazeset(write_gazeset(gs, tmp_path / "pinned.npz"))
    assert back.digest() == gs.digest() == "a8f179ec0e4cdb49f57a63098b14a8a27c776531bfb4ffed645648f07958a139"


def test_colour_images_int64_sequences_and_partial_meta(tmp_path):
    images, pitchyaw = _labels(n=4)
    colour = np.repeat(images[..., None], 3, axis=-1)
    np.savez(tmp_path / "c.npz", images=colour, gaze=pitchyaw_to_vector(pitchyaw), seq_id=np.arange(4),
             meta=np.array(json.dumps({"source": "my-camera", "fps": 30.0})))
    gs = read_gazeset(tmp_path / "c.npz")
    assert gs.meta["layout"] == "NHWC" and gs.meta["color"] == "bgr"  # keys the meta lacks take their defaults
    assert gs.meta["source"] == "my-camera" and gs.meta["fps"] == 30.0
    assert gs.seq_id.dtype == np.int32 and list(gs.seq_id) == [0, 1, 2, 3]


@pytest.mark.parametrize("arrays, message", [
    (lambda im, py: dict(images=im), r"missing key 'gaze' \(has \['images'\]\); fix: add 'gaze' \(float32, N,3 unit "
                                     r"vectors\) or 'pitchyaw' \(float32, N,2 pitch and yaw in radians\)"),
    (lambda im, py: dict(images=im, pitchyaw=np.degrees(py)), r"'pitchyaw' row 0 is \(.*\), beyond pitch \+-pi/2 and "
                                                              r"yaw \+-pi radians \(degrees\?\); fix: store radians"),
    # GazeML's convention has the opposite sign: stored beside edgekit's gaze it points the other way
    (lambda im, py: dict(images=im, gaze=pitchyaw_to_vector(py), pitchyaw=-py),
     r"'pitchyaw' row 0 points [\d.]+ deg away from 'gaze' row 0; fix: store pitchyaw in edgekit's convention"),
    (lambda im, py: dict(images=im, pitchyaw=py[:, :1]), r"'pitchyaw' must be float32 \(N, 2\), got float32 of shape \(12, 1\)"),
    (lambda im, py: dict(images=im.astype(np.float32), gaze=pitchyaw_to_vector(py)), "'images' must be uint8"),
    (lambda im, py: dict(images=im, gaze=pitchyaw_to_vector(py), seq_id=np.full(12, 2**40)),
     "'seq_id' holds values outside int32"),
])
def test_plain_files_are_still_checked(tmp_path, arrays, message):
    images, pitchyaw = _labels()
    np.savez(tmp_path / "bad.npz", **arrays(images, pitchyaw))
    with pytest.raises(BadInputError, match=r"bad\.npz: " + message):
        read_gazeset(tmp_path / "bad.npz")


def test_data_help_shows_the_format(capsys):
    assert run(["data", "--help"]) == 0
    data_help = capsys.readouterr().out
    assert run(["data", "check", "--help"]) == 0
    check_help = capsys.readouterr().out
    for text in (data_help, check_help):
        for key in ("images", "gaze", "meta", *npz._OPTIONAL, "extra_NAME"):  # every key the reader takes
            assert f"  {key} " in text, key
        for dtype in ("uint8", "float32", "int32", "float64"):
            assert dtype in text
        assert 'np.savez("eval.npz", images=' in text and "--resize" in text
    assert all(f"  {k} " in FORMAT_HELP for k in npz._OPTIONAL)


def test_data_check_warns_about_a_small_set_and_says_what_it_filled_in(tmp_path, capsys):
    images, pitchyaw = _labels(n=10)
    np.savez(tmp_path / "ten.npz", images=images, pitchyaw=pitchyaw)
    assert run(["data", "check", str(tmp_path / "ten.npz")]) == 0
    captured = capsys.readouterr()
    assert "ten.npz: ok, 10 images (36, 60)" in captured.out and "source ten.npz" in captured.out
    assert "filled in: gaze (from pitchyaw), meta (defaults, source = the file name)" in captured.out
    assert "warning: gaze set has 10 samples: a mean error or INT8 calibration from under 100 samples is not meaningful" \
        in captured.err
    assert run(["data", "check", "--format", "json", "-q", str(tmp_path / "ten.npz")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["n"] == 10 and doc["image_shape"] == [36, 60] and doc["source"] == "ten.npz"
    assert doc["digest"] == read_gazeset(tmp_path / "ten.npz").digest() and len(doc["warnings"]) == 1
    assert doc["filled_in"] == {"gaze": "from pitchyaw", "meta": "defaults, source = the file name"}


def test_data_check_of_a_large_enough_set_warns_nothing(tmp_path, capsys):
    images, pitchyaw = _labels(n=100)
    np.savez(tmp_path / "hundred.npz", images=images, gaze=pitchyaw_to_vector(pitchyaw))
    assert run(["data", "check", "-v", str(tmp_path / "hundred.npz")]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err
    assert "images: uint8 [100, 36, 60]" in captured.err  # -v: each array's dtype and shape


def test_data_convert_npz_writes_a_resized_trimmed_copy(tmp_path, capsys):
    images, pitchyaw = _labels(n=12)
    np.savez(tmp_path / "eyes.npz", images=images, gaze=pitchyaw_to_vector(pitchyaw))
    out = tmp_path / "eyes-40x64.npz"
    assert run(["data", "convert", "npz", str(tmp_path / "eyes.npz"), str(out), "--size", "40x64", "--limit", "5",
                "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["out"] == str(out) and doc["n"] == 5 and doc["image_shape"] == [40, 64]
    gs = read_gazeset(out)
    assert gs.images.shape == (5, 40, 64) and gs.meta["source"] == "eyes.npz"
    assert gs.meta["preprocessing"] == "resized from 36x60 to 40x64 (cv2.INTER_AREA)"
    np.testing.assert_allclose(gs.gaze, pitchyaw_to_vector(pitchyaw[:5]), atol=1e-6)
