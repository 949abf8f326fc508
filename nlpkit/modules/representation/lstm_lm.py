"""Stacked unidirectional LSTM for language models: per-token states, and a hidden state to carry on."""

from __future__ import annotations

import torch
from torch import nn

from nlpkit.modules.base import Seq2SeqEncoder

#: ``(h, c)``, each ``[num_layers, B, hidden_dim]``
State = tuple[torch.Tensor, torch.Tensor]


class StackedLSTMLanguageEncoder(Seq2SeqEncoder):
    """``forward(x [B, T, D], mask [B, T]) -> [B, T, hidden_dim]`` from a zero state; ``run(x, mask,
    state)`` also takes and returns the state ``(h, c)`` so truncated BPTT can carry it across batches.

    Left to right only (a token's state sees only the tokens before it and itself), so the states can
    predict the next word. Dropout on the input, between layers (``nn.LSTM``'s) and on the output
    (Zaremba et al. 2014). Padding sits at the end of a row, so it never changes a real token's state;
    its states are zeroed.

    Args:
        input_dim: embedding width (injected).
        hidden_dim: LSTM state size.
        num_layers: stacked layers.
        dropout: on the embeddings, between layers and on the output states.
    """

    def __init__(self, input_dim: int, hidden_dim: int = 200, num_layers: int = 2, dropout: float = 0.2):
        super().__init__()
        self.input_dim = input_dim
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            input_dim, hidden_dim, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.output_dim = hidden_dim

    def zero_state(self, batch_size: int, like: torch.Tensor) -> State:
        shape = (self.num_layers, batch_size, self.hidden_dim)
        return like.new_zeros(shape), like.new_zeros(shape)

    def run(
        self, x: torch.Tensor, mask: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """``(states [B, T, H], (h, c))``: the final state after the last column (carried on only by
        stream batches, whose rows have no padding except the split's very end)."""
        if state is None:
            state = self.zero_state(x.size(0), x)
        out, state = self.lstm(self.dropout(x), state)  # [B, T, H]
        out = self.dropout(out) * mask.unsqueeze(-1).to(out.dtype)
        return out, state

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.run(x, mask)[0]
