"""Bag of embeddings: the mean of the token vectors, optionally through one non-linear layer.

A fastText-style baseline that trains in seconds; also the worked example in the README of how a
new component is one Python file plus one YAML file.
"""

from __future__ import annotations

import torch
from torch import nn

from nlpkit.modules.base import Seq2VecEncoder


class BagOfEmbeddings(Seq2VecEncoder):
    """``[B, T, D] -> [B, output_dim]``: masked mean over tokens, then ``tanh(W x)`` if ``hidden_dim``."""

    def __init__(self, input_dim: int, hidden_dim: int = 0, dropout: float = 0.0):
        super().__init__()
        self.input_dim = input_dim
        self.project = (
            nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.Tanh()) if hidden_dim else nn.Identity()
        )
        self.dropout = nn.Dropout(dropout)
        self.output_dim = hidden_dim or input_dim

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.unsqueeze(-1).to(embedded.dtype)  # [B, T, 1]
        mean = (embedded * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # [B, D]
        return self.dropout(self.project(mean))
