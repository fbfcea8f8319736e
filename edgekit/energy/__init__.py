"""Energy: estimates from cited per-op constants chosen by the recipe's device profile (estimate.py, profiles in
targets/devices/), meters (meters.py: RAPL, NVML) and the report's energy section from per-layer counts (section.py;
each backend counts its own artifact's layers)."""
