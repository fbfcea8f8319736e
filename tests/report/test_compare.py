"""The comparison page renders in headless Chromium (Debian's package) with its plots."""

import os
import shutil
import subprocess

import cv2
import numpy as np
import pytest

import edgekit.compiler as ek
from edgekit.cli import run

pytestmark = pytest.mark.slow  # compiles onnx and onnx-int8, then renders in Chromium

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


def test_comparison_page_renders_with_its_plots(tmp_path, capsys):
    reports = []
    for target in ("onnx", "onnx-int8"):
        res = ek.compile(None, target, out=tmp_path / target)
        reports.append(str(res.out_dir / "report.json"))
    page = tmp_path / "compare.html"
    assert run(["report", reports[0], "--compare", reports[1], "--out", str(page)]) == 0
    text = page.read_text()
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")  # self-contained
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert dom.count('class="plot"') == 3  # error-energy, error-latency, size per step
    assert dom.count('class="point"') >= 2 + 2 + 5  # two artifacts per scatter, 2 + 3 pass steps
    assert "tinygaze / onnx-int8" in dom and "estimated: Horowitz 45 nm" in dom
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, "--window-size=1200,1000", f"--screenshot={shot}", page.as_uri())
    img = cv2.imread(str(shot))  # decoded: a real rendering at the window's size, not a blank or flat page
    assert img is not None and img.shape == (1000, 1200, 3)
    assert 0.005 < (img.max(axis=2) < 100).mean() < 0.5  # dark text and axes on a light page
    for colour in ("#1f77b4", "#d62728"):  # each artifact's points and lines in its series colour
        bgr = np.array([int(colour[i:i + 2], 16) for i in (5, 3, 1)])
        assert (np.abs(img.astype(int) - bgr).max(axis=2) <= 30).sum() >= 100, colour
