"""Pruning on TinyGaze: structured pruning really shrinks the model; unstructured sparsity is reported honestly."""

import pytest

import edgekit.compiler as ek
from edgekit.torch_module import load_module


def _recipe(tmp_path, prune: str, tail: str = "  - fold_bn\n  - export_onnx\n", backend: str = "onnx", extra: str = "") -> str:
    path = tmp_path / "r.yaml"
    path.write_text(f"name: pruned-test\nbackend: {backend}\n{extra}passes:\n  - prune: {prune}\n{tail}gates: {{}}\n")
    return str(path)


@pytest.mark.slow
def test_default_pruned_recipe_quarters_macs_and_holds_half_a_degree(tmp_path):
    res = ek.compile(None, "onnx-pruned", out=tmp_path / "p")
    rep = res.report
    assert rep.passed and rep.accuracy.error_increase_deg <= 0.5
    assert rep.compute["macs"].value < 0.3 * 4.84e6  # half the channels: about a quarter of the MACs
    assert rep.compute["params"].value < 0.3 * 397_875
    assert "fine-tuned 3000 steps" in rep.steps[0].notes[0]


@pytest.mark.slow
def test_channel_pruning_rebuilds_from_its_artifact_and_composes_with_ptq_and_coreml(tmp_path):
    prune = "{method: channel, amount: 0.5, fine_tune_steps: 20}"
    int8 = ek.compile(None, _recipe(tmp_path, prune, "  - fold_bn\n  - export_onnx\n  - ptq\n",
                                    extra="calibration: synthetic-512\n"), out=tmp_path / "i8")
    assert int8.report.artifact.precision == "int8" and int8.report.compute["macs"].value < 0.3 * 4.84e6
    coreml = ek.compile(None, _recipe(tmp_path, prune, "  - fold_bn\n  - to_coreml\n", backend="coreml"), out=tmp_path / "cm")
    assert coreml.report.runtime.op_histogram["conv"] == 5 and coreml.report.compute["macs"].value < 0.3 * 4.84e6
    # the accuracy of a barely fine-tuned net is measured, not assumed
    assert coreml.report.accuracy.diff_from_reference.max_deg > 0.1


@pytest.mark.slow
def test_magnitude_pruning_is_sparsity_without_speed(tmp_path):
    res = ek.compile(None, _recipe(tmp_path, "{method: magnitude, amount: 0.5, scope: global}"), out=tmp_path / "m")
    note = res.report.steps[0].notes[0]
    assert "dense runtimes gain no speed" in note
    assert 4.8e6 < res.report.compute["macs"].value < 4.9e6  # shapes unchanged
    frac = float(note.split("zeros ")[1].split("%")[0]) / 100
    assert 0.45 < frac < 0.55  # about half of all parameters (nearly all are prunable weights)
    before, after = (float(v) for v in note.split("zlib-compressed weights ")[1].split(" MB")[0].split(" -> "))
    assert after < 0.8 * before  # the zeros do show up in compressed size


def test_pruned_torch_artifact_reloads_with_its_new_sizes(tmp_path):
    from edgekit.context import Context
    from edgekit.models.io import load_shipped
    from edgekit.passes.prune import Prune
    from edgekit.source import load_source

    src = load_source(None, tmp_path / "w")
    _, card = load_shipped("tinygaze")
    art = Prune(method="channel", amount=0.25).run(src.artifact, Context(work_dir=tmp_path, card=card), tmp_path / "out")
    module, spec = load_module(art.path)
    assert "layer_sizes" in spec and module.features[0][0].out_channels == 12  # 16 channels, a quarter removed
    assert art.meta.params_after < art.meta.params_before


@pytest.mark.slow
def test_bn_scale_importance_needs_unfolded_batchnorm(tmp_path, capsys):
    from edgekit.cli import run

    ok = ek.compile(None, _recipe(tmp_path, "{method: channel, amount: 0.25, importance: bn_scale}"), out=tmp_path / "ok")
    assert ok.report.compute["macs"].value < 4.84e6
    path = tmp_path / "bad.yaml"
    path.write_text("name: b\nbackend: onnx\npasses:\n  - fold_bn\n  - prune: {importance: bn_scale}\n  - export_onnx\n")
    assert run(["compile", "-t", str(path)]) == 2
    assert "bn_scale needs BatchNorm layers" in capsys.readouterr().err


@pytest.mark.slow
def test_magnitude_sparsity_is_stored_sparse_in_core_ml(tmp_path):
    import numpy as np

    from edgekit.backends.coreml.mil_interpreter import MilInterpreter

    res = ek.compile(None, _recipe(tmp_path, "{method: magnitude, amount: 0.6}", "  - fold_bn\n  - to_coreml: {weights: sparse}\n",
                                   backend="coreml"), out=tmp_path / "s")
    rep = res.report
    assert rep.runtime.op_histogram["constexpr_sparse_to_dense"] >= 4
    assert rep.runtime.weight_dtypes.get("sparse-fp16", 0) > 0.9
    interp = MilInterpreter(res.artifact)
    for op in (o for o in interp.ops if o.op_type == "constexpr_sparse_to_dense"):  # decoded as coremltools does
        args = {k: v.val for k, v in op.inputs.items()}
        np.testing.assert_allclose(interp._op_constexpr_sparse_to_dense(op, **args),
                                   np.asarray(op.materialized_val_inference(), np.float32))
    dense = ek.compile(None, _recipe(tmp_path, "{method: magnitude, amount: 0.6}", "  - fold_bn\n  - to_coreml\n",
                                     backend="coreml"), out=tmp_path / "d")
    assert rep.size["artifact"].value < 0.75 * dense.report.size["artifact"].value  # the zeros are not stored
    assert rep.accuracy.diff_from_reference.max_deg == pytest.approx(dense.report.accuracy.diff_from_reference.max_deg, abs=1e-6)


def test_a_width_fixed_in_code_is_one_line_naming_the_module(tmp_path):
    """Heads reshaped by a constant: torch-pruning removes channels the reshape needs; the pass names the module and line
    instead of failing later in fine-tuning or export."""
    from edgekit.errors import BadInputError
    from edgekit.models.card import ModelCard
    from tests.zoo import measure

    card = ModelCard.load(measure.card_path("gaze_transformer"))
    with pytest.raises(BadInputError, match=r"^prune: after channel pruning the model fails in module blocks.0.attn "
                                            r"\(Attention\) at models.py:\d+ \(shape .* is invalid"):
        ek.compile(str(measure.weights_path("gaze_transformer")), _recipe(tmp_path, "{method: channel, amount: 0.3}"),
                   card=measure.card_path("gaze_transformer"), arch=card.arch, out=tmp_path / "o", cache=False)
