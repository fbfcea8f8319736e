"""Train the test model zoo (tests/zoo/models.py) on edgekit's synthetic eyes; write weights + cards.

    OMP_NUM_THREADS=1 python scripts/train_zoo.py [--only NAME ...]

For each model: tests/zoo/weights/<name>.safetensors and <name>.card.json (edgekit's ModelCard layout,
like edgekit/models/weights/*.json). Fixed seeds and one torch thread: the same command on the same host
gives the same weights and numbers. The validation block is measured after the weights are rounded to
their stored dtype and reloaded, on a held-out synthetic 'val' set (seed 1), beside predict-the-mean.

edgekit.models.train only builds registered built-ins, so the loop (AdamW + one-cycle, like edgekit's
recipe) lives here.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import math
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import edgekit  # noqa: E402
from edgekit.data import synthetic  # noqa: E402
from edgekit.data.render import HEAD_RANGE_DEG, PITCH_RANGE_DEG, RENDERER_VERSION, YAW_RANGE_DEG  # noqa: E402
from edgekit.evalset import model_inputs, render_options  # noqa: E402
from edgekit.models.card import InputSpec, ModelCard, OutputSpec, Preprocessing  # noqa: E402
from edgekit.models.evaluate import preprocessed_images  # noqa: E402
from edgekit.models.io import save_weights, sha256_file  # noqa: E402
from tests.zoo import measure, models  # noqa: E402

SEED = 0
N_TRAIN = 16000
TRAIN_SEQUENCES, TRAIN_LENGTH = 400, measure.SEQUENCE_LENGTH

IMAGE = InputSpec(name="image", shape=[1, 1, *models.EYE_SIZE])
HEAD = InputSpec(name="head_pose", shape=[1, 2], layout="NC", color="none", source="head_pose")
FRAMES = InputSpec(name="frames", shape=[1, 7, 1, *models.EYE_SIZE], layout="NTCHW")
VECTOR = OutputSpec(name="gaze", shape=[1, 3], convention="unit_vector")
PITCHYAW = OutputSpec(name="gaze", shape=[1, 2], convention="pitchyaw_rad")
# iTracker: the first eye is the rendered one; the other eye, face and face grid are views rendered beside it
RIGHT_EYE = InputSpec(name="right_eye", shape=[1, 1, *models.EYE_SIZE])
LEFT_EYE = InputSpec(name="left_eye", shape=[1, 1, *models.EYE_SIZE], source="second_eye")
FACE = InputSpec(name="face", shape=[1, 1, 32, 32], source="face")
FACE_GRID = InputSpec(name="face_grid", shape=[1, 625], layout="NC", color="none", source="face_grid")
MIDDLE_FRAME = OutputSpec(name="gaze", shape=[1, 2], convention="pitchyaw_rad", frame="middle")  # Gaze360: the window's centre

# name -> class, inputs, output, loss, recipe (epochs, batch, lr), preprocessing, weights dtype
SPECS = {
    "mpiigaze_lenet": dict(cls=models.MPIIGazeLeNet, inputs=[IMAGE, HEAD], output=PITCHYAW, loss="l1_pitchyaw",
                           epochs=8, batch=128, lr=3e-3, preprocessing=Preprocessing(equalize_hist=True)),
    "preact_resnet_gaze": dict(cls=models.PreActResNetGaze, inputs=[IMAGE, HEAD], output=PITCHYAW, loss="l1_pitchyaw",
                               epochs=6, batch=128, lr=5e-3),
    "l2cs_bins": dict(cls=models.L2CSBins, inputs=[IMAGE], output=PITCHYAW, loss="l2cs", epochs=10, batch=128, lr=5e-3),
    "mobilegaze": dict(cls=models.MobileGaze, inputs=[IMAGE], output=VECTOR, loss="cosine", epochs=3, batch=128, lr=5e-3),
    "gaze_transformer": dict(cls=models.GazeTransformer, inputs=[IMAGE], output=VECTOR, loss="cosine", epochs=8,
                             batch=128, lr=2e-3),
    "gaze360_temporal": dict(cls=models.Gaze360Temporal, inputs=[FRAMES], output=MIDDLE_FRAME, loss="l1_pitchyaw",
                             epochs=20, batch=8, lr=5e-3),
    "stn_gaze": dict(cls=models.SpatialTransformerGaze, inputs=[IMAGE], output=VECTOR, loss="cosine", epochs=10,
                     batch=128, lr=3e-3),
    "itracker": dict(cls=models.ITracker, inputs=[RIGHT_EYE, LEFT_EYE, FACE, FACE_GRID], output=VECTOR, loss="cosine",
                     epochs=5, batch=128, lr=3e-3),
}
LOSSES = {"l1_pitchyaw": "mean |pitch, yaw - truth| (radians)",
          "cosine": "1 - cos(pred, g)",
          "l2cs": "per angle: cross-entropy on the 3-degree bin + 1.0 * MSE of the softmax expectation, in bin widths "
                  "(L2CS-Net's classification + regression loss)"}


def _angle_loss(kind: str, model, out_or_x, target_vec, target_py):
    if kind == "cosine":
        return (1 - F.cosine_similarity(out_or_x, target_vec, dim=-1)).mean()
    return (out_or_x - target_py).abs().mean()


def _l2cs_loss(model, x, target_py):
    lp, ly = model.logits(x)
    total = 0.0
    step = math.radians(model.bin_deg)
    lo = float(model.centres[0]) - step / 2
    for logits, truth in ((lp, target_py[:, 0]), (ly, target_py[:, 1])):
        label = ((truth - lo) / step).floor().long().clamp(0, logits.shape[1] - 1)
        expect = (F.softmax(logits, dim=1) * model.centres).sum(dim=1)
        total = total + F.cross_entropy(logits, label) + ((expect - truth) / step).pow(2).mean()
    return total


def _optimiser(model, lr, total_steps):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps)


def train_images(name: str, spec: dict, model, card: ModelCard) -> tuple[dict, float]:
    render_started = time.time()
    train = synthetic.standard_set("train", N_TRAIN, card.image_size, **render_options(card))
    render_s = time.time() - render_started
    started = time.time()
    arrays = model_inputs(card, train).arrays  # every declared input, fed as edgekit feeds it
    xs = [torch.from_numpy(arrays[s.name]) for s in card.inputs]
    x = xs[0]
    vec = torch.from_numpy(train.gaze)
    py = torch.from_numpy(train.pitchyaw)
    epochs, batch, lr = spec["epochs"], spec["batch"], spec["lr"]
    steps = len(x) // batch
    opt, sched = _optimiser(model, lr, epochs * steps)
    gen = torch.Generator().manual_seed(SEED)
    losses = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for b in range(steps):
            idx = order[b * batch:(b + 1) * batch]
            if spec["loss"] == "l2cs":
                loss = _l2cs_loss(model, x[idx], py[idx])
            else:
                out = model(*(t[idx] for t in xs))
                loss = _angle_loss(spec["loss"], model, out, vec[idx], py[idx])
            total += _step(opt, sched, loss)
        losses.append(round(total / steps, 5))
    train_s = time.time() - started
    return {"n_train": N_TRAIN, "train_seed": synthetic.SEEDS["train"], "train_head_pose": train.head_pose is not None,
            **({"train_views": sorted(train.extras)} if train.extras else {}),
            "train_set_digest": train.digest(), "epoch_loss": losses, "render_s": round(render_s, 1)}, train_s


def _step(opt, sched, loss) -> float:
    """One optimiser and schedule step on `loss`; its value."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return float(loss.detach())


def train_sequences(name: str, spec: dict, model, card: ModelCard) -> tuple[dict, float]:
    """Each step runs the CNN once per frame of `batch` whole sequences, then the BiLSTM over every 7-frame window of
    them (the same computation as forward() on each window, without recomputing shared frames)."""
    render_started = time.time()
    seqs = synthetic.synthetic_sequences(TRAIN_SEQUENCES, TRAIN_LENGTH, synthetic.SEEDS["train"], card.image_size,
                                         role="train")
    render_s = time.time() - render_started
    started = time.time()
    window = model.window
    x = torch.from_numpy(preprocessed_images(card, seqs)).view(TRAIN_SEQUENCES, TRAIN_LENGTH, 1, *card.image_size)
    py = torch.from_numpy(seqs.pitchyaw).view(TRAIN_SEQUENCES, TRAIN_LENGTH, 2)
    n_win = TRAIN_LENGTH - window + 1
    epochs, batch, lr = spec["epochs"], spec["batch"], spec["lr"]
    steps = TRAIN_SEQUENCES // batch
    opt, sched = _optimiser(model, lr, epochs * steps)
    gen = torch.Generator().manual_seed(SEED)
    losses = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(TRAIN_SEQUENCES, generator=gen)
        total = 0.0
        for b in range(steps):
            idx = order[b * batch:(b + 1) * batch]
            feats = model.frame_features(x[idx].flatten(0, 1)).view(len(idx), TRAIN_LENGTH, -1)
            wins = feats.unfold(1, window, 1).permute(0, 1, 3, 2).reshape(len(idx) * n_win, window, -1)
            target = py[idx, window // 2:window // 2 + n_win].reshape(-1, 2)
            loss = (model.temporal(wins) - target).abs().mean()
            total += _step(opt, sched, loss)
        losses.append(round(total / steps, 5))
    train_s = time.time() - started
    return {"n_sequences": TRAIN_SEQUENCES, "length": TRAIN_LENGTH, "fps": synthetic.DEFAULT_FPS, "window": window,
            "train_seed": synthetic.SEEDS["train"], "train_set_digest": seqs.digest(), "epoch_loss": losses,
            "render_s": round(render_s, 1)}, train_s


def train_one(name: str) -> ModelCard:
    spec = SPECS[name]
    cls = spec["cls"]
    started = time.time()
    config = {k: p.default for k, p in inspect.signature(cls).parameters.items()}  # every argument, spelled out
    torch.manual_seed(SEED)
    model = cls(**config)
    card = ModelCard(name=name, arch=f"tests.zoo.models:{cls.__name__}", arch_config=config,
                     description=" ".join(cls.__doc__.split()), inputs=spec["inputs"], output=spec["output"],
                     preprocessing=spec.get("preprocessing", Preprocessing()))
    trainer = train_sequences if measure.is_temporal(card) else train_images
    data, train_s = trainer(name, spec, model, card)
    model.eval()
    weights = measure.weights_path(name)
    dtype = spec.get("dtype", "float32")
    save_weights(model, weights, getattr(torch, dtype))
    card = card.model_copy(update={"weights": {"file": weights.name, "sha256": sha256_file(weights), "dtype": dtype}})
    card.save(measure.card_path(name))  # measured through the committed-file loader below
    stored, card = measure.load_zoo(name)
    val = measure.val_set(card)
    params = sum(p.numel() for p in stored.parameters())
    card = card.model_copy(update={
        "renderer": {"version": RENDERER_VERSION, "pitch_deg": list(PITCH_RANGE_DEG), "yaw_deg": list(YAW_RANGE_DEG),
                     "head_pose_deg": HEAD_RANGE_DEG, "seeds": synthetic.SEEDS},
        "training": {"script": "scripts/train_zoo.py", "optimizer": "AdamW(weight_decay=1e-4)", "schedule": "OneCycleLR",
                     "lr": spec["lr"], "batch": spec["batch"], "epochs": spec["epochs"], "loss": LOSSES[spec["loss"]],
                     "torch_seed": SEED, **data, "train_s": round(train_s, 1), "parameters": params},
        "validation": {"set": measure.set_info(card, val), **measure.measure(stored, card, val)},
        "provenance": {"edgekit": edgekit.__version__, "torch": torch.__version__, "numpy": np.__version__,
                       "python": platform.python_version(), "host": platform.node(), "machine": platform.machine(),
                       "device": "cpu", "torch_threads": torch.get_num_threads(),
                       "date": datetime.date.today().isoformat(), "wall_s": round(time.time() - started, 1)}})
    card.save(measure.card_path(name))
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(SPECS), help="train only this model (repeatable)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    measure.WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    print(f"{'model':20} {'params':>7} {'KB':>6} {'train_s':>7} {'val_deg':>8} {'mean_baseline':>13}")
    for name in args.only or list(SPECS):
        card = train_one(name)
        acc = card.validation["accuracy"]
        kb = measure.weights_path(name).stat().st_size / 1024
        print(f"{name:20} {card.training['parameters']:7d} {kb:6.1f} {card.training['train_s']:7.1f} "
              f"{acc['model']['mean_deg']:8.2f} {acc['predict_mean_baseline']['mean_deg']:13.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
