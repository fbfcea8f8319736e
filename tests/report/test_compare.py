"""The comparison page: like-for-like energy (checked on the committed sample), distinct labelled points on axes
from zero, a warning for different models, and a rendering in headless Chromium (Debian's package)."""

import itertools
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

import edgekit.compiler as ek
from edgekit.cli import run
from edgekit.report.compare import colours, scatter_svg

REPORTS = Path(__file__).resolve().parents[2] / "reports"

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def _chromium(tmp_path, *args):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    profile = tmp_path / "chrome-profile"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow  # compiles onnx and onnx-int8, then renders in Chromium
def test_comparison_page_renders_with_its_plots(tmp_path, capsys):
    reports = []
    for target in ("onnx", "onnx-int8"):
        res = ek.compile(None, target, out=tmp_path / target)
        reports.append(str(res.out_dir / "report.json"))
    assert run(["report", reports[0], "--compare", reports[1], "--out", str(tmp_path)]) == 0  # --out: a folder
    page = tmp_path / "compare.html"
    text = page.read_text()
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")  # self-contained
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert dom.count('class="plot"') == 3  # error-energy, error-latency, size per step
    assert dom.count('class="point"') >= 2 + 2 + 5  # two artifacts per scatter, 2 + 3 pass steps
    assert "tinygaze / onnx-int8" in dom and "estimated: Horowitz 45 nm" in dom and "whole network" in dom
    assert dom.count('class="point-label"') >= 2 + 2 + 1  # each dot labelled (the size lines share one end label)
    assert "Different models" not in dom
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, "--window-size=1200,1000", f"--screenshot={shot}", page.as_uri())
    img = cv2.imread(str(shot))  # decoded: a real rendering at the window's size, not a blank or flat page
    assert img is not None and img.shape == (1000, 1200, 3)
    assert 0.005 < (img.max(axis=2) < 100).mean() < 0.5  # dark text and axes on a light page
    for colour in colours(2):  # each artifact's points and lines in its series colour
        bgr = np.array([int(colour[i:i + 2], 16) for i in (5, 3, 1)])
        assert (np.abs(img.astype(int) - bgr).max(axis=2) <= 30).sum() >= 100, colour

    from edgekit.report.compare import compare_html
    from edgekit.report.render import load_report

    first, second = (load_report(p) for p in reports)
    other = second.model_copy(update={"model": second.model.model_copy(update={"name": "othergaze", "digest": "f" * 64})})
    page = compare_html([first, other])
    assert 'class="warning"><strong>Different models:</strong>' in page and "othergaze (ffffffffffff)" in page
    assert "othergaze / onnx-int8" in page  # point labels name the model too when models differ


class _Table(HTMLParser):
    """The text of every cell of the page's first table, row by row."""

    def __init__(self):
        super().__init__()
        self.rows, self.cell, self.depth = [], None, 0

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.depth += 1
        elif tag == "tr" and self.depth == 1 and not getattr(self, "done", False):
            self.rows.append([])
        elif tag in ("td", "th") and self.depth == 1:
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.depth -= 1
            self.done = True
        elif tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join(self.cell.split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def _committed_table() -> tuple[list[str], dict[str, dict[str, str]]]:
    parser = _Table()
    parser.feed((REPORTS / "compare.html").read_text())
    head, *rows = parser.rows
    return head, {row[0].split(" / ")[-1]: dict(zip(head, row)) for row in rows}


def _numbers(text: str) -> list[float]:
    """'0.908-1.93 45 nm CMOS, ...' -> [0.908, 1.93]: the value (a point or a low-high range) at the start of a cell."""
    value = re.match(r"([0-9.e+]+)(?:-([0-9.e+]+))?", text)
    return [float(v) for v in value.groups() if v is not None]


def test_committed_comparison_shows_each_spiking_report_whole_network_energy():
    """reports/compare.html: the SNN and Loihi energies are each report's whole network (every layer, host encoder
    included; reports/demo.json holds the report's estimates with their scope), not the encoder's first-layer row."""
    committed = {t["target"]: t for t in json.loads((REPORTS / "demo.json").read_text())["targets"]}
    head, rows = _committed_table()
    energy_col = next(h for h in head if "whole network" in h and "energy per inference" in h)
    assert "Horowitz 45 nm" in energy_col and "compute" in energy_col  # one profile, device and level for the column
    for target in ("snn", "loihi"):
        estimates = committed[target]["energy_estimates_uj"]
        whole = [e for e in estimates if (e["profile"], e["level"], e["scope"]) == ("horowitz-45nm", "compute", "whole network")]
        encoder = next(e for e in estimates if e["scope"] == "host encoder")
        assert len(whole) == 1 and whole[0]["arithmetic"] == "integer-accumulate"  # edgekit.snn.counts: encoder included
        assert whole[0]["low"] > encoder["low"]
        cell = rows[target][energy_col]
        assert _numbers(cell) == pytest.approx([whole[0]["low"], whole[0]["high"]], rel=5e-3), (target, cell)
        assert "45 nm CMOS, compute" in cell and "integer accumulates" in cell  # labelled with device and level
        assert re.search(r"than tinygaze / (onnx|tflite)-int8$", rows[target]["energy vs first of its kind"])  # integer vs integer
    for target in ("onnx", "onnx-int8", "tflite", "tflite-int8", "coreml"):  # every other row: its report's only 45 nm compute row
        e = next(e for e in committed[target]["energy_estimates_uj"] if (e["profile"], e["level"]) == ("horowitz-45nm", "compute"))
        assert _numbers(rows[target][energy_col]) == pytest.approx([e["low"], e["high"]][:len(_numbers(rows[target][energy_col]))],
                                                                   rel=5e-3), target


def test_committed_comparison_never_shows_fp16_run_in_fp32_as_a_saving():
    head, rows = _committed_table()
    energy_col = next(h for h in head if "whole network" in h)
    for target in ("onnx-fp16", "tflite-fp16"):  # onnxruntime's CPU provider and LiteRT's CPU kernels compute in FP32
        assert "not a saving on this device" in rows[target][energy_col] and "FP32" in rows[target][energy_col]
        assert rows[target]["energy vs first of its kind"] == "not a saving on this device"
    assert re.fullmatch(r"[0-9.]+x less .*than tinygaze / onnx", rows["onnx-int8"]["energy vs first of its kind"])
    page = (REPORTS / "compare.html").read_text()
    assert "Left out of the energy plot" in page and "onnx-fp16, tflite-fp16" in page
    for row in rows.values():  # every cell is HTML text: no Markdown table, code span or Python/JSON repr
        for cell in row.values():
            assert "| ---" not in cell and "{'" not in cell and '{"' not in cell and "`" not in cell, cell


def test_colours_stay_distinct_beyond_a_palette():
    for n in (1, 2, 8, 9, 12, 20):
        rgb = [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in colours(n)]
        assert len(set(rgb)) == n
        if n > 1:
            assert min(np.linalg.norm(np.subtract(a, b)) for a, b in itertools.combinations(rgb, 2)) > 40, n


def test_scatter_axes_start_at_zero_and_every_point_is_labelled():
    svg = scatter_svg("t", "x", "y", [("far", 20.0, 2.5, "#000000"), ("near", 1.0, 2.4, "#111111", 0.9, 1.9),
                                      ("same", 20.0, 2.5, "#222222")])
    ticks = re.findall(r'text-anchor="(?:end|middle)" font-size="11">([0-9.]+)</text>', svg)
    assert ticks.count("0") == 2  # x and y both from zero, linear
    labels = re.findall(r'class="point-label"[^>]*>([^<]+)</text>', svg)
    assert sorted(labels) == ["far, same", "near"]  # dots at one place share a label
    assert svg.count('class="point"') == 3 and svg.count("<line") >= 2 + 1  # axes, the range of "near"


def test_labels_of_crowded_points_do_not_overlap():
    from edgekit.report.compare import _place_labels

    points = [(100 + 3 * k, 100 + 3 * k, 150 + 2 * k, f"target-{k}") for k in range(8)] + [(300, 300, 330, "low")]
    placed = _place_labels(points, right=540, top=30, bottom=310)
    assert sorted(t for *_, t, _ in placed) == sorted(p[3] for p in points)
    boxes = [(x if a == "start" else x - 6.2 * len(t), len(t) * 6.2, y) for x, y, a, t, _ in placed]
    for (x0, w0, y0), (x1, w1, y1) in itertools.combinations(boxes, 2):
        assert not (x0 < x1 + w1 and x1 < x0 + w0 and abs(y0 - y1) < 12), (x0, y0, x1, y1)
    assert all(30 < y <= 310 for _, y, *_ in placed)  # inside the plot, none below the axis
