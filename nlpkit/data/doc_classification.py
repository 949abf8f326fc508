"""LightningDataModule for document classification: read, featurize once, bucket, pad."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from nlpkit.data.batching import BucketBatchSampler, pad_sequences
from nlpkit.data.builtin import ensure_builtin
from nlpkit.data.featurizer import Featurizer, FeaturizerConfig
from nlpkit.data.labels import LabelVocab
from nlpkit.data.readers import BadRowPolicy, Example, read_examples
from nlpkit.errors import DataError

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


class DocClassificationDataModule(pl.LightningDataModule):
    """Reads train/val/test with the configured reader and encodes each split once.

    Pass ``featurizer`` and ``labels`` to reuse a trained run's vocabularies (evaluation);
    otherwise both are built from the training split.
    """

    def __init__(self, config, featurizer: Featurizer | None = None, labels: LabelVocab | None = None):
        super().__init__()
        self.config = config
        self.featurizer = featurizer
        self.labels = labels
        self.multilabel = bool(config.label_delimiter)
        self.policy = BadRowPolicy(str(config.on_bad_row))
        self.splits: dict[str, EncodedDocs] = {}
        self._loaded = False

    # ---------------------------------------------------------------- reading
    def _paths(self) -> dict[str, str | None]:
        cfg = self.config
        if str(cfg.format) == "builtin":
            ensure_builtin(Path(cfg.train_path).parent)
        return {"train": cfg.train_path, "val": cfg.val_path, "test": cfg.test_path}

    def load(self) -> None:
        """Read, split, build vocabularies (if not given) and encode. Idempotent."""
        if self._loaded:
            return
        cfg = self.config
        paths = self._paths()
        if not paths["train"] and self.featurizer is None:
            raise DataError("data.train_path is not set")
        raw: dict[str, list[Example]] = {}
        for split, path in paths.items():
            if path:
                raw[split] = read_examples(path, cfg, self.policy)
                if not raw[split]:
                    raise DataError(f"{path}: no usable examples in the {split} split")
        if "train" in raw and "val" not in raw:
            raw["train"], raw["val"] = self._hold_out(
                raw["train"], float(cfg.val_fraction), int(cfg.split_seed)
            )
        if self.featurizer is None:
            fcfg = FeaturizerConfig(**dict(cfg.featurizer))
            self.featurizer = Featurizer.train((ex.text for ex in raw["train"]), fcfg)
        if self.labels is None:
            self.labels = LabelVocab.build((ex.labels for ex in raw["train"]), multilabel=self.multilabel)
            if len(self.labels) < 2 and not self.multilabel:
                raise DataError(
                    f"{paths['train']}: found {len(self.labels)} label(s) {self.labels.names}; "
                    f"classification needs at least 2 (check data.label_field={cfg.label_field!r})"
                )
        for split, examples in raw.items():
            self.splits[split] = self._encode(examples, unseen_is_bad=split != "train")
        if self.policy.total_skipped:
            log.warning("data: %s", self.policy.report())
        self._loaded = True

    def _hold_out(
        self, examples: list[Example], fraction: float, seed: int
    ) -> tuple[list[Example], list[Example]]:
        if not 0.0 < fraction < 1.0:
            raise DataError(f"no data.val_path and data.val_fraction={fraction} is not in (0, 1)")
        order = list(range(len(examples)))
        random.Random(seed).shuffle(order)
        n_val = max(1, int(round(len(examples) * fraction)))
        held = set(order[:n_val])
        log.info(
            "data: no validation file; holding out %d of %d training examples (seed %d)",
            n_val,
            len(examples),
            seed,
        )
        return [ex for i, ex in enumerate(examples) if i not in held], [examples[i] for i in sorted(held)]

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

    # ---------------------------------------------------------------- lightning hooks
    def setup(self, stage: str | None = None) -> None:
        self.load()

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.splits:
            raise DataError(f"no {split} split: set data.{split}_path")
        dataset = self.splits[split]
        cfg = self.config
        sampler = BucketBatchSampler(
            dataset.lengths,
            int(cfg.batch_size if train else cfg.eval_batch_size),
            shuffle=train,
            seed=int(cfg.split_seed),
            pool_batches=int(cfg.bucket_pool_batches),
        )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=DocBatchCollator(self.featurizer.pad_id),
            num_workers=int(cfg.num_workers),
            persistent_workers=int(cfg.num_workers) > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
