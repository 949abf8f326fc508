"""Per-token softmax output for tagging: cross-entropy over real tokens, argmax decoding."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from nlpkit.modules.base import WordOutputLayer
from nlpkit.modules.exportable import Decoding


class WordSoftmaxOutput(WordOutputLayer):
    """Each token's tag is predicted independently.

    ``loss(emissions [B, T, L], tags [B, T], mask [B, T]) -> scalar`` (mean over real tokens);
    ``decode(emissions, mask) -> [B, T]`` tag ids (0 at padding); ``scores -> [B, T, L]`` probabilities.

    Args:
        num_labels: number of tags (injected).
        label_smoothing: cross-entropy label smoothing.
    """

    def __init__(self, num_labels: int, label_smoothing: float = 0.0):
        super().__init__()
        self.num_labels = num_labels
        self.label_smoothing = label_smoothing
        self.output_dim = num_labels

    def loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(emissions[mask], tags[mask], label_smoothing=self.label_smoothing)

    def scores(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(emissions, dim=-1) * mask.unsqueeze(-1).to(emissions.dtype)

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return emissions.argmax(dim=-1) * mask.long()

    def onnx_decoding(self) -> Decoding:
        """Export hook: each token's tag is the argmax of its emissions."""
        return Decoding("argmax")
