"""Per-token softmax output for tagging: cross-entropy over real tokens, argmax decoding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class WordSoftmaxOutput(nn.Module):
    """Each token's tag is predicted independently.

    ``loss(emissions [B, T, L], tags [B, T], mask [B, T]) -> scalar`` (mean over real tokens);
    ``decode(emissions, mask) -> [B, T]`` tag ids (0 at padding); ``scores -> [B, T, L]`` probabilities.

    Args:
        num_labels: number of tags (injected).
        label_smoothing: cross-entropy label smoothing.
        label_names, tag_scheme: injected; unused here (accepted so outputs are interchangeable).
    """

    def __init__(
        self,
        num_labels: int,
        label_smoothing: float = 0.0,
        label_names: Sequence[str] | None = None,
        tag_scheme: str = "BIO",
    ):
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
