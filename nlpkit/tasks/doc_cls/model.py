"""Document classifier: token embedding -> representation -> decoder -> output layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nlpkit.registry import instantiate


class DocClassifier(nn.Module):
    """``forward(tokens [B, T], lengths [B]) -> logits [B, num_labels]``.

    The output layer holds the loss and turns logits into scores and predictions; it has no
    parameters of its own in the built-in choices, but it may.
    """

    def __init__(
        self, embedding: nn.Module, representation: nn.Module, decoder: nn.Module, output: nn.Module
    ):
        super().__init__()
        self.embedding = embedding
        self.representation = representation
        self.decoder = decoder
        self.output = output

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0) < lengths.unsqueeze(
            1
        )  # [B, T]
        embedded = self.embedding(tokens)  # [B, T, E]
        document = self.representation(embedded, mask)  # [B, R]
        return self.decoder(document)  # [B, num_labels]


def build_doc_classifier(
    model_cfg,
    *,
    vocab_size: int,
    pad_id: int,
    num_labels: int,
    unk_id: int | None = None,
    vocab: Sequence[str] | None = None,
) -> DocClassifier:
    """Instantiate each component from its config node, sizing each from the previous ``output_dim``.

    ``vocab`` is only needed to initialise pretrained embeddings; pass ``None`` when the weights
    will come from a checkpoint anyway.
    """
    embedding_kwargs = {"vocab_size": vocab_size, "padding_idx": pad_id}
    if "word_dropout" in model_cfg.embedding:
        embedding_kwargs["unk_idx"] = unk_id
    if model_cfg.embedding.get("pretrained_path"):
        if vocab is None:
            embedding_kwargs["pretrained_path"] = None  # weights come from the checkpoint
        else:
            embedding_kwargs["vocab"] = list(vocab)
    embedding = instantiate(model_cfg.embedding, "model.embedding", **embedding_kwargs)
    representation = instantiate(
        model_cfg.representation, "model.representation", input_dim=embedding.output_dim
    )
    decoder = instantiate(
        model_cfg.decoder, "model.decoder", input_dim=representation.output_dim, output_dim=num_labels
    )
    output = instantiate(model_cfg.output, "model.output", num_labels=num_labels)
    return DocClassifier(embedding, representation, decoder, output)
