"""Word tagger: token embedding -> per-token representation -> word-level head -> CRF/softmax output.

The pieces are the ones a joint intent-slot or multi-task model shares: ``TokenEncoderModel.encode``
gives per-token states from the shared embedding + BiLSTM; the builders here size each component from
the previous one's ``output_dim``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nlpkit.data.tag_schemes import OUTSIDE, allowed_transitions
from nlpkit.errors import ConfigError
from nlpkit.modules.base import embed_inputs
from nlpkit.modules.exportable import EXAMPLE_LENGTHS, Exportable, embedding_example
from nlpkit.modules.masking import sequence_mask
from nlpkit.registry import build_component


def word_tags(names: Sequence[str], ids: Sequence[int], scored: int, words: int) -> list[str]:
    """A sentence of ``words`` words' tag names: the decoded ``ids`` of the first ``scored``, then
    ``OUTSIDE`` for the words past a piece featurizer's cut."""
    return [names[i] for i in list(ids)[:scored]] + [OUTSIDE] * (words - min(scored, words))


class TokenEncoderModel(Exportable, nn.Module):
    """Base of every word-level model: ``embedding`` + per-token ``representation``.

    A batch holds ``tokens [B, T]``, ``lengths [B]`` and, when the embedding reads them, ``chars [B, T, C]``
    and ``shapes [B, T]``. Subclasses add heads over :meth:`encode`'s states; a multi-task run shares
    the two modules between models by name.

    ``word_pieces``: the featurizer gives sub-word pieces (``featurizer=wordpiece``): ``tokens [B, P]``
    and ``lengths [B]`` are pieces, ``word_starts [B, W]`` each word's first piece and ``word_lengths
    [B]`` the words the pieces reach. The embedding runs over the pieces and each word's state is its
    first piece's (``[B, P, E]`` -> ``[B, W, E]``) before the representation, so everything above it is
    word-level exactly as with ``featurizer=word``.
    """

    def __init__(self, embedding: nn.Module, representation: nn.Module, word_pieces: bool = False):
        super().__init__()
        self.embedding = embedding
        self.representation = representation
        self.word_pieces = bool(word_pieces)

    def encode(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-word states ``[B, T, D]`` and the mask ``[B, T]`` of a batch (``tokens [B, T]``,
        ``lengths [B]``, and the inputs the embedding reads: ``chars [B, T, C]``, ``shapes [B, T]``;
        with ``word_pieces``, ``word_starts [B, W]`` and ``word_lengths [B]``: T = W words)."""
        embedded = embed_inputs(self.embedding, batch)  # [B, T, E] (pieces: [B, P, E])
        if self.word_pieces:
            starts = batch["word_starts"]  # [B, W]
            index = starts.unsqueeze(-1).expand(-1, -1, embedded.size(-1))  # [B, W, E]
            embedded = embedded.gather(1, index)  # [B, W, E]: each word's first piece
            mask = sequence_mask(starts, batch["word_lengths"])  # [B, W]
            embedded = embedded * mask.unsqueeze(-1).to(embedded.dtype)
        else:
            mask = sequence_mask(batch["tokens"], batch["lengths"])
        return self.representation(embedded, mask), mask

    def text_inputs(self) -> list[str]:
        """One text's network inputs: the embedding's, then ``word_starts``, ``word_lengths`` when the
        model reads words at their first piece."""
        names = super().text_inputs()
        return [*names, "word_starts", "word_lengths"] if self.word_pieces else names

    def text_example(self) -> dict[str, torch.Tensor]:
        """``Exportable.text_example``; with ``word_pieces``, rows of ``EXAMPLE_LENGTHS`` pieces between
        ``[CLS]`` and ``[SEP]``: the full row's words of two pieces each, the padded row's of one."""
        if not self.word_pieces:
            return super().text_example()
        lengths = torch.tensor(EXAMPLE_LENGTHS, dtype=torch.long) + 2  # [CLS] ... [SEP]
        example = {"lengths": lengths, **embedding_example(self.embedding, lengths)}
        width = int(EXAMPLE_LENGTHS[0])
        starts = torch.zeros(len(lengths), width, dtype=torch.long)
        kept = []
        for row, n in enumerate(EXAMPLE_LENGTHS):
            columns = list(range(1, n + 1, 2 if row == 0 else 1))
            starts[row, : len(columns)] = torch.tensor(columns)
            kept.append(len(columns))
        example["word_starts"], example["word_lengths"] = starts, torch.tensor(kept)
        return {name: example[name] for name in self.text_inputs()}

    def scored_words(self, batch: Mapping[str, torch.Tensor]) -> list[int]:
        """How many words of each row the model scored (the rest, cut by a piece featurizer's
        ``max_length``, are answered with ``OUTSIDE``)."""
        return batch["word_lengths" if self.word_pieces else "lengths"].tolist()


class WordTagger(TokenEncoderModel):
    """``forward(batch) -> {"emissions": [B, T, L], "mask": [B, T]}``; ``decode(batch)`` returns tag ids.

    ``batch`` holds ``tokens [B, T]``, ``lengths [B]`` and the inputs the embedding reads
    (``chars [B, T, C]``, ``shapes [B, T]``)."""

    def __init__(
        self,
        embedding: nn.Module,
        representation: nn.Module,
        decoder: nn.Module,
        output: nn.Module,
        word_pieces: bool = False,
    ):
        super().__init__(embedding, representation, word_pieces)
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
    sizes.pop("word_pieces", None)
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
    ``output``, each sized from the previous ``output_dim``; ``word_pieces`` (a piece featurizer's size):
    words are read at their first piece (``TokenEncoderModel``)."""
    scheme = "BIO" if tag_scheme == "IOB1" else str(tag_scheme)
    word_pieces = bool(encoder_sizes.get("word_pieces", False))
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
    return WordTagger(embedding, representation, decoder, output, word_pieces)


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
