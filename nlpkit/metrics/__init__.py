"""Evaluation metrics as torchmetrics ``Metric``s: count states summed across DDP processes by
torchmetrics itself (``dist_reduce_fx="sum"``), so a multi-process evaluation gives exactly the
one-process figure. Task modules build the ones they report; a new task's metric is a ``Metric`` here
(or in its own package) like these."""

from nlpkit.metrics.classification import MacroF1, MultilabelMacroF1, classification_metrics
from nlpkit.metrics.frames import FrameAccuracy
from nlpkit.metrics.spans import SpanF1

__all__ = ["FrameAccuracy", "MacroF1", "MultilabelMacroF1", "SpanF1", "classification_metrics"]
