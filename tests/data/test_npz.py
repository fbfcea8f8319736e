import json

import numpy as np
import pytest

from edgekit.data.npz import GazeSet, make_meta, read_gazeset, write_gazeset
from edgekit.errors import BadInputError


def _set(n=4, **kw):
    rng = np.random.default_rng(0)
    g = rng.normal(size=(n, 3))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    args = dict(images=rng.integers(0, 255, (n, 8, 12), dtype=np.uint8), gaze=g.astype(np.float32),
                meta=make_meta("test:unit"))
    args.update(kw)
    return GazeSet(**args)


def test_round_trip_keeps_every_array_and_the_digest(tmp_path):
    gs = _set(seq_id=np.arange(4, dtype=np.int32), frame_idx=np.zeros(4, np.int32),
              timestamp_s=np.arange(4) / 60.0, head_pose=np.zeros((4, 2), np.float32))
    path = write_gazeset(gs, tmp_path / "s.npz")
    back = read_gazeset(path)
    assert np.array_equal(back.images, gs.images) and np.array_equal(back.gaze, gs.gaze)
    assert np.array_equal(back.seq_id, gs.seq_id) and back.timestamp_s.dtype == np.float64
    assert back.pitchyaw is not None and back.pitchyaw.shape == (4, 2)  # filled in on write
    assert back.meta == gs.meta
    # readable without edgekit: plain numpy, no pickle
    with np.load(path, allow_pickle=False) as raw:
        assert json.loads(str(raw["meta"]))["gaze_convention"].startswith("x right")


@pytest.mark.parametrize("change, message", [
    (dict(images=np.zeros((4, 8, 12), np.float32)), "uint8"),
    (dict(images=np.zeros((4, 8), np.uint8)), "(N,H,W)"),
    (dict(gaze=np.zeros((3, 3), np.float32)), "shape (4, 3)"),
    (dict(gaze=np.full((4, 3), np.nan, np.float32)), "NaN"),
    (dict(gaze=np.tile(np.float32([0, 0, 2]), (4, 1))), "not a unit vector"),
    (dict(seq_id=np.zeros(4, np.int64)), "int32"),
    (dict(meta={"source": "x"}), "meta lacks"),
])
def test_invalid_sets_are_refused_before_writing(tmp_path, change, message):
    with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_gazeset(_set(**change), tmp_path / "bad.npz")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_reader_names_the_file_and_the_missing_key(tmp_path):
    path = tmp_path / "nokey.npz"
    np.savez(path, images=np.zeros((2, 4, 4), np.uint8), meta=np.array("{}"))
    with pytest.raises(BadInputError, match=r"nokey\.npz: missing key 'gaze'"):
        read_gazeset(path)


def test_reader_rejects_a_truncated_file(tmp_path):
    good = write_gazeset(_set(), tmp_path / "good.npz")
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(good.read_bytes()[:100])
    with pytest.raises(BadInputError, match="truncated.npz: not a readable .npz"):
        read_gazeset(bad)


def test_reader_rejects_non_unit_gaze_on_disk(tmp_path):
    path = tmp_path / "raw.npz"
    np.savez(path, images=np.zeros((2, 4, 4), np.uint8), gaze=np.ones((2, 3), np.float32),
             meta=np.array(json.dumps(make_meta("x"))))
    with pytest.raises(BadInputError, match="raw.npz: 'gaze' row 0 has norm 1.7321"):
        read_gazeset(path)


def test_subset_and_digest():
    gs = _set(n=6)
    sub = gs.subset(slice(0, 3))
    assert len(sub) == 3 and sub.digest() != gs.digest()
    assert _set(n=6).digest() == gs.digest()
