"""DDP support: summing a scorer's epoch counts across processes, and stopping every process on SIGTERM.

Span F1, frame accuracy and the other word-level metrics are ratios of counts (per-type spans, tokens,
sentences) accumulated in plain Python scorers. Under DDP each process scores a disjoint shard of the
evaluation split (``BucketBatchSampler`` shards evaluation by example, without padding), so summing the
counts before taking the ratios gives exactly the one-process figure.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

import pytorch_lightning as pl
import torch.distributed as dist
from pytorch_lightning.trainer.connectors.signal_connector import _SignalConnector

log = logging.getLogger(__name__)

#: after a SIGTERM, how long a DDP process may take to stop on its own before it is ended
SIGTERM_GRACE_SECONDS = 5.0


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


class DistributedSigtermConnector(_SignalConnector):
    """Lightning's SIGTERM handling, minus the collective it runs inside the signal handler.

    Lightning's handler calls ``dist.broadcast`` from whatever point the signal interrupts, so under DDP
    it pairs with a different collective on another rank (a gradient all-reduce, a metric gather) and
    every process waits forever; SIGTERM then never ends the run. Here the handler only raises the
    flag that Lightning's loops check at the end of each batch (every rank stops at the same step, as
    each gets the signal: the launching process forwards it to its children), and starts a watchdog:
    a process still alive ``SIGTERM_GRACE_SECONDS`` later (a peer left while it waited in a collective)
    prints one error line, ends its children and exits with status 1. One process: Lightning's own
    handling, unchanged.
    """

    def _sigterm_notifier_fn(self, signum: int | signal.Signals, frame: FrameType | None) -> None:
        if self.trainer.world_size == 1:
            super()._sigterm_notifier_fn(signum, frame)
            return
        if self.received_sigterm:
            return
        self.received_sigterm = True
        log.info("rank %d received SIGTERM: stopping every DDP process", self.trainer.global_rank)
        launcher = self.trainer.strategy.launcher
        if launcher is not None:
            launcher.kill(signum)  # the children this process started stop too
        threading.Thread(target=self._end_after_grace, name="sigterm-watchdog", daemon=True).start()

    def _end_after_grace(self) -> None:
        time.sleep(SIGTERM_GRACE_SECONDS)
        sys.stderr.write(
            f"error: training stopped by SIGTERM; rank {self.trainer.global_rank} had not stopped "
            f"{SIGTERM_GRACE_SECONDS:g} s later and was ended (resume=auto continues from the last checkpoint)\n"
        )
        sys.stderr.flush()
        launcher = self.trainer.strategy.launcher
        if launcher is not None:
            launcher.kill(signal.SIGKILL)
        os._exit(1)


def stop_all_processes_on_sigterm(trainer: pl.Trainer) -> None:
    """Give ``trainer`` the SIGTERM handling of ``DistributedSigtermConnector`` (before it runs)."""
    trainer._signal_connector = DistributedSigtermConnector(trainer)
