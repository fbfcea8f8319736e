"""edgekit build --executor ray: a real local Ray (no mocks); the same outputs as a local build, a worker killed
mid-build retried then recorded as failed, Ctrl-C leaving nothing half-written, and the usage errors."""

import builtins
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from edgekit.build import build
from edgekit.cli import run
from tests.fixtures.cli_child import EDGEKIT_CLI

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("onnx", "onnx-fp16", "onnx-int8")  # three cheap targets sharing fold_bn and export
MEASURED = {"seconds", "cached", "latency_p50_ms"}  # differ between any two builds, local ones too


def _project(tmp_path, targets=TARGETS) -> Path:
    path = tmp_path / "edgekit.yaml"
    path.write_text("models:\n  - name: tinygaze\ntargets:\n" + "".join(f"  - {t}\n" for t in targets))
    return path


def _manifest(dist: Path) -> dict:
    m = json.loads((dist / "manifest.json").read_text())
    return {**{k: v for k, v in m.items() if k != "seconds"},
            "artifacts": [{k: v for k, v in e.items() if k not in MEASURED} for e in m["artifacts"]]}


def _summary(dist: Path) -> list[list[str]]:
    """summary.md with the measured columns (latency, build time) blanked."""
    rows = []
    for line in (dist / "summary.md").read_text().splitlines():
        cells = line.split(" | ")
        if line.startswith("| tinygaze |"):
            cells[4] = cells[7] = "-"
        rows.append(cells)
    return rows


def _junit(dist: Path) -> list:
    """junit.xml without times, latencies and whether everything was cached (which depends on the task order)."""
    suite = ET.parse(dist / "junit.xml").getroot()
    cases = []
    for case in suite.iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property") if "latency" not in p.get("name")
                 and p.get("name") != "cached"}
        out = [line for line in (case.findtext("system-out") or "").splitlines() if not line.startswith("latency")]
        cases.append((case.get("name"), props, out, [(c.tag, c.get("message")) for c in case if c.tag != "properties"
                                                     and c.tag != "system-out"]))
    return [{k: v for k, v in suite.attrib.items() if k != "time"}, cases]


def _compare(dist: Path) -> str:
    """compare.html without its latency plot and latency cells (measured, so different in any two builds)."""
    html = re.sub(r'<svg class="plot"[^>]*aria-label="Error against latency[^"]*".*?</svg>', "",
                  (dist / "compare.html").read_text(), flags=re.S)
    return re.sub(r"(<tr><td><span class=\"swatch\".*?</td>(?:<td>.*?</td>){3})<td>[^<]*</td>", r"\1<td>-</td>", html)


def _steps_cached(dist: Path, target: str) -> list[tuple[str, bool]]:
    report = json.loads((dist / "tinygaze" / target / "report.json").read_text())
    return [(s["pass"].split("(")[0], s["cached"]) for s in report["steps"]]


@pytest.mark.slow
def test_a_ray_build_gives_the_same_outputs_as_a_local_build(tmp_path, monkeypatch, capsys):
    """Through a shared cache (as on one machine or over NFS) and through Ray's object store alone (--no-shared-cache:
    each task its own empty cache, outputs handed back to the driver)."""
    project = _project(tmp_path)
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache-local"))  # each its own empty cache: built again
    build(project, tmp_path / "local")
    local = tmp_path / "local"
    for name, extra in (("ray", []), ("objects", ["--no-shared-cache"])):
        monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / f"cache-{name}"))
        sigterm = signal.getsignal(signal.SIGTERM)
        assert run(["build", str(project), "--dist", str(tmp_path / name), "--executor", "ray", "--jobs", "2", *extra]) == 0
        assert signal.getsignal(signal.SIGTERM) is sigterm  # ray.init's own handler does not outlive the build
        ray = tmp_path / name
        for e in json.loads((local / "manifest.json").read_text())["artifacts"]:
            assert (local / e["artifact"]).read_bytes() == (ray / e["artifact"]).read_bytes(), e["target"]
        # fold_bn and export ran once, in the model's shared-pass task, before the three target tasks: each found them
        # cached; fp16's and int8's own passes ran in their tasks (built, not copied)
        assert _steps_cached(ray, "onnx") == [("fold_bn", True), ("export_onnx", True)]
        assert _steps_cached(ray, "onnx-fp16") == [("fold_bn", True), ("export_onnx", True), ("onnx_fp16", False)]
        assert _steps_cached(ray, "onnx-int8") == [("fold_bn", True), ("export_onnx", True), ("ptq", False)]
        # the driver's cache: filled by the tasks, or (object store) never touched
        assert any((tmp_path / f"cache-{name}").rglob("entry.json")) == (name == "ray")
        assert _manifest(ray) == _manifest(local)
        assert _summary(ray) == _summary(local)
        assert _junit(ray) == _junit(local)
        assert _compare(ray) == _compare(local) and "tinygaze / onnx-int8" in _compare(ray)
        err = capsys.readouterr().err
        assert re.search(r"\[1/3\] tinygaze -> \S+: ok.*; 0 queued, 2 running, ETA \d+s", err), err
        # the last line ends without a queue: whichever target finishes last (onnx's passes all ran in the shared task,
        # so it says "(cached)"; Ray does not promise it finishes first)
        assert re.search(r"\[3/3\] tinygaze -> \S+: ok( \(cached\))?\n", err), err
        assert not list(ray.rglob(".*staging*"))


def _kill_worker_once(staging_glob: Path, killed: list, deadline: float) -> None:
    """SIGKILL the Ray worker (and the processes it forked) whose staging folder matches, once: its pid file says
    which process writes it."""
    while time.monotonic() < deadline:
        for pidfile in staging_glob.parent.glob(staging_glob.name + "/.edgekit-pid"):
            try:
                pid = json.loads(pidfile.read_text())["pid"]
            except (OSError, ValueError, KeyError):  # being written
                continue
            os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.02)


@pytest.mark.slow
def test_killed_workers_are_retried_then_recorded_as_failed_and_the_others_finish(tmp_path, monkeypatch, capsys):
    """onnx: its worker is killed from outside mid-compile, once: retried, it passes. onnx-fp16: its worker kills
    itself (test hook) as its output is about to move in, every time: retried once, then recorded as failed."""
    attempts = tmp_path / "attempts.log"
    monkeypatch.setenv("EDGEKIT_TEST_KILL_RAY_TASK", "tinygaze/onnx-fp16")
    monkeypatch.setenv("EDGEKIT_TEST_KILL_RAY_LOG", str(attempts))
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))  # cold: onnx compiles long enough to be killed
    dist = tmp_path / "dist"
    killed: list[int] = []
    killer = threading.Thread(target=_kill_worker_once, args=(dist / "tinygaze" / ".onnx.staging-*", killed,
                                                              time.monotonic() + 120), daemon=True)
    killer.start()
    printer = builtins.print
    assert run(["build", str(_project(tmp_path, ("onnx", "onnx-fp16"))), "--dist", str(dist), "--executor", "ray",
                "--jobs", "2", "--max-retries", "1"]) == 1
    killer.join(timeout=1)
    # the dead workers' logs reach the driver, whose tqdm_ray then replaces print: the build puts the caller's back
    assert builtins.print is printer
    assert len(killed) == 1 and len(attempts.read_text().split()) == 2  # fp16: the first run and one retry
    manifest = json.loads((dist / "manifest.json").read_text())
    status = {e["target"]: e for e in manifest["artifacts"]}
    assert status["onnx"]["status"] == "passed" and (dist / status["onnx"]["artifact"]).is_file()
    assert status["onnx-fp16"]["status"] == "error" and "Ray worker building it died" in status["onnx-fp16"]["reason"]
    assert "1 of 2 builds failed: tinygaze/onnx-fp16 (error)" in capsys.readouterr().err
    assert ET.parse(dist / "junit.xml").getroot().get("errors") == "1"
    assert sorted(p.name for p in (dist / "tinygaze").iterdir()) == ["onnx"]  # the killed ones' staging removed


@pytest.mark.slow
def test_fail_fast_cancels_the_rest_on_ray(tmp_path):
    project = tmp_path / "p.yaml"
    project.write_text("models:\n  - name: broken\n    source: missing.onnx\n  - name: tinygaze\ntargets: [onnx]\n")
    manifest = build(project, tmp_path / "dist", jobs=1, fail_fast=True, executor="ray")  # one task in flight at a time
    assert [e["status"] for e in manifest["artifacts"]] == ["error", "skipped"] and not manifest["ok"]
    assert "missing.onnx" in manifest["artifacts"][0]["reason"] and not (tmp_path / "dist" / "tinygaze").exists()


def _descendants(pid: int) -> set[int]:
    """The processes under PID (its local Ray: GCS, raylet, workers and what they forked)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(proc.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("signum,group", [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_ctrl_c_cancels_the_ray_tasks_and_leaves_no_partial_output(tmp_path, signum, group):
    """Ctrl-C as a terminal sends it (to the whole process group), or SIGTERM to the build process alone (ray.init
    sets its own SIGTERM handler, which would exit without cleaning up)."""
    project = _project(tmp_path, ("executorch-int8", "snn"))  # 12 s and 26 s tasks: both still compiling
    dist = tmp_path / "dist"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGEKIT_CACHE_DIR": str(tmp_path / "cache")}  # cold: long enough
    proc = subprocess.Popen([*EDGEKIT_CLI, "build", str(project), "--dist", str(dist),
                             "--executor", "ray", "--jobs", "2"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list(dist.glob("tinygaze/.*.staging-*"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)  # both tasks are compiling: their outputs are staging
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    ray_processes = _descendants(proc.pid)
    assert len(ray_processes) >= 4  # GCS, raylet, two workers
    os.killpg(proc.pid, signum) if group else os.kill(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err.decode()[-2000:]
    assert f"interrupted by {signal.Signals(signum).name}; partial output removed" in err.decode()
    left = sorted(str(p.relative_to(tmp_path)) for p in dist.rglob("*")) if dist.exists() else []
    assert left == [], left  # no artifact, staging folder, manifest or empty model folder
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in ray_processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in ray_processes if _alive(p)]  # the local Ray went with the build


GPU_RECIPE = ("name: gpu\nbackend: onnx\npasses:\n  - fold_bn\n  - prune:\n      fine_tune_steps: 2\n      device: cuda\n"
              "  - export_onnx\n")


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a CPU build of torch says on a GPU node")
def test_a_cluster_of_several_nodes_reserves_a_gpu_for_a_pass_that_trains_on_one(tmp_path, monkeypatch):
    """--address on a Ray cluster of separate nodes on this machine (ray.cluster_utils: each node its own raylet and
    object store). A target whose recipe trains on a GPU is an error at once while no node has one (Ray would queue it
    for ever); once a node declares one, Ray runs it there with that GPU assigned (CUDA_VISIBLE_DEVICES), where the
    pass finds that torch here is a CPU build and says so. The other target builds, through the object store."""
    from ray.cluster_utils import Cluster

    (tmp_path / "gpu.yaml").write_text(GPU_RECIPE)
    project = _project(tmp_path, ("onnx", "gpu.yaml"))
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    node = dict(num_cpus=1, object_store_memory=200 << 20)
    sigterm = signal.getsignal(signal.SIGTERM)
    cluster = Cluster(initialize_head=True, head_node_args=node)
    try:
        entries = _built(project, tmp_path / "no-gpu", "--address", cluster.address)
        assert entries["gpu.yaml"] == {"model": "tinygaze", "target": "gpu.yaml", "status": "error", "reason":
                                       "its recipe trains on a GPU (device: cuda) and the Ray cluster has no GPUs; fix: "
                                       "add a node with a GPU to the cluster, or set device: cpu in the recipe"}
        cluster.add_node(num_gpus=1, **node)
        cluster.wait_for_nodes()
        entries = _built(project, tmp_path / "gpu-node", "--address", cluster.address, "--no-shared-cache")
        reason = entries["gpu.yaml"]["reason"]
        assert reason.startswith("prune: device cuda, but torch") and "CUDA_VISIBLE_DEVICES=0;" in reason, reason
    finally:
        cluster.shutdown()
        # the head node ray.cluster_utils starts in this process leaves its SIGTERM handler behind (sys.exit(1)):
        # later tests in this pytest worker send themselves SIGTERM
        signal.signal(signal.SIGTERM, sigterm)


def _built(project: Path, dist: Path, *options: str) -> dict:
    """Build PROJECT on Ray (one target fails); its manifest entries by target, the passing ones checked on disk."""
    assert run(["build", str(project), "--dist", str(dist), "--executor", "ray", *options]) == 1
    entries = {e["target"]: e for e in json.loads((dist / "manifest.json").read_text())["artifacts"]}
    assert entries["onnx"]["status"] == "passed" and (dist / entries["onnx"]["artifact"]).is_file()
    return entries

def test_address_and_no_shared_cache_need_the_ray_executor(tmp_path, capsys):
    assert run(["build", str(_project(tmp_path)), "--dist", str(tmp_path / "d"), "--address", "10.0.0.1:6379"]) == 2
    assert "--address needs --executor ray; fix: add --executor ray" in capsys.readouterr().err
    assert run(["build", str(_project(tmp_path)), "--dist", str(tmp_path / "d"), "--no-shared-cache"]) == 2
    assert "--no-shared-cache needs --executor ray; fix: add --executor ray" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_an_unreachable_cluster_is_a_one_line_error_at_once(tmp_path, capsys):
    dist = tmp_path / "d"
    started = time.monotonic()
    code = run(["build", str(_project(tmp_path, ("onnx",))), "--dist", str(dist), "--executor", "ray",
                "--address", "127.0.0.1:1"])  # nothing listens on port 1
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: cannot reach the Ray cluster at 127.0.0.1:1 ("), err
    assert err[-1].endswith("fix: check --address or RAY_ADDRESS, or leave both unset for a local Ray")
    assert time.monotonic() - started < 30 and not dist.exists()  # ray.init alone retries for minutes


def test_without_ray_installed_the_error_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if absent: `import ray` raises ImportError
    assert run(["build", str(_project(tmp_path, ("onnx",))), "--dist", str(tmp_path / "d"), "--executor", "ray"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: edgekit build --executor ray needs ray, which is not installed")
    assert err[-1].endswith("fix: pip install 'edgekit[ray]'")


def test_a_local_ray_gets_the_cores_this_process_may_run_on_and_the_cache_in_its_environment(monkeypatch):
    """Only the sizing and environment: ray.init's options, recorded instead of starting Ray (the builds above start real ones)."""
    from edgekit import build_ray

    class Recorder:
        def init(self, **options):
            self.options, self.cache = options, os.environ.get("EDGEKIT_CACHE_DIR")

    monkeypatch.setattr(build_ray, "usable_cores", lambda: 3)  # e.g. a container pinned to 3 of the host's cores
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", "relative/cache")
    ray = Recorder()
    build_ray._init(ray, None, None)
    assert ray.options["address"] == "local" and ray.options["num_cpus"] == 3
    build_ray._init(ray, None, 2)  # --jobs wins
    assert ray.options["num_cpus"] == 2
    # the local raylet inherits the environment ray.init runs in (no runtime_env: it would start idle workers), with
    # the cache as an absolute path; this process gets its own back
    assert "runtime_env" not in ray.options and ray.cache == str(Path("relative/cache").absolute())
    assert os.environ["EDGEKIT_CACHE_DIR"] == "relative/cache"
