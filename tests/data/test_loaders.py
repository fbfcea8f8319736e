"""Loaders for real gaze datasets, proven on tiny fixtures written here in each dataset's on-disk layout."""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from edgekit.data.gaze import pitchyaw_to_vector, vector_to_pitchyaw
from edgekit.data.loaders import LOADERS, load_dataset
from edgekit.data.loaders.ethxgaze import load_ethxgaze
from edgekit.data.loaders.mpiigaze import load_mpiigaze_h5, load_mpiigaze_mat
from edgekit.data.loaders.openeds import load_openeds2020
from edgekit.data.npz import read_gazeset, write_gazeset
from edgekit.errors import BadInputError

PY = np.array([[0.1, -0.2], [-0.3, 0.25], [0.0, 0.0], [0.2, 0.4]])  # pitch, yaw radians
VEC_01_M02 = np.array([np.cos(0.1) * np.sin(0.2), -np.sin(0.1), -np.cos(0.1) * np.cos(0.2)])  # pitch .1, yaw -.2


def assert_roundtrip(gs, tmp_path):
    back = read_gazeset(write_gazeset(gs, tmp_path / "rt.npz"))
    assert back.meta == gs.meta
    for key, arr in gs._arrays().items():
        if arr is not None:
            got = getattr(back, key)
            assert got.dtype == arr.dtype and np.array_equal(got, arr), key


def assert_unit(gs):
    assert gs.gaze.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(gs.gaze, axis=1), 1.0, atol=1e-6)


# ---------------------------------------------------------------- OpenEDS2020

def write_openeds(root, split="train"):
    """Sequences '1024' (3 labelled frames) and '0007' (frame 001 unlabelled); labels are not unit length."""
    vecs = {}
    for name, labelled in (("1024", ("000", "001", "002")), ("0007", ("000", "002"))):
        seq = root / split / "sequences" / name
        seq.mkdir(parents=True)
        lines = []
        for k, frame in enumerate(("000", "001", "002")):
            cv2.imwrite(str(seq / f"{frame}.png"), np.full((400, 640), 10 * k + (100 if name == "1024" else 0), np.uint8))
            if frame in labelled:
                v = np.array([0.1 * k, -0.2, -1.0]) * (k + 2)
                vecs[(name, frame)] = v
                lines.append(f"{frame},{v[0]},{v[1]},{v[2]}")
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        (root / split / "labels" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return vecs


def test_openeds_reads_labelled_frames(tmp_path):
    vecs = write_openeds(tmp_path)
    gs = load_openeds2020(tmp_path)
    assert gs.images.shape == (5, 400, 640) and gs.images.dtype == np.uint8
    # sorted sequences: '0007' first (index 0), then '1024'; the unlabelled frame 001 of '0007' is skipped
    assert gs.meta["sequences"] == ["0007", "1024"] and gs.meta["skipped_unlabelled"] == 1
    assert gs.seq_id.tolist() == [0, 0, 1, 1, 1] and gs.seq_id.dtype == np.int32
    assert gs.frame_idx.tolist() == [0, 2, 0, 1, 2]
    np.testing.assert_allclose(gs.timestamp_s, [0.0, 0.02, 0.0, 0.01, 0.02])
    assert gs.images[:, 0, 0].tolist() == [0, 20, 100, 110, 120]
    assert gs.meta["fps"] == 100 and gs.meta["loader"] == "openeds2020" and gs.meta["layout"] == "NHW"
    assert gs.meta["source"] == f"openeds2020:{tmp_path.name}"
    assert_unit(gs)
    want = vecs[("0007", "002")] / np.linalg.norm(vecs[("0007", "002")])
    np.testing.assert_allclose(gs.gaze[1], want, atol=1e-7)  # taken as-is, only normalised
    assert_roundtrip(gs, tmp_path)


def test_openeds_resize_and_limit(tmp_path):
    write_openeds(tmp_path)
    gs = load_openeds2020(tmp_path, size=(40, 64), limit=3)
    assert gs.images.shape == (3, 40, 64)
    assert gs.images[:, 5, 5].tolist() == [0, 20, 100]  # constant frames stay constant under INTER_AREA
    assert "INTER_AREA" in gs.meta["preprocessing"]


def test_openeds_bad_inputs(tmp_path):
    with pytest.raises(BadInputError, match="nowhere"):
        load_openeds2020(tmp_path / "nowhere")
    (tmp_path / "train" / "sequences").mkdir(parents=True)
    with pytest.raises(BadInputError, match="no sequence folders"):
        load_openeds2020(tmp_path)
    root = tmp_path / "ds"
    write_openeds(root)
    (root / "train" / "labels" / "1024.txt").write_text("000,0.1,0.2\n")
    with pytest.raises(BadInputError, match="1024.txt.*line 1"):
        load_openeds2020(root)
    root2 = tmp_path / "unlabelled"
    write_openeds(root2, split="test")
    for f in (root2 / "test" / "labels").iterdir():
        f.unlink()
    with pytest.raises(BadInputError, match="no labelled frames"):
        load_openeds2020(root2, split="test")


# ---------------------------------------------------------------- ETH-XGaze

def write_xgaze_subject(path, n, gaze=True, head=True, seed=0):
    rng = np.random.default_rng(seed)
    patches = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("face_patch", data=patches)
        if gaze:
            f.create_dataset("face_gaze", data=PY[:n] if n <= len(PY) else rng.normal(0, 0.2, (n, 2)))
        if head:
            f.create_dataset("face_head_pose", data=np.full((n, 2), 0.05) * np.arange(n)[:, None])
    return patches


def test_ethxgaze_train_split(tmp_path):
    a = write_xgaze_subject(tmp_path / "train" / "subject0001.h5", 4)
    b = write_xgaze_subject(tmp_path / "train" / "subject0003.h5", 2, seed=1)
    write_xgaze_subject(tmp_path / "test" / "subject0002.h5", 2, gaze=False)
    gs = load_ethxgaze(tmp_path)
    assert gs.images.shape == (6, 32, 32) and gs.images.dtype == np.uint8
    assert np.array_equal(gs.images[0], cv2.cvtColor(a[0], cv2.COLOR_BGR2GRAY))
    assert np.array_equal(gs.images[5], cv2.cvtColor(b[1], cv2.COLOR_BGR2GRAY))
    assert gs.meta["color"] == "gray" and gs.meta["layout"] == "NHW"
    assert gs.seq_id.tolist() == [0, 0, 0, 0, 1, 1] and gs.meta["subjects"] == ["subject0001", "subject0003"]
    assert_unit(gs)
    np.testing.assert_allclose(gs.gaze[0], VEC_01_M02, atol=1e-6)
    np.testing.assert_allclose(vector_to_pitchyaw(gs.gaze[:4]), PY, atol=1e-6)
    np.testing.assert_allclose(gs.gaze[2], [0, 0, -1], atol=1e-7)  # (0, 0) looks into the camera
    assert gs.head_pose.dtype == np.float32
    np.testing.assert_allclose(gs.head_pose[:4, 1], [0, 0.05, 0.1, 0.15], atol=1e-7)
    assert_roundtrip(gs, tmp_path)


def test_ethxgaze_single_file_bgr_resize_limit(tmp_path):
    f = tmp_path / "subject0001.h5"
    a = write_xgaze_subject(f, 4)
    gs = load_ethxgaze(f, gray=False)
    assert gs.images.shape == (4, 32, 32, 3) and gs.meta["layout"] == "NHWC" and gs.meta["color"] == "bgr"
    assert np.array_equal(gs.images, a)
    small = load_ethxgaze(f, size=(16, 8), limit=3)
    assert small.images.shape == (3, 16, 8)
    assert_roundtrip(gs, tmp_path)


def test_ethxgaze_bad_inputs(tmp_path):
    with pytest.raises(BadInputError, match="nowhere"):
        load_ethxgaze(tmp_path / "nowhere")
    with pytest.raises(BadInputError, match="no subject"):
        load_ethxgaze(tmp_path)
    with pytest.raises(BadInputError, match="no gaze labels"):
        load_ethxgaze(tmp_path, split="test")
    unlabelled = tmp_path / "test" / "subject0002.h5"
    write_xgaze_subject(unlabelled, 2, gaze=False)
    with pytest.raises(BadInputError, match="subject0002.h5.*unlabelled"):
        load_ethxgaze(unlabelled)
    nohead = tmp_path / "nohead.h5"
    write_xgaze_subject(nohead, 2, head=False)
    with pytest.raises(BadInputError, match="nohead.h5.*face_head_pose"):
        load_ethxgaze(nohead)
    short = tmp_path / "short.h5"
    write_xgaze_subject(short, 3)
    with h5py.File(short, "a") as h:
        del h["face_gaze"]
        h.create_dataset("face_gaze", data=PY[:2])
    with pytest.raises(BadInputError, match="short.h5.*3 face patches"):
        load_ethxgaze(short)


# ---------------------------------------------------------------- MPIIGaze raw .mat

def eye_fields(n, base, pitchyaw, pose):
    images = (np.arange(36 * 60).reshape(36, 60) % 200 + base + np.arange(n)[:, None, None]).astype(np.uint8)
    return {"image": images, "gaze": 2.0 * pitchyaw_to_vector(np.asarray(pitchyaw, float)), "pose": np.asarray(pose, float)}


def write_mpiigaze(root):
    """p00: day01 (2 samples), day02 (1 sample, squeezed to scalars by loadmat); p01: day01 (2)."""
    norm = root / "Data" / "Normalized"
    days = {("p00", "day01"): 2, ("p00", "day02"): 1, ("p01", "day01"): 2}
    fields = {}
    for (pid, day), n in days.items():
        (norm / pid).mkdir(parents=True, exist_ok=True)
        left = eye_fields(n, 0, PY[:n], [[0.0, 0.3, 0.0]] * n)   # head rotated about y: head yaw 0.3
        right = eye_fields(n, 50, PY[1:n + 1], [[0.2, 0.0, 0.0]] * n)  # about x: head pitch -0.2
        names = np.array([f"{i + 1:04d}.jpg" for i in range(n)], dtype=object)
        scipy.io.savemat(norm / pid / f"{day}.mat", {"data": {"left": left, "right": right}, "filenames": names})
        fields[(pid, day)] = {"left": left, "right": right}
    lists = root / "Evaluation Subset" / "sample list for eye image"
    lists.mkdir(parents=True)
    (lists / "p00.txt").write_text("day01/0002.jpg right\nday02/0001.jpg left\nday01/0001.jpg left\n")
    (lists / "p01.txt").write_text("day01/0001.jpg right\n")
    return fields


def test_mpiigaze_mat_eval_subset(tmp_path):
    fields = write_mpiigaze(tmp_path)
    gs = load_mpiigaze_mat(tmp_path)
    assert gs.images.shape == (4, 36, 60) and gs.images.dtype == np.uint8
    assert gs.seq_id.tolist() == [0, 0, 0, 1] and gs.meta["persons"] == ["p00", "p01"]
    # exactly the listed samples, in list order; right eyes flipped left-right
    d1, d2 = fields[("p00", "day01")], fields[("p00", "day02")]
    assert np.array_equal(gs.images[0], d1["right"]["image"][1][:, ::-1])
    assert np.array_equal(gs.images[1], d2["left"]["image"][0])
    assert np.array_equal(gs.images[2], d1["left"]["image"][0])
    assert np.array_equal(gs.images[3], fields[("p01", "day01")]["right"]["image"][0][:, ::-1])
    assert_unit(gs)
    py = vector_to_pitchyaw(gs.gaze)
    np.testing.assert_allclose(py[0], PY[2] * [1, -1], atol=1e-6)  # right eye: yaw negated
    np.testing.assert_allclose(py[1], PY[0], atol=1e-6)
    np.testing.assert_allclose(gs.gaze[1], VEC_01_M02, atol=1e-6)
    np.testing.assert_allclose(py[3], PY[1] * [1, -1], atol=1e-6)
    # head pose: left Rodrigues (0, .3, 0) -> yaw .3; right (.2, 0, 0) -> pitch -.2 (its yaw 0 stays 0 when negated)
    np.testing.assert_allclose(gs.head_pose[1], [0.0, 0.3], atol=1e-6)
    np.testing.assert_allclose(gs.head_pose[0], [-0.2, 0.0], atol=1e-6)
    assert_roundtrip(gs, tmp_path)


def test_mpiigaze_mat_all_samples_mirrors_head_yaw(tmp_path):
    fields = write_mpiigaze(tmp_path)
    norm = tmp_path / "Data" / "Normalized" / "p01"
    # give p01's right eye a yawed head so the mirror must negate it
    f = fields[("p01", "day01")]
    f["right"]["pose"][:] = [0.0, 0.3, 0.0]
    scipy.io.savemat(norm / "day01.mat", {"data": f, "filenames": np.array(["0001.jpg", "0002.jpg"], dtype=object)})
    gs = load_mpiigaze_mat(tmp_path, persons=[1], eval_subset=False)
    assert len(gs) == 4 and gs.seq_id.tolist() == [0] * 4 and gs.meta["persons"] == ["p01"]
    np.testing.assert_allclose(gs.head_pose[:2], [[0.0, 0.3]] * 2, atol=1e-6)   # left eyes
    np.testing.assert_allclose(gs.head_pose[2:], [[0.0, -0.3]] * 2, atol=1e-6)  # mirrored right eyes
    assert len(load_mpiigaze_mat(tmp_path, eval_subset=False)) == 10
    assert len(load_mpiigaze_mat(tmp_path, eval_subset=False, limit=3)) == 3


def test_mpiigaze_mat_bad_inputs(tmp_path):
    with pytest.raises(BadInputError, match="nowhere"):
        load_mpiigaze_mat(tmp_path / "nowhere")
    fields = write_mpiigaze(tmp_path)
    with pytest.raises(BadInputError, match=r"\['p07'\] not found"):
        load_mpiigaze_mat(tmp_path, persons=["p07"])
    lists = tmp_path / "Evaluation Subset" / "sample list for eye image"
    (lists / "p01.txt").write_text("day01/0009.jpg left\n")
    with pytest.raises(BadInputError, match="p01.txt.*day01/0009.jpg"):
        load_mpiigaze_mat(tmp_path)
    (lists / "p01.txt").unlink()
    with pytest.raises(BadInputError, match="p01.txt.*eval_subset=False"):
        load_mpiigaze_mat(tmp_path)
    day = tmp_path / "Data" / "Normalized" / "p01" / "day01.mat"
    f = fields[("p01", "day01")]
    scipy.io.savemat(day, {"data": {"left": f["left"], "right": {"image": f["right"]["image"], "gaze": f["right"]["gaze"]}},
                           "filenames": np.array(["0001.jpg", "0002.jpg"], dtype=object)})
    with pytest.raises(BadInputError, match=r"day01.mat.*data\.right\.pose"):
        load_mpiigaze_mat(tmp_path, eval_subset=False)
    scipy.io.savemat(day, {"data": f, "filenames": np.array(["0001.jpg", "0002.jpg", "0003.jpg"], dtype=object)})
    with pytest.raises(BadInputError, match="day01.mat.*3 filenames"):
        load_mpiigaze_mat(tmp_path, eval_subset=False)


# ---------------------------------------------------------------- MPIIGaze hysts h5

def write_hysts_h5(path, counts=(("p00", 3), ("p01", 2))):
    with h5py.File(path, "w") as f:
        for k, (pid, n) in enumerate(counts):
            f.create_dataset(f"{pid}/image", data=np.full((n, 36, 60), 10 * k, np.uint8) + np.arange(n, dtype=np.uint8)[:, None, None])
            f.create_dataset(f"{pid}/pose", data=np.full((n, 2), 0.1 * k, np.float32))
            f.create_dataset(f"{pid}/gaze", data=PY[:n].astype(np.float32))
    return path


def test_mpiigaze_h5(tmp_path):
    path = write_hysts_h5(tmp_path / "MPIIGaze.h5")
    gs = load_mpiigaze_h5(path)
    assert gs.images.shape == (5, 36, 60) and gs.images.dtype == np.uint8
    assert gs.images[:, 0, 0].tolist() == [0, 1, 2, 10, 11]
    assert gs.seq_id.tolist() == [0, 0, 0, 1, 1] and gs.meta["persons"] == ["p00", "p01"]
    assert gs.meta["loader"] == "mpiigaze-h5" and gs.meta["source"] == "mpiigaze-h5:MPIIGaze.h5"
    assert_unit(gs)
    np.testing.assert_allclose(gs.gaze[0], VEC_01_M02, atol=1e-6)
    np.testing.assert_allclose(vector_to_pitchyaw(gs.gaze), np.concatenate([PY[:3], PY[:2]]), atol=1e-6)
    np.testing.assert_allclose(gs.head_pose[3:], 0.1, atol=1e-7)
    assert_roundtrip(gs, tmp_path)
    one = load_mpiigaze_h5(path, persons=[1])
    assert len(one) == 2 and one.seq_id.tolist() == [0, 0] and one.meta["persons"] == ["p01"]
    assert load_mpiigaze_h5(path, limit=4).seq_id.tolist() == [0, 0, 0, 1]


def test_mpiigaze_h5_bad_inputs(tmp_path):
    with pytest.raises(BadInputError, match="nowhere.h5"):
        load_mpiigaze_h5(tmp_path / "nowhere.h5")
    path = write_hysts_h5(tmp_path / "MPIIGaze.h5")
    with h5py.File(path, "a") as f:
        del f["p01/pose"]
    with pytest.raises(BadInputError, match="MPIIGaze.h5.*p01/pose"):
        load_mpiigaze_h5(path)
    with h5py.File(path, "a") as f:
        f.create_dataset("p01/pose", data=np.zeros((1, 2), np.float32))
    with pytest.raises(BadInputError, match="MPIIGaze.h5.*p01 has 2 images"):
        load_mpiigaze_h5(path)


# ---------------------------------------------------------------- registry

def test_load_dataset_registry(tmp_path):
    assert set(LOADERS) == {"openeds2020", "ethxgaze", "mpiigaze-mat", "mpiigaze-h5", "npz"}
    path = write_hysts_h5(tmp_path / "MPIIGaze.h5")
    assert len(load_dataset("mpiigaze-h5", path, persons=["p00"])) == 3
    # its loader has no resize of its own: load_dataset resizes afterwards, as the others do
    assert load_dataset("mpiigaze-h5", path, persons=["p00"], size=(40, 64)).images.shape[1:] == (40, 64)
    with pytest.raises(BadInputError, match="unknown dataset 'gazecapture'.*openeds2020"):
        load_dataset("gazecapture", tmp_path)
