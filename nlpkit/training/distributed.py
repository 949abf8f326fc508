"""DDP support: stopping every process on SIGTERM.

(Metrics are reduced across processes by torchmetrics, see ``nlpkit.metrics``: each process scores a
disjoint shard of the evaluation split — ``BucketBatchSampler`` shards evaluation by example, without
padding — so summing the counts before taking the ratios gives exactly the one-process figure.)
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType

import pytorch_lightning as pl
from pytorch_lightning.trainer.connectors.signal_connector import _SignalConnector

log = logging.getLogger(__name__)

#: after a SIGTERM, how long a DDP process may take to stop on its own before it is ended
SIGTERM_GRACE_SECONDS = 5.0


class DistributedSigtermConnector(_SignalConnector):
    """Lightning's SIGTERM handling, minus the collective it runs inside the signal handler, plus a
    deadline that holds even while a process waits in a collective.

    Lightning's handler calls ``dist.broadcast`` from whatever point the signal interrupts, where it can
    pair with another rank's unrelated collective. Here, under DDP, the handler only raises the flag
    that Lightning's loops check after each batch, so every rank stops at a step boundary. A Python
    handler runs only when the main thread is back in Python, never while it waits in a gloo/nccl call
    (a rank stuck on a peer), so a watcher thread also learns of the signal, from the interpreter's
    wakeup fd: it forwards the signal to the children this process launched, and a process still alive
    ``SIGTERM_GRACE_SECONDS`` later prints one error line, ends its children and exits with status 1.
    SIGINT (Ctrl-C) gets the same deadline. One process: Lightning's own handling, unchanged.
    """

    _watching = False

    def register_signal_handlers(self) -> None:
        super().register_signal_handlers()
        main_thread = threading.current_thread() is threading.main_thread()  # set_wakeup_fd needs it
        if self.trainer.world_size > 1 and not self._watching and main_thread:
            self._watch_signals()

    def _sigterm_notifier_fn(self, signum: int | signal.Signals, frame: FrameType | None) -> None:
        if self.trainer.world_size == 1:
            super()._sigterm_notifier_fn(signum, frame)
            return
        if not self.received_sigterm:
            log.info("rank %d received SIGTERM: stopping every DDP process", self.trainer.global_rank)
        self.received_sigterm = True

    def _watch_signals(self) -> None:
        """Have the C-level signal handler write each signal's number to a socket this thread reads."""
        receiver, sender = socket.socketpair()
        sender.setblocking(False)
        signal.set_wakeup_fd(sender.fileno(), warn_on_full_buffer=False)
        self._watching = True
        self._wakeup = (receiver, sender)  # kept open for the life of the process
        threading.Thread(
            target=self._on_signal, args=(receiver,), name="ddp-signal-watcher", daemon=True
        ).start()

    def _on_signal(self, receiver: socket.socket) -> None:
        stopping = {int(signal.SIGTERM), int(signal.SIGINT)}
        while True:
            received = receiver.recv(64)
            if not received:
                return
            signum = next((number for number in received if number in stopping), None)
            if signum is not None:
                break
        launcher = self.trainer.strategy.launcher
        if launcher is not None and signum == signal.SIGTERM:
            launcher.kill(signum)  # the children this process started stop too (Ctrl-C reaches them all)
        time.sleep(SIGTERM_GRACE_SECONDS)
        sys.stderr.write(
            f"error: training stopped by {signal.Signals(signum).name}; rank {self.trainer.global_rank} had "
            f"not stopped {SIGTERM_GRACE_SECONDS:g} s later and was ended (resume=auto continues from the "
            "last checkpoint)\n"
        )
        sys.stderr.flush()
        if launcher is not None:
            launcher.kill(signal.SIGKILL)
        os._exit(1)


def stop_all_processes_on_sigterm(trainer: pl.Trainer) -> None:
    """Give ``trainer`` the SIGTERM handling of ``DistributedSigtermConnector`` (before it runs)."""
    trainer._signal_connector = DistributedSigtermConnector(trainer)
