"""The user's files are never lost: --out, --dist and project names that would overwrite or escape are refused with
one line (exit 2) before any work; full disks and unwritable folders are one line too; --format json failures are one
JSON object on stdout."""

import errno
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import edgekit.fileio
from edgekit.cli import run
from edgekit.outdir import MARKER, PIDFILE, WORK_PREFIX, release_pidfile, write_pidfile

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = {"model.onnx", "io.json", "report.json", "report.md", "report.html", MARKER}


def _fails(argv, message, capsys, code=2):
    assert run(argv) == code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    errors = [line for line in captured.err.strip().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and captured.err.strip().endswith(errors[0]), captured.err
    assert message in errors[0] and "; fix: " in errors[0], errors[0]
    return errors[0]


def _tree(folder: Path) -> dict:
    """Every file under FOLDER with its bytes' digest."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("mine\n")
    (path / "sub").mkdir()
    (path / "sub" / "data.bin").write_bytes(b"\x00\x01" * 100)
    return path


def test_out_that_is_a_file_is_refused_even_with_force(tmp_path, capsys):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"not yours")
    for force in ([], ["--force"]):
        _fails(["compile", "--out", str(target), *force], f"--out {target} is a file, not a folder", capsys)
        assert target.read_bytes() == b"not yours"
    _fails(["compile", "--out", str(target / "below")], "is a file, not a folder", capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_folder_edgekit_did_not_write_is_refused_untouched(tmp_path, capsys, monkeypatch):
    user = _user_folder(tmp_path / "models")
    before = _tree(user)
    line = _fails(["compile", "--out", str(user)], "is a folder edgekit did not write (2 entries, e.g. notes.txt)", capsys)
    assert "--force" in line
    monkeypatch.chdir(user)  # `--out .`: the same, and the current folder is never renamed away
    _fails(["compile", "--out", "."], "--out . is a folder edgekit did not write", capsys)
    assert _tree(user) == before and sorted(p.name for p in tmp_path.iterdir()) == ["models"]


@pytest.mark.slow
def test_force_adds_edgekit_files_beside_the_users_and_replaces_none(tmp_path, capsys, monkeypatch):
    user = _user_folder(tmp_path / "models")
    (user / "report.md").write_text("my own notes called report.md\n")
    before = _tree(user)
    _fails(["compile", "--out", str(user), "--force"], "already holds report.md, which edgekit did not write", capsys)
    assert _tree(user) == before
    (user / "report.md").unlink()
    before = _tree(user)
    monkeypatch.chdir(user)
    assert run(["compile", "--out", ".", "--force"]) == 0
    after = _tree(user)
    assert {k: after[k] for k in before} == before and set(after) - set(before) == OUTPUTS
    assert set(json.loads((user / MARKER).read_text())["files"]) == OUTPUTS - {MARKER}
    # the folder now holds edgekit's files: recompiling (another target) needs no --force, the user's stay
    assert run(["compile", "--out", ".", "--target", "onnx-fp16"]) == 0
    again = _tree(user)
    assert {k: again[k] for k in before} == before and again["model.onnx"] != after["model.onnx"]
    assert not [p for p in user.iterdir() if "staging" in p.name or p.name == PIDFILE]


@pytest.mark.slow
def test_the_input_model_is_never_replaced(tmp_path, capsys):
    first = tmp_path / "first"
    assert run(["compile", "--out", str(first)]) == 0
    model = first / "model.onnx"
    before = _tree(first)
    # the artifact of an earlier compile, compiled again into its own folder (which edgekit wrote)
    _fails(["compile", str(model), "--target", "onnx-fp16", "--out", str(first)], "would replace this run's input", capsys)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "model.onnx").write_bytes(model.read_bytes())
    _fails(["compile", str(mine / "model.onnx"), "--out", str(mine), "--force"], "already holds model.onnx", capsys)
    assert _tree(first) == before and [p.name for p in mine.iterdir()] == ["model.onnx"]
    # an input elsewhere in the folder is kept, and the output goes beside it
    (mine / "model.onnx").rename(mine / "net.onnx")
    assert run(["compile", str(mine / "net.onnx"), "--target", "onnx-fp16", "--out", str(mine), "--force"]) == 0
    assert (mine / "net.onnx").read_bytes() == model.read_bytes() and (mine / "model.onnx").is_file()


@pytest.mark.slow
def test_rewriting_edgekits_own_folder_needs_no_force(tmp_path):
    out = tmp_path / "build" / "tinygaze" / "onnx"
    for target in ("onnx", "onnx-fp16", "onnx"):
        assert run(["compile", "--out", str(out), "--target", target]) == 0
        assert {p.name for p in out.iterdir()} == OUTPUTS
    assert sorted(p.name for p in out.parent.iterdir()) == ["onnx"]  # no staging or old folder left beside it
    (out / MARKER).unlink()  # written by an edgekit from before markers: still recognised as edgekit's
    assert run(["compile", "--out", str(out)]) == 0 and (out / MARKER).is_file()
    (out / MARKER).unlink()
    (out / "notes.txt").write_text("but not with a file of the user's in it\n")
    assert run(["compile", "--out", str(out)]) == 2 and (out / "notes.txt").is_file()


def test_failed_compile_removes_the_folders_it_created(tmp_path, capsys):
    out = tmp_path / "a" / "b" / "out"
    _fails(["compile", str(tmp_path / "missing.onnx"), "--out", str(out)], "missing.onnx", capsys)
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_writing_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    real = edgekit.fileio.atomic_write

    def disk_full_after_half(path, write):
        def half_then_full(tmp):
            tmp.write_bytes(b"{half a rep")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
        return real(path, half_then_full)

    monkeypatch.setattr(edgekit.fileio, "atomic_write", disk_full_after_half)
    out = tmp_path / "out"
    line = _fails(["compile", "--out", str(out)], "no space left on the device", capsys)
    assert "fix: free space there" in line
    assert list(tmp_path.iterdir()) == []  # no output, no staging folder, no temporary file


def test_a_full_disk_under_a_converters_own_error_is_named_as_the_disk():
    """safetensors keeps only the OS's words, shutil.copytree lists its files' errors, the ONNX export pass re-raises
    as a trace failure: each is the one-line full-disk error, and an ordinary failure is not."""
    import shutil

    from edgekit.errors import BadInputError, disk_full, from_os_error

    enospc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    wrapped = RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    try:
        try:
            raise enospc
        except OSError:
            raise BadInputError("export_onnx failed: [Errno 28] No space left on device; fix: check the model traces") from None
    except BadInputError as exc:
        rewrapped = exc
    copied = shutil.Error([("a", "b", "[Errno 28] No space left on device: 'b'")])
    for exc in (enospc, wrapped, rewrapped.__context__, copied):
        assert "no space left on the device; fix: free space there" in str(disk_full(exc)), exc
    assert "no space left on the device" in str(from_os_error(copied))
    assert disk_full(RuntimeError("Wire format was corrupt")) is None and disk_full(None) is None
    assert disk_full(OSError(errno.EACCES, "Permission denied")) is None  # not a full disk (from_os_error names it)


@pytest.mark.slow
def test_a_compile_on_a_really_full_disk_fails_in_one_line_wherever_it_fills(tmp_path, capsys, monkeypatch):
    """A tmpfs as small as the work folders: the disk fills in fold_bn (safetensors), the export, the pass cache's
    copy (shutil.Error) or PTQ (whose shape inference once wrote a truncated model without an error), depending on
    the size and on what else this host writes there (the reference's worker, when a core is spare)."""
    mount = tmp_path / "small"
    mount.mkdir()
    failed = 0
    for size_mb in (6, 9, 12, 14, 16):
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)],
                          capture_output=True).returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root in a mount namespace)")
        try:
            monkeypatch.setenv("TMPDIR", str(mount))
            monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(mount / "cache"))
            monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
            out = tmp_path / f"out{size_mb}"
            code = run(["compile", "-t", "onnx-int8", "--out", str(out)])
            err = capsys.readouterr().err
            assert "Traceback" not in err, err
            if code != 0:
                failed += 1
                assert code == 2 and err.strip().splitlines()[-1].startswith(
                    "error: writing output: no space left on the device; fix: free space there"), (size_mb, err)
                assert not out.exists()
        finally:
            monkeypatch.setattr(tempfile, "tempdir", None)
            subprocess.run(["umount", str(mount)], check=True)
    assert failed >= 1  # the sizes fill it: a compile that never ran short proves nothing


def test_unwritable_and_read_only_out(tmp_path, capsys, monkeypatch):
    # root ignores mode bits: then a folder in which no one may create anything (sysfs)
    locked = Path("/sys") if os.geteuid() == 0 else tmp_path / "locked"
    if os.geteuid() != 0:
        locked.mkdir(mode=0o500)
    if locked.is_dir():
        line = _fails(["compile", "--out", str(locked / "edgekit-test" / "out")], f"{locked / 'edgekit-test'}: ", capsys)
        assert "fix: choose a folder you can write" in line and not (locked / "edgekit-test").exists()
    real = tempfile.mkdtemp

    def read_only(*args, dir=None, **kwargs):  # the file system of --out is mounted read-only
        if dir is not None and Path(dir).is_relative_to(tmp_path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    out = tmp_path / "ro" / "out"
    line = _fails(["compile", "--out", str(out), "--format", "json"], "read-only file system", capsys)
    assert "choose a folder you can write" in line
    assert not (tmp_path / "ro").exists()


@pytest.mark.slow
def test_report_of_a_folder_and_energy_with_a_bad_target(tmp_path, capsys):
    out = tmp_path / "r"
    assert run(["compile", "--out", str(out)]) == 0
    capsys.readouterr()
    _fails(["report", str(out)], f"{out} is a folder, not a report.json; fix: pass {out / 'report.json'}", capsys)
    energy_out = tmp_path / "energy"
    _fails(["energy", "--target", "onnx,bogus", "--out", str(energy_out)], "unknown target 'bogus'", capsys)
    assert not energy_out.exists()  # validated before compiling any
    _user_folder(energy_out / "onnx-fp16")
    _fails(["energy", "--target", "onnx,onnx-fp16", "--out", str(energy_out)], "is a folder edgekit did not write", capsys)
    assert sorted(p.name for p in energy_out.iterdir()) == ["onnx-fp16"]


def _project(tmp_path, models, targets) -> Path:
    path = tmp_path / "edgekit.yaml"
    path.write_text("models:\n" + "".join(f"  - name: {json.dumps(m)}\n    source: tinygaze\n" for m in models)
                    + "targets:\n" + "".join(f"  - {json.dumps(t)}\n" for t in targets))
    return path


@pytest.mark.parametrize("models, targets, message", [
    (["../escape"], ["onnx"], "models.0.name '../escape' is not a plain name"),
    (["/tmp/abs"], ["onnx"], "models.0.name '/tmp/abs' is not a plain name"),
    ([".."], ["onnx"], "models.0.name '..' is not a plain name"),
    (["tinygaze"], ["../onnx"], "targets.0 '../onnx' is not a plain target name"),
    (["tinygaze"], ["/etc/onnx.yaml"], "targets.0 '/etc/onnx.yaml' is not a plain target name"),
    (["tinygaze"], ["../up.yaml"], "targets.0 '../up.yaml'"),
    (["a", "a"], ["onnx"], "models.1.name 'a' appears twice"),
    (["a"], ["onnx", "sub/onnx.yaml"], "writes the same folder as another target"),
])
def test_build_refuses_names_that_are_not_plain(tmp_path, capsys, models, targets, message):
    project = _project(tmp_path, models, targets)
    dist = tmp_path / "dist"
    _fails(["build", str(project), "--dist", str(dist)], message, capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edgekit.yaml"]


def test_build_dist_that_is_a_file_or_the_users_folder(tmp_path, capsys):
    project = str(_project(tmp_path, ["tinygaze"], ["onnx"]))
    dist = tmp_path / "dist"
    dist.write_text("a file")
    _fails(["build", project, "--dist", str(dist)], f"--dist {dist} is a file", capsys)
    assert dist.read_text() == "a file"
    user = _user_folder(tmp_path / "mine")
    (user / "summary.md").write_text("my summary\n")
    before = _tree(user)
    _fails(["build", project, "--dist", str(user)], f"--dist {user} holds notes.txt, which edgekit build did not write", capsys)
    assert _tree(user) == before


def _json_failure(argv, code, capsys) -> dict:
    assert run(argv) == code
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # exactly one JSON document
    assert doc["exit_code"] == code and doc["error"] and doc["fix"], doc
    errors = [line for line in captured.err.strip().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and doc["error"] in errors[0] and "Traceback" not in captured.err
    return doc


@pytest.mark.slow
def test_json_format_failures_are_one_object(tmp_path, capsys, monkeypatch):
    doc = _json_failure(["compile", "--target", "pdp11", "--format", "json"], 2, capsys)
    assert doc["error"] == "unknown target 'pdp11'" and doc["fix"].startswith("use one of ")
    _json_failure(["energy", "--target", "onnx,bogus", "--format", "json", "--out", str(tmp_path / "e")], 2, capsys)
    _json_failure(["demo", "evaluate", "--eval-set", str(tmp_path / "none.npz"), "--format", "json"], 2, capsys)
    assert run(["compile", "--no-such-option", "--format=json"]) == 2  # usage errors: click's usage text on stderr
    assert json.loads(capsys.readouterr().out)["error"] == "No such option: --no-such-option"
    recipe = tmp_path / "strict.yaml"
    recipe.write_text("name: strict\nbackend: onnx\npasses: [fold_bn, export_onnx, onnx_fp16]\ngates:\n  max_diff_deg: 0.000001\n")
    doc = _json_failure(["compile", "--target", str(recipe), "--out", str(tmp_path / "s"), "--format", "json"], 1, capsys)
    assert doc["passed"] is False and doc["report"]["gates"][0]["passed"] is False  # the result and the error, one object
    assert doc["error"].startswith("gate(s) max_diff_deg failed") and "report.md" in doc["fix"]

    import edgekit.compiler
    from edgekit._optional import require

    monkeypatch.setattr(edgekit.compiler, "load_recipe", lambda target: require("onnx.no_such_module", "this recipe"))
    doc = _json_failure(["compile", "--format", "json"], 3, capsys)
    assert "pip install 'edgekit[onnx]'" in doc["fix"]


def test_stdout_on_a_full_disk(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "edgekit.cli", "targets", "--format", "json"], stdout=full,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: writing output: no space left on the device; fix: free space "
                                                "there, or write elsewhere (--out, --dist, or TMPDIR for edgekit's work folders)"]


@pytest.mark.slow
def test_stale_work_and_staging_folders_are_removed_live_ones_kept(tmp_path, monkeypatch):
    from edgekit.compiler import compile as run_compile

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))

    def folder(path: Path, alive: bool) -> Path:
        path.mkdir()
        if alive:  # this process holds the pid file's lock, as a live run does
            write_pidfile(path)
        else:  # a run that wrote its pid file and died: nobody holds the lock any more
            subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from edgekit.outdir import "
                            "write_pidfile; write_pidfile(Path(sys.argv[1]))", str(path)], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        (path / "half.onnx").write_bytes(b"half")
        return path

    out = tmp_path / "out"
    stale = [folder(tmp / f"{WORK_PREFIX}dead", False), folder(tmp_path / ".out.staging-dead", False)]
    live = [folder(tmp / f"{WORK_PREFIX}live", True), folder(tmp_path / ".other.staging-live", True)]
    no_pid = tmp / f"{WORK_PREFIX}older-edgekit"  # no pid file: not provably edgekit's and dead, so kept
    no_pid.mkdir()
    run_compile(None, "onnx", out=out)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in live) and no_pid.exists()
    assert {p.name for p in out.iterdir()} == OUTPUTS
    assert sorted(p.name for p in tmp.glob(WORK_PREFIX + "*")) == [f"{WORK_PREFIX}live", f"{WORK_PREFIX}older-edgekit"]
    for path in live:
        release_pidfile(path)
