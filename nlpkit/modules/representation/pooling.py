"""Pool per-token states ``[B, T, D]`` into one vector per document, ignoring padding (seq2vec encoders)."""

from __future__ import annotations

import torch
from torch import nn

from nlpkit.modules.base import Seq2VecEncoder


class MaxPooling(Seq2VecEncoder):
    def __init__(self, input_dim: int):
        super().__init__()
        self.input_dim = self.output_dim = input_dim

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        filled = states.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        return filled.max(dim=1).values  # [B, T, D] -> [B, D]


class MeanPooling(Seq2VecEncoder):
    def __init__(self, input_dim: int):
        super().__init__()
        self.input_dim = self.output_dim = input_dim

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # [B, D]


class LastPooling(Seq2VecEncoder):
    """Final state of each direction: forward half at the last real token, backward half at the first."""

    def __init__(self, input_dim: int, bidirectional: bool = True):
        super().__init__()
        self.input_dim = self.output_dim = input_dim
        self.bidirectional = bidirectional

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        last = (mask.long().sum(1) - 1).clamp(min=0)  # [B]
        index = last.view(-1, 1, 1).expand(-1, 1, states.size(-1))
        at_last = states.gather(1, index).squeeze(1)  # [B, D]
        if not self.bidirectional:
            return at_last
        half = states.size(-1) // 2
        return torch.cat([at_last[:, :half], states[:, 0, half:]], dim=-1)


class SelfAttentionPooling(Seq2VecEncoder):
    """Structured self-attention (Lin et al., 2017): ``A = softmax(w2 tanh(W1 H^T))``, ``M = A H``.

    ``n_hops`` attention distributions are computed and their summaries concatenated.
    """

    def __init__(self, input_dim: int, attention_dim: int = 128, n_hops: int = 1, dropout: float = 0.0):
        super().__init__()
        self.input_dim = input_dim
        self.project = nn.Linear(input_dim, attention_dim, bias=False)
        self.score = nn.Linear(attention_dim, n_hops, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.output_dim = input_dim * n_hops

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(torch.tanh(self.project(self.dropout(states))))  # [B, T, hops]
        scores = scores.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        attention = torch.softmax(scores, dim=1)  # over T
        pooled = torch.einsum("bth,btd->bhd", attention, states)  # [B, hops, D]
        return pooled.flatten(1)  # [B, hops * D]


POOLINGS = ("max", "mean", "last", "self_attention")


def make_pooling(
    name: str,
    input_dim: int,
    *,
    attention_dim: int = 128,
    n_hops: int = 1,
    dropout: float = 0.0,
    bidirectional: bool = True,
) -> Seq2VecEncoder:
    if name == "max":
        return MaxPooling(input_dim)
    if name == "mean":
        return MeanPooling(input_dim)
    if name == "last":
        return LastPooling(input_dim, bidirectional)
    if name == "self_attention":
        return SelfAttentionPooling(input_dim, attention_dim, n_hops, dropout)
    raise ValueError(f"unknown pooling {name!r}; choose one of {', '.join(POOLINGS)}")


class ClsPooling(Seq2VecEncoder):
    """The first position's state (a transformer's ``[CLS]`` piece): ``[B, T, D] -> [B, D]``."""

    def __init__(self, input_dim: int):
        super().__init__()
        self.input_dim = self.output_dim = input_dim

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return states[:, 0]  # [B, D]
