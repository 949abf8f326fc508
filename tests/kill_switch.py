"""Lightning callbacks that signal their own process (for the resume test) or stall one DDP rank (for the
SIGTERM test) after a given training step.

Injected from the command line as ``+callbacks.kill._target_=tests.kill_switch.KillAfterStep
+callbacks.kill.step=N``: the process dies with no chance to clean up, as with ``kill -9``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytorch_lightning as pl


class KillAfterStep(pl.Callback):
    """Sends ``signal_name`` (default SIGKILL) to this process once ``trainer.global_step >= step``."""

    def __init__(self, step: int, signal_name: str = "SIGKILL"):
        self.step = step
        self.signal = getattr(signal, signal_name)
        self.sent = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signal)


class StallAfterStep(pl.Callback):
    """On rank ``rank`` only, stop making progress once ``trainer.global_step >= step``: the other ranks
    then wait for it inside the next collective, as with a stuck peer. Touches ``marker`` when stalled."""

    def __init__(self, step: int, rank: int, marker: str):
        self.step = step
        self.rank = rank
        self.marker = marker

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step and trainer.global_rank == self.rank:
            Path(self.marker).touch()
            while True:
                time.sleep(0.1)


class SignalOnTestStart(pl.Callback):
    """Sends ``signal_name`` to this process when the test stage starts (after training finished)."""

    def __init__(self, signal_name: str = "SIGTERM"):
        self.signal = getattr(signal, signal_name)

    def on_test_start(self, trainer, pl_module) -> None:
        os.kill(os.getpid(), self.signal)
