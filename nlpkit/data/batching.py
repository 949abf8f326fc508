"""Padding collation and length bucketing shared by the text tasks."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def pad_sequences(sequences: Sequence[torch.Tensor], pad_value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D id tensors. Returns ``tokens [B, T]`` and ``lengths [B]``."""
    lengths = torch.tensor([len(seq) for seq in sequences], dtype=torch.long)
    tokens = torch.full((len(sequences), int(lengths.max())), pad_value, dtype=torch.long)
    for row, seq in enumerate(sequences):
        tokens[row, : len(seq)] = seq
    return tokens, lengths


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length, so little compute goes to padding.

    Each epoch: shuffle all indices (seeded by ``seed + epoch``), cut them into pools of
    ``batch_size * pool_batches``, sort each pool by length, split into batches, shuffle batch order.
    ``pool_batches=0`` turns bucketing off (plain shuffled batches). Without ``shuffle`` batches follow
    the data order, as evaluation wants.
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
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool_batches = pool_batches
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        indices = list(range(len(self.lengths)))
        if not self.shuffle:
            return [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
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

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        self.epoch += 1  # Lightning calls set_epoch each epoch; this keeps plain loops reshuffling too
        yield from batches

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.batch_size)
        return full if self.drop_last and self.shuffle else full + (rest > 0)
