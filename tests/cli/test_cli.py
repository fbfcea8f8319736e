"""The CLI in-process: exit codes, one-line errors, and real outputs."""

import json

import cv2
import numpy as np
import pytest

from edgekit.cli import run
from edgekit.data.npz import read_gazeset


def test_help_lists_the_commands(capsys):
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "data", "doctor"):
        assert command in out


def test_demo_samples_writes_a_contact_sheet(tmp_path, capsys):
    assert run(["demo", "samples", "--out", str(tmp_path), "--n", "12", "--scale", "2"]) == 0
    out = tmp_path / "samples.png"  # --out is a folder, as in every command
    img = cv2.imread(str(out))
    assert img is not None and img.shape == (2 * (2 * 40 + 4), 6 * (2 * 64 + 4), 3)
    assert (img[..., 2] > 200).any()  # gaze arrows are drawn in colour


def test_demo_dataset_and_data_check(tmp_path, capsys):
    path = tmp_path / "eval.npz"
    assert run(["demo", "dataset", str(path), "--role", "eval", "--n", "64"]) == 0
    gs = read_gazeset(path)
    assert len(gs) == 64 and gs.meta["role"] == "eval" and gs.meta["seed"] == 3
    assert run(["data", "check", str(path)]) == 0
    assert "ok, 64 images" in capsys.readouterr().out


def test_demo_dataset_sequences(tmp_path):
    path = tmp_path / "seq.npz"
    assert run(["demo", "dataset", str(path), "--n", "2", "--sequence-length", "20"]) == 0
    gs = read_gazeset(path)
    assert len(gs) == 40 and gs.seq_id.max() == 1 and gs.meta["fps"] == 60.0


def test_demo_evaluate_json_reports_error_and_baseline(capsys):
    assert run(["demo", "evaluate", "tinygaze", "--n", "256", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"]["model"]["n"] == 256
    assert report["accuracy"]["model"]["mean_deg"] < 5
    assert report["accuracy"]["predict_mean_baseline"]["mean_deg"] > 15
    assert report["eval_set"]["source"] == "synthetic:v1:seed=3"


def test_demo_evaluate_human_on_a_given_set(tmp_path, capsys):
    path = tmp_path / "e.npz"
    assert run(["demo", "dataset", str(path), "--n", "32"]) == 0
    capsys.readouterr()
    assert run(["demo", "evaluate", "--eval-set", str(path)]) == 0
    out = capsys.readouterr().out
    assert "predict-the-mean" in out and "32 images" in out


@pytest.mark.parametrize("argv, message", [
    (["demo", "train", "--arch", "nope"], "unknown built-in model 'nope'"),
    (["demo", "samples", "--size", "3x4"], "size '3x4' is not HxW"),
    (["data", "check", "/no/such.npz"], "/no/such.npz: no such gaze-set file"),
    (["data", "convert", "imagenet", "/tmp", "/tmp/x.npz"], "unknown dataset"),
    (["demo", "dataset", "/tmp/x.npz", "--role", "test"], "--role 'test' is unknown"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("error: ")


def test_corrupt_npz_is_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really")
    assert run(["data", "check", str(bad)]) == 2
    assert "bad.npz: not a readable .npz" in capsys.readouterr().err


def test_doctor_reports_core_usable(capsys):
    assert run(["doctor", "--format", "json"]) == 0
    rows = {r["component"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["core (torch, renderer)"]["usable"] is True
    from edgekit.backends import REGISTRY

    for name in REGISTRY:  # one row per registered backend, read from the registry
        assert any(c.startswith(f"{name} backend") for c in rows), name
    assert rows[next(c for c in rows if c.startswith("onnx backend"))]["usable"] is True


@pytest.mark.parametrize("size", [None, "40x64"])  # --size resizes though the MPIIGaze loader itself does not
def test_data_convert_mpiigaze_h5(tmp_path, capsys, size):
    h5py = pytest.importorskip("h5py")
    src = tmp_path / "MPIIGaze.h5"
    with h5py.File(src, "w") as f:
        f["p00/image"] = np.full((3, 36, 60), 100, np.uint8)
        f["p00/pose"] = np.zeros((3, 2), np.float32)
        f["p00/gaze"] = np.float32([[0.1, -0.2]] * 3)
    out = tmp_path / "m.npz"
    assert run(["data", "convert", "mpiigaze-h5", str(src), str(out), *(["--size", size] if size else [])]) == 0
    gs = read_gazeset(out)
    assert len(gs) == 3 and np.allclose(gs.pitchyaw[0], [0.1, -0.2], atol=1e-6)
    assert gs.images.shape == ((3, 40, 64) if size else (3, 36, 60))
