"""Document classifier: token embedding -> representation [-> pooling] -> decoder -> output layer.

``representation`` is either a sequence-to-vector encoder (``bilstm`` with its own pooling, ``docnn``,
``bag``) and there is no ``pooling``, or a per-token encoder (``token_bilstm``, ``bseqcnn``) followed by
``model.pooling`` (e.g. ``SelfAttentionPooling``): ``model=pooled_bilstm``. The second shape has the
same ``embedding`` and ``representation`` as the word-level tasks' models, so a multi-task run can
share them by name between a doc_cls sub-task and a tagging or intent_slot one.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nlpkit.errors import ConfigError
from nlpkit.modules.base import embed_inputs
from nlpkit.modules.exportable import Exportable
from nlpkit.modules.kinds import kind_of
from nlpkit.modules.masking import sequence_mask
from nlpkit.registry import build_component, resolve_target

#: the sizes a featurizer may provide (``TextFeaturizer.sizes``) beyond the word vocabulary's, and
#: what they describe, for the error when an embedding reads an input the featurizer does not make
FEATURE_SIZES = {"num_chars": "characters", "num_shapes": "casing classes"}


class DocClassifier(Exportable, nn.Module):
    """``forward(batch) -> {"logits": [B, num_labels]}``.

    ``batch`` holds ``tokens [B, T]``, ``lengths [B]`` and whatever else the embedding reads (``chars``,
    ``shapes`` from the word featurizer). ``pooling`` (``None`` for a sequence-to-vector
    representation) turns per-token states into one vector per document. The output layer holds the
    loss and turns logits into scores and predictions.
    """

    def __init__(
        self,
        embedding: nn.Module,
        representation: nn.Module,
        decoder: nn.Module,
        output: nn.Module,
        pooling: nn.Module | None = None,
    ):
        super().__init__()
        self.embedding = embedding
        self.representation = representation
        self.pooling = pooling
        self.decoder = decoder
        self.output = output

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mask = sequence_mask(batch["tokens"], batch["lengths"])  # [B, T]
        embedded = embed_inputs(self.embedding, batch)  # [B, T, E]
        encoded = self.representation(embedded, mask)  # [B, R], or [B, T, R] before pooling
        document = self.pooling(encoded, mask) if self.pooling is not None else encoded  # [B, R']
        return {"logits": self.decoder(document)}  # [B, num_labels]

    def scores(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Per-label probabilities ``[B, num_labels]`` (softmax, or sigmoid for multi-label)."""
        return self.output.scores(self(batch)["logits"])

    export_outputs = ("scores",)

    def forward_for_export(self, *inputs: torch.Tensor) -> torch.Tensor:
        """``input_example()``'s tensors, in its order -> ``scores [B, num_labels]``; the output layer's
        ``onnx_decoding`` turns them into labels in the graph."""
        return self.scores(self.export_batch(inputs))


def _missing_features(node: Any, sizes: Mapping[str, Any], where: str) -> tuple[str, str] | None:
    """``(component path, size)`` of the first embedding component needing a size the featurizer does
    not provide (a character CNN under ``featurizer=subword``), or ``None``."""
    if node is None or "_target_" not in node:
        return None
    params = inspect.signature(resolve_target(str(node._target_), where)).parameters
    for size in FEATURE_SIZES:
        param = params.get(size)
        if (
            param is not None
            and param.default is inspect.Parameter.empty
            and size not in node
            and size not in sizes
        ):
            return where, size
    for name, child in (node.get("components") or {}).items():
        found = _missing_features(child, sizes, f"{where}.components.{name}")
        if found:
            return found
    return None


def pools(model_cfg) -> bool:
    """Whether the model has a pooling step: ``model.pooling`` is set and the representation is a
    per-token (seq2seq) encoder. A sequence-to-vector representation pools by itself, and a
    ``model.pooling`` beside it is not built (a multi-task sub-task bringing its own seq2vec encoder
    under a top-level ``joint_bilstm`` inherits one), as a task leaves the other model keys it has no
    slot for."""
    representation = model_cfg.get("representation")
    target = representation.get("_target_") if representation is not None else None
    if model_cfg.get("pooling") is None or not target:
        return False
    return kind_of(resolve_target(str(target), "model.representation")) == "seq2seq"


def check_embedding_inputs(model_cfg, provided: Sequence[str], featurizer: str) -> None:
    """``ConfigError`` when ``model.embedding`` reads an input the featurizer does not make (a character
    CNN under ``featurizer=subword``); ``provided``: the size names the featurizer gives."""
    missing = _missing_features(model_cfg.embedding, dict.fromkeys(provided), "model.embedding")
    if missing:
        where, size = missing
        raise ConfigError(
            f"{where} reads {FEATURE_SIZES[size]}, which featurizer={featurizer} does not make: use "
            "featurizer=word, or an embedding without that part (e.g. embedding=word)"
        )


def build_doc_classifier(
    model_cfg,
    *,
    num_labels: int,
    featurizer: str = "subword",
    label_names: Sequence[str] | None = None,
    **sizes: Any,
) -> DocClassifier:
    """Build each component from its config node, sizing each from the previous ``output_dim``.

    ``sizes``: the featurizer's (``TextFeaturizer.sizes``: ``vocab_size``, ``padding_idx``, ``unk_idx``,
    ``num_chars`` ...; ``vocab`` only initialises pretrained embeddings and is ``None`` when the weights
    come from a checkpoint). ``featurizer`` names it in the error for an embedding it cannot feed.
    ``label_names`` (the label vocabulary, in id order) is offered to the decoder, for one that reads
    the labels themselves (``decoder=composed``).
    """
    check_embedding_inputs(model_cfg, list(sizes), featurizer)
    vocab = sizes.get("vocab")
    embedding = build_component(
        model_cfg.embedding, {**sizes, "vocab": list(vocab) if vocab is not None else None}, "model.embedding"
    )
    representation = build_component(
        model_cfg.representation, {"input_dim": embedding.output_dim}, "model.representation"
    )
    pooling = None
    if pools(model_cfg):
        pooling = build_component(
            model_cfg.pooling, {"input_dim": representation.output_dim}, "model.pooling"
        )
    document_dim = (pooling or representation).output_dim
    decoder_sizes = {"input_dim": document_dim, "output_dim": num_labels}
    if label_names is not None:
        decoder_sizes["label_names"] = list(label_names)
    decoder = build_component(model_cfg.decoder, decoder_sizes, "model.decoder")
    output = build_component(model_cfg.output, {"num_labels": num_labels}, "model.output")
    return DocClassifier(embedding, representation, decoder, output, pooling)
