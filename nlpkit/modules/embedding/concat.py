"""Concatenation of token embeddings (e.g. word + character CNN + casing) into one vector per token.

Each component declares the batch inputs it reads (``input_keys``: word ids, character ids or casing
classes), so components combine freely; the concatenation reads the union of their keys.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from nlpkit.modules.base import TokenEmbedding, embed_inputs
from nlpkit.modules.exportable import embedding_example

__all__ = ["ConcatEmbedding", "embed_inputs"]  # embed_inputs: lives in nlpkit.modules.base, kept here


class ConcatEmbedding(TokenEmbedding):
    """``forward(tokens [B, T], chars [B, T, C], shapes [B, T]) -> [B, T, sum of widths]``: the inputs
    are those ``input_keys`` names (the components' keys, in first-seen order), e.g. only ``tokens,
    chars`` without a shape component.

    Args:
        components: name -> built embedding module (the model builder instantiates them from
            ``model.embedding.components``; a component set to ``null`` there is left out).
    """

    components_kind = "embedding"

    def __init__(self, components: Mapping[str, nn.Module]):
        super().__init__()
        if not components:
            raise ValueError("ConcatEmbedding needs at least one component")
        self.components = nn.ModuleDict(dict(components))
        self.output_dim = sum(int(module.output_dim) for module in self.components.values())
        keys = [
            key for module in self.components.values() for key in getattr(module, "input_keys", ("tokens",))
        ]
        self.input_keys = tuple(dict.fromkeys(keys))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.input_keys, inputs))
        return torch.cat([embed_inputs(module, named) for module in self.components.values()], dim=-1)

    def input_example(self, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """Export example: every component's own (``nlpkit.modules.exportable``)."""
        return {
            k: v for module in self.components.values() for k, v in embedding_example(module, lengths).items()
        }
