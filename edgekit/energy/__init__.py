"""Energy: per-layer counts from the artifact, estimates from cited per-op constants, measured meters."""
