"""Serving without torch: exported ONNX models run with onnxruntime + numpy only.

Nothing in this package may import torch (``tests/test_export.py`` checks it with torch blocked).
"""

from nlpkit.serving.onnx_predictor import OnnxPredictor

__all__ = ["OnnxPredictor"]
