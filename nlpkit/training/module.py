"""The LightningModule base every task's module shares: holds the plain model, builds optimizers,
and logs each epoch's losses and metrics at one point that every DDP process reaches in the same order.

Why one point: a value logged with ``sync_dist=True`` is reduced across processes lazily, by whichever
hook first reads the logged metrics. Under DDP only rank 0 has a progress bar, and it reads them in its
own ``on_train_epoch_end`` before the module's hook runs, so rank 0 entered an ``all_reduce`` while
rank 1 entered the metrics' ``all_gather``: both waited forever. So nothing here is logged with
``sync_dist``: the epoch-end hooks reduce every value explicitly (torchmetrics' ``compute`` is a
collective, called by every process in the same order) and log the global value, which every process
then holds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.aggregation import MeanMetric

from nlpkit.training.optim import build_optimizer, build_scheduler, parameter_groups

STAGES = ("train", "val", "test")

# Lightning suggests sync_dist=True for every epoch-level value logged under DDP; nlpkit's values are
# already reduced across processes (see above), and sync_dist is what made the processes deadlock.
warnings.filterwarnings("ignore", message=r"It is recommended to use `self\.log\(.*sync_dist=True\)`")


class TaskModule(pl.LightningModule):
    """Wraps a plain ``nn.Module`` (``self.model``); subclasses own loss, metrics and logging.

    Args:
        model: the network, built from components; checkpoints store it under ``model.``.
        label_names: output label names in id order.
        optim_cfg: the ``optim`` config section (see ``nlpkit.training.optim``).
        monitor/monitor_mode: the validation metric a plateau scheduler follows.

    A task module implements ``losses`` (from the model's output dict and the batch), and
    ``update_metrics``/``compute_metrics``/``reset_metrics``; the step, loss tracking and logging are
    here, the same for every task. At each epoch's end every process computes the losses' means over
    all processes (weighted by batch size), then the task's metrics.
    """

    #: the losses ``_step`` tracks; each is logged once per epoch as ``{stage}/{name}``
    loss_names: ClassVar[tuple[str, ...]] = ("loss",)

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
        # A NaN loss makes the epoch's mean NaN (visible in the logs), not silently dropped from it.
        # (Not nan_strategy="disable": torchmetrics 1.9 then ignores the batch-size weights.)
        self.epoch_losses = nn.ModuleDict(
            {
                f"{stage}_{name}": MeanMetric(nan_strategy=math.nan)
                for stage in STAGES
                for name in self.loss_names
            }
        )

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

    # ------------------------------------------------------------------ what a task module implements
    def losses(self, outputs: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        """The batch's losses, one per ``loss_names`` entry; ``loss`` is the one optimized."""
        raise NotImplementedError

    def update_metrics(self, outputs: dict[str, torch.Tensor], batch: dict, stage: str) -> None:
        """Add one batch's predictions to ``stage``'s metrics (nothing by default)."""

    def compute_metrics(self, stage: str) -> dict[str, Any]:
        """The epoch's metric values ``{"val/accuracy": ...}`` over all processes (torchmetrics'
        ``compute`` is a collective: every process calls this at the same point, in the same order)."""
        return {}

    def reset_metrics(self, stage: str) -> None:
        """Forget ``stage``'s accumulated metric state; called when each of its epochs starts."""

    @staticmethod
    def batch_size(batch: dict) -> int:
        """How many examples ``batch`` holds: its ``lengths`` (every built-in featurizer has them)."""
        if "lengths" in batch:
            return int(batch["lengths"].size(0))
        return int(next(v for v in batch.values() if isinstance(v, torch.Tensor)).size(0))

    # ------------------------------------------------------------------ the one training step
    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.model(batch)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        """Every task's step: the model's outputs, the losses (tracked per epoch), the metrics."""
        outputs = self(batch)
        losses = self.losses(outputs, batch)
        size = self.batch_size(batch)
        for name in self.loss_names:
            self.track_loss(stage, name, losses[name], size)
        self.update_metrics(outputs, batch, stage)
        return losses["loss"]

    def track_loss(self, stage: str, name: str, value: torch.Tensor, batch_size: int) -> None:
        """Add one batch's ``name`` loss (one of ``loss_names``) to the epoch's mean."""
        self.epoch_losses[f"{stage}_{name}"].update(value.detach(), batch_size)

    def _log_epoch_losses(self, stage: str) -> None:
        for name in self.loss_names:
            mean = self.epoch_losses[f"{stage}_{name}"]
            # compute() gathers every process's sum and weight: a collective, one per loss in order
            self.log(f"{stage}/{name}", mean.compute(), prog_bar=name == "loss" and stage != "test")
            mean.reset()

    def _log_epoch_metrics(self, stage: str) -> None:
        """Compute the epoch's task metrics over all processes and log them.

        Every process calls this at the same point; reductions across processes must be explicit
        collectives in a fixed order, never ``log(..., sync_dist=True)``."""
        values = self.compute_metrics(stage)
        if values:
            self.log_dict(values, prog_bar=stage == "val")

    def _log_epoch(self, stage: str) -> None:
        self._log_epoch_losses(stage)
        self._log_epoch_metrics(stage)

    def on_train_epoch_start(self) -> None:
        self.reset_metrics("train")

    def on_validation_epoch_start(self) -> None:
        self.reset_metrics("val")

    def on_test_epoch_start(self) -> None:
        self.reset_metrics("test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        optimizer = build_optimizer(parameter_groups(self, self.optim_cfg), self.optim_cfg)
        total_steps = int(self.trainer.estimated_stepping_batches) if self.trainer else 1
        scheduler = build_scheduler(optimizer, self.optim_cfg, total_steps, self.monitor, self.monitor_mode)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
