"""Residual blocks in to_snn: shortcut scaling, the error curve of a trained residual net, counts through adds and
pools, NIR's graph form, netx's refusal, and the snn target end to end from weights + --arch."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from edgekit.data import synthetic
from edgekit.data.metrics import angular_error_deg
from edgekit.errors import BadInputError
from edgekit.models.card import ModelCard
from edgekit.models.io import WEIGHTS_DIR
from edgekit.snn import convert as snn_convert
from edgekit.snn.convert import ann_walk, convert
from edgekit.snn.graph import spiking_graph
from edgekit.snn.simulate import CHUNK, LayerwiseRates, rates, simulate
from tests.snn.residual_gaze import ResidualGaze, trained

pytestmark = pytest.mark.slow  # conversions and simulations of the residual net; the last test compiles


@pytest.fixture(scope="module")
def model():
    return trained()


@pytest.fixture(scope="module")
def images():
    card = ModelCard.load(WEIGHTS_DIR / "tinygaze.json")
    calib, ev = synthetic.standard_set("calib", 96, (40, 64)), synthetic.standard_set("eval", 128, (40, 64))
    xc, xe = (torch.from_numpy(card.preprocessing.apply(s.images, 1, (40, 64))) for s in (calib, ev))
    return xc, xe, ev.gaze


def test_graph_has_branches_shortcuts_and_adds(model):
    nodes, normalized = spiking_graph(model, 1)
    kinds = {n.name: (n.kind, n.neuron) for n in nodes}
    assert normalized and kinds["blocks.0.conv2"] == ("conv", "none") and kinds["blocks.1.down.0"] == ("conv", "none")
    assert kinds["add"] == ("add", "if") and kinds["add.shortcut"] == ("scale", "none")  # the identity shortcut
    assert "add_1.shortcut" not in kinds  # the 1x1 downsample conv is the second block's shortcut
    assert kinds["pool"] == ("pool", "none") and kinds["head"] == ("linear", "integrator")
    add = next(n for n in nodes if n.name == "add")
    assert [nodes[i].name for i in add.inputs] == ["blocks.0.conv2", "add.shortcut"]


def test_shortcut_scaling_makes_the_rates_converge_to_the_ann(model, images):
    """With thresholds at the maximum activation nothing saturates, so at large T the readout must approach the ANN's
    output; a shortcut left at weight 1 (no lambda_in / lambda_out) breaks that."""
    xc = images[0][:48]
    net = convert(model, 1, xc, timesteps=256, balance="none", percentile=None)
    ann = ann_walk(spiking_graph(model, 1)[0], xc)[-1].numpy()
    out = simulate(net, xc, 256, record=(64,), count=False).outputs
    err = {t: float(np.abs(out[t] - ann).mean()) for t in (64, 256)}
    for i, lay in enumerate(net.layers):
        if lay["kind"] == "scale":
            assert not torch.allclose(net.weights[i], torch.ones_like(net.weights[i]))
            net.weights[i] = torch.ones_like(net.weights[i])
    unscaled = float(np.abs(simulate(net, xc, 256, count=False).outputs[256] - ann).mean())
    assert err[256] < err[64] / 3 and err[256] < 0.05 * float(np.abs(ann).mean()), err  # about 1/T
    assert unscaled > 5 * err[256], (err, unscaled)


def _pooled_shortcut() -> torch.nn.Module:
    """ResidualGaze with the stem's spikes average-pooled into the first block, whose identity shortcut reads the
    pool: a stateless node that the layer-wise rates recompute from kept spikes. Untrained, BN folded."""
    from edgekit.passes.fold_bn import find_conv_bn_pairs, fold_pairs

    torch.manual_seed(0)
    model = ResidualGaze(width=8)
    model.stem.append(torch.nn.AvgPool2d(2))
    model.head = torch.nn.Linear(16 * 2 * 4, 3)
    return fold_pairs(model.eval(), find_conv_bn_pairs(model)[0]).eval()


@pytest.mark.parametrize("timing", [{}, {"reset": "zero", "v_init": 0.0, "delay": True, "warmup": 3}], ids=["plain", "delayed"])
@pytest.mark.parametrize("which", ["trained", "pooled_shortcut"])
def test_gain_balance_from_kept_spikes_equals_runs_from_the_image(model, images, monkeypatch, timing, which):
    """The gain balance takes each population's rates starting from the kept spikes of the nodes before it (shortcut
    sources included, a pool between them recomputed); rates run from the image for every population must give the
    same weights bit for bit, over two parts of the batch, with and without Lava's delays."""
    net_model, xc = (model if which == "trained" else _pooled_shortcut()), images[0][:CHUNK + 8]
    kept = convert(net_model, 1, xc, timesteps=16, **timing)

    class FromImage:
        def __init__(self, net, x, steps):
            self.net, self.x, self.steps = net, x, steps

        def rates(self, i):
            return rates(self.net, self.x, self.steps, i)

    monkeypatch.setattr(snn_convert, "LayerwiseRates", FromImage)
    rerun = convert(net_model, 1, xc, timesteps=16, **timing)
    for a, b in zip(kept.weights + kept.biases, rerun.weights + rerun.biases):
        assert (a is None and b is None) or torch.equal(a, b)
    assert kept.meta["balance"] == rerun.meta["balance"]
    layerwise = LayerwiseRates(kept, xc[:8], 4)
    pooled = next(i for i, lay in enumerate(kept.layers) if lay["kind"] == "pool")
    keep, recompute = layerwise._frontier(pooled + 1)
    if which == "pooled_shortcut":  # the pool feeds the first block's conv and its shortcut: recomputed, not kept
        assert pooled in recompute and pooled not in keep and pooled - 1 in keep
    layerwise.rates(3)
    with pytest.raises(ValueError, match="execution order"):
        layerwise.rates(1)


def test_trained_residual_net_converts_within_the_targets(model, images):
    xc, xe, gaze = images
    with torch.no_grad():
        ann = float(angular_error_deg(model(xe).numpy(), gaze).mean())
    curve = {}
    for name, kw in (("converted", {}), ("naive", {"percentile": None, "per_channel": False, "v_init": 0.0, "balance": "none"})):
        out = simulate(convert(model, 1, xc, timesteps=32, **kw), xe, 64, record=(16, 64), count=False).outputs
        curve[name] = {t: float(angular_error_deg(out[t], gaze).mean()) - ann for t in (16, 64)}
    assert curve["converted"][64] <= 0.5 and curve["converted"][16] <= 2.0, (ann, curve)
    assert curve["naive"][16] > curve["converted"][16] + 2, curve


def test_counts_follow_spikes_through_shortcuts_adds_and_pools(model, images):
    from edgekit.snn.counts import spiking_counts

    xc = images[0][:32]
    net = convert(model, 1, xc, timesteps=16, balance="none")
    res = simulate(net, xc, 16)
    counts = spiking_counts(net, res.spikes[16], res.acs[16], 16, len(xc))
    rows = {r["layer"]: r for r in counts["layers"]}
    assert rows["stem.0"]["effective_macs"] == rows["stem.0"]["dense_macs"] > 0 and rows["stem.0"]["effective_acs"] == 0
    # an identity shortcut drives one synapse per spike; the head reads the pooled last block (2x2 pool, 3 outputs)
    assert rows["add.shortcut"]["effective_acs"] == pytest.approx(rows["stem.0"]["spikes"])
    assert rows["head"]["effective_acs"] == pytest.approx(rows["add_1"]["spikes"] * 3)
    for name in ("add", "add_1"):  # the adds' neurons integrate both branches: they spike, their synapses are the branches'
        assert rows[name]["neurons"] > 0 and rows[name]["spikes"] > 0 and rows[name]["dense_macs"] == 0
    assert rows["blocks.0.conv2"]["neurons"] == 0 and rows["blocks.0.conv2"]["effective_acs"] > 0  # a branch: no neurons


def test_nir_graph_sums_both_branches_into_the_add(model, images, tmp_path):
    import nir

    from edgekit.snn.nir_export import write_nir

    net = convert(model, 1, images[0][:32], timesteps=16, balance="none")
    graph = nir.read(str(write_nir(net, tmp_path / "model.nir")))
    add = next(f"{i}_if" for i, lay in enumerate(net.layers) if lay["name"] == "add")
    into = sorted(src for src, dst in graph.edges if dst == add)
    assert len(into) == 2 and any(isinstance(graph.nodes[s], nir.Scale) for s in into)
    assert any(isinstance(n, nir.AvgPool2d) for n in graph.nodes.values())


def test_netx_refuses_a_residual_net_naming_the_add(model, images, tmp_path):
    from edgekit.snn.netx import write_artifact
    from tests.snn.residual_gaze import Block

    net = convert(model, 1, images[0][:32], timesteps=8, reset="zero", v_init=0.0, balance="none")
    with pytest.raises(BadInputError, match=r"layer add \(residual add of blocks.0.conv2 and add.shortcut\).*netx.*fix: use a sequential model"):
        write_artifact(net, tmp_path / "model.lava")
    assert not (tmp_path / "model.lava").exists()
    from edgekit.passes.fold_bn import find_conv_bn_pairs, fold_pairs

    projection_first = ResidualGaze().eval()  # the first block's shortcut is a 1x1 conv: still the add is named
    projection_first.blocks = torch.nn.Sequential(Block(16, 32, 2), Block(32, 32, 1)).eval()
    projection_first = fold_pairs(projection_first, find_conv_bn_pairs(projection_first)[0]).eval()
    net = convert(projection_first, 1, images[0][:16], timesteps=4, reset="zero", v_init=0.0, balance="none")
    with pytest.raises(BadInputError, match=r"layer add \(residual add of blocks.0.conv2 and blocks.0.down.0\)"):
        write_artifact(net, tmp_path / "model.lava")


def test_snn_target_compiles_a_residual_model_from_weights_and_arch(model, tmp_path):
    import edgekit.compiler as ek

    torch.manual_seed(0)
    weights = tmp_path / "resgaze.safetensors"
    save_file({k: v.contiguous() for k, v in ResidualGaze().state_dict().items()}, str(weights))  # untrained: BN to fold
    card = json.loads((WEIGHTS_DIR / "tinygaze.json").read_text())
    card |= {"name": "resgaze", "arch": "tests.snn.residual_gaze:ResidualGaze", "arch_config": {}}
    (tmp_path / "card.json").write_text(json.dumps(card))
    from tests.backends.snn.test_targets import _small_recipe

    res = ek.compile(str(weights), _small_recipe(tmp_path, "snn"), arch="tests.snn.residual_gaze:ResidualGaze",
                     card=tmp_path / "card.json", eval=synthetic.standard_set("eval", 32, (40, 64)), out=tmp_path / "out",
                     cache=False)
    rows = {r["layer"]: r for r in res.report.spiking.counts.layers}
    assert {"add", "add.shortcut", "add_1", "blocks.1.down.0"} <= set(rows)
    assert res.report.spiking.error_vs_timesteps[-1].timesteps == 64
