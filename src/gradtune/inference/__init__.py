"""Inference: a trained run read back from its folder (predictor.py), on PyTorch or onnxruntime
(onnx_runtime.py), predicting or writing text (generation.py)."""
