"""Export: ONNX with a parity check against PyTorch, INT8/bf16 quantisation with measured accuracy, TensorRT."""
