"""edgekit/report/render.py: a real report (null-backend compile of the demo model, with a failing gate) rendered to
Markdown and HTML: the pipeline, the gate rows and the numbers of report.json appear as stated; the HTML is one
self-contained file."""

from __future__ import annotations

import json
import re

import pytest

import edgekit
from edgekit.data.synthetic import standard_set
from edgekit.report.model import Report
from edgekit.report.render import load_report, to_html, to_markdown, write_reports


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Two gates: max_size_mb passes (the demo is ~1.6 MB), max_error_deg fails (limit below the demo's error)."""
    folder = tmp_path_factory.mktemp("render")
    recipe = folder / "null.yaml"
    recipe.write_text(json.dumps({"name": "null-render", "description": "render test", "backend": "null",
                                  "passes": ["fold_bn", "identity"], "gates": {"max_size_mb": 50, "max_error_deg": 0.01},
                                  "verify": {"eval_images": 8, "latency_runs": 2, "warmup_runs": 0}}))
    return edgekit.compile(None, target=str(recipe), out=folder / "out", eval=standard_set("eval", 8))


@pytest.fixture(scope="module")
def doc(compiled) -> dict:
    return json.loads((compiled.out_dir / "report.json").read_text())


def test_markdown_states_pipeline_status_and_gate_rows(compiled, doc):
    md = to_markdown(compiled.report)
    assert md.splitlines()[0] == "# edgekit report: tinygaze -> null-render (FAILED)"
    assert "- pipeline: `fold_bn | identity`" in md
    gates = {g["name"]: g for g in doc["gates"]}
    size, err = gates["max_size_mb"], gates["max_error_deg"]
    assert f"| max_size_mb ({size['detail']}) | 50 | {size['value']:.5f} | pass |" in md
    assert f"| max_error_deg ({err['detail']}) | 0.01 | {err['value']:.5f} | FAIL |" in md
    assert md.index("## Gates") < md.index("| max_size_mb") < md.index("## Measurements")


def test_markdown_accuracy_numbers_are_those_of_the_json(compiled, doc):
    md = to_markdown(compiled.report)
    acc = doc["accuracy"]
    for label, key in (("reference", "reference"), ("artifact", "artifact"), ("predict-the-mean", "predict_mean_baseline")):
        s = acc[key]
        row = f"{s['mean_deg']:.3f} / {s['median_deg']:.3f} / {s['p95_deg']:.3f} / {s['max_deg']:.3f} deg"
        assert f"| accuracy | {label} error mean / median / p95 / max | {row} |" in md
    d = acc["diff_from_reference"]
    assert f"{d['mean_deg']:.5f} / {d['p95_deg']:.5f} / {d['max_deg']:.5f} deg" in md
    assert f"{acc['error_increase_deg']:+.4f} deg" in md
    assert f"measured on 8 images of {acc['set']['source']}" in md
    # the artifact's size in MB and its MACs as the report counted them
    assert f"| size | artifact | {doc['size']['artifact']['value'] / 1e6:.3f} MB |" in md
    assert f"| compute | macs | {doc['compute']['macs']['value'] / 1e6:.3f} M |" in md


def test_markdown_lists_steps_notes_and_the_resolved_recipe(compiled, doc):
    md = to_markdown(compiled.report)
    for step in doc["steps"]:
        assert f"| {step['pass']} | torch | `{step['sha256'][:12]}` | {step['cached']} |" in md
    assert "folded 5 BatchNorm layers" in md  # fold_bn's note reaches the report
    recipe = md.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(recipe) == doc["recipe"]


def test_html_has_the_same_content_and_escapes_it(compiled, doc):
    page = to_html(compiled.report)
    assert "<code>fold_bn | identity</code>" in page
    assert "tinygaze &rarr; null-render <span class=\"fail\">FAILED</span>" in page
    err = next(g for g in doc["gates"] if g["name"] == "max_error_deg")
    assert (f"<tr><td>max_error_deg</td><td>{err['detail']}</td><td>0.01</td><td>{err['value']:.5f}</td>"
            "<td class=\"fail\">FAIL</td></tr>") in page
    art = doc["accuracy"]["artifact"]
    assert f"{art['mean_deg']:.3f} / {art['median_deg']:.3f}" in page
    # text from the run is escaped: a note with markup cannot inject elements
    hostile = Report.model_validate({**doc, "notes": ["<script>alert(1)</script>"]})
    assert "<script>" not in to_html(hostile) and "&lt;script&gt;" in to_html(hostile)


def test_html_is_one_self_contained_file(compiled):
    page = to_html(compiled.report)
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"https?://", page)
    assert not re.search(r"<(script|link|img|iframe)\b", page, re.I)  # no scripts, stylesheets or images to fetch
    assert not re.search(r"\b(src|href)\s*=", page, re.I)
    assert "<style>" in page  # the CSS is inline


def test_passing_report_says_passed(compiled, doc):
    passing = Report.model_validate({**doc, "gates": [g for g in doc["gates"] if g["passed"]], "passed": True})
    assert "(PASSED)" in to_markdown(passing).splitlines()[0]
    assert '<span class="pass">PASSED</span>' in to_html(passing)
    no_gates = Report.model_validate({**doc, "gates": [], "passed": True})
    assert "| (none declared) | | | |" in to_markdown(no_gates)


def test_write_reports_round_trips_through_load_report(compiled, tmp_path):
    written = write_reports(compiled.report, tmp_path, formats=("json", "md"))
    assert [p.name for p in written] == ["report.json", "report.md"]
    assert not (tmp_path / "report.html").exists()
    assert load_report(tmp_path / "report.json") == compiled.report
    assert (tmp_path / "report.md").read_text() == to_markdown(compiled.report)


def test_load_report_refuses_a_truncated_file_in_one_line(compiled, tmp_path):
    from edgekit.errors import BadInputError

    text = (compiled.out_dir / "report.json").read_text()
    bad = tmp_path / "report.json"
    bad.write_text(text[: len(text) // 2])
    with pytest.raises(BadInputError, match=r"not an edgekit report: not valid JSON \(line \d+") as err:
        load_report(bad)
    assert "\n" not in str(err.value)


def test_a_not_measured_number_says_why_once(compiled, doc):
    why = "not measured: no Loihi here"
    latency = {q: {"value": None, "unit": "ms", "method": "not_measured", "how": why} for q in ("p50", "p90", "p99")}
    report = Report.model_validate({**doc, "latency": latency})
    md = to_markdown(report)
    assert f"| latency | p50 / p90 / p99 | not measured | {why} |" in md  # one row, one reason, said once
    assert "not_measured" not in md and "not measured: not measured" not in md
    assert "not_measured" not in to_html(report)
    measured = doc["latency"]["p50"]
    assert f"| latency | p50 | {measured['value']:.3f} ms | measured: {measured['how']} |" in to_markdown(compiled.report)


def test_parity_and_quantization_plan_are_words_not_reprs(compiled, doc):
    from tests.report.test_gates import quantization

    assert doc["parity"] == {"checked": False, "why": "per-layer parity needs a PyTorch reference and an ONNX artifact",
                             "first_divergent_layer": None, "relative_error": None, "tolerance": None, "layers_compared": None}
    report = Report.model_validate({**doc, "quantization": quantization(0.9)})
    md, page = to_markdown(report), to_html(report)
    assert "- checked: no\n- why: per-layer parity needs a PyTorch reference and an ONNX artifact" in md
    assert "- weights: bits 8\n- activations: observer minmax" in md
    assert "<tr><th>checked</th><td>no</td></tr>" in page and "<tr><th>weights</th><td>bits 8</td></tr>" in page
    for text in (md, page):
        assert "{'" not in text and '{"checked"' not in text


def test_html_draws_the_difference_histogram_of_the_report(compiled):
    hist = compiled.report.accuracy.diff_from_reference.histogram
    assert sum(hist.counts) == 8 and len(hist.edges_deg) == len(hist.counts) + 1 and hist.edges_deg[0] == 0
    assert hist.edges_deg[-1] == pytest.approx(max(compiled.report.accuracy.diff_from_reference.max_deg, 1e-6))
    page = to_html(compiled.report)
    assert 'aria-label="Per-sample angular difference from the reference (8 outputs)"' in page
    assert 'aria-label="Latency percentiles at batch 1' in page
