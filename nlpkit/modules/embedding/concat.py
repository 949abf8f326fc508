"""Concatenation of token embeddings (e.g. word + character CNN + casing) into one vector per token.

Each component reads one input named by its ``input_key`` attribute (``tokens`` when it has none:
``WordEmbedding``), so components that see word ids, character ids or casing classes combine freely.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def embed_inputs(module: nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Run a token embedding on the input it reads (``module.input_key``; ``None`` = all inputs)."""
    key = getattr(module, "input_key", "tokens")
    if key is None:
        return module(inputs)
    if key not in inputs or inputs[key] is None:
        raise ValueError(f"{type(module).__name__} needs the {key!r} input, which the model was not given")
    return module(inputs[key])


class ConcatEmbedding(nn.Module):
    """``forward({"tokens": [B, T], "chars": [B, T, C], "shapes": [B, T]}) -> [B, T, sum of widths]``.

    Args:
        components: name -> built embedding module (the model builder instantiates them from
            ``model.embedding.components``; a component set to ``null`` there is left out).
    """

    input_key = None

    def __init__(self, components: Mapping[str, nn.Module]):
        super().__init__()
        if not components:
            raise ValueError("ConcatEmbedding needs at least one component")
        self.components = nn.ModuleDict(dict(components))
        self.output_dim = sum(int(module.output_dim) for module in self.components.values())

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([embed_inputs(module, inputs) for module in self.components.values()], dim=-1)
