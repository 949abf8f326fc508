"""Bidirectional LSTM encoder and the document representation built on it (paper Figure 1)."""

from __future__ import annotations

import torch
from torch import nn

from nlpkit.modules.base import Seq2SeqEncoder, Seq2VecEncoder
from nlpkit.modules.representation.pooling import make_pooling


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence within its own length; padding positions stay where they are.

    ``x [B, T, D]``. Expressed as a gather so it exports to ONNX and runs the same at any padding.
    """
    steps = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # [1, T]
    lengths = lengths.unsqueeze(1)  # [B, 1]
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # [B, T]
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


def _run_lstm(lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """``lstm(x)`` states; in float32 under CPU autocast (``trainer.precision=bf16-mixed``): oneDNN has
    no bf16 LSTM on CPUs without native bf16 support and fails there. The rest still runs in bf16."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return lstm(x.float())[0]
    return lstm(x)[0]


class BiLSTM(Seq2SeqEncoder):
    """Stacked bidirectional LSTM emitting per-token states ``[B, T, 2 * hidden_dim]``.

    The backward direction runs over each sequence reversed within its own length instead of over
    packed sequences: results do not depend on how much padding a batch has, and the module exports
    to ONNX as plain LSTM + gather nodes.
    """

    def __init__(self, input_dim: int, hidden_dim: int = 200, num_layers: int = 2, dropout: float = 0.4):
        super().__init__()
        self.input_dim = input_dim
        self.forward_layers = nn.ModuleList()
        self.backward_layers = nn.ModuleList()
        for layer in range(num_layers):
            layer_input = input_dim if layer == 0 else 2 * hidden_dim
            self.forward_layers.append(nn.LSTM(layer_input, hidden_dim, batch_first=True))
            self.backward_layers.append(nn.LSTM(layer_input, hidden_dim, batch_first=True))
        self.dropout = nn.Dropout(dropout)
        self.output_dim = 2 * hidden_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.long().sum(1)
        for index, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if index > 0:
                x = self.dropout(x)
            forward_states = _run_lstm(fwd, x)  # [B, T, H]
            backward_states = _run_lstm(bwd, reverse_padded(x, lengths))
            x = torch.cat([forward_states, reverse_padded(backward_states, lengths)], dim=-1)  # [B, T, 2H]
        return x * mask.unsqueeze(-1).to(x.dtype)  # padding states zeroed


class BiLSTMRepresentation(Seq2VecEncoder):
    """BiLSTM over the embedded tokens, pooled into one document vector.

    Args:
        input_dim: embedding width (from the token embedding's ``output_dim``).
        hidden_dim: LSTM state size per direction.
        num_layers: stacked BiLSTM layers.
        dropout: on the embeddings, between layers and before pooling.
        pooling: one of ``max``, ``mean``, ``last``, ``self_attention``.
        attention_dim: hidden size of the self-attention scorer.
        attention_hops: number of self-attention distributions.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 200,
        num_layers: int = 2,
        dropout: float = 0.4,
        pooling: str = "self_attention",
        attention_dim: int = 128,
        attention_hops: int = 1,
    ):
        super().__init__()
        self.input_dim = input_dim
        self.dropout = nn.Dropout(dropout)
        self.encoder = BiLSTM(input_dim, hidden_dim, num_layers, dropout)
        self.pooling = make_pooling(
            pooling,
            self.encoder.output_dim,
            attention_dim=attention_dim,
            n_hops=attention_hops,
            dropout=dropout,
        )
        self.output_dim = self.pooling.output_dim

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(self.dropout(embedded), mask)  # [B, T, 2H]
        return self.dropout(self.pooling(states, mask))  # [B, output_dim]
