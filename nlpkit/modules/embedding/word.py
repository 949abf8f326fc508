"""Trainable word embedding, optionally initialised from a word2vec/GloVe text file."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from nlpkit.modules.base import TokenEmbedding

log = logging.getLogger(__name__)


def read_vectors(path: str | Path, wanted: set[str], dim: int) -> dict[str, torch.Tensor]:
    """Vectors for the ``wanted`` words from a word2vec/GloVe text file (header line optional).

    A word matches exactly, or failing that case-insensitively (first such line wins).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretrained embeddings file not found")
    found: dict[str, torch.Tensor] = {}
    exact: set[str] = set()
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header: "<count> <dim>"
            if len(parts) != dim + 1:
                raise ValueError(
                    f"{path}:{number}: expected a word and {dim} numbers (embed_dim), got {len(parts) - 1} numbers"
                )
            word = parts[0]
            if word in wanted and word not in exact:
                found[word] = torch.tensor([float(x) for x in parts[1:]])
                exact.add(word)
            elif word.lower() in wanted and word.lower() not in found:
                found[word.lower()] = torch.tensor([float(x) for x in parts[1:]])
    return found


class WordEmbedding(TokenEmbedding):
    """Lookup table over the featurizer's vocabulary; the padding row stays zero.

    Args:
        vocab_size: number of rows (from the featurizer).
        embed_dim: width of each vector.
        padding_idx: id of ``<pad>``.
        pretrained_path: word2vec/GloVe text file to initialise known words from (others random).
        freeze: keep the vectors fixed (only meaningful with ``pretrained_path``).
        vocab: tokens in id order; needed to look words up in ``pretrained_path``.
        word_dropout: in training, replace each (non-padding) token by ``<unk>`` with this
            probability, so the ``<unk>`` vector is learnt and the model leans less on single words.
        unk_idx: id of ``<unk>`` (needed for ``word_dropout``).
    """

    #: tensors whose rows are vocabulary ids: a transfer from another run copies them word by word
    vocab_rows = ("embedding.weight",)

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 200,
        padding_idx: int = 0,
        pretrained_path: str | None = None,
        freeze: bool = False,
        vocab: Sequence[str] | None = None,
        word_dropout: float = 0.0,
        unk_idx: int | None = None,
    ):
        super().__init__()
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), got {word_dropout}")
        if word_dropout and unk_idx is None:
            raise ValueError("WordEmbedding: word_dropout needs unk_idx")
        self.word_dropout = word_dropout
        self.unk_idx = unk_idx
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.output_dim = embed_dim
        self.coverage: float | None = None
        if pretrained_path:
            if vocab is None:
                raise ValueError("WordEmbedding: pretrained_path needs the vocabulary (vocab=...)")
            self.load_pretrained(pretrained_path, vocab)
        self.embedding.weight.requires_grad_(not (freeze and pretrained_path))

    @torch.no_grad()
    def load_pretrained(self, path: str | Path, vocab: Sequence[str]) -> float:
        """Copy vectors for known words (exact match, then case-insensitive); return and log coverage."""
        vectors = read_vectors(path, set(vocab) | {w.lower() for w in vocab}, self.output_dim)
        hits = 0
        for index, word in enumerate(vocab):
            if index == self.embedding.padding_idx:
                continue
            vector = vectors.get(word, vectors.get(word.lower()))
            if vector is not None:
                self.embedding.weight[index] = vector
                hits += 1
        self.coverage = hits / max(1, len(vocab) - 1)
        log.info(
            "pretrained embeddings %s: %d of %d words found (%.1f%% coverage)",
            path,
            hits,
            len(vocab) - 1,
            100 * self.coverage,
        )
        return self.coverage

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.training and self.word_dropout > 0.0:
            drop = torch.rand(tokens.shape, device=tokens.device) < self.word_dropout
            drop &= tokens != self.embedding.padding_idx
            tokens = tokens.masked_fill(drop, self.unk_idx)
        return self.embedding(tokens)  # [B, T] -> [B, T, embed_dim]

    def input_example(self, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """Export example: ``tokens [B, max(lengths)]``, distinct ids from 2 up, padding after each row."""
        batch, steps = len(lengths), int(lengths.max())
        ids = (2 + torch.arange(batch * steps).view(batch, steps)).clamp(
            max=self.embedding.num_embeddings - 1
        )
        real = torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)
        return {"tokens": torch.where(real, ids, self.embedding.padding_idx or 0)}
