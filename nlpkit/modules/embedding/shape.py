"""Casing/shape feature embedding: one small vector per casing class (lower, UPPER, Title, digits, ...).

The word vocabulary is usually lowercased; this gives the model the case back cheaply (Collobert et
al., 2011). Classes are computed by ``nlpkit.data.token_features.word_shape``; id 0 is padding.
"""

from __future__ import annotations

import torch
from torch import nn

from nlpkit.modules.base import TokenEmbedding


class ShapeEmbedding(TokenEmbedding):
    """``forward(shapes [B, T]) -> [B, T, embed_dim]``.

    Args:
        num_shapes: number of casing classes (from the data; injected).
        embed_dim: width of each class vector.
    """

    input_keys = ("shapes",)

    def __init__(self, num_shapes: int, embed_dim: int = 8):
        super().__init__()
        self.embedding = nn.Embedding(num_shapes, embed_dim, padding_idx=0)
        self.output_dim = embed_dim

    def forward(self, shapes: torch.Tensor) -> torch.Tensor:
        return self.embedding(shapes)

    def input_example(self, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """Export example: ``shapes [B, max(lengths)]``, classes from 1 up, padding 0."""
        batch, steps = len(lengths), int(lengths.max())
        classes = 1 + torch.arange(batch * steps).view(batch, steps) % max(
            1, self.embedding.num_embeddings - 1
        )
        real = torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)
        return {"shapes": torch.where(real, classes, 0)}
