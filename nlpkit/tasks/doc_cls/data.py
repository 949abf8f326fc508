"""LightningDataModule for document classification: read, featurize once, bucket, pad."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from nlpkit.data.batching import pad_sequences
from nlpkit.data.builtin import ensure_builtin
from nlpkit.data.featurizer import Featurizer, FeaturizerConfig
from nlpkit.data.labels import LabelVocab
from nlpkit.data.readers import Example, iter_examples, read_examples
from nlpkit.data.splits import SplitDataModule
from nlpkit.errors import ConfigError, DataError
from nlpkit.tasks.doc_cls.streaming import StreamingDocs, usable

log = logging.getLogger(__name__)


class EncodedDocs(Dataset):
    """Token ids and label targets, encoded once when the split is loaded."""

    def __init__(self, token_ids: list[list[int]], targets: list[torch.Tensor], examples: list[Example]):
        self.token_ids = [torch.tensor(ids, dtype=torch.long) for ids in token_ids]
        self.targets = targets
        self.examples = examples

    def __len__(self) -> int:
        return len(self.token_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.token_ids[index], self.targets[index]

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.token_ids]


class DocBatchCollator:
    """``[(ids, target)] -> {"tokens": [B, T], "lengths": [B], "labels": [B] or [B, L]}``."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        tokens, lengths = pad_sequences([ids for ids, _ in items], self.pad_id)
        return {"tokens": tokens, "lengths": lengths, "labels": torch.stack([t for _, t in items])}


class DocClassificationDataModule(SplitDataModule):
    """Reads train/val/test with the configured reader and encodes each split once.

    Pass ``featurizer`` and ``labels`` to reuse a trained run's vocabularies (evaluation);
    otherwise both are built from the training split.
    """

    def __init__(self, config, featurizer: Featurizer | None = None, labels: LabelVocab | None = None):
        super().__init__(config)
        self.featurizer = featurizer
        self.labels = labels
        self.multilabel = bool(config.label_delimiter)
        self.splits: dict[str, EncodedDocs] = {}
        self._raw: dict[str, list[Example]] | None = None

    def read_split(self, path: str) -> list[Example]:
        return read_examples(path, self.config, self.policy)

    def read(self) -> dict[str, list[Example]]:
        """The raw examples of each split, read once (``load`` encodes them)."""
        if self._raw is None:
            self._raw = self.read_splits(need_train=self.featurizer is None)
        return self._raw

    # ---------------------------------------------------------------- one featurizer for several modules
    # (nlpkit.tasks.multitask.data.SharedFeaturizerData: a multi-task run's shared embedding)
    def featurizer_spec(self) -> tuple[str, dict]:
        """``("text", data.featurizer)``: the tokenizer over raw text (``nlpkit.data.featurizer``)."""
        return "text", OmegaConf.to_container(self.config.featurizer, resolve=True)

    def training_texts(self) -> list[str]:
        """What the featurizer is trained on: the training split's texts."""
        if self.config.get("streaming"):
            raise ConfigError("data.streaming=true: a streamed training file cannot share a featurizer")
        return [example.text for example in self.read()["train"]]

    def train_featurizer(self, texts: list[str]) -> Featurizer:
        """A tokenizer over ``texts`` with this module's ``data.featurizer`` settings."""
        return Featurizer.train(texts, FeaturizerConfig(**dict(self.config.featurizer)))

    def use_featurizer(self, featurizer: Featurizer) -> None:
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
            fcfg = FeaturizerConfig(**dict(cfg.featurizer))
            self.featurizer = Featurizer.train((ex.text for ex in raw["train"]), fcfg)
        if self.labels is None:
            self.labels = LabelVocab.build((ex.labels for ex in raw["train"]), multilabel=self.multilabel)
            if len(self.labels) < 2 and not self.multilabel:
                raise DataError(
                    f"{cfg.train_path}: found {len(self.labels)} label(s) {self.labels.names}; "
                    f"classification needs at least 2 (check data.label_field={cfg.label_field!r})"
                )
        for split, examples in raw.items():
            self.splits[split] = self._encode(examples, unseen_is_bad=split != "train")
        if self.policy.total_skipped:
            log.warning("data: %s", self.policy.report())
        self._loaded = True

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
            self.featurizer = Featurizer.train(texts(), FeaturizerConfig(**dict(cfg.featurizer)))
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
        kept = []
        for ex in examples:
            unseen = [label for label in ex.labels if label not in self.labels]
            if not self.multilabel and len(ex.labels) != 1:
                self.policy.bad(ex.origin, f"several labels {list(ex.labels)} in single-label data")
                continue
            if unseen:
                problem = f"unseen label: {unseen[0]!r} is not among the {len(self.labels)} training labels"
                if unseen_is_bad:
                    self.policy.bad(ex.origin, problem)
                    continue
                raise DataError(f"{ex.origin}: {problem}")
            kept.append(ex)
        ids = self.featurizer.encode_batch([ex.text for ex in kept])
        return EncodedDocs(ids, [self.target(ex.labels) for ex in kept], kept)

    def collator(self, train: bool) -> DocBatchCollator:
        return DocBatchCollator(self.featurizer.pad_id)
