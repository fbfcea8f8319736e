"""Evaluate a PyTorch gaze model on a gaze set: per-frame accuracy, or t+1..t+5 forecasting."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgekit.data.metrics import AccuracyReport, ForecastReport, accuracy, forecast, jitter_deg
from edgekit.data.npz import GazeSet
from edgekit.errors import BadInputError
from edgekit.models.card import ModelCard


@torch.inference_mode()
def predict(model: nn.Module, x: np.ndarray, batch: int = 256, device: str = "cpu") -> np.ndarray:
    """Run `model` over float32 inputs in batches; returns float64 outputs."""
    model = model.eval().to(device)
    outs = [model(torch.from_numpy(x[i:i + batch]).to(device)).double().cpu().numpy() for i in range(0, len(x), batch)]
    return np.concatenate(outs)


def preprocessed_images(card: ModelCard, gazeset: GazeSet) -> np.ndarray:
    """The float32 image tensor for every image of the set (preprocessing from the card); edgekit.evalset
    builds the full input dict (extra inputs, sequence windows) on top of this for compiled artifacts."""
    return card.preprocessing.apply(gazeset.images, card.channels, card.image_size)


def evaluate_images(model: nn.Module, card: ModelCard, gazeset: GazeSet, device: str = "cpu") -> AccuracyReport:
    return accuracy(predict(model, preprocessed_images(card, gazeset), device=device), gazeset.gaze)


def sequence_windows(gazeset: GazeSet, window: int, horizons: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of observed windows (M, window) and their future frames (M, horizons), within sequences."""
    if gazeset.seq_id is None:
        raise BadInputError("gaze set has no seq_id; fix: use a sequence set (synthetic_sequences or a sequence dataset)")
    obs, fut = [], []
    for s in np.unique(gazeset.seq_id):
        rows = np.flatnonzero(gazeset.seq_id == s)
        rows = rows[np.argsort(gazeset.frame_idx[rows])] if gazeset.frame_idx is not None else rows
        for start in range(0, len(rows) - window - horizons + 1, stride):
            obs.append(rows[start:start + window])
            fut.append(rows[start + window:start + window + horizons])
    if not obs:
        raise BadInputError(f"no sequence is longer than window {window} + horizons {horizons}; fix: use longer sequences")
    return np.asarray(obs), np.asarray(fut)


@torch.inference_mode()
def evaluate_temporal(model: nn.Module, card: ModelCard, seqset: GazeSet, stride: int = 5, device: str = "cpu") -> dict:
    """Forecast error t+1..t+H beside hold-last and constant-velocity applied to the model's own per-frame estimates.

    Those baselines see exactly what the model sees (the images up to t); the oracle baselines,
    applied to the true gaze, are reported beside them for context.
    """
    model = model.eval().to(device)
    x = torch.from_numpy(preprocessed_images(card, seqset))
    feats, gaze = zip(*(model.per_frame(x[i:i + 512].to(device)) for i in range(0, len(x), 512)))
    feats, gaze = torch.cat(feats), torch.cat(gaze)
    obs, fut = sequence_windows(seqset, model.window, model.horizons, stride)
    idx = torch.from_numpy(obs)
    pred = torch.cat([model.forecast(feats[idx[i:i + 1024]], gaze[idx[i:i + 1024]]) for i in range(0, len(idx), 1024)])
    per_frame = gaze.double().cpu().numpy()
    true = seqset.gaze.astype(np.float64)
    return {
        "forecast": forecast(pred.double().cpu().numpy(), true[fut], per_frame[obs]),
        "oracle_baselines": forecast(true[fut], true[fut], true[obs]),  # model row = truth: only baselines matter
        "per_frame": accuracy(per_frame, true),
        "per_frame_jitter_deg": jitter_deg(per_frame, true, seqset.seq_id),
    }


def reports_to_dict(reports: dict) -> dict:
    return {k: (v.model_dump() if isinstance(v, (AccuracyReport, ForecastReport)) else v) for k, v in reports.items()}
