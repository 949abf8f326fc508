"""Joint intent-slot model (PyText paper, Figure 3).

One shared token encoder (``WordTagger.encode``: embedding + BiLSTM) feeds two heads:

* the document head pools the per-token states (self-attention by default) and an MLP gives the
  intent logits ``[B, I]``;
* the word head is the tagger's own (``decoder`` -> ``output``, softmax or CRF) over the same states,
  giving slot emissions ``[B, T, L]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nlpkit.errors import ConfigError
from nlpkit.models.word_tagger import WordTagger, build_component, build_word_tagger, sequence_mask


class IntentSlotModel(WordTagger):
    """``forward(tokens, lengths, chars, shapes) -> (intent_logits [B, I], emissions [B, T, L])``.

    ``decode`` gives ``(intent probabilities [B, I], slot tag ids [B, T])``.
    """

    def __init__(
        self,
        embedding: nn.Module,
        representation: nn.Module,
        decoder: nn.Module,
        output: nn.Module,
        pooling: nn.Module,
        doc_decoder: nn.Module,
        doc_output: nn.Module,
    ):
        super().__init__(embedding, representation, decoder, output)
        self.pooling = pooling
        self.doc_decoder = doc_decoder
        self.doc_output = doc_output

    def forward(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        chars: torch.Tensor | None = None,
        shapes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        states, mask = self.encode(tokens, lengths, chars, shapes)
        intent_logits = self.doc_decoder(self.pooling(states, mask))  # [B, I]
        return intent_logits, self.decoder(states)  # [B, T, L]

    def decode(
        self,
        tokens: torch.Tensor,
        lengths: torch.Tensor,
        chars: torch.Tensor | None = None,
        shapes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        intent_logits, emissions = self(tokens, lengths, chars, shapes)
        return self.doc_output.scores(intent_logits), self.output.decode(
            emissions, sequence_mask(tokens, lengths)
        )


def build_intent_slot_model(
    model_cfg,
    *,
    vocab_size: int,
    pad_id: int,
    num_chars: int,
    num_shapes: int,
    label_names: Sequence[str],
    intent_names: Sequence[str],
    tag_scheme: str,
    vocab: Sequence[str] | None = None,
) -> IntentSlotModel:
    """The word tagger's components (``embedding``, ``representation``, ``decoder``, ``output``) plus
    ``pooling``, ``doc_decoder`` and ``doc_output``, each sized from the previous ``output_dim``."""
    missing = [key for key in ("pooling", "doc_decoder", "doc_output") if not model_cfg.get(key)]
    if missing:
        raise ConfigError(
            f"task=intent_slot needs model.{missing[0]} (the document head); use model=joint_bilstm or add "
            f"{', '.join('model.' + k for k in missing)}"
        )
    tagger = build_word_tagger(
        model_cfg,
        vocab_size=vocab_size,
        pad_id=pad_id,
        num_chars=num_chars,
        num_shapes=num_shapes,
        label_names=label_names,
        tag_scheme=tag_scheme,
        vocab=vocab,
    )
    pooling = build_component(model_cfg.pooling, {"input_dim": tagger.representation.output_dim})
    doc_decoder = build_component(
        model_cfg.doc_decoder, {"input_dim": pooling.output_dim, "output_dim": len(intent_names)}
    )
    doc_output = build_component(model_cfg.doc_output, {"num_labels": len(intent_names)})
    return IntentSlotModel(
        tagger.embedding,
        tagger.representation,
        tagger.decoder,
        tagger.output,
        pooling,
        doc_decoder,
        doc_output,
    )
