"""Built-in gaze models (plain torch), their cards and shipped demo weights."""

from edgekit.models.card import InputSpec, ModelCard, OutputSpec, Preprocessing
from edgekit.models.registry import BUILTINS, build, builtin

__all__ = ["BUILTINS", "InputSpec", "ModelCard", "OutputSpec", "Preprocessing", "build", "builtin"]
