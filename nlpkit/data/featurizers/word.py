"""``featurizer=word``: one position per whitespace token, with its word id, characters and casing class.

The word-level tasks' featurizer (``tagging``, ``intent_slot``), and document classification's with
``task=doc_cls featurizer=word``. A text is split on whitespace (``str.split()``); a dataset's token
list is taken as it is, each token getting exactly one word id (so the tokens that carry tags never
change). Word ids come from an HF ``tokenizers`` WordLevel vocabulary (``tokenizer.json``; lowercased
with ``lowercase``); characters keep their case (``chars.json``); the casing class is fixed and
data-independent (:func:`nlpkit.data.token_features.word_shape`). The ONNX export rebuilds all three
in the graph (:mod:`nlpkit.export.word_graph`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nlpkit.data.batching import pad_sequences
from nlpkit.data.constraints import at_least
from nlpkit.data.featurizer import Featurizer
from nlpkit.data.featurizers.base import Features, TextFeaturizer
from nlpkit.data.inputs import length_sorted_chunks
from nlpkit.data.token_features import NUM_SHAPES, CharVocab, WordEncoder, train_word_featurizer, word_shape
from nlpkit.registry import register_featurizer

TOKENIZER_FILE = "tokenizer.json"
CHARS_FILE = "chars.json"


@dataclass
class WordConfig:
    """``data.featurizer`` of ``featurizer=word`` (no splitting beyond whitespace, no truncation).

    lowercase: lowercase before the vocabulary lookup (characters and casing features keep the case).
    min_freq: a word seen fewer times than this in training maps to ``<unk>``.
    max_vocab: keep at most this many entries (specials included), most frequent first.
    max_word_length: characters kept per token for character features.
    """

    name: str = "word"
    lowercase: bool = True
    min_freq: int = field(default=1, metadata=at_least(0))
    max_vocab: int = field(default=100_000, metadata=at_least(3))  # <pad>, <unk> and one word
    max_word_length: int = field(default=20, metadata=at_least(1))


@register_featurizer
class WordFeaturizer(TextFeaturizer):
    """``encode(text or tokens) -> {"tokens": [n], "chars": [n, C], "shapes": [n]}``;
    ``collate -> {"tokens": [B, T], "lengths": [B], "chars": [B, T, C], "shapes": [B, T]}``.

    ``tokenizer`` is the word vocabulary (``tokenizer.json``), ``chars`` the character vocabulary.
    A text without tokens encodes to zero positions: the predictors give it no prediction (training
    data never has one: readers refuse blank texts).
    """

    name = "word"
    config_class = WordConfig
    files = (TOKENIZER_FILE, CHARS_FILE)
    per_token = True
    size_names = (*TextFeaturizer.size_names, "num_chars", "num_shapes")

    def __init__(self, tokenizer: Featurizer, chars: CharVocab):
        self.tokenizer = tokenizer
        self.chars = chars
        self.words = WordEncoder(tokenizer)

    @classmethod
    def train(cls, inputs: Iterable[str | Sequence[str]], config: WordConfig) -> WordFeaturizer:
        """One pass over ``inputs`` (texts are split on whitespace): the word vocabulary is trained
        while the characters are counted, so a streamed training file is read once."""
        counts: Counter = Counter()

        def token_lists() -> Iterator[Sequence[str]]:
            for item in inputs:
                tokens = _tokens(item)
                for token in tokens:
                    counts.update(token)
                yield tokens

        tokenizer = train_word_featurizer(token_lists(), config)
        chars = CharVocab(sorted(counts, key=lambda ch: (-counts[ch], ch)), config.max_word_length)
        return cls(tokenizer, chars)

    @classmethod
    def load(cls, directory: str | Path) -> WordFeaturizer:
        directory = Path(directory)
        return cls(Featurizer.load(directory / TOKENIZER_FILE), CharVocab.load(directory / CHARS_FILE))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.tokenizer.save(directory / TOKENIZER_FILE)
        self.chars.save(directory / CHARS_FILE)

    def encode(self, item: str | Sequence[str]) -> Features:
        tokens = _tokens(item)
        char_lists = [self.chars.encode(token) for token in tokens]
        width = max(map(len, char_lists), default=1)
        chars = torch.full((len(tokens), width), CharVocab.PAD_ID, dtype=torch.long)  # [n, C]
        for row, ids in enumerate(char_lists):
            chars[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return {
            "tokens": torch.tensor(self.words.encode(tokens), dtype=torch.long),  # [n]
            "chars": chars,
            "shapes": torch.tensor([word_shape(token) for token in tokens], dtype=torch.long),  # [n]
        }

    def collate(self, items: Sequence[Features]) -> dict[str, torch.Tensor]:
        tokens, lengths = pad_sequences([item["tokens"] for item in items], self.pad_id)
        shapes, _ = pad_sequences([item["shapes"] for item in items], 0)
        width = max(item["chars"].size(1) for item in items)
        chars = torch.full((len(items), tokens.size(1), width), CharVocab.PAD_ID, dtype=torch.long)
        for row, item in enumerate(items):
            chars[row, : item["chars"].size(0), : item["chars"].size(1)] = item["chars"]
        return {"tokens": tokens, "lengths": lengths, "chars": chars, "shapes": shapes}

    def batches(
        self, sentences: Sequence[Sequence[str]], batch_size: int
    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """``(indices, batch)`` over the non-empty ``sentences`` (token lists), ``batch_size`` at a time,
        shortest first (``length_sorted_chunks``): what every word-level predictor runs its model on (an
        empty one has nothing to score)."""
        present = [i for i, tokens in enumerate(sentences) if len(tokens)]
        for chunk in length_sorted_chunks([len(sentences[i]) for i in present], batch_size):
            rows = [present[j] for j in chunk]
            yield rows, self.collate([self.encode(list(sentences[i])) for i in rows])

    def sizes(self, fresh: bool = False) -> dict:
        return {**super().sizes(fresh), "num_chars": len(self.chars), "num_shapes": NUM_SHAPES}


def _tokens(item: str | Sequence[str]) -> list[str]:
    """A text's whitespace tokens (``str.split()``, what the ONNX graph reproduces), or a token list."""
    return item.split() if isinstance(item, str) else list(item)
