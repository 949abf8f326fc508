"""Word tagging data: the ``data`` schema for ``task=tagging`` and its LightningDataModule.

A batch is a dict: ``tokens [B, T]`` word ids, ``lengths [B]``, ``chars [B, T, C]`` character ids,
``shapes [B, T]`` casing classes, ``tags [B, T]`` tag ids (0 at padding), and ``gold``: the gold tag
strings per sentence, which is what spans are scored on (so a gold tag unseen in training still
counts as a missed span instead of being dropped).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from nlpkit.data.batching import EncodedSplit, pad_sequences, replace_singletons
from nlpkit.data.config import SplitsConfig, choices, featurizer_field
from nlpkit.data.constraints import between, non_empty
from nlpkit.data.featurizers import (
    Features,
    TextFeaturizer,
    featurizer_name,
    featurizer_options,
    train_featurizer,
)
from nlpkit.data.labels import LabelVocab
from nlpkit.data.splits import SplitDataModule
from nlpkit.data.tag_schemes import SCHEMES
from nlpkit.tasks.tagging.readers import TaggedSentence, read_tagged

log = logging.getLogger(__name__)

#: the files a word-level run directory holds besides the featurizer's (``tokenizer.json``,
#: ``chars.json``: ``featurizer=word``'s ``files``); the tasks built on tagging add their own
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
    featurizer: ``featurizer=word`` (one position per dataset token), or ``featurizer=wordpiece`` (a
        pretrained encoder's pieces, each token read at its first piece: ``model=minilm_tagger``).
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
    featurizer: Any = featurizer_field("word", per_token=True, aligned=True)


#: the featurizer a word-level task uses when its data section names none
DEFAULT_FEATURIZER = "word"


@dataclass
class EncodedSentence:
    features: Features  # the featurizer's tensors: tokens [n], chars [n, C], shapes [n]
    tags: torch.Tensor  # [n]
    gold: tuple[str, ...]


class EncodedTagged(EncodedSplit):
    """Encoded sentences (bucketed by token count) and the sentences they came from."""

    def __init__(self, items: list[EncodedSentence], sentences: list[TaggedSentence]):
        super().__init__(items, [len(item.features["tokens"]) for item in items])
        self.sentences = sentences


def warn_unseen(counts: dict[str, int], what: str) -> None:
    """One warning listing the gold labels of val/test that training never saw, with their counts."""
    if counts:
        log.warning("data: %s: %s", what, ", ".join(f"{name} x{n}" for name, n in sorted(counts.items())))


class TaggingCollator:
    """Pads a batch; in training, replaces singleton words by ``<unk>`` with ``unk_replace_prob``
    (Lample et al., 2016) so the ``<unk>`` vector is trained for the unknown words of test time."""

    def __init__(
        self,
        features: TextFeaturizer,
        singletons: torch.Tensor | None = None,
        unk_replace_prob: float = 0.0,
        seed: int = 0,
    ):
        self.features = features
        self.singletons = singletons  # [vocab] bool, or None
        self.unk_replace_prob = unk_replace_prob
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, items: list[EncodedSentence]) -> dict:
        batch = self.features.collate([it.features for it in items])
        batch["tags"], _ = pad_sequences([it.tags for it in items], 0)
        batch["gold"] = [it.gold for it in items]
        if self.singletons is not None and self.unk_replace_prob > 0:
            batch["tokens"] = replace_singletons(
                batch["tokens"], self.singletons, self.unk_replace_prob, self.features.unk_id, self.generator
            )
        return batch


class TaggingDataModule(SplitDataModule):
    """Reads train/val/test with the configured reader and encodes each split once.

    Pass ``featurizer`` (word ids + characters + casing) and ``labels`` to reuse a trained run's
    vocabularies; otherwise both are built from the training split.
    """

    unit = "sentences"
    #: pads a list of encoded sentences into a batch (subclasses add fields, e.g. the intent)
    collator_class = TaggingCollator

    def __init__(
        self,
        config,
        featurizer: TextFeaturizer | None = None,
        labels: LabelVocab | None = None,
    ):
        super().__init__(config)
        self.featurizer = featurizer
        self.labels = labels
        self.splits: dict[str, EncodedTagged] = {}
        self.unseen_tags: dict[str, int] = {}
        #: split -> (sentences, words) cut by a piece featurizer's ``max_length`` (``word_lengths``)
        self.cut_words: dict[str, tuple[int, int]] = {}
        self._raw: dict[str, list[TaggedSentence]] | None = None

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
        """``(featurizer name, its options)``: ``featurizer=word`` (one position per dataset token)."""
        return featurizer_name(self.config, DEFAULT_FEATURIZER), featurizer_options(self.config)

    def training_texts(self) -> list[tuple[str, ...]]:
        """What the featurizer is trained on: the training split's token lists."""
        return [sentence.tokens for sentence in self.read()["train"]]

    def train_featurizer(self, texts: list) -> TextFeaturizer:
        """The featurizer ``data.featurizer`` names, trained on ``texts`` (token lists, or texts of
        another sub-task) with this module's options."""
        return train_featurizer(self.config, texts, DEFAULT_FEATURIZER, per_token=True, aligned=True)

    def use_featurizer(self, featurizer: TextFeaturizer) -> None:
        """Encode with ``featurizer`` (from ``train_featurizer``) instead of building one from train."""
        self.featurizer = featurizer

    def load(self) -> None:
        """Read, split, build vocabularies (if not given) and encode. Idempotent."""
        if self._loaded:
            return
        raw = self.read()
        self._raw = None  # encoded below; the raw sentences stay on each split's dataset
        self._build_vocabularies(raw.get("train", []))
        for split, sentences in raw.items():
            self.splits[split] = self._encode(sentences)
            self._count_cut(split, self.splits[split])
        self._report_unseen()
        if self.policy.total_skipped:
            log.warning("data: %s", self.policy.report())
        self._loaded = True

    def _report_unseen(self) -> None:
        warn_unseen(self.unseen_tags, "gold tags not seen in training (scored as missed spans, trained as O)")
        if self.cut_words:
            log.warning(
                "data: %s: words past data.featurizer.max_length pieces: the model does not see them; "
                "they are predicted O (and scored so), their gold tags are not trained on",
                ", ".join(f"{split} {n} words in {s} sentences" for split, (s, n) in self.cut_words.items()),
            )

    def _build_vocabularies(self, train: list[TaggedSentence]) -> None:
        """Build from the training sentences whichever vocabularies were not given."""
        if self.featurizer is None:
            self.featurizer = train_featurizer(
                self.config, (s.tokens for s in train), DEFAULT_FEATURIZER, per_token=True, aligned=True
            )
        if self.labels is None:
            self.labels = LabelVocab.build(s.tags for s in train)

    def _count_cut(self, split: str, encoded: EncodedTagged) -> None:
        """Count the words a piece featurizer cut (``word_lengths`` below the sentence's words)."""
        cut = [
            len(item.gold) - int(item.features["word_lengths"])
            for item in encoded.items
            if "word_lengths" in item.features and int(item.features["word_lengths"]) < len(item.gold)
        ]
        if cut:
            self.cut_words[split] = (len(cut), sum(cut))

    def _encode(self, sentences: list[TaggedSentence]) -> EncodedTagged:
        fallback = self.labels.index.get("O", 0)
        items = []
        encoded = self.featurizer.encode_batch([s.tokens for s in sentences]) if sentences else []
        for sentence, features in zip(sentences, encoded):
            tag_ids = []
            for tag in sentence.tags:
                if tag not in self.labels:
                    self.unseen_tags[tag] = self.unseen_tags.get(tag, 0) + 1
                tag_ids.append(self.labels.index.get(tag, fallback))
            items.append(EncodedSentence(features, torch.tensor(tag_ids), sentence.tags))
        return EncodedTagged(items, sentences)

    # ---------------------------------------------------------------- lightning hooks
    def _singletons(self) -> torch.Tensor | None:
        """``[vocab]`` bool: word ids that occur exactly once in the training split."""
        if float(self.config.unk_replace_prob) <= 0 or "train" not in self.splits:
            return None
        counts = torch.bincount(
            torch.cat([item.features["tokens"] for item in self.splits["train"].items]),
            minlength=self.featurizer.vocab_size,
        )
        return counts == 1

    def collator(self, train: bool):
        return self.collator_class(
            self.featurizer,
            self._singletons() if train else None,
            float(self.config.unk_replace_prob),
            torch.initial_seed() % 2**31,
        )
