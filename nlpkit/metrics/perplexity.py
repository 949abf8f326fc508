"""Perplexity as the language-modelling literature computes it: over a whole split, every token."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class Perplexity(Metric):
    """``exp(sum of -log p(token) / number of tokens)`` over every token given to ``update``.

    Two sums (``dist_reduce_fx="sum"``): a multi-process evaluation reduces to exactly the one-process
    value, and no per-batch mean is averaged (batches of different sizes weigh by their tokens).
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("nll_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, log_probs: torch.Tensor, mask: torch.Tensor) -> None:
        """``log_probs [B, T]`` of the targets; ``mask [B, T]`` the real ones."""
        self.nll_sum -= log_probs[mask].double().sum()
        self.tokens += mask.sum()

    def compute(self) -> torch.Tensor:
        return torch.exp(self.nll_sum / self.tokens.clamp(min=1)).float()
