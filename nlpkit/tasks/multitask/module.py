"""Multi-task training: one LightningModule hosting one task module per sub-task.

Each sub-task's own module (whatever its task builds: ``DocClassificationModule``, ``TaggingModule``,
``IntentSlotModule``, a user's task's ...) keeps its loss, decoding and metrics; this module routes each batch to its sub-task, weights the training loss, runs
the sub-tasks' epoch hooks and prefixes everything they log with the sub-task's name
(``val/atis/slot_f1``). It adds ``train/loss`` (the weighted loss, averaged over every process's
examples) and ``{stage}/mean_target``: the mean over sub-tasks of each one's target metric, the default
checkpoint-selection metric.

Under DDP every process runs the sub-tasks' epoch-end reductions in the same order (config order), for
the same sub-tasks: a sub-task is scored when any process evaluated a batch of it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nlpkit.training.module import TaskModule

MEAN_TARGET = "mean_target"


class MultiTaskModule(TaskModule):
    """``self.model`` is a ``ModuleDict`` of the sub-task models (shared modules are the same object
    in several of them, so the optimizer sees each parameter once); ``self.subtasks`` holds the
    sub-task modules that own them.

    Args:
        subtasks: sub-task name -> its task module, built with the sub-task's own config.
        kinds: sub-task name -> its task name (``doc_cls``, ``tagging``, ...).
        loss_weights: sub-task name -> weight of its loss in training.
        target_metrics: sub-task name -> the metric (without stage) its ``mean_target`` share comes from.
        mean_target: whether to log ``mean_target`` (not when a target is lower-is-better).
    """

    def __init__(
        self,
        subtasks: Mapping[str, TaskModule],
        kinds: Mapping[str, str],
        loss_weights: Mapping[str, float],
        target_metrics: Mapping[str, str],
        optim_cfg,
        monitor: str = f"val/{MEAN_TARGET}",
        monitor_mode: str = "max",
        *,
        mean_target: bool = True,
    ):
        models = nn.ModuleDict({name: module.model for name, module in subtasks.items()})
        super().__init__(models, [], optim_cfg, monitor, monitor_mode)
        self.subtasks = nn.ModuleDict(dict(subtasks))
        self.kinds = dict(kinds)
        self.loss_weights = {name: float(loss_weights[name]) for name in subtasks}
        self.target_metrics = {name: str(target_metrics[name]) for name in subtasks}
        self.mean_target = mean_target
        self._targets: dict[str, dict[str, float]] = {"val": {}, "test": {}}
        self._evaluated: dict[str, set[str]] = {"val": set(), "test": set()}
        for name, module in subtasks.items():
            module.route_logs(functools.partial(self._log_subtask, name))

    def _log_subtask(self, task: str, name: str, value: Any, *args, **kwargs) -> None:
        """A sub-task's ``stage/metric`` logged as ``stage/task/metric``; its target value is kept."""
        stage, _, metric = name.partition("/")
        target = metric == self.target_metrics[task]
        if target and stage in self._targets:
            self._targets[stage][task] = float(value)
        kwargs["add_dataloader_idx"] = False  # the task name already tells the loaders apart
        kwargs["prog_bar"] = bool(kwargs.get("prog_bar")) and (target or metric == "loss")
        self.log(f"{stage}/{task}/{metric}", value, *args, **kwargs)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        task = batch["task"]
        loss = self.loss_weights[task] * self.subtasks[task]._step(batch["batch"], stage)
        if stage == "train":
            self.track_loss("train", "loss", loss, self.subtasks[task].batch_size(batch["batch"]))
        else:
            self._evaluated[stage].add(task)
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._step(batch, "test")

    # ------------------------------------------------------------------ epoch hooks, per sub-task
    def on_train_epoch_start(self) -> None:
        for module in self.subtasks.values():
            module.on_train_epoch_start()

    def on_train_epoch_end(self) -> None:
        for module in self.subtasks.values():
            module.on_train_epoch_end()
        self._log_epoch_losses("train")  # the weighted loss over every sub-task's batches

    def _start_eval(self, stage: str) -> None:
        self._targets[stage] = {}
        self._evaluated[stage] = set()
        hook = "on_validation_epoch_start" if stage == "val" else "on_test_epoch_start"
        for module in self.subtasks.values():
            getattr(module, hook)()

    def _scored(self, stage: str) -> list[str]:
        """The sub-tasks evaluated in this epoch by any process (a process whose share of a small
        split is empty still joins that sub-task's reductions), in config order."""
        names = list(self.subtasks)
        seen = torch.tensor([float(name in self._evaluated[stage]) for name in names], device=self.device)
        trainer = self._trainer  # None outside a Trainer (a plain loop calling the hooks)
        if trainer is not None and trainer.world_size > 1:
            seen = trainer.strategy.reduce(seen, reduce_op="sum")  # one collective, every process
        return [name for name, flag in zip(names, seen.tolist()) if flag > 0]

    def _end_eval(self, stage: str) -> None:
        """Each evaluated sub-task logs its epoch metrics; then the mean of their target metrics."""
        hook = "on_validation_epoch_end" if stage == "val" else "on_test_epoch_end"
        for name in self._scored(stage):
            getattr(self.subtasks[name], hook)()
        values = list(self._targets[stage].values())
        if values and self.mean_target:
            self.log(f"{stage}/{MEAN_TARGET}", sum(values) / len(values), prog_bar=stage == "val")

    def on_validation_epoch_start(self) -> None:
        self._start_eval("val")

    def on_validation_epoch_end(self) -> None:
        self._end_eval("val")

    def on_test_epoch_start(self) -> None:
        self._start_eval("test")

    def on_test_epoch_end(self) -> None:
        self._end_eval("test")
