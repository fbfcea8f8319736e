"""INT8 quantization: calibration observers, the backend-independent plan, and its ONNX (QDQ) form."""
