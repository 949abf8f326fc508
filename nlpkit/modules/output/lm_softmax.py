"""Language-model output layers: the next word's log-probability, full or adaptive softmax."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from nlpkit.modules.base import LMOutputLayer


class AdaptiveSoftmaxOutput(LMOutputLayer):
    """``torch.nn.AdaptiveLogSoftmaxWithLoss`` (Grave et al. 2017): frequent words in a head, rare ones
    in smaller clusters, so a large vocabulary stays affordable on CPU; ``cutoffs: []`` is a full softmax
    (one ``Linear``). Ids are frequency-ordered by the word vocabulary, as the adaptive softmax needs.

    Tying (``tie_to``): only the full softmax has a ``[vocab_size, D]`` matrix to share with the input
    embedding (and only when ``D`` equals the embedding width); the adaptive softmax's head holds the
    shortlist *and* the cluster logits in one matrix, and its tails project down first, so tying it is
    refused rather than approximated.

    Args:
        input_dim: state width (injected).
        vocab_size: words (injected).
        cutoffs: cluster boundaries, e.g. ``[2000, 10000]``; those at or above ``vocab_size`` are dropped.
        div_value: each cluster's projection shrinks by this factor.
    """

    def __init__(
        self, input_dim: int, vocab_size: int, cutoffs: list[int] | None = None, div_value: float = 4.0
    ):
        super().__init__()
        self.input_dim = input_dim
        self.num_labels = vocab_size
        self.output_dim = vocab_size
        self.cutoffs = [int(c) for c in (cutoffs or []) if 0 < int(c) < vocab_size - 1]
        if self.cutoffs != sorted(set(self.cutoffs)):
            raise ValueError(f"cutoffs must be increasing, got {list(cutoffs or [])}")
        if self.cutoffs:
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(
                input_dim, vocab_size, self.cutoffs, div_value=div_value
            )
            self.linear = None
        else:
            self.adaptive = None
            self.linear = nn.Linear(input_dim, vocab_size)

    def tie_to(self, weight: nn.Parameter) -> None:
        if self.linear is None:
            raise ValueError(
                "tied embeddings need a full softmax (output.cutoffs=[]): the adaptive softmax has no "
                "[vocab_size, dim] matrix to share"
            )
        if tuple(weight.shape) != tuple(self.linear.weight.shape):
            raise ValueError(
                f"tied embeddings need the embedding width ({weight.size(1)}) to equal the LSTM's "
                f"hidden_dim ({self.input_dim})"
            )
        self.linear.weight = weight

    def log_probs(self, states: torch.Tensor) -> torch.Tensor:
        """The full next-word distribution ``[N, vocab_size]`` (log-probabilities)."""
        if self.adaptive is not None:
            return self.adaptive.log_prob(states)
        return F.log_softmax(self.linear(states), dim=-1)

    def target_log_probs(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.adaptive is not None:
            return self.adaptive(states, targets).output  # [N], without the full distribution
        return self.log_probs(states).gather(1, targets.unsqueeze(1)).squeeze(1)
