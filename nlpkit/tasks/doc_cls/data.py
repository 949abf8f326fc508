"""LightningDataModule for document classification: read, featurize once, bucket, pad.

The featurizer is the one ``data.featurizer.name`` picks (``featurizer=subword`` by default,
``featurizer=word`` for word + character + casing features); a batch is its collated tensors
(``tokens [B, T]``, ``lengths [B]``, and ``chars [B, T, C]``, ``shapes [B, T]`` for ``word``) plus
``labels`` (``[B]`` class ids, ``[B, L]`` multi-hot for multi-label). With
``data.unseen_labels=scored_wrong`` a val/test label unseen in training keeps its row with class id
``UNSEEN_LABEL`` (ignored by the loss, always a wrong prediction in the metrics).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.utils.data import Dataset

from nlpkit.data.builtin import ensure_builtin
from nlpkit.data.featurizers import (
    Features,
    TextFeaturizer,
    featurizer_name,
    featurizer_options,
    train_featurizer,
)
from nlpkit.data.labels import LabelVocab
from nlpkit.data.readers import Example, iter_examples, read_examples
from nlpkit.data.splits import SplitDataModule
from nlpkit.errors import ConfigError, DataError
from nlpkit.tasks.doc_cls.streaming import StreamingDocs, usable

log = logging.getLogger(__name__)

#: the featurizer doc_cls uses when its data section names none
DEFAULT_FEATURIZER = "subword"
#: class id of a val/test label unseen in training (``data.unseen_labels=scored_wrong``)
UNSEEN_LABEL = -100


class EncodedDocs(Dataset):
    """Featurized texts and label targets, encoded once when the split is loaded."""

    def __init__(self, features: list[Features], targets: list[torch.Tensor], examples: list[Example]):
        self.features = features
        self.targets = targets
        self.examples = examples

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> tuple[Features, torch.Tensor]:
        return self.features[index], self.targets[index]

    @property
    def lengths(self) -> list[int]:
        return [len(item["tokens"]) for item in self.features]


class DocBatchCollator:
    """``[(features, target)] -> {the featurizer's batch (tokens [B, T], lengths [B], ...), "labels": [B]
    or [B, L]}``."""

    def __init__(self, featurizer: TextFeaturizer):
        self.featurizer = featurizer

    def __call__(self, items: list[tuple[Features, torch.Tensor]]) -> dict[str, torch.Tensor]:
        batch = self.featurizer.collate([features for features, _ in items])
        batch["labels"] = torch.stack([t for _, t in items])
        return batch


class DocClassificationDataModule(SplitDataModule):
    """Reads train/val/test with the configured reader and encodes each split once.

    Pass ``featurizer`` and ``labels`` to reuse a trained run's vocabularies (evaluation);
    otherwise both are built from the training split. ``unseen_labels`` counts the gold labels of
    val/test that training never saw, when ``data.unseen_labels=scored_wrong`` keeps their rows.
    """

    def __init__(self, config, featurizer: TextFeaturizer | None = None, labels: LabelVocab | None = None):
        super().__init__(config)
        self.featurizer = featurizer
        self.labels = labels
        self.multilabel = bool(config.label_delimiter)
        self.score_unseen = str(config.get("unseen_labels", "bad_row")) == "scored_wrong"
        if self.score_unseen and self.multilabel:
            raise DataError(
                "data.unseen_labels=scored_wrong is for single-label data; with data.label_delimiter set "
                "(multi-label), an unseen label is a bad row (data.unseen_labels=bad_row)"
            )
        self.splits: dict[str, EncodedDocs] = {}
        self.unseen_labels: dict[str, int] = {}
        self._raw: dict[str, list[Example]] | None = None

    def read_split(self, path: str) -> list[Example]:
        return read_examples(path, self.config, self.policy)

    def read(self) -> dict[str, list[Example]]:
        """The raw examples of each split, read once (a multi-task run reads every sub-task's training
        data first, to train one featurizer for a shared embedding, then calls ``load``)."""
        if self._raw is None:
            self._raw = self.read_splits(need_train=self.featurizer is None)
        return self._raw

    # ---------------------------------------------------------------- one featurizer for several modules
    # (nlpkit.tasks.multitask.data.SharedFeaturizerData: a multi-task run's shared embedding)
    def featurizer_spec(self) -> tuple[str, dict]:
        """``(featurizer name, its options)``: what ``data.featurizer`` picks (``subword`` by default)."""
        return featurizer_name(self.config, DEFAULT_FEATURIZER), featurizer_options(self.config)

    def training_texts(self) -> list[str]:
        """What the featurizer is trained on: the training split's texts."""
        if self.config.get("streaming"):
            raise ConfigError("data.streaming=true: a streamed training file cannot share a featurizer")
        return [example.text for example in self.read()["train"]]

    def train_featurizer(self, texts: list[str]) -> TextFeaturizer:
        """The featurizer ``data.featurizer`` names, trained on ``texts`` with its options."""
        return train_featurizer(self.config, texts, DEFAULT_FEATURIZER)

    def use_featurizer(self, featurizer: TextFeaturizer) -> None:
        """Encode with ``featurizer`` (from ``train_featurizer``) instead of training one on train."""
        self.featurizer = featurizer

    def load(self) -> None:
        """Read, split, build vocabularies (if not given) and encode. Idempotent."""
        if self._loaded:
            return
        cfg = self.config
        if cfg.get("streaming") and cfg.train_path:
            self._load_streaming()
            self._loaded = True
            return
        raw = self.read()
        self._raw = None  # encoded below; the examples stay on each split's dataset
        if self.featurizer is None:
            self.featurizer = train_featurizer(cfg, (ex.text for ex in raw["train"]), DEFAULT_FEATURIZER)
        if self.labels is None:
            self.labels = LabelVocab.build((ex.labels for ex in raw["train"]), multilabel=self.multilabel)
            if len(self.labels) < 2 and not self.multilabel:
                raise DataError(
                    f"{cfg.train_path}: found {len(self.labels)} label(s) {self.labels.names}; "
                    f"classification needs at least 2 (check data.label_field={cfg.label_field!r})"
                )
        for split, examples in raw.items():
            self.splits[split] = self._encode(examples, unseen_is_bad=split != "train")
        self._report_unseen()
        if self.policy.total_skipped:
            log.warning("data: %s", self.policy.report())
        self._loaded = True

    def _report_unseen(self) -> None:
        if self.unseen_labels:
            log.warning(
                "data: gold labels not seen in training (always scored as errors): %s",
                ", ".join(f"{name} x{n}" for name, n in sorted(self.unseen_labels.items())),
            )

    def _load_streaming(self) -> None:
        """``data.streaming``: one pass over the training file builds the vocabularies (when not given)
        and counts the examples; training then streams it (``StreamingDocs``). Val/test load as usual."""
        cfg = self.config
        if not cfg.val_path:
            raise DataError(
                "data.streaming=true needs data.val_path: a validation split cannot be held out of a "
                "stream that is never loaded"
            )
        if str(cfg.format) == "builtin":
            ensure_builtin(Path(cfg.train_path).parent)
        label_sets: set[str] = set()
        count = 0

        def texts():
            nonlocal count
            examples = iter_examples(cfg.train_path, cfg, self.policy)
            for example in usable(examples, self.multilabel, self.policy):
                label_sets.update(example.labels)
                count += 1
                yield example.text

        if self.featurizer is None:
            self.featurizer = train_featurizer(cfg, texts(), DEFAULT_FEATURIZER)
        else:
            for _ in texts():
                pass
        if count == 0:
            raise DataError(f"{cfg.train_path}: no usable {self.unit} in the train split")
        if self.labels is None:
            self.labels = LabelVocab(sorted(label_sets), multilabel=self.multilabel)
        unseen = sorted(label_sets - set(self.labels.names))
        if unseen:
            raise DataError(f"{cfg.train_path}: labels {unseen} are not in the run's label vocabulary")
        if len(self.labels) < 2 and not self.multilabel:
            raise DataError(
                f"{cfg.train_path}: found {len(self.labels)} label(s) {self.labels.names}; classification "
                f"needs at least 2 (check data.label_field={cfg.label_field!r})"
            )
        log.info(
            "data: streaming %s (%d examples, shuffle buffer %d)", cfg.train_path, count, cfg.shuffle_buffer
        )
        self.splits["train"] = StreamingDocs(
            cfg.train_path,
            cfg,
            self.featurizer,
            self.target,
            num_examples=count,
            multilabel=self.multilabel,
            batch_size=int(cfg.batch_size),
            pool_batches=int(cfg.bucket_pool_batches),
            shuffle_buffer=int(cfg.shuffle_buffer),
            seed=torch.initial_seed() % 2**31,  # follows the run's `seed`, like the in-memory sampler
        )
        for split in ("val", "test"):
            path = cfg.get(f"{split}_path")
            if path:
                examples = self.read_split(path)
                if not examples:
                    raise DataError(f"{path}: no usable {self.unit} in the {split} split")
                self.splits[split] = self._encode(examples, unseen_is_bad=True)
        self._report_unseen()
        if self.policy.total_skipped:
            log.warning("data: %s", self.policy.report())

    def target(self, labels: tuple[str, ...]) -> torch.Tensor:
        if self.multilabel:
            vec = torch.zeros(len(self.labels))
            for label in labels:
                vec[self.labels.index[label]] = 1.0
            return vec
        return torch.tensor(self.labels.index[labels[0]], dtype=torch.long)

    def _encode(self, examples: list[Example], unseen_is_bad: bool) -> EncodedDocs:
        """``unseen_is_bad``: a val/test split, where an unseen label is a bad row or, with
        ``data.unseen_labels=scored_wrong``, kept as ``UNSEEN_LABEL`` and counted."""
        kept, targets = [], []
        for ex in examples:
            unseen = [label for label in ex.labels if label not in self.labels]
            if not self.multilabel and len(ex.labels) != 1:
                self.policy.bad(ex.origin, f"several labels {list(ex.labels)} in single-label data")
                continue
            if unseen:
                problem = f"unseen label: {unseen[0]!r} is not among the {len(self.labels)} training labels"
                if not unseen_is_bad:
                    raise DataError(f"{ex.origin}: {problem}")
                if not self.score_unseen:
                    self.policy.bad(ex.origin, problem)
                    continue
                self.unseen_labels[unseen[0]] = self.unseen_labels.get(unseen[0], 0) + 1
                kept.append(ex)
                targets.append(torch.tensor(UNSEEN_LABEL, dtype=torch.long))
                continue
            kept.append(ex)
            targets.append(self.target(ex.labels))
        features = self.featurizer.encode_batch([ex.text for ex in kept])
        return EncodedDocs(features, targets, kept)

    def collator(self, train: bool) -> DocBatchCollator:
        return DocBatchCollator(self.featurizer)
