"""Summing a scorer's epoch counts across DDP processes.

Span F1, frame accuracy and the other word-level metrics are ratios of counts (per-type spans, tokens,
sentences) accumulated in plain Python scorers. Under DDP each process scores a disjoint shard of the
evaluation split (``BucketBatchSampler`` shards evaluation by example, without padding), so summing the
counts before taking the ratios gives exactly the one-process figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.distributed as dist


def world_size() -> int:
    """The number of DDP processes (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sum_counts(scorer, fields: Sequence[str]) -> None:
    """Replace ``scorer``'s ``fields`` (ints, or ``{key: int}`` dicts) by their sums over all processes.

    Every process must call this at the same point (a collective); in one process it does nothing.
    """
    if world_size() == 1:
        return
    states: list[dict | None] = [None] * world_size()
    dist.all_gather_object(states, {name: getattr(scorer, name) for name in fields})
    for name in fields:
        values = [state[name] for state in states]
        if isinstance(values[0], dict):
            total: dict = {}
            for value in values:
                for key, n in value.items():
                    total[key] = total.get(key, 0) + n
            setattr(scorer, name, total)
        else:
            setattr(scorer, name, sum(values))
