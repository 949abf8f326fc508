"""Document classifier: token embedding -> sequence-to-vector encoder -> decoder -> output layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nlpkit.modules.base import embed_inputs
from nlpkit.modules.exportable import Exportable
from nlpkit.modules.masking import sequence_mask
from nlpkit.registry import build_component


class DocClassifier(Exportable, nn.Module):
    """``forward(batch) -> {"logits": [B, num_labels]}``.

    ``batch`` holds ``tokens [B, T]``, ``lengths [B]`` and whatever else the embedding reads (``chars``,
    ``shapes`` from the word featurizer). The output layer holds the loss and turns logits into scores
    and predictions; it has no parameters of its own in the built-in choices, but it may.
    """

    def __init__(
        self, embedding: nn.Module, representation: nn.Module, decoder: nn.Module, output: nn.Module
    ):
        super().__init__()
        self.embedding = embedding
        self.representation = representation
        self.decoder = decoder
        self.output = output

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mask = sequence_mask(batch["tokens"], batch["lengths"])  # [B, T]
        embedded = embed_inputs(self.embedding, batch)  # [B, T, E]
        document = self.representation(embedded, mask)  # [B, R]
        return {"logits": self.decoder(document)}  # [B, num_labels]

    def scores(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Per-label probabilities ``[B, num_labels]`` (softmax, or sigmoid for multi-label)."""
        return self.output.scores(self(batch)["logits"])

    export_outputs = ("scores",)

    def forward_for_export(self, *inputs: torch.Tensor) -> torch.Tensor:
        """``input_example()``'s tensors, in its order -> ``scores [B, num_labels]``; the output layer's
        ``onnx_decoding`` turns them into labels in the graph."""
        return self.scores(self.export_batch(inputs))


def build_doc_classifier(
    model_cfg,
    *,
    vocab_size: int,
    pad_id: int,
    num_labels: int,
    unk_id: int | None = None,
    vocab: Sequence[str] | None = None,
    **feature_sizes: int,
) -> DocClassifier:
    """Build each component from its config node, sizing each from the previous ``output_dim``.

    ``vocab`` is only needed to initialise pretrained embeddings; pass ``None`` when the weights
    will come from a checkpoint anyway. ``feature_sizes`` are the featurizer's other input sizes
    (``num_chars``, ``num_shapes``) for the embeddings that read them.
    """
    embedding = build_component(
        model_cfg.embedding,
        {
            "vocab_size": vocab_size,
            "padding_idx": pad_id,
            "unk_idx": unk_id,
            "vocab": list(vocab) if vocab is not None else None,
            **feature_sizes,
        },
        "model.embedding",
    )
    representation = build_component(
        model_cfg.representation, {"input_dim": embedding.output_dim}, "model.representation"
    )
    decoder = build_component(
        model_cfg.decoder,
        {"input_dim": representation.output_dim, "output_dim": num_labels},
        "model.decoder",
    )
    output = build_component(model_cfg.output, {"num_labels": num_labels}, "model.output")
    return DocClassifier(embedding, representation, decoder, output)
