"""Text regression: the LightningModule. Loss from the output layer (MSE); metrics MSE, MAE, Pearson."""

from __future__ import annotations

from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, PearsonCorrCoef

from nlpkit.training.module import TaskModule


class DocRegressionModule(TaskModule):
    """Logs ``{stage}/mse``, ``{stage}/mae`` and ``{stage}/pearson`` (torchmetrics: reduced across DDP
    processes by torchmetrics itself)."""

    def __init__(self, model, optim_cfg, monitor: str = "val/mse", monitor_mode: str = "min"):
        super().__init__(model, [], optim_cfg, monitor, monitor_mode)
        self.metrics = nn.ModuleDict(  # keyed f"{stage}_metrics": ModuleDict refuses the key "train"
            {
                f"{stage}_metrics": MetricCollection(
                    {"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "pearson": PearsonCorrCoef()}
                ).clone(prefix=f"{stage}/")
                for stage in ("train", "val", "test")
            }
        )

    def losses(self, outputs, batch):
        return {"loss": self.model.output.loss(outputs["logits"], batch["targets"])}

    def update_metrics(self, outputs, batch, stage):
        self.metrics[f"{stage}_metrics"].update(
            self.model.output.predict(outputs["logits"]).detach(), batch["targets"]
        )

    def reset_metrics(self, stage):
        self.metrics[f"{stage}_metrics"].reset()

    def compute_metrics(self, stage):
        return self.metrics[f"{stage}_metrics"].compute()
