"""Joint intent-slot model (PyText paper, Figure 3).

One shared token encoder (``WordTagger.encode``: embedding + BiLSTM) feeds two heads:

* the document head pools the per-token states (self-attention by default) and an MLP gives the
  intent logits ``[B, I]``;
* the word head is the tagger's own (``decoder`` -> ``output``, softmax or CRF) over the same states,
  giving slot emissions ``[B, T, L]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nlpkit.tasks.tagging.model import WordTagger, build_document_head, build_word_tagger


class IntentSlotModel(WordTagger):
    """``forward(batch) -> {"intent_logits": [B, I], "emissions": [B, T, L], "mask": [B, T]}``.

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
        word_pieces: bool = False,
    ):
        super().__init__(embedding, representation, decoder, output, word_pieces)
        self.pooling = pooling
        self.doc_decoder = doc_decoder
        self.doc_output = doc_output

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        states, mask = self.encode(batch)
        intent_logits = self.doc_decoder(self.pooling(states, mask))  # [B, I]
        return {"intent_logits": intent_logits, "emissions": self.decoder(states), "mask": mask}

    def decode(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self(batch)
        return self.doc_output.scores(outputs["intent_logits"]), self.output.decode(
            outputs["emissions"], outputs["mask"]
        )

    export_outputs = ("intent_scores", "emissions")

    def forward_for_export(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_example()``'s tensors -> ``intent_scores [B, I]``, ``emissions [B, T, L]``."""
        outputs = self(self.export_batch(inputs))
        return self.doc_output.scores(outputs["intent_logits"]), outputs["emissions"]


def build_intent_slot_model(
    model_cfg,
    *,
    label_names: Sequence[str],
    intent_names: Sequence[str],
    tag_scheme: str,
    **encoder_sizes,
) -> IntentSlotModel:
    """The word tagger's components (``embedding``, ``representation``, ``decoder``, ``output``) plus
    the document head (``pooling``, ``doc_decoder``, ``doc_output``), each sized from the previous
    ``output_dim``; ``encoder_sizes`` as for :func:`~nlpkit.tasks.tagging.model.build_token_encoder`."""
    tagger = build_word_tagger(model_cfg, label_names=label_names, tag_scheme=tag_scheme, **encoder_sizes)
    head = build_document_head(model_cfg, tagger.representation.output_dim, intent_names, "intent_slot")
    return IntentSlotModel(
        tagger.embedding, tagger.representation, tagger.decoder, tagger.output, *head, tagger.word_pieces
    )
