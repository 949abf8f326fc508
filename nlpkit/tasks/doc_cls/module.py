"""Document classification: the LightningModule that trains a ``DocClassifier``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from nlpkit.metrics.classification import classification_metrics
from nlpkit.tasks.doc_cls.model import DocClassifier
from nlpkit.training.module import TaskModule


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

    def losses(self, outputs, batch):
        return {"loss": self.model.output.loss(outputs["logits"], batch["labels"])}

    def update_metrics(self, outputs, batch, stage):
        predictions = self.model.output.predict(outputs["logits"])
        self.metrics[f"{stage}_metrics"].update(predictions, batch["labels"].long())
        if stage == "test" and self.confusion is not None:
            self.confusion.update(predictions, batch["labels"])

    def reset_metrics(self, stage):
        self.metrics[f"{stage}_metrics"].reset()
        if stage == "test" and self.confusion is not None:
            self.confusion.reset()

    def compute_metrics(self, stage):
        """Metrics accumulate per step (cheap) and are computed once per epoch: logging a metric
        collection every step costs several ms, a large share of a small model's step."""
        # compute() gathers every process's counts under DDP, so each rank logs the global value
        values = self.metrics[f"{stage}_metrics"].compute()
        if stage == "test" and self.confusion is not None:
            self.test_confusion = self.confusion.compute().cpu()  # gathered too: the whole test split
        return values
