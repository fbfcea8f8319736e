"""Energy: counters driven by fixture powercap trees and recorded NVML sequences; estimates from the artifact's counts."""

from pathlib import Path

import pytest

import edgekit.compiler as ek
from edgekit.backends.onnx.energy_counts import onnx_layer_counts
from edgekit.energy.estimate import estimate, profile
from edgekit.energy.meters import NvmlSource, RaplSource, measure


def _host_rapl_readable() -> bool:
    """Whether this host exposes a readable RAPL package counter (most VMs and containers do not)."""
    try:
        int(Path("/sys/class/powercap/intel-rapl:0/energy_uj").read_text())
    except (OSError, ValueError):
        return False
    return True


HOST_RAPL = _host_rapl_readable()


class FakeTime:
    """A clock that advances only when the test says so, and a sleep that advances it."""

    def __init__(self):
        self.t = 0.0

    def clock(self):
        return self.t

    def sleep(self, s):
        self.t += s


def _rapl_tree(root: Path, start: int, top: int = 2**32) -> Path:
    d = root / "intel-rapl:0"
    d.mkdir(parents=True)
    (d / "name").write_text("package-0\n")
    (d / "energy_uj").write_text(f"{start}\n")
    (d / "max_energy_range_uj").write_text(f"{top}\n")
    (root / "intel-rapl:0:0").mkdir()  # a subdomain (core): must not be double counted
    return d


def _run(source, fake, idle_uj_per_s, work_uj, work_s=0.01, counter=None):
    """Idle power during sleep, `work_uj` per inference of `work_s` seconds."""
    def sleep(s):
        counter(idle_uj_per_s * s)
        fake.sleep(s)

    def workload():
        counter(work_uj + idle_uj_per_s * work_s)
        fake.sleep(work_s)

    return measure(source, workload, min_window_s=1.0, idle_s=1.0, clock=fake.clock, sleep=sleep)


def test_rapl_reading_subtracts_idle_power(tmp_path):
    d = _rapl_tree(tmp_path, start=1_000)
    fake = FakeTime()

    def add(uj):
        (d / "energy_uj").write_text(str(int(d.joinpath("energy_uj").read_text()) + int(round(uj))))

    r = _run(RaplSource(tmp_path), fake, idle_uj_per_s=2_000_000, work_uj=500, counter=add)
    assert r.inferences == 100 and r.window_s == pytest.approx(1.0)
    assert r.dynamic_uj_per_inference == pytest.approx(500, rel=1e-3)
    assert r.total_uj_per_inference == pytest.approx(500 + 20_000, rel=1e-3)
    assert r.how.startswith("measured: RAPL package-0")


def test_rapl_counter_wrap_is_handled(tmp_path):
    top = 10_000_000
    d = _rapl_tree(tmp_path, start=top - 1_000, top=top)
    fake = FakeTime()

    def add(uj):
        value = (int(d.joinpath("energy_uj").read_text()) + int(round(uj))) % top
        (d / "energy_uj").write_text(str(value))

    r = _run(RaplSource(tmp_path), fake, idle_uj_per_s=1_000_000, work_uj=300, counter=add)
    assert r.dynamic_uj_per_inference == pytest.approx(300, rel=1e-3)


def test_no_rapl_and_unreadable_counters_say_why(tmp_path):
    r = measure(RaplSource(tmp_path / "none"), lambda: None)
    assert r.dynamic_uj_per_inference is None and "no RAPL package domain" in r.how


def test_nvml_no_tick_within_the_window_is_refused():
    fake = FakeTime()
    seq = iter([5000, 5000, 5000, 5000, 5000, 5000])  # the counter never advances (updates every 20-100 ms)
    r = measure(NvmlSource(read_mj=lambda: next(seq)), lambda: fake.sleep(0.5), clock=fake.clock, sleep=fake.sleep)
    assert r.dynamic_uj_per_inference is None and "did not advance" in r.how


def test_nvml_negative_dynamic_power_is_never_a_result():
    fake = FakeTime()
    # idle window: +300 mJ in 1 s; workload window: +200 mJ in 1 s (the idle reading was inflated)
    seq = iter([1000, 1300, 1300, 1500])
    r = measure(NvmlSource(read_mj=lambda: next(seq)), lambda: fake.sleep(1.0), clock=fake.clock, sleep=fake.sleep)
    assert r.dynamic_uj_per_inference is None and "not positive" in r.how


def test_nvml_recorded_sequence_gives_per_inference_energy():
    fake = FakeTime()
    seq = iter([10_000, 10_050, 10_050, 10_250])  # idle 50 mJ/s; 200 mJ over a 1 s window of 4 inferences
    r = measure(NvmlSource(read_mj=lambda: next(seq)), lambda: fake.sleep(0.25), clock=fake.clock, sleep=fake.sleep)
    assert r.inferences == 4 and r.dynamic_uj_per_inference == pytest.approx((200 - 50) * 1000 / 4)


@pytest.fixture(scope="module")
def fp32_and_int8(tmp_path_factory):
    root = tmp_path_factory.mktemp("energy")
    return ek.compile(None, "onnx", out=root / "fp32"), ek.compile(None, "onnx-int8", out=root / "int8")


@pytest.mark.slow
def test_estimates_follow_the_artifact_counts_and_cited_constants(fp32_and_int8):
    fp32, int8 = fp32_and_int8
    rows32, rows8 = onnx_layer_counts(fp32.artifact), onnx_layer_counts(int8.artifact)
    assert {r["precision"] for r in rows32} == {"fp32"} and {r["precision"] for r in rows8} == {"int8"}
    macs = sum(r["macs"] for r in rows32)
    assert macs == sum(r["macs"] for r in rows8) == fp32.report.compute["macs"].value
    compute32 = next(e for e in estimate(rows32) if e["profile"] == "horowitz-45nm" and e["level"] == "compute")
    compute8 = next(e for e in estimate(rows8) if e["profile"] == "horowitz-45nm" and e["level"] == "compute")
    assert compute32["low_uj"] == pytest.approx(macs * 4.6e-12 * 1e6)  # 3.7 + 0.9 pJ per FP32 MAC
    assert compute8["low_uj"] == pytest.approx(macs * 0.23e-12 * 1e6) and compute8["high_uj"] == pytest.approx(macs * 0.30e-12 * 1e6)
    ratio = compute32["low_uj"] / compute8["high_uj"]
    assert 15 < ratio < 21  # not the 4x of bit widths: the constants say so
    w32 = sum(r["weight_bytes"] for r in rows32)
    w8 = sum(r["weight_bytes"] for r in rows8)
    assert 3.5 < w32 / w8 < 4.1
    for e in estimate(rows8):
        assert e["method"] == "estimated" and e["source"] and e["low_uj"] <= e["high_uj"]
    assert "Horowitz" in profile("horowitz-45nm")["source"]


@pytest.mark.slow
def test_every_report_has_an_energy_section(fp32_and_int8):
    for res in fp32_and_int8:
        energy = res.report.energy
        assert {e.level for e in energy.estimates} == {"compute", "compute+memory"}
        measured = energy.measured
        assert measured.meter == "RAPL (powercap)" and measured.runtime
        if not HOST_RAPL:  # nothing to read: no number, and the reading says so
            assert measured.dynamic_uj_per_inference is None and measured.total_uj_per_inference is None
            assert measured.inferences == 0 and measured.how.startswith("not measured: ")
            assert "RAPL" in measured.how, measured.how
        elif measured.dynamic_uj_per_inference is None:  # counters read, but the window was lost in the noise
            assert measured.inferences >= 1 and measured.how.startswith("not measured: "), measured.how
        else:
            assert 0 < measured.dynamic_uj_per_inference <= measured.total_uj_per_inference
            assert measured.inferences >= 1 and measured.how.startswith("measured: RAPL"), measured.how
        assert "## Energy" in (res.out_dir / "report.md").read_text()


@pytest.mark.slow
def test_energy_command_compares_like_with_like(tmp_path, capsys):
    import json

    from edgekit.cli import run

    assert run(["energy", "--target", "onnx,onnx-int8", "--out", str(tmp_path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    int8 = next(r for r in rows if r["target"] == "onnx-int8" and r["profile"] == "horowitz-45nm" and r["level"] == "compute")
    assert "less" in int8["ratio_to_first"] and int8["ratio_to_first"].endswith("than onnx") and int8["method"] == "estimated"
    for r in rows:  # a ratio never mixes profiles, devices or levels, and never divides an FP32 MAC by an FP32 add
        if r["ratio_to_first"]:
            base = next(b for b in rows if b["target"] == "onnx" and (b["profile"], b["device"], b["level"]) ==
                        (r["profile"], r["device"], r["level"]))
            assert base is not r
    measured = [r for r in rows if r["level"] == "measured"]
    assert {r["target"] for r in measured} == {"onnx", "onnx-int8"}
    for r in measured:
        if HOST_RAPL and r["low_uj"] is not None:
            assert r["method"] == "measured" and r["low_uj"] > 0, r
        else:  # no counters on this host (or a reading lost in the noise): no number, and the row says why
            assert r["method"] == "not measured" and r["low_uj"] is None and r["assumptions"].startswith("not measured: "), r
