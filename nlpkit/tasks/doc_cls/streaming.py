"""Streaming a training file too large to hold: read it again every epoch through a shuffle buffer.

``data.streaming=true`` (``task=doc_cls``): the training split is never loaded whole. One pass at set-up
builds the vocabularies and counts the examples; each epoch then reads the file line by line, mixes it
through a seeded shuffle buffer of ``data.shuffle_buffer`` examples, and cuts length-bucketed batches
from pools of ``batch_size * bucket_pool_batches`` examples. Memory is bounded by the buffer and the
pool, not the file. Validation and test splits are read into memory as usual.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset

from nlpkit.data.featurizers import TextFeaturizer
from nlpkit.data.readers import BadRowPolicy, Example, iter_examples


def shuffled(items: Iterator[Any], buffer_size: int, rng: random.Random) -> Iterator[Any]:
    """Approximate shuffle in bounded memory: keep ``buffer_size`` items, emit a random one per new item."""
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        index = rng.randrange(buffer_size)
        yield buffer[index]
        buffer[index] = item
    rng.shuffle(buffer)
    yield from buffer


def usable(examples: Iterator[Example], multilabel: bool, policy: BadRowPolicy) -> Iterator[Example]:
    """The training examples ``DocClassificationDataModule`` would keep (one label unless multi-label)."""
    for example in examples:
        if not multilabel and len(example.labels) != 1:
            policy.bad(example.origin, f"several labels {list(example.labels)} in single-label data")
            continue
        yield example


class StreamingDocs(IterableDataset):
    """Batches of ``[(features, target)]`` read from ``path`` afresh each epoch (see module docstring).

    The batch order depends only on ``seed + epoch``; ``start_batch`` skips the batches of the epoch a
    resumed run already trained on. ``len()`` is the number of batches (from the set-up count), so
    Lightning knows where an epoch ends.
    """

    def __init__(
        self,
        path: str | Path,
        data_cfg: Any,
        featurizer: TextFeaturizer,
        target: Callable[[tuple[str, ...]], torch.Tensor],
        *,
        num_examples: int,
        multilabel: bool,
        batch_size: int,
        pool_batches: int,
        shuffle_buffer: int,
        seed: int,
    ):
        self.path = Path(path)
        self.data_cfg = data_cfg
        self.featurizer = featurizer
        self.target = target
        self.num_examples = num_examples
        self.multilabel = multilabel
        self.batch_size = batch_size
        self.pool_size = batch_size * max(1, pool_batches)
        self.bucketing = pool_batches > 0
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.seed = seed
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        full_pools, rest = divmod(self.num_examples, self.pool_size)
        return full_pools * math.ceil(self.pool_size / self.batch_size) + math.ceil(rest / self.batch_size)

    def _pool_batches(self, pool: list[Example], rng: random.Random) -> list[list[tuple]]:
        features = self.featurizer.encode_batch([ex.text for ex in pool])
        items = [(f, self.target(ex.labels)) for f, ex in zip(features, pool)]
        if self.bucketing:
            items.sort(key=lambda item: len(item[0]["tokens"]))
        batches = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def _batches(self, epoch: int) -> Iterator[list[tuple]]:
        rng = random.Random(self.seed + epoch)
        # bad rows were reported by the set-up pass; later passes skip the same rows quietly
        quiet = BadRowPolicy("skip")
        examples = usable(iter_examples(self.path, self.data_cfg, quiet), self.multilabel, quiet)
        pool: list[Example] = []
        for example in shuffled(examples, self.shuffle_buffer, rng):
            pool.append(example)
            if len(pool) == self.pool_size:
                yield from self._pool_batches(pool, rng)
                pool = []
        if pool:
            yield from self._pool_batches(pool, rng)

    def __iter__(self) -> Iterator[list[tuple]]:
        skip, self.start_batch = self.start_batch, 0
        batches = self._batches(self.epoch)
        self.epoch += 1  # as BucketBatchSampler: plain loops reshuffle too; Lightning resumes set it
        for index, batch in enumerate(batches):
            if index >= skip:
                yield batch
