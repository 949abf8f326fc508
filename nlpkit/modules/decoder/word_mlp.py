"""Word-level head: the same MLP applied to every token's state, giving per-token tag scores."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nlpkit.modules.base import Decoder
from nlpkit.modules.decoder.mlp import MLPDecoder


class WordMLPDecoder(Decoder):
    """``forward(states [B, T, D]) -> emissions [B, T, output_dim]``.

    Args:
        input_dim: token state width (injected).
        output_dim: number of tags (injected).
        hidden_dims: hidden layer widths; empty for one linear projection.
        dropout: after each hidden activation.
        activation: ``relu``, ``tanh``, ``gelu`` or ``silu``.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        hidden_dims: Sequence[int] = (),
        dropout: float = 0.0,
        activation: str = "relu",
    ):
        super().__init__()
        self.mlp = MLPDecoder(input_dim, output_dim, list(hidden_dims), dropout, activation)
        self.input_dim = input_dim
        self.output_dim = output_dim

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.mlp(states)  # nn.Linear maps the last dimension, token by token
