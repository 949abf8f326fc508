"""DocNN (Kim, 2014): parallel convolutions of several widths, max over time, concatenated."""

from __future__ import annotations

import torch
from torch import nn

from nlpkit.modules.base import Seq2VecEncoder


class DocNNRepresentation(Seq2VecEncoder):
    """Wide 1-D convolutions over the token embeddings, masked max-over-time pooling.

    Padding embeddings are zeroed and each convolution is "wide" (``k - 1`` zeros on both sides), so
    a document's vector is the same whatever padding its batch adds.

    Args:
        input_dim: embedding width.
        kernel_sizes: convolution widths, one filter bank each.
        num_filters: filters per width.
        dropout: on the embeddings and on the pooled vector.
    """

    def __init__(
        self,
        input_dim: int,
        kernel_sizes: tuple[int, ...] = (3, 4, 5),
        num_filters: int = 100,
        dropout: float = 0.5,
    ):
        super().__init__()
        self.input_dim = input_dim
        self.kernel_sizes = list(kernel_sizes)
        self.convs = nn.ModuleList(
            nn.Conv1d(input_dim, num_filters, k, padding=k - 1) for k in self.kernel_sizes
        )
        self.dropout = nn.Dropout(dropout)
        self.output_dim = num_filters * len(self.kernel_sizes)

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.dropout(embedded) * mask.unsqueeze(-1).to(embedded.dtype)
        x = x.transpose(1, 2)  # [B, D, T]
        lengths = mask.long().sum(1, keepdim=True)  # [B, 1]
        pooled = []
        for k, conv in zip(self.kernel_sizes, self.convs):
            features = torch.relu(conv(x))  # [B, F, T + k - 1]
            positions = torch.arange(features.size(-1), device=x.device).unsqueeze(0)
            valid = (positions < lengths + k - 1).unsqueeze(1)  # [B, 1, T + k - 1]
            pooled.append(features.masked_fill(~valid, float("-inf")).max(dim=-1).values)  # [B, F]
        return self.dropout(torch.cat(pooled, dim=-1))  # [B, F * len(kernel_sizes)]
