"""Padding masks shared by models and components."""

from __future__ import annotations

import torch


def sequence_mask(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` bool, true at real tokens (``tokens [B, T, ...]``, ``lengths [B]``)."""
    return torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0) < lengths.unsqueeze(1)
