"""Gaze data: the synthetic eye renderer, the `.npz` set format, dataset loaders and metrics."""

from edgekit.data.gaze import pitchyaw_to_vector, vector_to_pitchyaw
from edgekit.data.metrics import accuracy, angular_error_deg
from edgekit.data.npz import GazeSet, make_meta, read_gazeset, write_gazeset
from edgekit.data.synthetic import standard_set, synthetic_sequences, synthetic_set

__all__ = ["GazeSet", "accuracy", "angular_error_deg", "make_meta", "pitchyaw_to_vector", "read_gazeset",
           "standard_set", "synthetic_sequences", "synthetic_set", "vector_to_pitchyaw", "write_gazeset"]
