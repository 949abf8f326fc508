"""Intent model: the document head of the joint intent-slot model, without the word head.

Token embedding (word + characters + casing) -> per-token BiLSTM -> pooling -> MLP -> intent logits.
Its parts carry the same names as ``IntentSlotModel``'s (``embedding``, ``representation``,
``pooling``, ``doc_decoder``, ``doc_output``), so a multi-task run can share any of them by name with
a joint intent-slot or a tagging sub-task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nlpkit.tasks.tagging.model import TokenEncoderModel, build_document_head, build_token_encoder


class IntentModel(TokenEncoderModel):
    """``forward(batch) -> {"intent_logits": [B, I]}``.

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
        super().__init__(embedding, representation)
        self.pooling = pooling
        self.doc_decoder = doc_decoder
        self.doc_output = doc_output

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        states, mask = self.encode(batch)
        return {"intent_logits": self.doc_decoder(self.pooling(states, mask))}  # [B, I]

    def decode(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.doc_output.scores(self(batch)["intent_logits"])

    export_outputs = ("intent_scores",)

    def forward_for_export(self, *inputs: torch.Tensor) -> torch.Tensor:
        """``input_example()``'s tensors -> ``intent_scores [B, I]``."""
        return self.decode(self.export_batch(inputs))


def build_intent_model(model_cfg, *, intent_names: Sequence[str], **encoder_sizes) -> IntentModel:
    """``embedding``, ``representation``, ``pooling``, ``doc_decoder`` and ``doc_output`` from the model
    config (``model=joint_bilstm`` has them; its word head is not built), each sized from the last;
    ``encoder_sizes`` as for :func:`~nlpkit.tasks.tagging.model.build_token_encoder`."""
    embedding, representation = build_token_encoder(model_cfg, **encoder_sizes)
    head = build_document_head(model_cfg, representation.output_dim, intent_names, "intent")
    return IntentModel(embedding, representation, *head)
