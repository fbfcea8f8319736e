"""INT8 quantization: calibration observers, calibration sets and the backend-independent plan (each backend applies it
natively: the ONNX QDQ form lives in edgekit/backends/onnx/qdq.py)."""
