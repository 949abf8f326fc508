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
