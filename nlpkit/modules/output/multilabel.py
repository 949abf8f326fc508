"""Multi-label output: independent sigmoid per label, binary cross-entropy, thresholded prediction."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from nlpkit.modules.base import DocOutputLayer
from nlpkit.modules.exportable import Decoding


class MultiLabelOutput(DocOutputLayer):
    """Each label is on when its sigmoid score reaches ``threshold``."""

    multilabel = True

    def __init__(self, num_labels: int, threshold: float = 0.5):
        super().__init__()
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.num_labels = num_labels
        self.threshold = threshold
        self.output_dim = num_labels

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(logits) >= self.threshold).long()

    def onnx_decoding(self) -> Decoding:
        """Export hook: each label is on when its score reaches the threshold."""
        return Decoding("threshold", {"threshold": float(self.threshold)})
