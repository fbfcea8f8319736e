"""Progress on long work (edgekit.progress): one line per step off a terminal, a live bar with elapsed time and ETA on a
terminal, nothing when quiet, each pass's details at -v; the CLI's -q/-v end to end on a real compile."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import time

import pytest

from edgekit import progress
from edgekit.data.npz import write_gazeset
from edgekit.data.synthetic import standard_set
from edgekit.quiet import quiet


@pytest.fixture(autouse=True)
def _quiet_after():
    yield
    progress.configure(progress.QUIET)  # the level is per process: never leak it into other tests


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory):
    """A 48-image evaluation set and a 64-image calibration set, disjoint (their own seeds), as .npz files."""
    folder = tmp_path_factory.mktemp("sets")
    return (write_gazeset(standard_set("eval", 48), folder / "eval48.npz"),
            write_gazeset(standard_set("calib", 64), folder / "calib64.npz"))


def test_quiet_unless_configured(capsys):
    assert progress.level() == progress.QUIET  # the Python API's default
    with progress.step("a step"):
        assert list(progress.track(range(3), description="items")) == [0, 1, 2]
    progress.info("a line")
    progress.detail("a detail")
    assert capsys.readouterr().err == ""


def test_one_line_per_step_off_a_terminal(capsys):
    progress.configure(progress.NORMAL)
    with progress.step("converting"):
        assert list(progress.track(range(3), description="calibrating on 3 samples")) == [0, 1, 2]
    progress.detail("hidden at level 1")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert re.fullmatch(r"calibrating on 3 samples: 3/3 done in \d+\.\d s", err[0])
    assert re.fullmatch(r"converting: done in \d+\.\d s", err[1])  # inner steps end first


def test_details_only_at_verbose(capsys):
    progress.configure(progress.VERBOSE)
    progress.info("step line")
    progress.detail("observer percentile")
    assert capsys.readouterr().err == "step line\n  observer percentile\n"


def test_failed_step_prints_no_done_line_and_leaves_nothing_open(capsys):
    progress.configure(progress.NORMAL)
    with pytest.raises(ValueError), progress.step("verifying"):
        raise ValueError("boom")
    with pytest.raises(ValueError):
        for i in progress.track(range(5), description="batches"):
            if i == 2:
                raise ValueError("boom")
    assert capsys.readouterr().err == ""
    with progress.step("next"):
        pass
    assert capsys.readouterr().err.startswith("next: done in")


def test_long_step_reports_where_it_is_off_a_terminal(capsys, monkeypatch):
    """A CI log of a long step is not silent: a line every HEARTBEAT_S with items done, elapsed time and time left."""
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.1)
    progress.configure(progress.NORMAL)
    for _ in progress.track(range(3), description="Lava's simulator on 3 images"):
        time.sleep(0.25)
    with progress.step("converting with coremltools"):
        time.sleep(0.25)
    err = capsys.readouterr().err
    assert re.search(r"Lava's simulator on 3 images: [12]/3 after \d+\.\d s, about \d+\.\d s left", err), err
    assert re.search(r"converting with coremltools: still running after \d+\.\d s", err), err
    assert err.count("Lava's simulator on 3 images: 3/3 done in") == 1


def test_step_lines_survive_silenced_converters(capsys):
    """edgekit.quiet silences converters; a step inside it still prints its line."""
    progress.configure(progress.NORMAL)
    with quiet():
        print("converter noise", file=sys.stderr)
        with progress.step("converting with litert-torch"):
            pass
    err = capsys.readouterr().err
    assert "converter noise" not in err and "converting with litert-torch: done in" in err


def _run_in_terminal(code: str) -> tuple[str, str]:
    """Run `code` in a fresh Python whose stderr is a pseudo-terminal; (stdout, everything written to the terminal)."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                            env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = proc.stdout.read().decode()
    assert proc.wait(timeout=60) == 0
    return out, b"".join(chunks).decode(errors="replace")


def test_terminal_bar_shows_elapsed_time_and_eta():
    code = ("import time\nfrom edgekit import progress\nfrom edgekit.quiet import quiet\n"
            "progress.configure(1)\n"
            "with quiet():\n"  # the bar is drawn through its own descriptor: a silenced converter does not hide it
            "    for _ in progress.track(range(4), description='calibrating on 4 samples'):\n"
            "        time.sleep(0.5)\n"
            "print('result')\n")
    out, terminal = _run_in_terminal(code)
    assert out == "result\n"  # the bar never goes to stdout
    frames = [f for f in re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal)) if "calibrating" in f]
    live = [f for f in frames if re.search(r"\d/4\s+0:00:0\d\s+ETA", f)]
    assert live, terminal  # a live row: items done, elapsed time, then the ETA
    assert any(re.search(r"ETA\s+0:00:0\d", f) for f in live), terminal  # an estimate once items are done
    assert any(re.fullmatch(r"calibrating on 4 samples: 4/4 done in \d+\.\d s\s*", f) for f in frames), terminal


def test_compile_prints_each_pass_and_its_details_in_process(small_sets, tmp_path, capsys):
    import edgekit

    eval_path, calib_path = small_sets
    progress.configure(progress.VERBOSE)
    result = edgekit.compile(None, "onnx-int8", eval=eval_path, calib=calib_path, out=tmp_path / "v", cache=False)
    assert result.passed
    err = capsys.readouterr().err
    for line in (r"pass fold_bn: done in \d", r"pass export_onnx: done in \d", r"pass ptq: done in \d",
                 r"calibrating on 64 samples \(every tensor's range, then histograms\): 2/2 done in",
                 r"observer choice: all-INT8 plans with percentile, mse, minmax ranges: 3/3 done in",
                 r"mixed precision search: done in",
                 r"running the artifact on 48 samples \(batch \d+\): \d+/\d+ done in"):
        assert len(re.findall(f"^{line}", err, re.M)) == 1, (line, err)
    assert re.search(r"^  ptq: .*observer (percentile|mse|minmax)", err, re.M), err  # the plan summary and the observer choice
    assert re.search(r"^  ptq: all quantizable layers in INT8: error increase", err, re.M), err  # a decision
    # the per-layer sensitivity runs only when the all-INT8 plan misses a target (here it holds)
    assert result.report.quantization.float_layers == [] and "INT8 sensitivity" not in err, err


def _cli(args: list[str], sets, out, cache) -> subprocess.CompletedProcess:
    eval_path, calib_path = sets
    return subprocess.run([sys.executable, "-m", "edgekit.cli", "compile", "tinygaze", "--target", "onnx-int8",
                           "--eval-set", str(eval_path), "--calib-set", str(calib_path), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "EDGEKIT_CACHE_DIR": str(cache)})


@pytest.mark.slow
def test_cli_compile_progress_levels(small_sets, tmp_path):
    """A real CLI compile off a terminal (CI): one line per step; -q: nothing on stderr; -v: each pass's details."""
    cache = tmp_path / "cache"  # its own: the quiet run fills it, the verbose run reuses it
    normal = _cli(["--no-cache"], small_sets, tmp_path / "normal", cache)
    assert normal.returncode == 0, normal.stderr
    lines = normal.stderr.splitlines()
    for step in ("pass fold_bn: done in", "pass export_onnx: done in", "pass ptq: done in",
                 "calibrating on 64 samples", "mixed precision search: done in", "running the artifact on 48 samples"):
        assert sum(line.startswith(step) for line in lines) == 1, (step, normal.stderr)
    assert not any(line.startswith("  ") for line in lines), normal.stderr  # details only at -v
    assert "\x1b[" not in normal.stderr  # no terminal control codes in a log

    quiet_run = _cli(["-q"], small_sets, tmp_path / "quiet", cache)  # every pass runs: the cache is empty
    assert quiet_run.returncode == 0, quiet_run.stderr
    assert quiet_run.stderr == ""

    verbose = _cli(["-v"], small_sets, tmp_path / "verbose", cache)  # passes from the cache: their details all the same
    assert verbose.returncode == 0, verbose.stderr
    assert re.search(r"^pass ptq: cached \(\d+\.\d s\)$", verbose.stderr, re.M), verbose.stderr
    assert re.search(r"^  ptq: .*observer (percentile|mse|minmax)", verbose.stderr, re.M), verbose.stderr
    assert re.search(r"^  fold_bn: folded \d+ BatchNorm layers", verbose.stderr, re.M), verbose.stderr


@pytest.mark.slow  # about 30 s: Lava's start-up and compilation in its own environment
def test_lava_simulator_reports_each_sample(tmp_path, capsys, monkeypatch):
    """The Lava run is a subprocess in .venv-lava: its per-sample lines on stderr drive the bar (here: CI lines)."""
    from edgekit.backends.lava.simulator import lava_available
    from edgekit.compiler import compile
    from tests.backends.snn.test_targets import _small_recipe

    ok, why = lava_available()
    if not ok:
        pytest.skip(f"Lava environment unavailable: {why}")
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.3)  # the Lava run takes a few seconds: a line while it runs
    progress.configure(progress.NORMAL)
    res = compile(None, _small_recipe(tmp_path, "loihi", lava_samples=3, timesteps=8), eval=standard_set("eval", 24),
                  out=tmp_path / "out", cache=False)
    assert res.report.spiking.lava.ran and res.report.spiking.lava.samples == 3
    err = capsys.readouterr().err
    sim = "Lava's simulator on 3 images (start-up and compilation in the first)"
    assert re.search(rf"^{re.escape(sim)}: 3/3 done in \d+\.\d s$", err, re.M), err
    assert re.search(rf"^{re.escape(sim)}: [0-3]/3 after \d+\.\d s", err, re.M), err  # where it was while it ran
    for line in (r"pass to_snn: done in", r"pass to_netx: done in", r"calibrating spiking thresholds on \d+ images",
                 r"simulating the float SNN for \d+ steps on 24 images"):
        assert re.search(f"^{line}", err, re.M), (line, err)


def test_a_closed_stream_falls_back_to_stderr(capsys):
    """A level set under a capture that has since ended (an in-process CLI test) must not break later work."""
    import io

    gone = io.StringIO()
    saved = sys.stderr
    sys.stderr = gone
    try:
        progress.configure(progress.NORMAL)
    finally:
        sys.stderr = saved
    gone.close()
    with progress.step("pass fold_bn"):
        pass
    assert capsys.readouterr().err.startswith("pass fold_bn: done in")


def test_a_step_that_fails_closes_the_tracks_inside_it(capsys):
    """A loop that raised leaves its track() open until the generator is collected: the step around it closes it, so
    no stale bar or heartbeat outlives the failure."""
    progress.configure(progress.NORMAL)
    caught = None
    try:
        with progress.step("pass ptq"):
            for i in progress.track(range(5), description="calibrating"):
                if i == 1:
                    raise RuntimeError("converter crashed")
    except RuntimeError as exc:
        caught = exc  # keeps the traceback, and with it the suspended generator, alive
        assert progress._running == []
    assert caught is not None and capsys.readouterr().err == ""
