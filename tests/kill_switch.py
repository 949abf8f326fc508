"""A Lightning callback that signals its own process after a given training step (for the resume test).

Injected from the command line as ``+callbacks.kill._target_=tests.kill_switch.KillAfterStep
+callbacks.kill.step=N``: the process dies with no chance to clean up, as with ``kill -9``.
"""

from __future__ import annotations

import os
import signal

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
