"""``featurizer=ngram``: ``subword``'s word ids with each adjacent pair's bigram id between them.

fastText's recipe (Joulin et al. 2017, "Bag of Tricks"): a bag of word and word-bigram embeddings
is a strong, very cheap text classifier. The encoding of ``n`` words is ``u1 b12 u2 b23 ... un``
(``2n - 1`` ids): ``ui`` is the word's id in ``tokenizer.json`` (exactly ``subword``'s, so truncation,
lowercasing and the empty-text ``[<unk>]`` are the same), ``bij`` the id of the pair of word ids
``(ui, uj)`` in ``ngrams.json``, the bigrams seen at least ``min_ngram_freq`` times in training
(``<unk-bigram>`` for any other pair). Bigram ids follow the word ids, so one ``embedding=word`` of
``vocab_size`` rows embeds both, and ``representation=bag`` averages them: ``model=fasttext``.

Keyed by word *ids*, not strings: a pair of out-of-vocabulary words is the bigram ``(<unk>, <unk>)``,
and the ONNX graph (:mod:`nlpkit.export.front_ends`) computes the key from the ids it already has.
The interleaved order keeps every real id before the padding, so ``lengths`` still marks them; a
sequence encoder over it would read words and bigrams alternately, which only a bag is meant for.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nlpkit.data.constraints import at_least
from nlpkit.data.featurizer import Featurizer
from nlpkit.data.featurizers.base import Features
from nlpkit.data.featurizers.subword import TOKENIZER_FILE, SubwordConfig, SubwordFeaturizer, _text
from nlpkit.errors import ArtifactError
from nlpkit.registry import register_featurizer
from nlpkit.utils.io import write_text

NGRAMS_FILE = "ngrams.json"
NGRAMS_FORMAT = "nlpkit-bigrams 1"
UNK_BIGRAM = "<unk-bigram>"


@dataclass
class NgramConfig(SubwordConfig):
    """``data.featurizer`` of ``featurizer=ngram``: ``subword``'s options plus the bigram vocabulary's.

    min_ngram_freq: a word-id pair seen fewer times than this in training is ``<unk-bigram>``.
    max_ngrams: keep at most this many bigrams, most frequent first (ties: first seen).
    """

    name: str = "ngram"
    min_ngram_freq: int = field(default=2, metadata=at_least(1))
    max_ngrams: int = field(default=500_000, metadata=at_least(0))


@register_featurizer
class NgramFeaturizer(SubwordFeaturizer):
    """``encode(text) -> {"tokens": [2n - 1]}`` (words and bigrams interleaved); ``collate`` as
    ``subword``'s. ``vocab_size`` counts words, ``<unk-bigram>`` and the bigrams."""

    name = "ngram"
    config_class = NgramConfig
    files = (TOKENIZER_FILE, NGRAMS_FILE)

    def __init__(self, tokenizer: Featurizer, bigrams: Sequence[tuple[int, int]]):
        super().__init__(tokenizer)
        self.words = tokenizer.vocab_size
        #: word-id pairs in bigram-id order; pair i has id ``unk_bigram_id + 1 + i``
        self.bigrams = [tuple(pair) for pair in bigrams]
        self.bigram_ids = {
            self.key(a, b): self.unk_bigram_id + 1 + i for i, (a, b) in enumerate(self.bigrams)
        }

    @property
    def unk_bigram_id(self) -> int:
        return self.words

    def key(self, first: int, second: int) -> int:
        """One int64 per word-id pair (what the graph's ``LabelEncoder`` looks up)."""
        return first * self.words + second

    @classmethod
    def train(cls, inputs: Iterable[str | Sequence[str]], config: NgramConfig) -> NgramFeaturizer:
        texts = [_text(item) for item in inputs]
        tokenizer = Featurizer.train(texts, config)
        counts: Counter[tuple[int, int]] = Counter()
        for ids in tokenizer.encode_batch(texts):
            counts.update(zip(ids, ids[1:]))
        kept = [pair for pair, n in counts.most_common() if n >= config.min_ngram_freq]
        return cls(tokenizer, kept[: config.max_ngrams])

    @classmethod
    def load(cls, directory: str | Path) -> NgramFeaturizer:
        directory = Path(directory)
        tokenizer = Featurizer.load(directory / TOKENIZER_FILE)
        path = directory / NGRAMS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ArtifactError(f"{path}: missing (featurizer=ngram keeps its bigrams there)") from err
        except (OSError, ValueError) as err:
            raise ArtifactError(f"{path}: not readable JSON ({err})") from err
        if not isinstance(data, dict) or data.get("format") != NGRAMS_FORMAT:
            raise ArtifactError(f"{path}: not an nlpkit bigram vocabulary (format {NGRAMS_FORMAT!r})")
        bigrams = data.get("bigrams")
        words = tokenizer.vocab_size
        if data.get("words") != words:
            raise ArtifactError(f"{path}: made for {data.get('words')} words, tokenizer.json has {words}")
        if not isinstance(bigrams, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(i, int) and 0 <= i < words for i in p)
            for p in bigrams
        ):
            raise ArtifactError(f"{path}: 'bigrams' must be a list of [word_id, word_id] pairs")
        return cls(tokenizer, bigrams)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        super().save(directory)
        payload = {"format": NGRAMS_FORMAT, "words": self.words, "bigrams": [list(p) for p in self.bigrams]}
        write_text(directory / NGRAMS_FILE, json.dumps(payload, separators=(",", ":")))

    def with_bigrams(self, ids: Sequence[int]) -> list[int]:
        """Word ids -> ``u1 b12 u2 ... un``."""
        out = [ids[0]]
        for first, second in zip(ids, ids[1:]):
            out.append(self.bigram_ids.get(self.key(first, second), self.unk_bigram_id))
            out.append(second)
        return out

    def encode_batch(self, items: Sequence[str | Sequence[str]]) -> list[Features]:
        rows = self.tokenizer.encode_batch([_text(item) for item in items])
        return [{"tokens": torch.tensor(self.with_bigrams(ids), dtype=torch.long)} for ids in rows]

    @property
    def vocab_size(self) -> int:
        return self.words + 1 + len(self.bigrams)

    @property
    def vocab(self) -> list[str]:
        """Words, ``<unk-bigram>``, then each bigram as ``"first second"``, in id order."""
        words = self.tokenizer.vocab
        return [*words, UNK_BIGRAM, *(f"{words[a]} {words[b]}" for a, b in self.bigrams)]
