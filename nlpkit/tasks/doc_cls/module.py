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

from nlpkit.tasks.doc_cls.model import DocClassifier
from nlpkit.training.module import TaskModule


class MacroF1(MulticlassF1Score):
    """Macro F1 over the classes seen in targets or predictions, averaged in float64.

    torchmetrics averages per-class F1 in float32 as ``sum(score / n)``: ten perfect classes give
    1.0000001. The same per-class scores averaged in float64 never exceed 1.
    """

    def __init__(self, num_classes: int):
        super().__init__(num_classes=num_classes, average="none")

    def compute(self) -> torch.Tensor:
        per_class = super().compute().double()
        tp, fp, _, fn = self._final_state()
        present = (tp + fp + fn) > 0  # torchmetrics' macro average skips absent classes too
        if not present.any():
            return torch.zeros((), dtype=torch.float32, device=per_class.device)
        return per_class[present].mean().float()


class MultilabelMacroF1(MultilabelF1Score):
    """Macro F1 over every label, averaged in float64 (see ``MacroF1``)."""

    def __init__(self, num_labels: int):
        super().__init__(num_labels=num_labels, average="none")

    def compute(self) -> torch.Tensor:
        return super().compute().double().mean().float()


def classification_metrics(num_labels: int, multilabel: bool) -> MetricCollection:
    """``accuracy`` (micro; exact-match for multi-label) and ``macro_f1``."""
    if multilabel:
        return MetricCollection(
            {
                "accuracy": MultilabelExactMatch(num_labels=num_labels),
                "label_accuracy": MultilabelAccuracy(num_labels=num_labels, average="micro"),
                "macro_f1": MultilabelMacroF1(num_labels),
            }
        )
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes=num_labels, average="micro"),
            "macro_f1": MacroF1(num_labels),
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
