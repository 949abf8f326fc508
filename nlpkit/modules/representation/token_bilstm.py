"""Per-token BiLSTM encoder for word-level tasks (tagging, and the slot side of joint models)."""

from __future__ import annotations

import torch
from torch import nn

from nlpkit.modules.base import Seq2SeqEncoder
from nlpkit.modules.representation.bilstm import BiLSTM


class TokenBiLSTMRepresentation(Seq2SeqEncoder):
    """``forward(embedded [B, T, D], mask [B, T]) -> states [B, T, 2 * hidden_dim]`` (padding zeroed).

    Reuses the export-friendly ``BiLSTM`` (no packed sequences): a token's states do not depend on
    how much padding its batch has.

    Args:
        input_dim: embedding width (injected).
        hidden_dim: LSTM state size per direction.
        num_layers: stacked BiLSTM layers.
        dropout: on the embeddings, between layers and on the output states.
    """

    def __init__(self, input_dim: int, hidden_dim: int = 200, num_layers: int = 1, dropout: float = 0.5):
        super().__init__()
        self.input_dim = input_dim
        self.dropout = nn.Dropout(dropout)
        self.encoder = BiLSTM(input_dim, hidden_dim, num_layers, dropout)
        self.output_dim = self.encoder.output_dim

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.encoder(self.dropout(embedded), mask))
