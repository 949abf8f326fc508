"""Word tagger: token embedding -> per-token representation -> word-level head -> CRF/softmax output.

The pieces are the ones a joint intent-slot or multi-task model shares: ``TokenEncoderModel.encode``
gives per-token states from the shared embedding + BiLSTM; the builders here size each component from
the previous one's ``output_dim``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nlpkit.data.tag_schemes import allowed_transitions
from nlpkit.errors import ConfigError
from nlpkit.modules.base import embed_inputs
from nlpkit.modules.exportable import Exportable
from nlpkit.modules.masking import sequence_mask
from nlpkit.registry import build_component


class TokenEncoderModel(Exportable, nn.Module):
    """Base of every word-level model: ``embedding`` + per-token ``representation``.

    A batch holds ``tokens [B, T]``, ``lengths [B]`` and, when the embedding reads them, ``chars [B, T, C]``
    and ``shapes [B, T]``. Subclasses add heads over :meth:`encode`'s states; a multi-task run shares
    the two modules between models by name.
    """

    def __init__(self, embedding: nn.Module, representation: nn.Module):
        super().__init__()
        self.embedding = embedding
        self.representation = representation

    def encode(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token states ``[B, T, D]`` and the mask ``[B, T]`` of a batch (``tokens [B, T]``,
        ``lengths [B]``, and the inputs the embedding reads: ``chars [B, T, C]``, ``shapes [B, T]``)."""
        mask = sequence_mask(batch["tokens"], batch["lengths"])
        embedded = embed_inputs(self.embedding, batch)  # [B, T, E]
        return self.representation(embedded, mask), mask


class WordTagger(TokenEncoderModel):
    """``forward(batch) -> {"emissions": [B, T, L], "mask": [B, T]}``; ``decode(batch)`` returns tag ids.

    ``batch`` holds ``tokens [B, T]``, ``lengths [B]`` and the inputs the embedding reads
    (``chars [B, T, C]``, ``shapes [B, T]``)."""

    def __init__(
        self, embedding: nn.Module, representation: nn.Module, decoder: nn.Module, output: nn.Module
    ):
        super().__init__(embedding, representation)
        self.decoder = decoder
        self.output = output

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        states, mask = self.encode(batch)
        return {"emissions": self.decoder(states), "mask": mask}  # emissions [B, T, L]

    def decode(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Best tag ids ``[B, T]`` (0 at padding)."""
        outputs = self(batch)
        return self.output.decode(outputs["emissions"], outputs["mask"])

    export_outputs = ("emissions",)

    def forward_for_export(self, *inputs: torch.Tensor) -> torch.Tensor:
        """``input_example()``'s tensors, in its order -> ``emissions [B, T, L]``; the output layer's
        ``onnx_decoding`` (argmax or Viterbi) turns them into tags in the graph."""
        return self(self.export_batch(inputs))["emissions"]


def build_token_encoder(model_cfg, **sizes) -> tuple[nn.Module, nn.Module]:
    """``(embedding, representation)`` from the model config, the representation sized from the
    embedding's ``output_dim``. ``sizes``: the featurizer's (``TextFeaturizer.sizes``: ``vocab_size``,
    ``padding_idx``, ``unk_idx``, ``num_chars``, ``num_shapes``, and ``vocab``, which only initialises
    pretrained word vectors: ``None`` when restoring)."""
    vocab = sizes.get("vocab")
    embedding = build_component(
        model_cfg.embedding, {**sizes, "vocab": list(vocab) if vocab is not None else None}, "model.embedding"
    )
    representation = build_component(
        model_cfg.representation, {"input_dim": embedding.output_dim}, "model.representation"
    )
    return embedding, representation


def build_word_tagger(
    model_cfg,
    *,
    label_names: Sequence[str],
    tag_scheme: str,
    **encoder_sizes,
) -> WordTagger:
    """The token encoder (``encoder_sizes``: see :func:`build_token_encoder`), then ``decoder`` and
    ``output``, each sized from the previous ``output_dim``."""
    scheme = "BIO" if tag_scheme == "IOB1" else str(tag_scheme)
    embedding, representation = build_token_encoder(model_cfg, **encoder_sizes)
    decoder = build_component(
        model_cfg.decoder, {"input_dim": representation.output_dim, "output_dim": len(label_names)}
    )
    output = build_component(
        model_cfg.output,
        # each output takes what its signature asks for (build_component): a CRF its allowed transitions
        {
            "num_labels": len(label_names),
            "allowed_transitions": allowed_transitions(list(label_names), scheme),
        },
    )
    return WordTagger(embedding, representation, decoder, output)


def build_document_head(
    model_cfg, input_dim: int, intent_names: Sequence[str], task: str
) -> tuple[nn.Module, nn.Module, nn.Module]:
    """``(pooling, doc_decoder, doc_output)``: per-token states ``[B, T, input_dim]`` -> intent scores.

    A model config without them (a plain tagger preset) is a ``ConfigError`` naming ``task``.
    """
    missing = [key for key in ("pooling", "doc_decoder", "doc_output") if not model_cfg.get(key)]
    if missing:
        raise ConfigError(
            f"task={task} needs model.{missing[0]} (the document head); use model=joint_bilstm or add "
            f"{', '.join('model.' + k for k in missing)}"
        )
    pooling = build_component(model_cfg.pooling, {"input_dim": input_dim})
    doc_decoder = build_component(
        model_cfg.doc_decoder,
        {"input_dim": pooling.output_dim, "output_dim": len(intent_names), "label_names": list(intent_names)},
    )
    doc_output = build_component(model_cfg.doc_output, {"num_labels": len(intent_names)})
    return pooling, doc_decoder, doc_output
