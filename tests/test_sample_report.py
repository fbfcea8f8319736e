"""reports/: the committed sample report of the demo model regenerates with the same static numbers."""

import json
from pathlib import Path

import pytest

from edgekit.cli import run
from edgekit.report.sample import SAMPLE_TARGETS

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def test_regeneration_gives_the_committed_static_numbers(tmp_path):
    from edgekit.snn.lava_run import lava_available

    ok, why = lava_available()
    if not ok:  # the loihi row's spike-for-spike gate needs Lava's simulator (make lava)
        pytest.skip(f"Lava environment unavailable: {why}")
    committed = json.loads((REPORTS / "demo.json").read_text())
    assert [t["target"] for t in committed["targets"]] == list(SAMPLE_TARGETS)  # every target that exists
    assert run(["energy", "--targets", "sample", "--out", str(tmp_path / "build"), "--report-dir", str(tmp_path / "r")]) == 0
    again = json.loads((tmp_path / "r" / "demo.json").read_text())
    for old, new in zip(committed["targets"], again["targets"]):
        assert new == old, f"{old['target']}: regenerated numbers differ from reports/demo.json (run make sample-report)"
    md = (tmp_path / "r" / "demo.md").read_text()
    assert "| loihi |" in md and "Sources:" in md and "not measured" in md
    assert (tmp_path / "r" / "compare.html").read_text().count('class="plot"') == 3


def test_spiking_integer_row_by_hand_and_compared_only_with_integer_rows():
    from edgekit.report.model import Report
    from edgekit.report.sample import energy_rows
    from edgekit.snn.counts import energy_estimates

    counts = {"total": {"effective_acs": 1e6, "neuron_updates": 1e5, "effective_macs": 1000}}
    integer = next(e for e in energy_estimates(counts) if e["device"] == "45 nm CMOS")
    encoder_uj = 1000 * (3.7 + 0.9) * 1e-6  # FP32 MAC 4.6 pJ
    assert integer["low_uj"] == pytest.approx(1e6 * 0.03e-6 + 1e5 * 0.1e-6 + encoder_uj)  # 8-bit adds, one 32-bit add
    assert integer["high_uj"] == pytest.approx(1e6 * 0.1e-6 + 1e5 * 0.2e-6 + encoder_uj)  # 32-bit adds, two per update

    def fake(estimates):
        energy = {"estimates": estimates, "measured": {"dynamic_uj_per_inference": None, "how": "not measured: test"}}
        return Report.model_construct(energy=energy)

    row = {"profile": "horowitz-45nm", "device": "45 nm CMOS", "level": "compute", "method": "estimated", "source": "s",
           "assumptions": "a"}
    rows, _ = energy_rows({"fp32": fake([{**row, "arithmetic": "float", "low_uj": 20.0, "high_uj": 20.0}]),
                           "int8": fake([{**row, "arithmetic": "integer", "low_uj": 1.0, "high_uj": 1.5}]),
                           "snn": fake([{**row, "arithmetic": "integer-accumulate", "low_uj": 0.5, "high_uj": 3.0}])})
    by_target = {r["target"]: r for r in rows if r["level"] == "compute"}
    assert by_target["int8"]["ratio_to_first"] == "20.0x less (low end) / 13.3x less (high end) than fp32"  # MACs vs MACs
    assert by_target["snn"]["ratio_to_first"] == "2.0x less (low end) / 2.0x more (high end) than int8"
