"""The loihi-sdnn target end to end: the sigma-delta network in edgekit's fixed-point mirror, checked message for
message by Lava's simulator, with traffic per frame on single frames and on rendered sequences."""

import json

import numpy as np
import pytest
import yaml

import edgekit.compiler as ek
from edgekit.data import synthetic
from edgekit.recipe import TARGETS_DIR


def _small_recipe(tmp_path, **to_sdnn) -> str:
    recipe = yaml.safe_load((TARGETS_DIR / "loihi-sdnn.yaml").read_text())
    for p in recipe["passes"]:
        if isinstance(p, dict) and "to_sdnn" in p:
            p["to_sdnn"] |= {"calib_images": 128, "search_images": 64, "sequences": 2, "sequence_frames": 6, **to_sdnn}
    path = tmp_path / "loihi-sdnn.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


@pytest.fixture(scope="module")
def lava_ok():
    from edgekit.backends.lava.simulator import lava_available

    ok, why = lava_available()
    if not ok:
        pytest.skip(f"Lava environment unavailable: {why}")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, lava_ok):
    tmp = tmp_path_factory.mktemp("sdnn")
    ev = synthetic.standard_set("eval", 48, (40, 64))
    return ek.compile(None, _small_recipe(tmp), eval=ev, out=tmp / "out", cache=False)


@pytest.mark.slow  # about 40 s: the threshold search, the mirror and Lava's simulator on 16 frames
def test_lava_runs_the_network_message_for_message_as_the_mirror(compiled):
    report = compiled.report
    sd = report.sigma_delta
    gates = {g.name: g for g in report.gates}
    assert gates["max_lava_mismatched_messages"].passed and gates["max_lava_mismatched_messages"].value == 0
    # 48 images and a 64-image threshold search are too few for the 0.3 deg goal (2,000 images: benchmarks/snn.md)
    assert gates["max_increase_over_ann_deg"].value == pytest.approx(sd.increase_over_ann_deg) and sd.increase_over_ann_deg < 1
    lava = sd.lava
    assert lava.ran and lava.match and lava.samples == 16, lava.summary
    assert lava.steps == 16 * sd.steps_per_frame and sum(lava.messages_per_layer) > 0
    assert lava.lava_error_deg == pytest.approx(lava.fixed_point_error_deg, abs=1e-12)
    assert report.accuracy.artifact.mean_deg == pytest.approx(sd.fixed_point.error_deg)
    assert sd.increase_over_ann_deg == pytest.approx(sd.fixed_point.error_deg - sd.ann_error_deg)
    assert sd.steps_per_frame == sd.delay_steps + 1 == 8  # TinyGaze: 5 conv, 1 hidden dense, the readout
    folder = compiled.artifact
    assert {p.name for p in folder.iterdir()} == {"network.net", "sdnn.json", "ann"}


@pytest.mark.slow
def test_sequences_cost_fewer_synaptic_ops_per_frame_than_single_frames(compiled):
    sd = compiled.report.sigma_delta
    single, seq = sd.single_frame, sd.sequence
    assert seq.frames == 2 * 5 and single.frames == 48
    assert 0 < seq.synops < single.synops / 3  # consecutive 60 Hz frames differ little
    assert single.synops_per_ann_mac == pytest.approx(single.synops / sd.ann_macs)
    for counts in (single, seq):  # the same cited constants for both, every layer on the chip
        rows = {r["profile"]: r for r in counts.energy}
        assert set(rows) == {"keras-spiking", "horowitz-45nm"} and rows["horowitz-45nm"]["arithmetic"] == "integer-graded"
        assert f"{counts.synops / 1e6:.3f} M synaptic ops" in rows["horowitz-45nm"]["assumptions"]
    assert compiled.report.energy.estimates[0].low_uj == pytest.approx(single.energy[0]["low_uj"])
    assert sd.sequence_set["fps"] == 60 and sd.sequence_set["from_rest_synops"] > seq.synops


@pytest.mark.slow
def test_the_check_fails_when_the_mirror_differs_from_the_file(compiled):
    """The comparison can fail: a mirror one threshold step off sends other messages than Lava."""
    from edgekit.backends.sdnn.runner import SdnnRunner, lava_check

    runner = SdnnRunner(compiled.artifact)
    runner.mirror.layers[3].vth += 1
    x = synthetic.standard_set("eval", 4, (40, 64))
    from edgekit.evalset import model_inputs
    from edgekit.models.card import ModelCard
    from edgekit.models.io import WEIGHTS_DIR

    arrays = next(iter(model_inputs(ModelCard.load(WEIGHTS_DIR / "tinygaze.json"), x).arrays.values()))
    res = lava_check(runner, arrays, x.gaze)
    assert res["ran"] and not res["match"] and sum(res["mismatched_messages_per_layer"][3:]) > 0
    assert res["mismatched_messages_per_layer"][:3] == [0, 0, 0]  # layers before the changed one still agree
    assert res["summary"].startswith("MISMATCH")


@pytest.mark.slow
def test_spec_and_sidecar_describe_the_network(compiled):
    spec = json.loads((compiled.artifact / "sdnn.json").read_text())
    assert spec["steps_per_frame"] == 8 and len(spec["scales"]) == len(spec["thresholds"]) == 8
    assert spec["names"][0] == "input" and spec["names"][-1] == "head" and spec["lava_samples"] == 16
    assert all(t >= 0 for t in spec["thresholds"]) and spec["thresholds"][-1] == 0  # the readout has none
    io = json.loads((compiled.out_dir / "io.json").read_text())
    assert io["inputs"][0]["shape"][-3:] == [1, 40, 64]


@pytest.mark.slow
def test_the_report_renders_the_section_as_tables(compiled):
    from tests.report.test_report_html import CHROMIUM, assert_readable, rendered

    from edgekit.report.summary import summary

    md = (compiled.out_dir / "report.md").read_text()
    assert "## Sigma-delta" in md and "message for message identical" in md
    line = next(x for x in summary(compiled.report, compiled.out_dir).splitlines() if x.startswith("  sdnn "))
    assert "synaptic ops per single frame" in line and "per 60 Hz sequence frame" in line and line.endswith("Lava: match")
    if CHROMIUM is None:
        pytest.skip("headless Chromium is not installed")
    dom = rendered(compiled.out_dir / "report.html")
    assert_readable(dom)
    text = " ".join(dom.text)
    assert "Traffic and energy per frame" in text and "60 Hz sequences" in text
    assert f"{compiled.report.sigma_delta.single_frame.synops:,.0f}" in text
    np.testing.assert_equal(compiled.report.sigma_delta.lava.mismatched_messages_per_layer, [0] * 8)
