"""Word tagger: token embedding -> per-token representation -> word-level head -> CRF/softmax output.

The pieces are the ones a joint intent-slot or multi-task model shares: ``WordTagger.encode`` gives
per-token states from the shared embedding + BiLSTM, ``WordTagger.emissions`` the word-level scores.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from hydra.utils import get_class, instantiate
from torch import nn

from nlpkit.modules.embedding.concat import embed_inputs

RESERVED = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def sequence_mask(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` bool, true at real tokens."""
    return torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0) < lengths.unsqueeze(1)


def encode_tokens(
    embedding: nn.Module,
    representation: nn.Module,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    chars: torch.Tensor | None = None,
    shapes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The shared token encoder of every word-level model: per-token states ``[B, T, D]`` and the mask."""
    mask = sequence_mask(tokens, lengths)
    embedded = embed_inputs(embedding, {"tokens": tokens, "chars": chars, "shapes": shapes})
    return representation(embedded, mask), mask


class WordTagger(nn.Module):
    """``forward(tokens [B, T], lengths [B], chars [B, T, C], shapes [B, T]) -> emissions [B, T, L]``.

    ``chars``/``shapes`` are needed only when the embedding reads them. ``decode`` returns tag ids.
    """

    def __init__(
        self, embedding: nn.Module, representation: nn.Module, decoder: nn.Module, output: nn.Module
    ):
        super().__init__()
        self.embedding = embedding
        self.representation = representation
        self.decoder = decoder
        self.output = output

    def encode(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        chars: torch.Tensor | None = None,
        shapes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token states ``[B, T, D]`` and the mask ``[B, T]``."""
        return encode_tokens(self.embedding, self.representation, tokens, lengths, chars, shapes)

    def forward(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        chars: torch.Tensor | None = None,
        shapes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        states, _ = self.encode(tokens, lengths, chars, shapes)
        return self.decoder(states)  # [B, T, L]

    def decode(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        chars: torch.Tensor | None = None,
        shapes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Best tag ids ``[B, T]`` (0 at padding)."""
        emissions = self(tokens, lengths, chars, shapes)
        return self.output.decode(emissions, sequence_mask(tokens, lengths))


def build_component(node, available: Mapping[str, Any]) -> nn.Module:
    """Instantiate ``node``, passing only those ``available`` values its class accepts.

    A node with ``components`` (``ConcatEmbedding``) has each component built the same way first.
    """
    cls = get_class(str(node._target_))
    params = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in available.items() if k in params and k not in node}
    if "components" in node and "components" in params:
        children = {
            name: build_component(child, available)
            for name, child in node.components.items()
            if child is not None
        }
        rest = {k: node[k] for k in node if k not in RESERVED and k != "components"}
        return cls(components=children, **rest, **kwargs)
    if not node.get("pretrained_path"):
        kwargs.pop("vocab", None)  # only pretrained vectors need the vocabulary
    elif available.get("vocab") is None:
        kwargs["pretrained_path"] = None  # restoring: the weights come from the checkpoint
    return instantiate(node, **kwargs)


def build_word_tagger(
    model_cfg,
    *,
    vocab_size: int,
    pad_id: int,
    num_chars: int,
    num_shapes: int,
    label_names: Sequence[str],
    tag_scheme: str,
    vocab: Sequence[str] | None = None,
) -> WordTagger:
    """Build each component from its config node, sizing each from the previous ``output_dim``.

    ``vocab`` is only needed to initialise pretrained word vectors; pass ``None`` when restoring.
    """
    scheme = "BIO" if tag_scheme == "IOB1" else str(tag_scheme)
    embedding = build_component(
        model_cfg.embedding,
        {
            "vocab_size": vocab_size,
            "padding_idx": pad_id,
            "vocab": list(vocab) if vocab is not None else None,
            "num_chars": num_chars,
            "num_shapes": num_shapes,
        },
    )
    representation = build_component(model_cfg.representation, {"input_dim": embedding.output_dim})
    decoder = build_component(
        model_cfg.decoder, {"input_dim": representation.output_dim, "output_dim": len(label_names)}
    )
    output = build_component(
        model_cfg.output,
        {"num_labels": len(label_names), "label_names": list(label_names), "tag_scheme": scheme},
    )
    return WordTagger(embedding, representation, decoder, output)
