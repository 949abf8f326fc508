"""A user's own package, outside nlpkit: one task and one component, registered by decorator and
picked up with ``imports=[tests.ext_example]`` (no edit to nlpkit). Used by tests/test_registry.py."""

from __future__ import annotations

import torch
from torch import nn

import nlpkit
from nlpkit.tasks.doc_cls import DocClassificationTask


@nlpkit.register_component
class MaxPoolBag(nn.Module):
    """``[B, T, D] -> [B, output_dim]``: max over the real tokens, then ``tanh(W x)`` if ``hidden_dim``."""

    def __init__(self, input_dim: int, hidden_dim: int = 0, dropout: float = 0.0):
        super().__init__()
        self.project = (
            nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.Tanh()) if hidden_dim else nn.Identity()
        )
        self.dropout = nn.Dropout(dropout)
        self.output_dim = hidden_dim or input_dim

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        filled = embedded.masked_fill(~mask.unsqueeze(-1), float("-inf"))  # [B, T, D]
        pooled = filled.max(dim=1).values.clamp(min=-1e4)  # [B, D]; an all-padding row gets -1e4
        return self.dropout(self.project(pooled))


@nlpkit.register_task
class ExampleDocTask(DocClassificationTask):
    """Document classification under its own task name: the smallest task a user's package can add."""

    name = "example_doc"
