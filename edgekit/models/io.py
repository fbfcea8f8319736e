"""Saving and loading weights without unpickling: safetensors, or torch.load(weights_only=True)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch
from torch import nn

from edgekit import userfile
from edgekit.errors import BadInputError, first_line
from edgekit.fileio import atomic_write
from edgekit.models.card import ModelCard
from edgekit.models.registry import build
from edgekit.quiet import quiet

WEIGHTS_DIR = Path(__file__).parent / "weights"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_weights(model: nn.Module, path: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write the state dict as safetensors (floating tensors cast to `dtype`), atomically."""
    from safetensors.torch import save_file

    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().cpu() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(state, str(tmp)))


def check_readable(path: str | Path) -> Path:
    """A model file that can be opened and is not empty; otherwise one line saying which and what to do."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            empty = not fh.read(1)
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a folder, not a model file; fix: give the file (or an edgekit module folder)") from None
    except OSError as exc:
        raise userfile.fail(path, exc, "model file") from None
    if empty:
        raise BadInputError(f"{path}: empty file (0 bytes); fix: save or copy the model again, this copy is empty")
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch file (weights_only: tensors only, nothing executed)."""
    path = check_readable(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise BadInputError(f"{path}: unreadable safetensors file ({exc}); fix: re-export the weights") from None
    try:
        with quiet():
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise BadInputError(_torch_load_refusal(path, exc)) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInputError(f"{path}: does not hold a state_dict of tensors; fix: save model.state_dict()")
    return state


def _torch_load_refusal(path: Path, exc: Exception) -> str:
    """One line in edgekit's words. torch's own text advises retrying with weights_only=False (running the file's
    code), which edgekit never does, so only the name of an offending Python object is kept from it."""
    text = str(exc)
    fix = "fix: save model.state_dict() with torch.save, or use safetensors"
    found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text)
    if found:
        return f"{path}: holds Python objects ({found.group(1)}) besides tensors, and edgekit never unpickles those; {fix}"
    if "weights_only" in text or "Weights only" in text or isinstance(exc, (KeyError, EOFError)):
        return f"{path}: not a torch weights file edgekit can read without unpickling (corrupt, truncated, a plain " \
               f"pickle or another format); {fix}"
    first = first_line(exc, 160).split(". ")[0]
    return f"{path}: not a readable torch weights file ({first}); {fix}"


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Load a state dict strictly, cast to the model's dtype; a mismatch names the first bad key."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected else
                  f"shape of {wrong[0]} is {tuple(state[wrong[0]].shape)}, model wants {tuple(own[wrong[0]].shape)}")
        raise BadInputError(f"{source}: weights do not fit {type(model).__name__} ({detail}); fix: pass the matching --arch and config")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return model.eval()


def load_model(weights: str | Path, card: ModelCard) -> nn.Module:
    return load_into(build(card.arch, card.arch_config), read_state_dict(weights), str(weights))


def shipped_card_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.json"


def load_shipped(name: str) -> tuple[nn.Module, ModelCard]:
    """A built-in model with the weights shipped in the package, and its card."""
    card_path = shipped_card_path(name)
    if not card_path.is_file():
        raise BadInputError(f"no shipped weights for {name!r}; fix: train them with `edgekit demo train --arch {name}`")
    card = ModelCard.load(card_path)
    weights = WEIGHTS_DIR / card.weights["file"]
    if sha256_file(weights) != card.weights["sha256"]:
        raise BadInputError(f"{weights}: digest does not match its card; fix: reinstall edgekit or retrain with `edgekit demo train`")
    return load_model(weights, card), card
