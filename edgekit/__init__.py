"""edgekit: compile trained PyTorch gaze models into verified edge artifacts with honest reports."""

__version__ = "0.1.0"
