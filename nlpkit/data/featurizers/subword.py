"""``featurizer=subword``: an HF ``tokenizers`` WordLevel tokenizer that splits punctuation from words.

Document classification's default. The text is normalized (optionally lowercased), split on
whitespace and, with ``split_punctuation``, runs of punctuation are split from words; each piece is
one vocabulary id (``<unk>`` when unseen), truncated to ``max_length``. The tokenizer lives in
``tokenizer.json`` (:mod:`nlpkit.data.featurizer`), which ``python -m nlpkit.export`` rebuilds inside the
ONNX graph. It re-splits text, so it cannot featurize a word-level task's token lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nlpkit.data.batching import pad_sequences
from nlpkit.data.constraints import at_least
from nlpkit.data.featurizer import Featurizer
from nlpkit.data.featurizers.base import Features, TextFeaturizer
from nlpkit.registry import register_featurizer

TOKENIZER_FILE = "tokenizer.json"


@dataclass
class SubwordConfig:
    """``data.featurizer`` of ``featurizer=subword``: how raw text becomes token ids.

    lowercase: apply Unicode lowercasing (``İ`` becomes ``i``) before splitting.
    split_punctuation: split runs of punctuation from words (HF ``Whitespace`` pre-tokenizer,
        ``\\w+|[^\\w\\s]+``); when false, split on whitespace only.
    min_freq: a word seen fewer times than this in training maps to ``<unk>``.
    max_vocab: keep at most this many entries (specials included), most frequent first.
    max_length: truncate encodings to this many tokens.
    """

    name: str = "subword"
    lowercase: bool = True
    split_punctuation: bool = True
    min_freq: int = field(default=1, metadata=at_least(0))
    max_vocab: int = field(default=100_000, metadata=at_least(3))  # <pad>, <unk> and one word
    max_length: int = field(default=128, metadata=at_least(1))  # 0 would train on empty inputs


@register_featurizer
class SubwordFeaturizer(TextFeaturizer):
    """``encode(text) -> {"tokens": [n]}``; ``collate -> {"tokens": [B, T], "lengths": [B]}``.

    A text whose encoding is empty (nothing but characters the normalizer drops) becomes ``[<unk>]``.
    """

    name = "subword"
    config_class = SubwordConfig
    files = (TOKENIZER_FILE,)
    per_token = False

    def __init__(self, tokenizer: Featurizer):
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, inputs: Iterable[str | Sequence[str]], config: SubwordConfig) -> SubwordFeaturizer:
        return cls(Featurizer.train((_text(item) for item in inputs), config))

    @classmethod
    def load(cls, directory: str | Path) -> SubwordFeaturizer:
        return cls(Featurizer.load(Path(directory) / TOKENIZER_FILE))

    def save(self, directory: str | Path) -> None:
        self.tokenizer.save(Path(directory) / TOKENIZER_FILE)

    def encode(self, item: str | Sequence[str]) -> Features:
        return self.encode_batch([item])[0]

    def encode_batch(self, items: Sequence[str | Sequence[str]]) -> list[Features]:
        """Batch-encoded in Rust (the training split is encoded this way, once)."""
        ids = self.tokenizer.encode_batch([_text(item) for item in items])
        return [{"tokens": torch.tensor(row, dtype=torch.long)} for row in ids]

    def collate(self, items: Sequence[Features]) -> dict[str, torch.Tensor]:
        tokens, lengths = pad_sequences([item["tokens"] for item in items], self.pad_id)
        return {"tokens": tokens, "lengths": lengths}

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.tokenize(text)


def _text(item: str | Sequence[str]) -> str:
    if isinstance(item, str):
        return item
    raise TypeError(
        "featurizer=subword encodes raw text, not token lists: it re-splits text (use featurizer=word "
        "for one feature per dataset token)"
    )
