"""Padding collation and length bucketing shared by the text tasks."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def pad_sequences(sequences: Sequence[torch.Tensor], pad_value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D id tensors. Returns ``tokens [B, T]`` and ``lengths [B]``."""
    lengths = torch.tensor([len(seq) for seq in sequences], dtype=torch.long)
    tokens = torch.full((len(sequences), int(lengths.max())), pad_value, dtype=torch.long)
    for row, seq in enumerate(sequences):
        tokens[row, : len(seq)] = seq
    return tokens, lengths


class EncodedSplit(Dataset):
    """A split encoded once: ``items`` for the collator and each item's length for the bucketing
    sampler (``lengths``); subclasses keep the source examples the items came from."""

    def __init__(self, items: list[Any], lengths: Sequence[int]):
        self.items = items
        self.lengths = list(lengths)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.items[index]


def replace_singletons(
    tokens: torch.Tensor, singletons: torch.Tensor, prob: float, unk_id: int, generator: torch.Generator
) -> torch.Tensor:
    """``tokens [B, T]`` with each training-singleton word replaced by ``unk_id`` with probability
    ``prob`` (Lample et al., 2016), so the ``<unk>`` vector is trained for the unknown words of test
    time. ``singletons [vocab]`` is a bool mask over the word ids."""
    draw = torch.rand(tokens.shape, generator=generator) < prob
    return tokens.masked_fill(draw & singletons[tokens], unk_id)


class _EpochSetter:
    """Lightning calls ``set_epoch`` on ``batch_sampler.sampler`` (never on the batch sampler itself);
    this forwards it, so a resumed run shuffles its epoch exactly as the uninterrupted run did."""

    def __init__(self, owner: BucketBatchSampler):
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length, so little compute goes to padding; sharded across DDP ranks.

    Each epoch: shuffle all indices (seeded by ``seed + epoch``), cut them into pools of
    ``batch_size * pool_batches``, sort each pool by length, split into batches, shuffle batch order.
    ``pool_batches=0`` turns bucketing off (plain shuffled batches). Without ``shuffle`` batches follow
    the data order, as evaluation wants.

    With ``world_size > 1`` each rank gets a disjoint share: in training, every rank builds the same
    epoch's batch list and takes batches ``rank::world_size`` (padded by repeating the first batches so
    every rank takes the same number of optimizer steps, as DDP needs); in evaluation, each rank takes a
    contiguous slice of the examples, so every example is scored exactly once.
    ``start_batch`` skips that many batches of the current epoch (resuming mid-epoch); it applies to
    one epoch only.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        pool_batches: int = 50,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool_batches = pool_batches
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0
        self.sampler = _EpochSetter(self)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _eval_indices(self) -> list[int]:
        n = len(self.lengths)
        start, stop = (n * self.rank) // self.world_size, (n * (self.rank + 1)) // self.world_size
        return list(range(start, stop))

    def _all_batches(self) -> list[list[int]]:
        """The epoch's batches over the whole dataset (before sharding across ranks)."""
        indices = list(range(len(self.lengths)))
        rng = random.Random(self.seed + self.epoch)
        rng.shuffle(indices)
        pool = self.batch_size * self.pool_batches if self.pool_batches > 0 else len(indices)
        batches: list[list[int]] = []
        for start in range(0, len(indices), pool):
            chunk = indices[start : start + pool]
            if self.pool_batches > 0:
                chunk.sort(key=lambda i: self.lengths[i])
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        rng.shuffle(batches)
        return batches

    def _batches(self) -> list[list[int]]:
        if not self.shuffle:
            indices = self._eval_indices()
            return [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        batches = self._all_batches()
        if self.world_size > 1 and batches:
            per_rank = math.ceil(len(batches) / self.world_size)
            padded = batches + batches[: per_rank * self.world_size - len(batches)]
            batches = padded[self.rank :: self.world_size]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()[self.start_batch :]
        self.start_batch = 0
        self.epoch += 1  # Lightning calls set_epoch each epoch; this keeps plain loops reshuffling too
        yield from batches

    def __len__(self) -> int:
        if not self.shuffle:
            n = len(self._eval_indices())
            return math.ceil(n / self.batch_size)
        full, rest = divmod(len(self.lengths), self.batch_size)
        total = full if self.drop_last else full + (rest > 0)
        return math.ceil(total / self.world_size)


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` whose position within the epoch is saved in Lightning checkpoints.

    Lightning stores ``state_dict()`` of a training loader that has one, and nlpkit's ``ResumeState``
    callback hands it back through ``load_state_dict``, so a run resumed from a mid-epoch checkpoint
    continues with the next unseen batch of the same epoch instead of starting the epoch over. The
    batch order comes from a ``batch_sampler`` (``BucketBatchSampler``) or, for a streamed split, from
    the dataset (``StreamingDocs``): either has ``epoch``, ``set_epoch`` and ``start_batch``.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.epoch_in_progress = 0
        self.batches_done = 0

    @property
    def order(self) -> Any:
        """What decides the batch order: the batch sampler, else the (streaming) dataset."""
        return self.batch_sampler if self.batch_sampler is not None else self.dataset

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        # A generator: this runs at the first next(), after Lightning's set_epoch for the epoch.
        order = self.order
        self.epoch_in_progress = int(order.epoch)
        self.batches_done = int(order.start_batch)
        for batch in super().__iter__():
            self.batches_done += 1  # counted as handed out: Lightning does not prefetch sized loaders
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch_in_progress, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.order.set_epoch(int(state["epoch"]))
        self.order.start_batch = int(state["batches_done"])
