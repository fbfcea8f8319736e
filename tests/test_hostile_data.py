"""Safe on hostile input: broken data sets, recipes, reports and cache entries each give one true line, or are
discarded and rebuilt; never a traceback, never a changed user file, never a cached result that lies."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgekit.artifact import Artifact, Format
from edgekit.cache import Cache
from edgekit.cli import run
from edgekit.data import synthetic
from edgekit.data.npz import make_meta, write_gazeset
from edgekit.errors import BadInputError
from edgekit.recipe import list_targets, load_recipe
from edgekit.report.render import load_report
from tests.fixtures.unprivileged import cannot_open, run_cli_without_file_privileges



def _fails(argv, message, capsys, code=2) -> str:
    """Exit `code`, exactly one `error:` line (the last), containing `message`, no traceback."""
    assert run(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.strip().endswith(errors[0]), err
    assert message in errors[0], errors[0]
    assert "fix: " in errors[0], errors[0]
    return errors[0]


def _state(*paths: Path) -> dict:
    """What the user owns: bytes, mode and mtime of each file (a folder: its listing)."""
    return {p: (sorted(os.listdir(p)) if p.is_dir() else p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
            for p in paths}


@pytest.fixture(scope="module")
def good_set(tmp_path_factory) -> Path:
    """A small valid evaluation set of TinyGaze's image size (40x64)."""
    return write_gazeset(synthetic.standard_set("eval", 32, (40, 64)), tmp_path_factory.mktemp("sets") / "eval.npz")


def _arrays(good_set: Path) -> dict:
    with np.load(good_set) as npz:
        return {k: npz[k] for k in npz.files}


def _bad_sets(good_set: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the one line must say)."""
    raw, out = _arrays(good_set), {}

    def npz(name, message, **change):
        arrays = {k: v for k, v in {**raw, **change}.items() if v is not None}
        path = folder / f"{name}.npz"
        with open(path, "wb") as fh:  # plain numpy, as a user would write it (no edgekit validation)
            np.savez(fh, **arrays)
        out[name] = (path, message)

    (folder / "empty.npz").write_bytes(b"")
    out["empty"] = (folder / "empty.npz", "empty.npz: not a readable .npz: empty file (0 bytes)")
    (folder / "text.npz").write_text("image,pitch,yaw\n0,0.1,0.2\n")
    out["text"] = (folder / "text.npz", "text.npz: not a readable .npz: a text file (starts 'image,pi'), not an npz (zip) archive")
    data = good_set.read_bytes()
    (folder / "truncated.npz").write_bytes(data[:len(data) // 2])
    out["truncated"] = (folder / "truncated.npz", "truncated.npz: not a readable .npz: truncated or corrupt zip archive")
    gaze = raw["gaze"].copy()
    gaze[3] = np.nan
    npz("nan", "nan.npz: 'gaze' has NaN or inf (first at row 3); fix: drop or relabel those rows", gaze=gaze)
    npz("shape", "shape.npz: 'gaze' must have shape (32, 3) to match 32 images, got (32, 2)", gaze=raw["gaze"][:, :2].copy())
    npz("dtype", "dtype.npz: 'images' must be uint8, got float32; fix: convert images to uint8", images=raw["images"].astype(np.float32))
    npz("nokey", "nokey.npz: missing key 'gaze' (has ['images', 'meta']); fix: add 'gaze' (float32, N,3 unit vectors) or "
        "'pitchyaw'", gaze=None, pitchyaw=None)
    npz("meta", "meta.npz: 'meta' must be a JSON object, got list", meta=np.array("[1, 2]"))
    return out


BAD_SETS = ["empty", "text", "truncated", "nan", "shape", "dtype", "nokey", "meta"]


@pytest.mark.parametrize("flag", ["--eval-set", "--calib-set"])
@pytest.mark.parametrize("name", BAD_SETS)
def test_bad_npz_is_one_line_naming_the_key_and_the_fix(good_set, tmp_path, capsys, flag, name):
    path, message = _bad_sets(good_set, tmp_path)[name]
    before = _state(path)
    out = tmp_path / "out"
    _fails(["compile", "--target", "onnx", flag, str(path), "--out", str(out)], message, capsys)
    assert _state(path) == before and not out.exists()


def test_pickled_object_arrays_are_refused_never_loaded(good_set, tmp_path, capsys):
    raw = _arrays(good_set)
    path = tmp_path / "pickled.npz"
    with open(path, "wb") as fh:
        np.savez(fh, **{**raw, "meta": np.array([make_meta("x")], dtype=object)})
    _fails(["compile", "--eval-set", str(path), "--out", str(tmp_path / "o")],
           "pickled.npz: key 'meta' holds Python objects (pickled), which edgekit never loads", capsys)


def _recipe(tmp_path, text: str | bytes, name="r.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize("text, message", [
    ("name: r\nbackend: onnx\npasses:\n  - fold_bn\n - export_onnx\n", "r.yaml: not valid YAML (line 5, column 2)"),
    ("name: r\nbackend: onnx\n  passes: [fold_bn]\n", "r.yaml: not valid YAML (line 3, column 9): mapping values are not allowed"),
    ("name: r\nbackend: onnx\npasses: [fold_bn, export_onnx]\ngates: {max_diff_deg: 0.1\n", "r.yaml: not valid YAML (line 5"),
    ("name: r\nbackend: onnx\npasses:\n  - fold_bn: 5\n  - export_onnx\n",
     "r.yaml: passes[0].fold_bn (line 4): options must be a mapping (key: value), got int 5"),
    ("name: r\nbackend: onnx\npasses:\n  - fold_bn\n  - export_onnx: {opset: seventeen}\n",
     "r.yaml: passes[1].export_onnx.opset (line 5): Input should be a valid integer"),
    ("name: r\nbackend: onnx\npasses:\n  - fold_bm\n", "r.yaml: passes[0] (line 4): unknown pass 'fold_bm'"),
    ("name: r\nbackend: onnx\npasses: [fold_bn, export_onnx]\nverify:\n  eval_images: 0\n",
     "r.yaml: verify.eval_images (line 5): Input should be greater than or equal to 1"),
    ("name: r\nbackend: npu\npasses: [fold_bn, export_onnx]\n", "r.yaml: backend (line 2): unknown backend 'npu'"),
    ("name: r\nbackend: onnx\npasses: []\n", "r.yaml: passes (line 3): a recipe needs at least one pass"),
    ("backend: onnx\npasses: [fold_bn, export_onnx]\n", "r.yaml: name: Field required"),
    ("- fold_bn\n- export_onnx\n", "r.yaml: a recipe is a mapping"),
    ("", "r.yaml: a recipe is a mapping"),
    (b"name: r\nbackend: onnx\npasses: [fold_bn, export_onnx]\n# caf\xe9\n", "r.yaml: not UTF-8 text (byte 58"),
])
def test_bad_recipe_names_the_file_the_key_and_the_line(tmp_path, capsys, text, message):
    path = _recipe(tmp_path, text)
    before = _state(path)
    _fails(["compile", "--target", str(path), "--out", str(tmp_path / "o")], message, capsys)
    assert _state(path) == before and not (tmp_path / "o").exists()


@pytest.mark.parametrize("spec, message", [
    ("name: cal\nsource: npz\n  path: cal.npz\n", "cal.yaml: not valid YAML (line 3, column 7)"),
    ("name: cal\nsource: synthetic\nsize: 3\n", "cal.yaml: invalid calibration spec: size: Input should be greater than or equal to 16"),
    ("name: cal\nsource: npz\npath: notes.npz\n", "notes.npz: not a readable .npz: a text file"),
])
def test_bad_calibration_spec_or_set_named_by_a_recipe(tmp_path, capsys, spec, message):
    (tmp_path / "cal.yaml").write_text(spec)
    (tmp_path / "notes.npz").write_text("calibration notes\n")
    recipe = _recipe(tmp_path, f"name: r\nbackend: onnx\npasses: [fold_bn, export_onnx]\ncalibration: {tmp_path / 'cal.yaml'}\n")
    before = _state(tmp_path / "cal.yaml", tmp_path / "notes.npz", recipe)
    _fails(["compile", "--target", str(recipe), "--out", str(tmp_path / "o")], message, capsys)
    assert _state(tmp_path / "cal.yaml", tmp_path / "notes.npz", recipe) == before and not (tmp_path / "o").exists()


@pytest.mark.parametrize("backend, passes, message", [
    ("coreml", "[fold_bn, export_onnx]", "backend 'coreml' runs coreml artifacts, but the last pass export_onnx produces onnx; "
                                         "fix: use backend: onnx, or end the passes with to_coreml"),
    ("onnx", "[fold_bn, to_tflite]", "backend 'onnx' runs onnx artifacts, but the last pass to_tflite produces tflite; "
                                     "fix: use backend: tflite, or end the passes with export_onnx or onnx_fp16 or ptq"),
    ("lava", "[fold_bn, to_snn]", "backend 'lava' runs lava artifacts, but the last pass to_snn produces snn; fix: use backend: snn"),
])
def test_backend_that_cannot_run_the_last_format_is_refused_before_any_pass(tmp_path, capsys, backend, passes, message):
    path = _recipe(tmp_path, f"name: mismatch\nbackend: {backend}\npasses: {passes}\n")
    line = _fails(["compile", "--target", str(path), "--out", str(tmp_path / "o")],
                  f"r.yaml: backend (line 2): {message}", capsys)
    assert "edgekit schema" not in line  # the fix is the specific one
    with pytest.raises(BadInputError, match="runs"):
        load_recipe(path)
    assert not (tmp_path / "o").exists()


def test_every_shipped_target_ends_in_a_format_its_backend_runs():
    from edgekit.backends import REGISTRY

    for name in list_targets():
        recipe = load_recipe(name)
        assert recipe.passes[-1].produces in REGISTRY[recipe.backend].consumes, name


@pytest.fixture
def shared_dir():
    """A folder anyone may enter (pytest's tmp_path is under a 0700 folder of root's), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="edgekit-hostile-"))
    folder.chmod(0o777)
    yield folder
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _fails_unprivileged(argv, message) -> None:
    """As _fails, in a child that file permissions apply to even when the tests run as root."""
    code, _, err = run_cli_without_file_privileges(argv)
    errors = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert code == 2 and "Traceback" not in err and len(errors) == 1 and err.strip().endswith(errors[0]), err
    assert message in errors[0] and "fix: " in errors[0], errors[0]


@pytest.mark.slow
def test_permission_denied_says_permission_denied(good_set, shared_dir):
    npz, readable = shared_dir / "locked.npz", shared_dir / "eval.npz"
    npz.write_bytes(good_set.read_bytes())
    readable.write_bytes(good_set.read_bytes())
    readable.chmod(0o644)
    recipe = _recipe(shared_dir, "name: r\nbackend: onnx\npasses: [fold_bn, export_onnx]\n", "locked.yaml")
    report = _recipe(shared_dir, "{}", "report.json")
    for p in (npz, recipe, report):
        p.chmod(0o000)
    before = _state(npz, recipe, report)
    out = shared_dir / "out"
    assert cannot_open(npz)  # the OS really refuses: the test is not vacuous
    _fails_unprivileged(["compile", "--eval-set", str(npz), "--out", str(out)], "locked.npz: permission denied (gaze-set "
                        f".npz); fix: make it readable by this user (e.g. chmod u+r {npz})")
    _fails_unprivileged(["compile", "--eval-set", str(readable), "--calib-set", str(npz), "--out", str(out)],
                        "locked.npz: permission denied")
    _fails_unprivileged(["compile", "--target", str(recipe), "--out", str(out)], "locked.yaml: permission denied (recipe)")
    _fails_unprivileged(["report", str(report)], "report.json: permission denied (edgekit report)")
    assert _state(npz, recipe, report) == before and not out.exists()


def test_a_folder_where_a_file_belongs_says_so(tmp_path, capsys):
    folder = tmp_path / "set.npz"
    folder.mkdir()
    (tmp_path / "r.yaml").mkdir()
    _fails(["compile", "--eval-set", str(folder), "--out", str(tmp_path / "o")], "set.npz: is a directory, not a file", capsys)
    _fails(["compile", "--target", str(tmp_path / "r.yaml")], "r.yaml: is a directory, not a file (recipe)", capsys)
    _fails(["report", str(tmp_path)], str(tmp_path), capsys)  # the CLI may catch this earlier, in its own words
    with pytest.raises(BadInputError, match="is a directory, not a file \\(edgekit report\\)"):
        load_report(tmp_path)
    _fails(["compile", "--eval-set", str(tmp_path / "missing.npz")], "missing.npz: no such gaze-set file", capsys)


@pytest.mark.parametrize("text, message", [
    ('{"schema_version": 1, "created": ', "bad.json: not an edgekit report: not valid JSON (line 1, column 34"),
    ("[]", "bad.json: not an edgekit report: field (top level): Input should be an object"),
    ('{"schema_version": 1, "created": "2026-11-30"}', "bad.json: report schema v1, and this edgekit reads v2; fix: compile"),
])
def test_report_validation_names_the_file_and_the_field(tmp_path, capsys, text, message):
    (tmp_path / "bad.json").write_text(text)
    _fails(["report", str(tmp_path / "bad.json")], message, capsys)


@pytest.mark.slow
def test_report_field_error_names_the_field(good_set, tmp_path, capsys, cache_root):
    out = tmp_path / "o"
    assert run(["compile", "--eval-set", str(good_set), "--out", str(out), "--format", "json"]) == 0
    capsys.readouterr()
    doc = json.loads((out / "report.json").read_text())
    doc["accuracy"]["artifact"]["mean_deg"] = "small"
    (out / "edited.json").write_text(json.dumps(doc))
    _fails(["report", str(out / "edited.json")],
           "edited.json: not an edgekit report: field accuracy.artifact.mean_deg: Input should be a valid number", capsys)


# --- the caches --------------------------------------------------------------------------------------------------


@pytest.fixture
def cache_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(root))
    return root


def _compile(good_set, out: Path, capsys) -> tuple[dict, str]:
    assert run(["compile", "--target", "onnx", "--eval-set", str(good_set), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" not in err
    return json.loads((out / "report.json").read_text()), err


def _onnx_entry(cache_root: Path) -> Path:
    entries = [e for e in (cache_root / "passes").glob("*/*") if json.loads((e / "artifact.json").read_text())["format"] == "onnx"]
    assert len(entries) == 1
    return entries[0]


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["corrupted", "truncated", "truncated-artifact-json"])
def test_a_damaged_pass_cache_entry_is_discarded_and_rebuilt(good_set, tmp_path, capsys, cache_root, damage):
    first, _ = _compile(good_set, tmp_path / "a", capsys)
    entry = _onnx_entry(cache_root)
    model = entry / "model.onnx"
    good = model.read_bytes()
    if damage == "corrupted":
        _flip(model)
    elif damage == "truncated":
        model.write_bytes(good[:len(good) // 3])
    else:
        (entry / "artifact.json").write_text((entry / "artifact.json").read_text()[:40])
    second, err = _compile(good_set, tmp_path / "b", capsys)
    assert "note: discarded a corrupted pass-cache entry" in err and "pass export_onnx: done" in err
    assert "pass fold_bn: cached" in err  # the intact entry is still used
    steps = {s["pass"]: s for s in second["steps"]}
    assert steps["fold_bn"]["cached"] and not steps["export_onnx"]["cached"]
    assert any("corrupted pass-cache entry was discarded and rebuilt" in n for n in steps["export_onnx"]["notes"])
    assert second["passed"] and (tmp_path / "b" / "model.onnx").read_bytes() == good
    assert second["artifact"]["sha256"] == first["artifact"]["sha256"] == hashlib.sha256(good).hexdigest()
    assert _onnx_entry(cache_root).joinpath("model.onnx").read_bytes() == good  # the entry is whole again
    third, err = _compile(good_set, tmp_path / "c", capsys)
    assert "discarded" not in err and all(s["cached"] for s in third["steps"])


def _report_entry(cache_root: Path) -> Path:
    entries = list((cache_root / "reports").glob("*.json"))
    assert len(entries) == 1
    return entries[0]


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["tampered", "truncated"])
def test_a_damaged_cached_report_is_not_reused(good_set, tmp_path, capsys, cache_root, damage):
    first, _ = _compile(good_set, tmp_path / "a", capsys)
    reused, err = _compile(good_set, tmp_path / "b", capsys)  # control: an intact entry is reused
    assert "reusing the cached report" in err and any("reused from the report cache" in n for n in reused["notes"])
    path = _report_entry(cache_root)
    entry = json.loads(path.read_text())
    if damage == "tampered":  # a better error than was measured, digest left as it was
        body = json.loads(entry["report"])
        body["accuracy"]["artifact"]["mean_deg"] = 0.001
        path.write_text(json.dumps({**entry, "report": json.dumps(body)}))
    else:
        path.write_text(path.read_text()[:len(path.read_text()) // 2])
    again, err = _compile(good_set, tmp_path / "c", capsys)
    assert "note: discarded a corrupted report-cache entry" in err and "verifying the artifact against the reference" in err
    assert not any("reused from the report cache" in n for n in again["notes"])
    assert again["accuracy"]["artifact"]["mean_deg"] == first["accuracy"]["artifact"]["mean_deg"] > 0.5


@pytest.mark.slow
def test_a_cached_report_is_reused_only_for_the_bytes_it_describes(good_set, tmp_path, capsys, cache_root):
    from edgekit.report import cache as report_cache
    from edgekit.report.model import Report

    _compile(good_set, tmp_path / "a", capsys)
    path = _report_entry(cache_root)
    key, shipped = path.stem, tmp_path / "a" / "model.onnx"
    art = Artifact.create(shipped, Format.onnx)
    notes = []
    assert isinstance(report_cache.load(path.parent, key, art, notes.append), Report) and notes == []
    other = tmp_path / "other.onnx"
    other.write_bytes(shipped.read_bytes())
    _flip(other)
    assert report_cache.load(path.parent, key, art.model_copy(update={"path": other}), notes.append) is None
    assert "describes other bytes than the artifact being shipped" in notes[0]


def _artifact_folder(folder: Path, content: bytes) -> Artifact:
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(content)
    return Artifact.create(folder / "model.onnx", Format.onnx)


def test_concurrent_writers_of_one_key_agree_and_a_corrupt_winner_is_replaced(tmp_path):
    notes = []
    cache, key = Cache(tmp_path / "c", log=notes.append), "ab" * 32
    first = cache.put(key, _artifact_folder(tmp_path / "w1", b"same bytes"), tmp_path / "w1")
    # a second writer finishes later: the rename fails, it gets the first entry (equivalent), its own copy is removed
    second = Cache(tmp_path / "c").put(key, _artifact_folder(tmp_path / "w2", b"same bytes"), tmp_path / "w2")
    assert second.path == first.path and second.path.read_bytes() == b"same bytes"
    assert [p.name for p in (tmp_path / "c" / "ab").iterdir()] == [key]  # no staging folder left behind
    _flip(first.path)  # the stored winner rots: the next writer discards it and stores its own
    third = cache.put(key, _artifact_folder(tmp_path / "w3", b"same bytes"), tmp_path / "w3")
    assert third.path.read_bytes() == b"same bytes" and cache.get(key) is not None
    assert len(notes) == 1 and "discarded a corrupted pass-cache entry" in notes[0] and key in cache.discarded


def test_a_cache_entry_cannot_point_outside_itself(tmp_path):
    cache, key = Cache(tmp_path / "c"), "cd" * 32
    art = cache.put(key, _artifact_folder(tmp_path / "w", b"x"), tmp_path / "w")
    entry = art.path.parent
    manifest = json.loads((entry / "entry.json").read_text())
    (entry / "artifact.json").write_text(json.dumps({**json.loads((entry / "artifact.json").read_text()),
                                                     "path": "../../../etc/passwd"}))
    manifest["files"]["artifact.json"] = hashlib.sha256((entry / "artifact.json").read_bytes()).hexdigest()
    (entry / "entry.json").write_text(json.dumps(manifest))  # a consistent forgery: still refused
    assert cache.get(key) is None and "not inside the entry" in cache.discarded[key]


def test_racing_writers_of_one_key_all_get_one_whole_entry(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    arts = [_artifact_folder(tmp_path / f"w{i}", b"same bytes") for i in range(8)]
    with ThreadPoolExecutor(8) as pool:  # rename is one system call: threads race for real
        stored = list(pool.map(lambda i: Cache(tmp_path / "c").put("ef" * 32, arts[i], tmp_path / f"w{i}"), range(8)))
    assert len({s.path for s in stored}) == 1 and stored[0].path.read_bytes() == b"same bytes"
    assert [p.name for p in (tmp_path / "c" / "ef").iterdir()] == ["ef" * 32]
    assert Cache(tmp_path / "c").get("ef" * 32) is not None


@pytest.mark.slow
def test_a_rebuild_note_is_not_cached_into_later_reports(good_set, tmp_path, capsys, cache_root):
    _compile(good_set, tmp_path / "a", capsys)
    _flip(_onnx_entry(cache_root) / "model.onnx")
    _report_entry(cache_root).unlink()  # this run verifies again, with the note in the report's notes
    rebuilt, _ = _compile(good_set, tmp_path / "b", capsys)
    assert any("corrupted pass-cache entry was discarded" in n for n in rebuilt["notes"])
    later, err = _compile(good_set, tmp_path / "c", capsys)
    assert "reusing the cached report" in err
    assert not any("corrupted" in n for n in later["notes"]) and not any("corrupted" in n for s in later["steps"] for n in s["notes"])
