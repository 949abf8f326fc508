"""Document classification: the LightningModule that trains a ``DocClassifier``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MultilabelAccuracy,
    MultilabelExactMatch,
    MultilabelF1Score,
)

from nlpkit.models.doc_classifier import DocClassifier
from nlpkit.training.module import TaskModule


def classification_metrics(num_labels: int, multilabel: bool) -> MetricCollection:
    """``accuracy`` (micro; exact-match for multi-label) and ``macro_f1``."""
    if multilabel:
        return MetricCollection(
            {
                "accuracy": MultilabelExactMatch(num_labels=num_labels),
                "label_accuracy": MultilabelAccuracy(num_labels=num_labels, average="micro"),
                "macro_f1": MultilabelF1Score(num_labels=num_labels, average="macro"),
            }
        )
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes=num_labels, average="micro"),
            "macro_f1": MulticlassF1Score(num_classes=num_labels, average="macro"),
        }
    )


class DocClassificationModule(TaskModule):
    """Owns loss, metrics, logging and optimizers; the network itself is a plain ``DocClassifier``."""

    def __init__(
        self,
        model: DocClassifier,
        label_names: Sequence[str],
        optim_cfg,
        monitor: str = "val/accuracy",
        monitor_mode: str = "max",
    ):
        super().__init__(model, label_names, optim_cfg, monitor, monitor_mode)
        self.multilabel = bool(getattr(model.output, "multilabel", False))
        n = len(self.label_names)
        self.metrics = torch.nn.ModuleDict(
            {
                f"{stage}_metrics": classification_metrics(n, self.multilabel).clone(prefix=f"{stage}/")
                for stage in ("train", "val", "test")
            }
        )
        self.confusion = None if self.multilabel else MulticlassConfusionMatrix(num_classes=n)
        self.test_confusion: torch.Tensor | None = None

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(tokens, lengths)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self(batch["tokens"], batch["lengths"])
        loss = self.model.output.loss(logits, batch["labels"])
        predictions = self.model.output.predict(logits)
        batch_size = batch["tokens"].size(0)
        self.metrics[f"{stage}_metrics"].update(predictions, batch["labels"].long())
        self.track_loss(stage, "loss", loss, batch_size)
        if stage == "test" and self.confusion is not None:
            self.confusion.update(predictions, batch["labels"])
        return loss

    def _log_epoch_metrics(self, stage: str) -> None:
        """Metrics accumulate per step (cheap) and are computed and logged once per epoch: logging a
        metric collection every step costs several ms, a large share of a small model's step."""
        metrics = self.metrics[f"{stage}_metrics"]
        # compute() gathers every process's counts under DDP, so each rank logs the global value
        self.log_dict(metrics.compute(), prog_bar=stage == "val")
        metrics.reset()
        if stage == "test" and self.confusion is not None:
            self.test_confusion = self.confusion.compute().cpu()  # gathered too: the whole test split
            self.confusion.reset()
