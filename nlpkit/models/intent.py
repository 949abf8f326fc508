"""Intent model: the document head of the joint intent-slot model, without the word head.

Token embedding (word + characters + casing) -> per-token BiLSTM -> pooling -> MLP -> intent logits.
Its parts carry the same names as ``IntentSlotModel``'s (``embedding``, ``representation``,
``pooling``, ``doc_decoder``, ``doc_output``), so a multi-task run can share any of them by name with
a joint intent-slot or a tagging sub-task.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nlpkit.errors import ConfigError
from nlpkit.models.word_tagger import build_component, encode_tokens


class IntentModel(nn.Module):
    """``forward(tokens [B, T], lengths [B], chars [B, T, C], shapes [B, T]) -> intent logits [B, I]``.

    ``decode`` gives intent probabilities ``[B, I]``.
    """

    def __init__(
        self,
        embedding: nn.Module,
        representation: nn.Module,
        pooling: nn.Module,
        doc_decoder: nn.Module,
        doc_output: nn.Module,
    ):
        super().__init__()
        self.embedding = embedding
        self.representation = representation
        self.pooling = pooling
        self.doc_decoder = doc_decoder
        self.doc_output = doc_output

    def forward(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        chars: torch.Tensor | None = None,
        shapes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        states, mask = encode_tokens(self.embedding, self.representation, tokens, lengths, chars, shapes)
        return self.doc_decoder(self.pooling(states, mask))  # [B, I]

    def decode(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        chars: torch.Tensor | None = None,
        shapes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.doc_output.scores(self(tokens, lengths, chars, shapes))


def build_intent_model(
    model_cfg,
    *,
    vocab_size: int,
    pad_id: int,
    num_chars: int,
    num_shapes: int,
    intent_names: Sequence[str],
    vocab: Sequence[str] | None = None,
) -> IntentModel:
    """``embedding``, ``representation``, ``pooling``, ``doc_decoder`` and ``doc_output`` from the model
    config (``model=joint_bilstm`` has them; its word head is not built), each sized from the last."""
    missing = [key for key in ("pooling", "doc_decoder", "doc_output") if not model_cfg.get(key)]
    if missing:
        raise ConfigError(
            f"task=intent needs model.{missing[0]} (the document head); use model=joint_bilstm or add "
            f"{', '.join('model.' + k for k in missing)}"
        )
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
    pooling = build_component(model_cfg.pooling, {"input_dim": representation.output_dim})
    doc_decoder = build_component(
        model_cfg.doc_decoder, {"input_dim": pooling.output_dim, "output_dim": len(intent_names)}
    )
    doc_output = build_component(model_cfg.doc_output, {"num_labels": len(intent_names)})
    return IntentModel(embedding, representation, pooling, doc_decoder, doc_output)
