"""Real processes, real signals: Ctrl-C and SIGTERM during a compile leave nothing behind (one error line, exit
130/143), SIGKILL's leftovers are removed by the next run, and compiles or builds into one folder at once never
mix their outputs."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from edgekit.outdir import MARKER
from tests.fixtures.cli_child import EDGEKIT_CLI

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = {"model.onnx", "io.json", "report.json", "report.md", "report.html", MARKER}


@pytest.fixture
def place(tmp_path):
    """A working folder with a file of the user's, its own cache and TMPDIR (to see every work folder)."""
    (tmp_path / "tmp").mkdir()
    (tmp_path / "notes.txt").write_text("the user's\n")
    return tmp_path


def _env(place: Path) -> dict:
    return {**os.environ, "EDGEKIT_CACHE_DIR": str(place / "cache"), "TMPDIR": str(place / "tmp"),
            "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _start(place: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*EDGEKIT_CLI, *args], cwd=place, env=_env(place), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(find, proc: subprocess.Popen, timeout: float = 300):
    """Poll until find() returns something while PROC still runs."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = find()
        if found:
            return found
        assert proc.poll() is None, f"finished before the signal: {proc.communicate()}"
        time.sleep(0.01)
    raise AssertionError("timed out")


def _verifying(place: Path, name: str = "out"):
    """The staging folder of --out NAME once the artifact is in it (verification under way)."""
    return [p for p in place.glob(f".{name}.staging-*") if (p / "model.onnx").is_file()]


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and err.strip().endswith(lines[0]), err
    return lines[0]


def _untouched(place: Path, *also: str) -> None:
    """Only the user's file, the cache and the empty TMPDIR (and ALSO) remain: no stray file, no partial output."""
    assert sorted(p.name for p in place.iterdir()) == sorted(["notes.txt", "cache", "tmp", *also])
    assert (place / "notes.txt").read_text() == "the user's\n"
    assert _work_left(place) == []


def _work_left(place: Path) -> list[str]:
    """What is left in TMPDIR, but for onnxruntime's session-id file `.ses` (written on import, not edgekit's)."""
    return [p.name for p in (place / "tmp").iterdir() if p.name != ".ses"]


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_a_compile_leaves_nothing(place, signum, code):
    proc = _start(place, "compile", "--out", "out", "--no-cache", "--format", "json")
    _wait_for(lambda: _verifying(place), proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    line = _one_error_line(err)
    assert line == f"error: interrupted by {signal.Signals(signum).name}; partial output removed; fix: run the command again"
    assert json.loads(out) == {"error": f"interrupted by {signal.Signals(signum).name}; partial output removed",
                               "exit_code": code, "fix": "run the command again"}
    _untouched(place)


@pytest.mark.slow
def test_sigkill_leftovers_are_removed_by_the_next_run(place):
    proc = _start(place, "compile", "--out", "out", "--no-cache")
    staging = _wait_for(lambda: _verifying(place), proc)[0]
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert staging.is_dir() and _work_left(place)  # what a killed run leaves
    assert not (place / "out").exists()
    again = _start(place, "compile", "--out", "out")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "Traceback" not in err and not staging.exists()
    assert {p.name for p in (place / "out").iterdir()} == OUTPUTS
    _untouched(place, "out")


def _consistent(folder: Path) -> str:
    """The artifact, its sidecar and its report belong to one run: the same digest everywhere."""
    digest = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    assert json.loads((folder / "io.json").read_text())["sha256"] == digest
    assert json.loads((folder / "report.json").read_text())["artifact"]["sha256"] == digest
    assert {p.name for p in folder.iterdir()} == OUTPUTS
    return digest


@pytest.mark.slow
def test_two_compiles_into_one_out_at_once(place):
    """Both finish (the second waits for the first's move into place); the folder holds one complete output."""
    procs = [_start(place, "compile", "--out", "out", "--target", target, "--no-cache") for target in ("onnx", "onnx-fp16")]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0 and "Traceback" not in err, err
    _consistent(place / "out")
    _untouched(place, "out")


@pytest.mark.slow
def test_two_builds_into_one_dist_at_once(place):
    project = place / "edgekit.yaml"
    project.write_text("models:\n  - name: tinygaze\ntargets: [onnx, onnx-fp16]\n")
    procs = [_start(place, "build", "edgekit.yaml", "--dist", "dist", "--jobs", "2") for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0 and "Traceback" not in err, err
    manifest = json.loads((place / "dist" / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        assert _consistent((place / "dist" / entry["artifact"]).parent) == entry["sha256"]
    assert sorted(p.name for p in (place / "dist" / "tinygaze").iterdir()) == ["onnx", "onnx-fp16"]
    assert sorted(p.name for p in (place / "dist").iterdir()) == ["compare.html", "junit.xml", "manifest.json", "summary.md",
                                                                 "tinygaze"]
    _untouched(place, "edgekit.yaml", "dist")


@pytest.mark.slow
@pytest.mark.parametrize("signum, group", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_signal_during_a_parallel_build_stops_the_workers_and_leaves_no_partial_output(place, signum, group):
    """SIGTERM to the build process alone, or Ctrl-C as a terminal sends it (to the whole process group)."""
    project = place / "edgekit.yaml"
    project.write_text("models:\n  - name: tinygaze\ntargets: [onnx, onnx-fp16, onnx-int8]\n")
    proc = subprocess.Popen([*EDGEKIT_CLI, "build", "edgekit.yaml", "--dist", "dist", "--jobs", "2"],
                            cwd=place, env=_env(place), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    _wait_for(lambda: list((place / "dist").glob("tinygaze/.*.staging-*")), proc)
    os.killpg(proc.pid, signum) if group else proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum
    assert _one_error_line(err).startswith(f"error: interrupted by {signal.Signals(signum).name}")
    dist = place / "dist"
    if dist.exists():
        assert not [p for p in dist.rglob("*") if "staging" in p.name or ".old-" in p.name]
        for folder in dist.glob("tinygaze/*"):
            _consistent(folder)  # a job that finished before the signal is complete
        assert not (dist / "manifest.json").exists()
    assert _work_left(place) == []
    if shutil.which("pgrep"):
        time.sleep(0.5)
        workers = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert workers == []  # no worker outlives the build


def test_a_signal_inside_deferred_is_raised_after_the_block_even_with_other_threads():
    """A signal mask holds only the calling thread's signals; the deferral must hold while torch's threads run."""
    import threading

    from edgekit import signals
    from edgekit.errors import Interrupted

    old = signals.install()
    if not old:
        pytest.skip("not on the main thread")
    worker = threading.Thread(target=time.sleep, args=(1,), daemon=True)
    worker.start()
    finished = []
    try:
        with pytest.raises(Interrupted):
            with signals.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # the handler runs here, in the main thread
                finished.append(True)
        assert finished == [True]
    finally:
        signals.restore(old)


@pytest.mark.parametrize("when", ["making it", "removing it"])
def test_a_signal_while_a_work_folder_is_made_or_removed_leaves_no_folder(place, monkeypatch, when):
    """The CI run that found this: Ctrl-C to a parallel build as one job's work folder was being removed left it."""
    from edgekit import outdir, signals
    from edgekit.errors import Interrupted

    monkeypatch.setattr(outdir.tempfile, "tempdir", str(place / "tmp"))
    owner, name = (outdir, "write_pidfile") if when == "making it" else (outdir.shutil, "rmtree")
    real = getattr(owner, name)

    def signal_first(*args, **kwargs):  # the signal lands right inside the step
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, signal_first)
    old = signals.install()
    if not old:
        pytest.skip("not on the main thread")
    try:
        with pytest.raises(Interrupted):
            with outdir.work_folder():
                pass
    finally:
        signals.restore(old)
    assert _work_left(place) == []


def test_the_temp_folder_is_probed_before_signals_raise(place, monkeypatch):
    """tempfile's first gettempdir() writes and removes a probe file; a signal in between left it in TMPDIR (found by
    a CI run: an empty file named like 5033qs7v). install() does that probe while signals still act as before."""
    import tempfile

    from edgekit import signals

    monkeypatch.setenv("TMPDIR", str(place / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", None)
    old = signals.install()
    if not old:
        pytest.skip("not on the main thread")
    try:
        assert tempfile.tempdir == str(place / "tmp")
    finally:
        signals.restore(old)


def test_a_child_forked_before_its_own_handlers_ends_quietly_on_sigterm():
    """A build worker forked while the parent stops its pool gets SIGTERM with the parent's handler still set (it
    runs during multiprocessing's after-fork hooks, before the worker's start-up): it ends with 128 + SIGTERM instead
    of raising Interrupted there (a traceback on the user's terminal, once in a CI run); the parent still raises."""
    from edgekit import signals
    from edgekit.errors import Interrupted

    with signals.interrupts_raise():
        pid = os.fork()
        if pid == 0:  # the child: the parent's handler, none of its own
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
                os._exit(0)
            except Interrupted:
                os._exit(99)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 128 + signal.SIGTERM
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
