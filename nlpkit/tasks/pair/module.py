"""Pair classification / regression: the LightningModule. The loss is the output layer's (softmax
cross-entropy, or MSE with ``output=regression``); metrics accuracy and macro F1, or Pearson, Spearman
and MSE (torchmetrics, reduced across DDP processes by torchmetrics itself)."""

from __future__ import annotations

from torch import nn
from torchmetrics import MeanSquaredError, MetricCollection, PearsonCorrCoef, SpearmanCorrCoef
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from nlpkit.training.module import TaskModule


def pair_metrics(regression: bool, num_labels: int) -> MetricCollection:
    if regression:
        return MetricCollection(
            {"pearson": PearsonCorrCoef(), "spearman": SpearmanCorrCoef(), "mse": MeanSquaredError()}
        )
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_labels, average="micro"),
            "f1": MulticlassF1Score(num_labels, average="macro"),
        }
    )


class PairModule(TaskModule):
    """Logs ``{stage}/accuracy`` and ``{stage}/f1`` (classification) or ``{stage}/pearson``,
    ``{stage}/spearman`` and ``{stage}/mse`` (regression)."""

    def __init__(self, model, optim_cfg, regression: bool, num_labels: int, monitor: str, monitor_mode: str):
        super().__init__(model, [], optim_cfg, monitor, monitor_mode)
        self.regression = regression
        self.metrics = nn.ModuleDict(  # keyed f"{stage}_metrics": ModuleDict refuses the key "train"
            {
                f"{stage}_metrics": pair_metrics(regression, num_labels).clone(prefix=f"{stage}/")
                for stage in ("train", "val", "test")
            }
        )

    def losses(self, outputs, batch):
        return {"loss": self.model.output.loss(outputs["logits"], batch["labels"])}

    def update_metrics(self, outputs, batch, stage):
        logits = outputs["logits"].detach()
        if self.regression:
            self.metrics[f"{stage}_metrics"].update(self.model.output.predict(logits), batch["labels"])
        else:
            self.metrics[f"{stage}_metrics"].update(logits, batch["labels"])

    def reset_metrics(self, stage):
        self.metrics[f"{stage}_metrics"].reset()

    def compute_metrics(self, stage):
        return self.metrics[f"{stage}_metrics"].compute()
