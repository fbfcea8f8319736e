"""report.html of real reports, rendered by headless Chromium: the charts are there (SVG with their accessible names
and marks) and the page text has no raw Markdown, JSON or Python reprs. Three reports: TinyGaze compiled for
onnx-int8 on small sets, a failed ONNX FP16 report with its per-layer parity, and a spiking (snn) report."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

import edgekit
from edgekit.data.synthetic import standard_set
from edgekit.recipe import TARGETS_DIR

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")) if p and Path(p).exists()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (looked for /usr/bin/chromium "
                                                          "and chromium on PATH): the rendered page cannot be checked")

# text a reader must never see in the rendered page: Markdown tables and fences, JSON and Python reprs, doubled methods
RAW = ["{'", '{"', "| ---", "|---", "```", "not_measured", "not measured: not measured", "## "]


class _Dom(HTMLParser):
    """The page's visible text (not <style>) and, for every <svg>, its attributes and how many marks it draws."""

    def __init__(self):
        super().__init__()
        self.text: list[str] = []
        self.svgs: list[dict] = []
        self.pres = 0
        self._skip = 0
        self._in_svg = False

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script"):
            self._skip += 1
        elif tag == "svg":
            self.svgs.append({**dict(attrs), "marks": {}})
            self._in_svg = True
        elif tag == "pre":
            self.pres += 1
        elif self._in_svg:
            marks = self.svgs[-1]["marks"]
            marks[tag] = marks.get(tag, 0) + 1

    def handle_endtag(self, tag):
        if tag in ("style", "script"):
            self._skip -= 1
        elif tag == "svg":
            self._in_svg = False

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def rendered(page: Path) -> _Dom:
    """The DOM as Chromium built it from the file (what a browser shows), parsed back."""
    out = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "<body>" in out.stdout, out.stderr[-2000:]
    dom = _Dom()
    dom.feed(out.stdout)
    return dom


def plots(dom: _Dom) -> dict[str, dict]:
    return {s["aria-label"]: s for s in dom.svgs if s.get("role") == "img" and s.get("aria-label")}


def one(labels: dict[str, dict], start: str) -> dict:
    found = [v for k, v in labels.items() if k.startswith(start)]
    assert len(found) == 1, (start, list(labels))
    return found[0]


def assert_readable(dom: _Dom):
    text = " ".join(dom.text)
    assert not [r for r in RAW if r in text], [text[max(text.index(r) - 80, 0): text.index(r) + 80] for r in RAW if r in text]
    assert dom.pres == 0  # nothing preformatted: no section is a block of raw text behind a scrollbar


def _recipe(tmp: Path, name: str, edit) -> str:
    recipe = yaml.safe_load((TARGETS_DIR / f"{name}.yaml").read_text())
    edit(recipe)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


@pytest.fixture(scope="module")
def int8(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html-int8")
    def edit(r):
        r["verify"].update(latency_runs=10, warmup_runs=1)
        # a calibration target out of reach: the per-layer sensitivity is measured (and drawn) only when one is missed
        ptq = next(p for p in r["passes"] if isinstance(p, dict) and "ptq" in p)["ptq"]
        ptq.update(target_error_increase_deg=1e-6, observer_search=False)

    recipe = _recipe(tmp, "onnx-int8", edit)
    return edgekit.compile(None, target=recipe, out=tmp / "out", calib=standard_set("calib", 64),
                           eval=standard_set("eval", 32), cache=False)


def test_int8_report_draws_sensitivity_latency_energy_and_the_difference_histogram(int8):
    dom = rendered(int8.out_dir / "report.html")
    assert_readable(dom)
    labels = plots(dom)
    report = int8.report
    sens = one(labels, "Per-layer INT8 sensitivity")
    assert sens["marks"]["rect"] >= len(report.quantization.layers)  # one bar per layer
    lat = one(labels, "Latency percentiles")
    assert lat["marks"]["rect"] >= 6  # p50, p90, p99 of FP32 and INT8, measured interleaved
    hist = one(labels, "Per-sample angular difference")
    counts = report.accuracy.diff_from_reference.histogram.counts
    assert sum(counts) == 32 and hist["marks"]["rect"] == sum(1 for c in counts if c)  # a bar per non-empty bin
    energy = [v for k, v in labels.items() if k.startswith("Estimated energy per inference")]
    assert len(energy) == len({e.profile for e in report.energy.estimates}) >= 1
    text = " ".join(dom.text)
    # the plan's settings as words, the layer table as cells
    weights = report.quantization.plan.weights
    assert f"dtype {weights['dtype']}, bits {weights['bits']}" in text
    assert report.quantization.layers[0].name in text and "sensitivity alone in INT8 (deg)" in text


@pytest.fixture(scope="module")
def failed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html-failed")
    recipe = tmp / "strict.yaml"
    recipe.write_text(json.dumps({"name": "strict", "backend": "onnx", "passes": ["fold_bn", "export_onnx", "onnx_fp16"],
                                  "gates": {"max_diff_deg": 1e-6},
                                  "verify": {"eval_images": 16, "latency_runs": 5, "warmup_runs": 0}}))
    return edgekit.compile(None, target=str(recipe), out=tmp / "out", eval=standard_set("eval", 16), cache=False)


def test_failed_report_shows_parity_as_a_table(failed):
    report = failed.report
    assert not report.passed and report.parity is not None and report.parity.checked
    dom = rendered(failed.out_dir / "report.html")
    assert_readable(dom)
    text = " ".join(dom.text)
    assert "FAILED" in text and "Per-layer parity" in text
    assert f"layers compared {report.parity.layers_compared}" in " ".join(text.split())
    labels = plots(dom)
    one(labels, "Per-sample angular difference")
    assert one(labels, "Latency percentiles")["marks"]["rect"] == 3  # p50, p90, p99 of the one artifact
    runs = one(labels, "Latency of 5 batch-1 runs")  # the distribution of every timed run
    hist = report.timing.latency_histogram
    assert sum(hist.counts) == 5 and runs["marks"]["rect"] == sum(1 for c in hist.counts if c)


@pytest.fixture(scope="module")
def spiking(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html-snn")

    def small(r):
        for p in r["passes"]:
            if isinstance(p, dict) and "to_snn" in p:
                p["to_snn"]["calib_images"] = 64
        r["verify"].update(latency_runs=2, warmup_runs=0)

    return edgekit.compile(None, target=_recipe(tmp, "snn", small), out=tmp / "out", eval=standard_set("eval", 16, (40, 64)),
                           cache=False)


@pytest.mark.slow  # the conversion and its T sweep: about 5 s
def test_spiking_report_draws_error_against_timesteps_in_tables_not_markdown(spiking):
    dom = rendered(spiking.out_dir / "report.html")
    assert_readable(dom)
    sp = spiking.report.spiking
    curve = one(plots(dom), "Mean angular error against timesteps")
    # one line per series (converted, naive, the ANN's level), a marker per measured point
    assert curve["marks"]["polyline"] == 3
    assert curve["marks"]["circle"] == len(sp.error_vs_timesteps) + len(sp.naive_baseline.error_vs_timesteps)
    one(plots(dom), "Per-sample angular difference")
    text = " ".join(dom.text)
    for r in sp.error_vs_timesteps:
        assert f"{r.error_deg:.3f}" in text
    assert "Spikes and synaptic operations" in text and "spike rate (per neuron per step)" in text
