"""MLP decoder: hidden layers, then a projection to one logit per label."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nlpkit.modules.base import Decoder

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}


class MLPDecoder(Decoder):
    """``input_dim -> hidden_dims... -> output_dim``, with activation and dropout after each hidden layer.

    Args:
        input_dim: representation width.
        output_dim: number of logits (the number of labels).
        hidden_dims: widths of the hidden layers; empty for a single linear projection.
        dropout: after each hidden activation.
        activation: one of ``relu``, ``tanh``, ``gelu``, ``silu``.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        hidden_dims: Sequence[int] = (128,),
        dropout: float = 0.0,
        activation: str = "relu",
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        layers: list[nn.Module] = []
        width = input_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, output_dim))
        self.layers = nn.Sequential(*layers)
        self.input_dim = input_dim
        self.output_dim = output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # [B, input_dim] -> [B, output_dim]
