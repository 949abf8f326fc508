"""Word tagging data: the ``data`` schema for ``task=tagging`` and its LightningDataModule.

A batch is a dict: ``tokens [B, T]`` word ids, ``lengths [B]``, ``chars [B, T, C]`` character ids,
``shapes [B, T]`` casing classes, ``tags [B, T]`` tag ids (0 at padding), and ``gold``: the gold tag
strings per sentence, which is what spans are scored on (so a gold tag unseen in training still
counts as a missed span instead of being dropped).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from nlpkit.data.batching import pad_sequences
from nlpkit.data.config import SplitsConfig, choices
from nlpkit.data.constraints import between, non_empty
from nlpkit.data.featurizer import Featurizer
from nlpkit.data.labels import LabelVocab
from nlpkit.data.splits import SplitDataModule
from nlpkit.data.tag_schemes import SCHEMES
from nlpkit.data.token_features import (
    CharVocab,
    WordEncoder,
    WordFeaturizerConfig,
    train_word_featurizer,
    word_shape,
)
from nlpkit.tasks.tagging.readers import TaggedSentence, read_tagged

log = logging.getLogger(__name__)

#: the files a word-level run directory holds (the tasks built on tagging add their own)
TOKENIZER_FILE = "tokenizer.json"
CHARS_FILE = "chars.json"
LABELS_FILE = "labels.json"
REPORT_FILE = "span_report.json"


@dataclass
class TaggingDataConfig(SplitsConfig):
    """Where word-tagging data is and how it is read, featurized and batched.

    format: ``builtin`` (generated, ``tokens``/``slots`` JSONL), ``jsonl``, ``conll`` (column files),
        ``parallel`` (a directory with ``tokens_file`` and ``tags_file``, one sentence a line).
    train_path/val_path/test_path: split files (directories for ``parallel``); without ``val_path`` a
        seeded ``val_fraction`` of train is held out; without ``test_path`` there is no test evaluation.
    tag_scheme: the files' scheme: ``BIO``, ``IOB1`` (converted to BIO on reading) or ``BIOES``.
    token_column/tag_column: CoNLL column indices (negative counts from the end).
    column_delimiter: CoNLL column separator (default: any whitespace).
    tokens_file/tags_file: file names inside each ``parallel`` split directory.
    tokens_field/tags_field: JSONL field names.
    unk_replace_prob: in training, replace each word seen once in train by ``<unk>`` with this probability.
    on_bad_row: ``error`` stops at the first bad sentence naming file and line; ``skip`` counts and reports.
    """

    format: str = field(default="builtin", metadata=choices("builtin", "jsonl", "conll", "parallel"))
    tag_scheme: str = field(default="BIO", metadata=choices(*SCHEMES))
    token_column: int = 0
    tag_column: int = -1
    column_delimiter: str | None = field(default=None, metadata=non_empty())
    tokens_file: str = "seq.in"
    tags_file: str = "seq.out"
    tokens_field: str = "tokens"
    tags_field: str = "slots"
    unk_replace_prob: float = field(default=0.0, metadata=between(0, 1))
    featurizer: WordFeaturizerConfig = field(default_factory=WordFeaturizerConfig)


@dataclass
class EncodedSentence:
    words: torch.Tensor  # [n]
    chars: torch.Tensor  # [n, longest word]
    shapes: torch.Tensor  # [n]
    tags: torch.Tensor  # [n]
    gold: tuple[str, ...]


class TaggingFeatures:
    """Turns token lists into model inputs; shared by the data module and the predictor."""

    def __init__(self, featurizer: Featurizer, chars: CharVocab):
        self.featurizer = featurizer
        self.chars = chars
        self.words = WordEncoder(featurizer)

    def encode(self, tokens: tuple[str, ...] | list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``words [n]``, ``chars [n, longest word]`` (padded), ``shapes [n]``."""
        char_lists = [self.chars.encode(token) for token in tokens]
        chars = torch.full((len(tokens), max(map(len, char_lists))), CharVocab.PAD_ID, dtype=torch.long)
        for row, ids in enumerate(char_lists):
            chars[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return (
            torch.tensor(self.words.encode(tokens), dtype=torch.long),
            chars,
            torch.tensor([word_shape(token) for token in tokens], dtype=torch.long),
        )

    def batches(
        self, sentences: Sequence[Sequence[str]], batch_size: int
    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """``(indices, batch)`` over the non-empty ``sentences``, ``batch_size`` at a time, in order:
        what every word-level predictor runs its model on (an empty sentence has nothing to score)."""
        order = [i for i, tokens in enumerate(sentences) if len(tokens)]
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            yield chunk, self.collate([self.encode(list(sentences[i])) for i in chunk])

    def collate(
        self, items: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Pad ``(words, chars, shapes)`` triples into ``tokens``, ``lengths``, ``chars``, ``shapes``."""
        tokens, lengths = pad_sequences([words for words, _, _ in items], self.featurizer.pad_id)
        shapes, _ = pad_sequences([shapes for _, _, shapes in items], 0)
        width = max(chars.size(1) for _, chars, _ in items)
        char_ids = torch.full((len(items), tokens.size(1), width), CharVocab.PAD_ID, dtype=torch.long)
        for row, (_, chars, _) in enumerate(items):
            char_ids[row, : chars.size(0), : chars.size(1)] = chars
        return {"tokens": tokens, "lengths": lengths, "chars": char_ids, "shapes": shapes}


class EncodedTagged(Dataset):
    def __init__(self, items: list[EncodedSentence], sentences: list[TaggedSentence]):
        self.items = items
        self.sentences = sentences

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> EncodedSentence:
        return self.items[index]

    @property
    def lengths(self) -> list[int]:
        return [len(item.words) for item in self.items]


def warn_unseen(counts: dict[str, int], what: str) -> None:
    """One warning listing the gold labels of val/test that training never saw, with their counts."""
    if counts:
        log.warning("data: %s: %s", what, ", ".join(f"{name} x{n}" for name, n in sorted(counts.items())))


class TaggingCollator:
    """Pads a batch; in training, replaces singleton words by ``<unk>`` with ``unk_replace_prob``
    (Lample et al., 2016) so the ``<unk>`` vector is trained for the unknown words of test time."""

    def __init__(
        self,
        features: TaggingFeatures,
        singletons: torch.Tensor | None = None,
        unk_replace_prob: float = 0.0,
        seed: int = 0,
    ):
        self.features = features
        self.singletons = singletons  # [vocab] bool, or None
        self.unk_replace_prob = unk_replace_prob
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, items: list[EncodedSentence]) -> dict:
        batch = self.features.collate([(it.words, it.chars, it.shapes) for it in items])
        batch["tags"], _ = pad_sequences([it.tags for it in items], 0)
        batch["gold"] = [it.gold for it in items]
        if self.singletons is not None and self.unk_replace_prob > 0:
            tokens = batch["tokens"]
            draw = torch.rand(tokens.shape, generator=self.generator) < self.unk_replace_prob
            replace = draw & self.singletons[tokens]
            batch["tokens"] = tokens.masked_fill(replace, self.features.featurizer.unk_id)
        return batch


class TaggingDataModule(SplitDataModule):
    """Reads train/val/test with the configured reader and encodes each split once.

    Pass ``featurizer``, ``chars`` and ``labels`` to reuse a trained run's vocabularies; otherwise all
    three are built from the training split.
    """

    unit = "sentences"
    #: pads a list of encoded sentences into a batch (subclasses add fields, e.g. the intent)
    collator_class = TaggingCollator

    def __init__(
        self,
        config,
        featurizer: Featurizer | None = None,
        chars: CharVocab | None = None,
        labels: LabelVocab | None = None,
    ):
        super().__init__(config)
        self.featurizer = featurizer
        self.chars = chars
        self.labels = labels
        self.splits: dict[str, EncodedTagged] = {}
        self.unseen_tags: dict[str, int] = {}
        self._raw: dict[str, list[TaggedSentence]] | None = None

    @property
    def features(self) -> TaggingFeatures:
        return TaggingFeatures(self.featurizer, self.chars)

    def read_split(self, path: str) -> list[TaggedSentence]:
        return read_tagged(path, self.config, self.policy)

    def read(self) -> dict[str, list[TaggedSentence]]:
        """The raw sentences of each split, read once. A multi-task run reads every task's training
        sentences first, to build one word vocabulary for a shared embedding, then calls ``load``."""
        if self._raw is None:
            self._raw = self.read_splits(need_train=self.featurizer is None)
        return self._raw

    # ---------------------------------------------------------------- one featurizer for several modules
    # (nlpkit.tasks.multitask.data.SharedFeaturizerData: a multi-task run's shared embedding)
    def featurizer_spec(self) -> tuple[str, dict]:
        """``("word", data.featurizer)``: one id per dataset token plus its characters and casing."""
        return "word", OmegaConf.to_container(self.config.featurizer, resolve=True)

    def training_texts(self) -> list[tuple[str, ...]]:
        """What the featurizer is trained on: the training split's token lists."""
        return [sentence.tokens for sentence in self.read()["train"]]

    def train_featurizer(self, texts: list[tuple[str, ...]]) -> tuple[Featurizer, CharVocab]:
        """The word and character vocabularies over ``texts`` (token lists), with this module's settings."""
        fcfg = WordFeaturizerConfig(**dict(self.config.featurizer))
        return train_word_featurizer(texts, fcfg), CharVocab.build(texts, fcfg.max_word_length)

    def use_featurizer(self, featurizer: tuple[Featurizer, CharVocab]) -> None:
        """Encode with ``featurizer`` (from ``train_featurizer``) instead of building one from train."""
        self.featurizer, self.chars = featurizer

    def load(self) -> None:
        """Read, split, build vocabularies (if not given) and encode. Idempotent."""
        if self._loaded:
            return
        raw = self.read()
        self._raw = None  # encoded below; the raw sentences stay on each split's dataset
        self._build_vocabularies(raw.get("train", []))
        features = self.features
        for split, sentences in raw.items():
            self.splits[split] = self._encode(sentences, features)
        self._report_unseen()
        if self.policy.total_skipped:
            log.warning("data: %s", self.policy.report())
        self._loaded = True

    def _report_unseen(self) -> None:
        warn_unseen(self.unseen_tags, "gold tags not seen in training (scored as missed spans, trained as O)")

    def _build_vocabularies(self, train: list[TaggedSentence]) -> None:
        """Build from the training sentences whichever vocabularies were not given."""
        fcfg = WordFeaturizerConfig(**dict(self.config.featurizer))
        if self.featurizer is None:
            self.featurizer = train_word_featurizer((s.tokens for s in train), fcfg)
        if self.chars is None:
            self.chars = CharVocab.build((s.tokens for s in train), fcfg.max_word_length)
        if self.labels is None:
            self.labels = LabelVocab.build(s.tags for s in train)

    def _encode(self, sentences: list[TaggedSentence], features: TaggingFeatures) -> EncodedTagged:
        fallback = self.labels.index.get("O", 0)
        items = []
        for sentence in sentences:
            tag_ids = []
            for tag in sentence.tags:
                if tag not in self.labels:
                    self.unseen_tags[tag] = self.unseen_tags.get(tag, 0) + 1
                tag_ids.append(self.labels.index.get(tag, fallback))
            words, chars, shapes = features.encode(sentence.tokens)
            items.append(EncodedSentence(words, chars, shapes, torch.tensor(tag_ids), sentence.tags))
        return EncodedTagged(items, sentences)

    # ---------------------------------------------------------------- lightning hooks
    def _singletons(self) -> torch.Tensor | None:
        """``[vocab]`` bool: word ids that occur exactly once in the training split."""
        if float(self.config.unk_replace_prob) <= 0 or "train" not in self.splits:
            return None
        counts = torch.bincount(
            torch.cat([item.words for item in self.splits["train"].items]),
            minlength=self.featurizer.vocab_size,
        )
        return counts == 1

    def collator(self, train: bool):
        return self.collator_class(
            self.features,
            self._singletons() if train else None,
            float(self.config.unk_replace_prob),
            torch.initial_seed() % 2**31,
        )
