"""The LightningModule base every task's module shares: holds the plain model, builds optimizers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
from torch import nn

from nlpkit.training.optim import build_optimizer, build_scheduler


class TaskModule(pl.LightningModule):
    """Wraps a plain ``nn.Module`` (``self.model``); subclasses own loss, metrics and logging.

    Args:
        model: the network, built from components; checkpoints store it under ``model.``.
        label_names: output label names in id order.
        optim_cfg: the ``optim`` config section (see ``nlpkit.training.optim``).
        monitor/monitor_mode: the validation metric a plateau scheduler follows.
    """

    def __init__(
        self, model: nn.Module, label_names: Sequence[str], optim_cfg, monitor: str, monitor_mode: str = "max"
    ):
        super().__init__()
        self.model = model
        self.label_names = list(label_names)
        self.optim_cfg = optim_cfg
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self._log_sink: Callable[..., None] | None = None

    def route_logs(self, sink: Callable[..., None]) -> None:
        """Send every ``log``/``log_dict`` call to ``sink(name, value, **kwargs)`` instead of the trainer.

        A multi-task module hosts one module per sub-task, runs their steps and epoch hooks, and
        receives their metrics through this, to prefix them with the sub-task's name."""
        self._log_sink = sink

    def log(self, name: str, value: Any, *args, **kwargs) -> None:
        if self._log_sink is not None:
            self._log_sink(name, value, *args, **kwargs)
            return
        super().log(name, value, *args, **kwargs)

    def _step(self, batch: dict, stage: str):
        """Loss (returned), metric updates and logging for one batch of ``stage`` (train/val/test)."""
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        optimizer = build_optimizer(self.parameters(), self.optim_cfg)
        total_steps = int(self.trainer.estimated_stepping_batches) if self.trainer else 1
        scheduler = build_scheduler(optimizer, self.optim_cfg, total_steps, self.monitor, self.monitor_mode)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
