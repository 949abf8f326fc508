"""The pieces of ``featurizer=word`` (``nlpkit.data.featurizers.word``): one word id per token,
character ids, casing.

Word ids come from an HF ``tokenizers`` WordLevel tokenizer (the same ``Featurizer`` class and
``tokenizer.json`` artifact as document classification) whose pre-tokenizer splits on whitespace
only, and dataset tokens are looked up one by one: each token gets exactly one id, so sub-word or
punctuation splitting never changes which tokens carry tags. Characters keep their case (the word
vocabulary may be lowercased); the casing class is a fixed, data-independent feature.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer

from nlpkit.data.featurizer import DOTTED_CAPITAL_I, PAD, UNK, Featurizer
from nlpkit.errors import ArtifactError
from nlpkit.utils.io import write_json


def train_word_featurizer(token_lists: Iterable[Sequence[str]], config) -> Featurizer:
    """A WordLevel tokenizer over whitespace-free dataset tokens (specials ``<pad>``, ``<unk>``);
    ``config``: ``nlpkit.data.featurizers.word.WordConfig``."""
    tokenizer = Tokenizer(WordLevel(unk_token=UNK))
    # The document featurizer's normalization (no NFC; U+0130 -> i before lowercasing), which an
    # ONNX graph reproduces.
    steps = [normalizers.Replace(DOTTED_CAPITAL_I, "i"), normalizers.Lowercase()] if config.lowercase else []
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = WordLevelTrainer(
        vocab_size=config.max_vocab,
        min_frequency=config.min_freq,
        special_tokens=[PAD, UNK],
        show_progress=False,
    )
    specials = {PAD, UNK}
    normalize = tokenizer.normalizer.normalize_str
    texts = (" ".join(t for t in tokens if normalize(t) not in specials) for tokens in token_lists)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    # <pad>/<unk> stay plain vocabulary entries, not "added tokens" matched in raw text (as in
    # nlpkit.data.featurizer): a literal "<pad>" token in the data is then just an unknown word.
    spec = json.loads(tokenizer.to_str())
    spec["added_tokens"] = []
    return Featurizer(Tokenizer.from_str(json.dumps(spec)))


class WordEncoder:
    """Maps each token to exactly one id with the tokenizer's normalizer and vocabulary."""

    def __init__(self, featurizer: Featurizer):
        self.featurizer = featurizer
        self.vocab = featurizer.tokenizer.get_vocab()
        self.normalizer = featurizer.tokenizer.normalizer
        self._cache: dict[str, int] = {}

    def normalize(self, token: str) -> str:
        """The vocabulary key of ``token`` (the tokenizer's normalizer, e.g. lowercasing)."""
        return self.normalizer.normalize_str(token) if self.normalizer is not None else token

    def key_id(self, key: str) -> int:
        """The id of an already normalized key (``normalize``)."""
        found = self.vocab.get(key, self.featurizer.unk_id)
        # a literal "<pad>" in the data is an unknown word
        return self.featurizer.unk_id if found == self.featurizer.pad_id else found

    def word_id(self, token: str) -> int:
        found = self._cache.get(token)
        if found is None:
            found = self._cache[token] = self.key_id(self.normalize(token))
        return found

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.word_id(token) for token in tokens]


class CharVocab:
    """Characters seen in training (``<pad>`` = 0, ``<unk>`` = 1), saved as ``chars.json``."""

    PAD_ID = 0
    UNK_ID = 1

    def __init__(self, chars: Sequence[str], max_word_length: int = 20):
        self.chars = list(chars)
        self.max_word_length = int(max_word_length)
        self.index = {ch: i + 2 for i, ch in enumerate(self.chars)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], max_word_length: int = 20) -> CharVocab:
        counts: Counter = Counter()
        for tokens in token_lists:
            for token in tokens:
                counts.update(token)
        return cls(sorted(counts, key=lambda ch: (-counts[ch], ch)), max_word_length)

    def __len__(self) -> int:
        return len(self.chars) + 2

    def encode(self, token: str) -> list[int]:
        return [self.index.get(ch, self.UNK_ID) for ch in token[: self.max_word_length]] or [self.UNK_ID]

    def save(self, path: str | Path) -> None:
        write_json(path, {"chars": self.chars, "max_word_length": self.max_word_length})

    @classmethod
    def load(cls, path: str | Path) -> CharVocab:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(data["chars"], data["max_word_length"])
        except FileNotFoundError as err:
            raise ArtifactError(f"{path}: character vocabulary not found") from err
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ArtifactError(f"{path}: not a valid character vocabulary ({err})") from err


# Casing classes (Collobert et al. 2011; Lample et al. 2016); id 0 is padding.
SHAPES = ("<pad>", "lower", "upper", "title", "mixed", "numeric", "has_digit", "punct", "other")
NUM_SHAPES = len(SHAPES)


def word_shape(token: str) -> int:
    """Casing class id of a token (fixed, data-independent)."""
    if token.isdigit():
        return SHAPES.index("numeric")
    if any(ch.isdigit() for ch in token):
        return SHAPES.index("has_digit")
    if not any(ch.isalnum() for ch in token):
        return SHAPES.index("punct")
    letters = [ch for ch in token if ch.isalpha()]
    if not letters:
        return SHAPES.index("other")
    if all(ch.islower() for ch in letters):
        return SHAPES.index("lower")
    if all(ch.isupper() for ch in letters):
        return SHAPES.index("upper")
    if letters[0].isupper() and all(ch.islower() for ch in letters[1:]):
        return SHAPES.index("title")
    return SHAPES.index("mixed")
