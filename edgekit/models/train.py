"""`edgekit demo train`: train a built-in model on synthetic eyes and write safetensors + model card.

Recipe (reference/gaze.md section 3): AdamW, one-cycle learning rate, loss 1 - cos(pred, g) plus a
small penalty keeping the unnormalised output near unit length. The validation numbers in the card
are measured on held-out images from another seed, after the weights are rounded to their stored
dtype, on the CPU, so `edgekit demo evaluate` reproduces them.
"""

from __future__ import annotations

import datetime
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

import edgekit
from edgekit.data import synthetic
from edgekit.data.render import HEAD_RANGE_DEG, PITCH_RANGE_DEG, RENDERER_VERSION, YAW_RANGE_DEG
from edgekit.models.evaluate import evaluate_images, evaluate_temporal, preprocessed_images, reports_to_dict, sequence_windows
from edgekit.models.card import ModelCard
from edgekit.models.io import load_model, load_shipped, save_weights, sha256_file
from edgekit.models.registry import build, builtin
from edgekit.progress import track

VAL_IMAGES = 2000
VAL_SEQUENCES = 60


def gaze_loss(raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    cos = F.cosine_similarity(raw, target, dim=-1)
    return (1 - cos).mean() + 0.01 * ((raw.norm(dim=-1) - 1) ** 2).mean()


def _provenance(device: str, started: float) -> dict:
    return {"edgekit": edgekit.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "host": platform.node(), "machine": platform.machine(),
            "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
            "torch_threads": torch.get_num_threads(), "date": datetime.date.today().isoformat(),
            "wall_s": round(time.time() - started, 1)}


def _renderer_info() -> dict:
    return {"version": RENDERER_VERSION, "pitch_deg": list(PITCH_RANGE_DEG), "yaw_deg": list(YAW_RANGE_DEG),
            "head_pose_deg": HEAD_RANGE_DEG, "seeds": synthetic.SEEDS}


def _fit(model, n_items: int, batch: int, epochs: int, lr: float, seed: int, device: str, loss_of, progress: bool,
         label: str) -> list[float]:
    """AdamW + one-cycle over shuffled mini-batches; `loss_of(index_tensor)` gives a batch's loss. Returns epoch losses."""
    params = [p for p in model.parameters() if p.requires_grad]
    steps = n_items // batch
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n_items, generator=gen).to(device)
        total = 0.0
        for b in track(range(steps), total=steps, description=f"{label} epoch {epoch + 1}/{epochs}", enabled=progress):
            loss = loss_of(order[b * batch:(b + 1) * batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        losses.append(total / steps)
    return losses


def train_image_model(arch: str, out_dir: Path, *, n_train: int | None = None, epochs: int | None = None,
                      batch: int | None = None, lr: float | None = None, seed: int = 0, device: str = "cpu",
                      weights_dtype: str = "float32", n_val: int = VAL_IMAGES, progress: bool = True,
                      config: dict | None = None) -> ModelCard:
    """Train an image model; `config` overrides constructor arguments (e.g. a narrower TinyGaze for tests)."""
    spec = builtin(arch)
    arch_config = {**spec.config, **(config or {})}
    d = spec.defaults
    n_train, epochs, batch, lr = n_train or d["n_train"], epochs or d["epochs"], batch or d["batch"], lr or d["lr"]
    started = time.time()
    torch.manual_seed(seed)
    model = build(arch, arch_config).to(device)
    card = ModelCard(name=arch, arch=arch, arch_config=arch_config, description=spec.description,
                     inputs=[spec.input_spec(arch_config)], output=spec.output_spec(arch_config))
    train = synthetic.standard_set("train", n_train, card.image_size, progress=progress)
    x = torch.from_numpy(preprocessed_images(card, train)).to(device)
    y = torch.from_numpy(train.gaze).to(device)
    losses = _fit(model, len(x), batch, epochs, lr, seed, device, lambda idx: gaze_loss(model.raw(x[idx]), y[idx]),
                  progress, f"training {arch}")
    return _finish(model.cpu().eval(), card, out_dir, weights_dtype, started, device, {
        "optimizer": "AdamW(weight_decay=1e-4)", "schedule": "OneCycleLR", "lr": lr, "batch": batch, "epochs": epochs,
        "loss": "1 - cos(raw, g) + 0.01 (|raw| - 1)^2", "n_train": n_train, "train_seed": synthetic.SEEDS["train"],
        "torch_seed": seed, "train_set_digest": train.digest(), "epoch_loss": [round(v, 5) for v in losses]},
        lambda m: {"set": _set_info(val := synthetic.standard_set("val", n_val, card.image_size)),
                   **reports_to_dict({"accuracy": evaluate_images(m, card, val)})})


def train_temporal(arch: str, out_dir: Path, *, n_sequences: int | None = None, length: int | None = None,
                   epochs: int | None = None, batch: int | None = None, lr: float | None = None, seed: int = 0,
                   device: str = "cpu", progress: bool = True, backbone: str = "tinygaze") -> ModelCard:
    """Train the recurrent head on top of the shipped per-frame backbone (frozen: its features are computed once)."""
    spec = builtin(arch)
    d = spec.defaults
    n_sequences, length = n_sequences or d["n_sequences"], length or d["length"]
    epochs, batch, lr = epochs or d["epochs"], batch or d["batch"], lr or d["lr"]
    started = time.time()
    torch.manual_seed(seed)
    model = build(arch).to(device)
    base, base_card = load_shipped(backbone)
    model.backbone.load_state_dict(base.state_dict())
    model.backbone.requires_grad_(False)
    card = ModelCard(name=arch, arch=arch, arch_config=spec.config, description=spec.description,
                     inputs=[spec.input_spec(spec.config)], output=spec.output_spec(spec.config))
    seqs = synthetic.synthetic_sequences(n_sequences, length, synthetic.SEEDS["train"], card.image_size, role="train",
                                         progress=progress)
    model.eval()  # BN must use the backbone's running statistics, and must not update them
    with torch.inference_mode():
        x = torch.from_numpy(preprocessed_images(card, seqs))
        parts = [model.per_frame(x[i:i + 1024].to(device)) for i in range(0, len(x), 1024)]
    feats, gaze = (torch.cat(p).clone() for p in zip(*parts))
    obs, fut = (torch.from_numpy(a).to(device) for a in sequence_windows(seqs, model.window, model.horizons, stride=1))
    target = torch.from_numpy(seqs.gaze).to(device)

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        pred = model.forecast(feats[obs[idx]], gaze[obs[idx]])
        return (1 - F.cosine_similarity(pred, target[fut[idx]], dim=-1)).mean()

    losses = _fit(model, len(obs), batch, epochs, lr, seed, device, loss_of, progress, f"training {arch}")
    return _finish(model.cpu().eval(), card, out_dir, "float32", started, device, {
        "optimizer": "AdamW(weight_decay=1e-4)", "schedule": "OneCycleLR", "lr": lr, "batch": batch, "epochs": epochs,
        "loss": "mean over horizons of 1 - cos(pred, g)", "backbone": f"shipped {backbone} (frozen), sha256 {base_card.weights['sha256']}",
        "n_sequences": n_sequences, "length": length, "fps": synthetic.DEFAULT_FPS, "train_seed": synthetic.SEEDS["train"],
        "torch_seed": seed, "epoch_loss": [round(v, 5) for v in losses]},
        lambda m: {"set": _set_info(val := synthetic.synthetic_sequences(VAL_SEQUENCES, length, synthetic.SEEDS["val"],
                                                                          card.image_size, role="val")),
                   **reports_to_dict(evaluate_temporal(m, card, val))})


def _set_info(gs) -> dict:
    return {"source": gs.meta["source"], "n": len(gs), "seed": gs.meta.get("seed"), "digest": gs.digest()}


def _finish(model, card: ModelCard, out_dir: Path, weights_dtype: str, started: float, device: str, training: dict,
            validate) -> ModelCard:
    """Save weights in their stored dtype, reload them, measure validation on the CPU, write the card."""
    out_dir = Path(out_dir)
    weights = out_dir / f"{card.name}.safetensors"
    save_weights(model, weights, getattr(torch, weights_dtype))
    card = card.model_copy(update={"weights": {"file": weights.name, "sha256": sha256_file(weights), "dtype": weights_dtype}})
    stored = load_model(weights, card)  # exactly what ships, fp16 rounding included
    card = card.model_copy(update={"renderer": _renderer_info(), "training": training, "validation": validate(stored),
                                   "provenance": _provenance(device, started)})
    card.save(out_dir / f"{card.name}.json")
    return card
