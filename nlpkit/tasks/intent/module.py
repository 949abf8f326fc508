"""Intent detection over word-level features: the LightningModule that trains an ``IntentModel``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from nlpkit.metrics import FrameAccuracy
from nlpkit.tasks.intent.model import IntentModel
from nlpkit.training.module import TaskModule


class IntentModule(TaskModule):
    """Cross-entropy on the intent; logs ``{stage}/loss`` and, for val/test, ``intent_accuracy`` and
    ``unseen_intents`` (gold intents never seen in training: no class to predict, counted as errors),
    the same names as ``task=intent_slot`` so the two compare directly."""

    def __init__(
        self,
        model: IntentModel,
        intent_names: Sequence[str],
        optim_cfg,
        monitor: str = "val/intent_accuracy",
        monitor_mode: str = "max",
    ):
        super().__init__(model, intent_names, optim_cfg, monitor, monitor_mode)
        self.scorers = nn.ModuleDict(
            {"val": FrameAccuracy(self.label_names), "test": FrameAccuracy(self.label_names)}
        )

    def losses(self, outputs, batch):
        logits = outputs["intent_logits"]  # [B, I]
        known = batch["intents"] >= 0  # an intent unseen in training has no class to learn
        if known.any():
            return {"loss": self.model.doc_output.loss(logits[known], batch["intents"][known])}
        return {"loss": logits.sum() * 0.0}

    def update_metrics(self, outputs, batch, stage):
        if stage != "train":
            predicted = [self.label_names[i] for i in outputs["intent_logits"].argmax(-1).cpu().tolist()]
            self.scorers[stage].update(batch["gold_intents"], predicted)

    def reset_metrics(self, stage):
        if stage in self.scorers:
            self.scorers[stage].reset()

    def compute_metrics(self, stage):
        if stage not in self.scorers:
            return {}
        intents = self.scorers[stage].compute()  # summed over DDP processes by torchmetrics
        return {
            f"{stage}/intent_accuracy": intents["intent_accuracy"],
            f"{stage}/unseen_intents": intents["unseen_intents"],
        }
