"""Single-label output: softmax cross-entropy, argmax prediction."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from nlpkit.modules.base import DocOutputLayer
from nlpkit.modules.exportable import Decoding


class SoftmaxOutput(DocOutputLayer):
    """Cross-entropy over ``num_labels`` classes (optional label smoothing)."""

    multilabel = False

    def __init__(self, num_labels: int, label_smoothing: float = 0.0):
        super().__init__()
        self.num_labels = num_labels
        self.label_smoothing = label_smoothing
        self.output_dim = num_labels

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)

    def onnx_decoding(self) -> Decoding:
        """Export hook: the label is the argmax of the scores."""
        return Decoding("argmax")
