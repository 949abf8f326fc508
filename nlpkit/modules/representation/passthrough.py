"""``representation=passthrough``: the embedding's per-token states as they are (with dropout).

For a contextual embedding (``embedding=transformer``) the encoder is already the representation: a
BERT-style tagger puts its linear head straight on the last hidden states (Devlin et al. 2019, NER).
"""

from __future__ import annotations

import torch
from torch import nn

from nlpkit.modules.base import Seq2SeqEncoder


class PassThroughRepresentation(Seq2SeqEncoder):
    """``forward(embedded [B, T, D], mask [B, T]) -> [B, T, D]``: dropout, padding zeroed.

    Args:
        input_dim: embedding width (injected); also the output width.
        dropout: on the states (BERT's 0.1 before the classifier).
    """

    def __init__(self, input_dim: int, dropout: float = 0.1):
        super().__init__()
        self.input_dim = self.output_dim = int(input_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.dropout(embedded) * mask.unsqueeze(-1).to(embedded.dtype)  # [B, T, D]
