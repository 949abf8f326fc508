"""Document classification: the LightningModule that trains a ``DocClassifier``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics.aggregation import SumMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from nlpkit.metrics.classification import classification_metrics
from nlpkit.tasks.doc_cls.model import DocClassifier
from nlpkit.training.module import TaskModule


class DocClassificationModule(TaskModule):
    """Owns loss, metrics, logging and optimizers; the network itself is a plain ``DocClassifier``.

    ``score_unseen`` (``data.unseen_labels=scored_wrong``): val/test rows whose gold label training never
    saw carry class id ``-100``; the loss ignores them, the metrics count each as a wrong prediction
    (an extra "unseen" class no prediction can match: it lowers ``accuracy`` and enters ``macro_f1``
    with F1 0), and ``{stage}/unseen_labels`` logs how many there were.
    """

    def __init__(
        self,
        model: DocClassifier,
        label_names: Sequence[str],
        optim_cfg,
        monitor: str = "val/accuracy",
        monitor_mode: str = "max",
        score_unseen: bool = False,
    ):
        super().__init__(model, label_names, optim_cfg, monitor, monitor_mode)
        self.multilabel = bool(getattr(model.output, "multilabel", False))
        self.score_unseen = bool(score_unseen) and not self.multilabel
        n = len(self.label_names)
        scored = n + 1 if self.score_unseen else n  # the extra class: every unseen gold label
        self.metrics = torch.nn.ModuleDict(
            {
                f"{stage}_metrics": classification_metrics(scored, self.multilabel).clone(prefix=f"{stage}/")
                for stage in ("train", "val", "test")
            }
        )
        self.unseen = torch.nn.ModuleDict(
            {stage: SumMetric() for stage in ("val", "test")} if self.score_unseen else {}
        )
        self.confusion = None if self.multilabel else MulticlassConfusionMatrix(num_classes=n)
        self.test_confusion: torch.Tensor | None = None

    def losses(self, outputs, batch):
        logits, labels = outputs["logits"], batch["labels"]
        if self.score_unseen:
            known = labels >= 0  # an unseen label has no class to learn
            if not known.any():
                return {"loss": logits.sum() * 0.0}
            logits, labels = logits[known], labels[known]
        return {"loss": self.model.output.loss(logits, labels)}

    def update_metrics(self, outputs, batch, stage):
        predictions = self.model.output.predict(outputs["logits"])
        targets = batch["labels"].long()
        known = targets >= 0 if self.score_unseen else None
        if known is not None:
            targets = torch.where(known, targets, len(self.label_names))  # the "unseen" class
            if stage in self.unseen:
                self.unseen[stage].update((~known).sum().float())
        self.metrics[f"{stage}_metrics"].update(predictions, targets)
        if stage == "test" and self.confusion is not None:
            if known is not None:
                predictions, targets = predictions[known], targets[known]
            self.confusion.update(predictions, targets)

    def reset_metrics(self, stage):
        self.metrics[f"{stage}_metrics"].reset()
        if stage in self.unseen:
            self.unseen[stage].reset()
        if stage == "test" and self.confusion is not None:
            self.confusion.reset()

    def compute_metrics(self, stage):
        """Metrics accumulate per step (cheap) and are computed once per epoch: logging a metric
        collection every step costs several ms, a large share of a small model's step."""
        # compute() gathers every process's counts under DDP, so each rank logs the global value
        values = self.metrics[f"{stage}_metrics"].compute()
        if stage in self.unseen:
            values[f"{stage}/unseen_labels"] = self.unseen[stage].compute()
        if stage == "test" and self.confusion is not None:
            self.test_confusion = self.confusion.compute().cpu()  # gathered too: the whole test split
        return values
