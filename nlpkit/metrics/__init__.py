"""Evaluation metrics as torchmetrics ``Metric``s: count states summed across DDP processes by
torchmetrics itself (``dist_reduce_fx="sum"``), so a multi-process evaluation gives exactly the
one-process figure."""

from nlpkit.metrics.frames import FrameAccuracy
from nlpkit.metrics.spans import SpanF1

__all__ = ["FrameAccuracy", "SpanF1"]
