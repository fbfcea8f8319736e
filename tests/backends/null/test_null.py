"""The null backend and the identity pass: the whole compile path (recipe, pipeline, pass cache, verification, gates,
report files) on the built-in demo model, with no converter, in well under a second per compile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import edgekit
from edgekit.data.synthetic import standard_set
from edgekit.errors import BadInputError
from edgekit.recipe import load_recipe

N_EVAL = 16


def write_recipe(folder: Path, name: str, passes: list, gates: dict | None = None, backend: str = "null") -> Path:
    """A recipe YAML (JSON is YAML). The backend name is written quoted: in YAML, a bare `null` is None."""
    body = {"name": name, "description": "test recipe", "backend": backend, "passes": passes,
            "verify": {"eval_images": N_EVAL, "latency_runs": 2, "warmup_runs": 0, "threads": 1}}
    if gates:
        body["gates"] = gates
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(body, indent=1))
    return path


@pytest.fixture(scope="module")
def eval_set():
    return standard_set("eval", N_EVAL)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(root))
    return root


def as_json(report) -> dict:
    """The report as written to report.json (the same keys whether a section is a dict or a typed model)."""
    return json.loads(report.model_dump_json(by_alias=True))


def compile_with(recipe: Path, out: Path, eval_set, **kwargs):
    return edgekit.compile(None, target=str(recipe), out=out, eval=eval_set, **kwargs)


@pytest.fixture(scope="module")
def identity_result(tmp_path_factory, eval_set):
    """One identity compile, shared by the tests that only read its report."""
    folder = tmp_path_factory.mktemp("null-identity")
    return compile_with(write_recipe(folder, "null-identity", ["identity"]), folder / "out", eval_set)


def test_identity_artifact_is_the_reference(identity_result):
    report = identity_result.report
    doc = as_json(report)
    acc = report.accuracy
    assert doc["target"]["backend"] == "null"
    assert report.pipeline == "identity"
    assert [(s.pass_, s.format) for s in report.steps] == [("identity", "torch")]
    # the same module on the same inputs in the same runtime: bit-identical outputs
    assert acc.diff_from_reference.max_deg == 0.0
    assert acc.artifact.mean_deg == acc.reference.mean_deg
    assert acc.error_increase_deg == 0.0
    # identity copies the module folder unchanged, so the artifact's content digest is the model's
    assert doc["artifact"]["sha256"] == doc["model"]["digest"]
    assert acc.set.n_images == N_EVAL
    # a trained demo model beats predicting the mean gaze on real renderer images
    assert acc.reference.mean_deg < acc.predict_mean_baseline.mean_deg
    assert report.compute["macs"].value > 0 and report.compute["params"].value > 0
    assert doc["runtime"]["runtime"].startswith("PyTorch") and "null backend" in doc["runtime"]["runtime"]


def test_fold_bn_then_identity_matches_reference_to_float_rounding(tmp_path, eval_set, cache_dir):
    report = compile_with(write_recipe(tmp_path, "null-fold", ["fold_bn", "identity"]), tmp_path / "out", eval_set).report
    acc = report.accuracy
    assert report.pipeline == "fold_bn | identity"
    assert [s.pass_ for s in report.steps] == ["fold_bn", "identity"]
    # folding BN changes the float rounding, not the function
    assert acc.diff_from_reference.max_deg < 1e-4
    assert abs(acc.artifact.mean_deg - acc.reference.mean_deg) < 1e-4
    assert report.steps[0].sha256 != as_json(report)["model"]["digest"]  # fold_bn wrote new weights
    assert report.steps[1].sha256 == report.steps[0].sha256  # identity copied them unchanged
    assert any("BatchNorm" in n for n in report.steps[0].notes)


def test_gate_below_measured_error_fails_and_above_passes(tmp_path, eval_set, identity_result, cache_dir):
    measured = identity_result.report.accuracy.artifact.mean_deg
    assert measured > 0.1  # the demo model has a real error on the renderer's images
    below = compile_with(write_recipe(tmp_path, "gate-below", ["identity"], {"max_error_deg": measured * 0.9}),
                         tmp_path / "below", eval_set)
    above = compile_with(write_recipe(tmp_path, "gate-above", ["identity"], {"max_error_deg": measured * 1.1}),
                         tmp_path / "above", eval_set)
    assert not below.passed and not below.report.passed
    [gate] = below.report.gates
    assert (gate.name, gate.passed) == ("max_error_deg", False)
    assert gate.value == pytest.approx(measured, abs=1e-12)
    assert gate.limit == pytest.approx(measured * 0.9)
    md = (below.out_dir / "report.md").read_text()
    assert "(FAILED)" in md and "| max_error_deg (" in md and "| FAIL |" in md
    assert above.passed
    assert [(g.name, g.passed) for g in above.report.gates] == [("max_error_deg", True)]
    assert "(PASSED)" in (above.out_dir / "report.md").read_text()


def test_second_compile_is_served_by_the_pass_cache(tmp_path, eval_set, cache_dir):
    recipe = write_recipe(tmp_path, "null-cache", ["fold_bn", "identity"])
    first = compile_with(recipe, tmp_path / "a", eval_set).report
    second = compile_with(recipe, tmp_path / "b", eval_set).report
    assert [s.cached for s in first.steps] == [False, False]
    assert [s.cached for s in second.steps] == [True, True]
    assert [s.sha256 for s in second.steps] == [s.sha256 for s in first.steps]
    assert as_json(second)["artifact"]["sha256"] == as_json(first)["artifact"]["sha256"]
    assert second.accuracy.artifact.mean_deg == first.accuracy.artifact.mean_deg
    # the entries live under the cache root given by EDGEKIT_CACHE_DIR
    entries = [p for p in (cache_dir / "passes").glob("*/*") if (p / "entry.json").is_file()]
    assert len(entries) == 2
    # cache=False runs every pass again
    third = compile_with(recipe, tmp_path / "c", eval_set, cache=False).report
    assert [s.cached for s in third.steps] == [False, False]
    assert as_json(third)["artifact"]["sha256"] == as_json(first)["artifact"]["sha256"]


def test_report_files_render_and_json_validates_against_schema(identity_result):
    jsonschema = pytest.importorskip("jsonschema")
    from edgekit.report.model import Report
    from edgekit.report.render import load_report

    out = identity_result.out_dir
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["io.json", "module", "report.html", "report.json", "report.md"]
    doc = json.loads((out / "report.json").read_text())
    jsonschema.validate(doc, Report.model_json_schema(by_alias=True))
    assert doc["steps"][0]["pass"] == "identity"  # the alias, as the schema names it
    assert load_report(out / "report.json") == identity_result.report
    # the schema can fail: a report without its pipeline is refused
    broken = {k: v for k, v in doc.items() if k != "pipeline"}
    with pytest.raises(jsonschema.ValidationError, match="pipeline"):
        jsonschema.validate(broken, Report.model_json_schema(by_alias=True))
    md = (out / "report.md").read_text()
    assert "- pipeline: `identity`" in md
    html = (out / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "<code>identity</code>" in html
    assert "http://" not in html and "https://" not in html


def test_backend_that_cannot_run_the_last_pass_output_is_refused(tmp_path):
    recipe = write_recipe(tmp_path, "onnx-identity", ["identity"], backend="onnx")
    with pytest.raises(BadInputError) as err:
        load_recipe(recipe)
    msg = str(err.value)
    assert "backend 'onnx' runs onnx artifacts" in msg
    assert "identity produces torch" in msg
    assert "fix: use backend: null" in msg and "export_onnx" in msg


def test_null_backend_refuses_an_onnx_pipeline(tmp_path):
    recipe = write_recipe(tmp_path, "null-onnx", ["fold_bn", "export_onnx"])
    with pytest.raises(BadInputError, match=r"backend 'null' runs torch artifacts.*export_onnx produces onnx.*backend: onnx"):
        load_recipe(recipe)


def test_bare_yaml_null_backend_is_refused_not_misread(tmp_path):
    """`backend: null` unquoted is YAML's None, not the backend named "null": it must be refused, naming the key."""
    path = tmp_path / "bare.yaml"
    path.write_text("name: bare\nbackend: null\npasses: [identity]\n")
    with pytest.raises(BadInputError, match=r"backend \(line 2\)"):
        load_recipe(path)
    path.write_text('name: quoted\nbackend: "null"\npasses: [identity]\n')
    assert load_recipe(path).backend == "null"
