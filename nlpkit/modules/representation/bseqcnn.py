"""Bidirectional sequential CNN (BSeqCNN; Vu, 2016): a convolutional per-token encoder for tagging.

Each token's state joins two views of its context, each a stack of 1-D convolutions: a *past* view over
the token and the ones before it (causal convolutions, padded on the left) and a *future* view over the
token and the ones after it (padded on the right). With ``num_layers`` layers of width ``context`` a
token sees ``num_layers * (context - 1)`` tokens on each side. It is the word-level alternative to the
BiLSTM: no recurrence, so every position is computed at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nlpkit.modules.base import Seq2SeqEncoder

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class BSeqCNNRepresentation(Seq2SeqEncoder):
    """``forward(embedded [B, T, D], mask [B, T]) -> states [B, T, 2 * num_filters]`` (padding zeroed).

    Positions past a sentence's end are zeroed before every layer, so they look exactly like the
    zero padding of the sentence end itself: a token's state does not depend on its batch's padding.

    Args:
        input_dim: embedding width (injected).
        num_filters: filters per direction and layer.
        context: convolution width (the token and ``context - 1`` neighbours on one side).
        num_layers: stacked convolutions per direction.
        dropout: on the embeddings and after each layer.
        activation: ``relu``, ``tanh`` or ``gelu``.
    """

    def __init__(
        self,
        input_dim: int,
        num_filters: int = 200,
        context: int = 3,
        num_layers: int = 2,
        dropout: float = 0.5,
        activation: str = "relu",
    ):
        super().__init__()
        if context < 1 or num_layers < 1:
            raise ValueError(f"context={context} and num_layers={num_layers} must both be >= 1")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r}: choose one of {', '.join(ACTIVATIONS)}")
        self.input_dim = input_dim
        self.context = context

        def stack() -> nn.ModuleList:
            widths = [input_dim] + [num_filters] * num_layers
            return nn.ModuleList(nn.Conv1d(a, b, context) for a, b in zip(widths, widths[1:]))

        self.past = stack()
        self.future = stack()
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.output_dim = 2 * num_filters

    def _view(self, x: torch.Tensor, convs: nn.ModuleList, keep: torch.Tensor, past: bool) -> torch.Tensor:
        pad = (self.context - 1, 0) if past else (0, self.context - 1)
        for conv in convs:
            x = self.dropout(self.activation(conv(F.pad(x, pad)))) * keep  # [B, F, T]
        return x

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(1).to(embedded.dtype)  # [B, 1, T]
        x = self.dropout(embedded).transpose(1, 2) * keep  # [B, D, T]
        states = torch.cat([self._view(x, self.past, keep, True), self._view(x, self.future, keep, False)], 1)
        return states.transpose(1, 2)  # [B, T, 2F]
