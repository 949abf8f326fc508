"""What every task's data module shares: reading train/val/test once, holding out a seeded val split."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from nlpkit.data.batching import BucketBatchSampler, ResumableDataLoader
from nlpkit.data.builtin import ensure_builtin
from nlpkit.data.readers import BadRowPolicy
from nlpkit.errors import DataError

log = logging.getLogger(__name__)


class SplitDataModule(pl.LightningDataModule):
    """Base of the task data modules. Subclasses implement ``read_split(path)`` (one file -> items)
    and ``load()`` (vocabularies + encoding), calling ``read_splits`` for the raw items."""

    #: what one item is called in messages ("examples", "sentences")
    unit = "examples"

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.policy = BadRowPolicy(str(config.on_bad_row))
        self.splits: dict[str, Any] = {}
        self._loaded = False

    def read_split(self, path: str) -> list:
        raise NotImplementedError

    def read_splits(self, need_train: bool) -> dict[str, list]:
        """Read each configured split (``builtin`` data is generated first). Without a validation file,
        a seeded ``data.val_fraction`` of train is held out."""
        cfg = self.config
        if str(cfg.format) == "builtin" and cfg.train_path:
            ensure_builtin(Path(cfg.train_path).parent)
        paths = {"train": cfg.train_path, "val": cfg.val_path, "test": cfg.test_path}
        if need_train and not paths["train"]:
            raise DataError("data.train_path is not set")
        raw: dict[str, list] = {}
        for split, path in paths.items():
            if path:
                raw[split] = self.read_split(path)
                if not raw[split]:
                    raise DataError(f"{path}: no usable {self.unit} in the {split} split")
        if "train" in raw and "val" not in raw:
            raw["train"], raw["val"] = self._hold_out(
                raw["train"], float(cfg.val_fraction), int(cfg.split_seed)
            )
        return raw

    def _hold_out(self, items: list, fraction: float, seed: int) -> tuple[list, list]:
        if not 0.0 < fraction < 1.0:
            raise DataError(f"no data.val_path and data.val_fraction={fraction} is not in (0, 1)")
        order = list(range(len(items)))
        random.Random(seed).shuffle(order)
        held = set(order[: max(1, int(round(len(items) * fraction)))])
        log.info(
            "data: no validation file; holding out %d of %d training %s (seed %d)",
            len(held),
            len(items),
            self.unit,
            seed,
        )
        return [x for i, x in enumerate(items) if i not in held], [items[i] for i in sorted(held)]

    def collator(self, train: bool) -> Callable:
        """The ``collate_fn`` for training (``train``) or evaluation batches."""
        raise NotImplementedError

    def _ranks(self) -> tuple[int, int]:
        """``(global_rank, world_size)`` of the attached trainer (DDP shards batches), else ``(0, 1)``."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _loader(self, split: str, train: bool) -> DataLoader:
        """Length-bucketed batches (shuffled in training, in data order otherwise), one disjoint share
        per DDP rank; the training loader's position is saved in checkpoints (mid-epoch resume)."""
        if split not in self.splits:
            raise DataError(f"no {split} split: set data.{split}_path")
        dataset = self.splits[split]
        cfg = self.config
        rank, world_size = self._ranks()
        if isinstance(dataset, IterableDataset):  # a streamed split batches itself
            if world_size > 1 or int(cfg.num_workers) > 0:
                raise DataError(
                    f"data.streaming reads {split} as one sequential stream: it does not combine with "
                    f"DDP (world size {world_size}) or data.num_workers={cfg.num_workers}; use 1 process "
                    f"and num_workers=0, or data.streaming=false"
                )
            return ResumableDataLoader(
                dataset, batch_size=None, collate_fn=self.collator(train), generator=torch.Generator()
            )  # its own generator: see below
        seed = torch.initial_seed() % 2**31  # follows the run's `seed` (seed_everything)
        sampler = BucketBatchSampler(
            dataset.lengths,
            int(cfg.batch_size if train else cfg.eval_batch_size),
            shuffle=train,
            seed=seed,
            pool_batches=int(cfg.bucket_pool_batches),
            rank=rank,
            world_size=world_size,
        )
        return (ResumableDataLoader if train else DataLoader)(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.collator(train),
            num_workers=int(cfg.num_workers),
            persistent_workers=int(cfg.num_workers) > 0,
            # Its own generator: creating an iterator then never draws from the global RNG that dropout
            # uses, so a run resumed mid-epoch continues the exact random stream of an uninterrupted one.
            generator=torch.Generator().manual_seed(seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def setup(self, stage: str | None = None) -> None:
        self.load()

    def load(self) -> None:
        raise NotImplementedError
