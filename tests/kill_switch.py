"""A Lightning callback that SIGKILLs its own process after a given training step (for the resume test).

Injected from the command line as ``+callbacks.kill._target_=tests.kill_switch.KillAfterStep
+callbacks.kill.step=N``: the process dies with no chance to clean up, as with ``kill -9``.
"""

from __future__ import annotations

import os
import signal

import pytorch_lightning as pl


class KillAfterStep(pl.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
