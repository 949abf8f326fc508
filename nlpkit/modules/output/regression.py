"""Regression output: one real value per document, mean squared error."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from nlpkit.modules.base import ValueOutputLayer
from nlpkit.modules.exportable import Decoding


class RegressionOutput(ValueOutputLayer):
    """The decoder's single output ``[B, 1]`` is the prediction; the loss is MSE (or Huber with
    ``huber_delta``, less swayed by outlying targets)."""

    def __init__(self, num_labels: int = 1, huber_delta: float | None = None):
        super().__init__()
        if num_labels != 1:
            raise ValueError(f"RegressionOutput predicts one value; got num_labels={num_labels}")
        self.huber_delta = huber_delta
        self.output_dim = 1

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        predicted = logits.squeeze(-1)  # [B]
        if self.huber_delta is not None:
            return F.huber_loss(predicted, targets, delta=self.huber_delta)
        return F.mse_loss(predicted, targets)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.squeeze(-1)  # [B]

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.squeeze(-1)

    def onnx_decoding(self) -> Decoding:
        """Export hook: the value is the network's output as it is."""
        return Decoding("value")
