"""Intent detection over word-level features: the LightningModule that trains an ``IntentModel``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
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

    def forward(self, tokens, lengths, chars=None, shapes=None) -> torch.Tensor:
        return self.model(tokens, lengths, chars, shapes)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        logits = self(batch["tokens"], batch["lengths"], batch.get("chars"), batch.get("shapes"))  # [B, I]
        known = batch["intents"] >= 0  # an intent unseen in training has no class to learn
        if known.any():
            loss = self.model.doc_output.loss(logits[known], batch["intents"][known])
        else:
            loss = logits.sum() * 0.0
        self.track_loss(stage, "loss", loss, batch["tokens"].size(0))
        if stage != "train":
            predicted = [self.label_names[i] for i in logits.argmax(-1).cpu().tolist()]
            self.scorers[stage].update(batch["gold_intents"], predicted)
        return loss

    def on_validation_epoch_start(self) -> None:
        self.scorers["val"].reset()

    def on_test_epoch_start(self) -> None:
        self.scorers["test"].reset()

    def _log_epoch_metrics(self, stage: str) -> None:
        if stage == "train":
            return
        intents = self.scorers[stage].compute()  # summed over DDP processes by torchmetrics
        self.log_dict(
            {
                f"{stage}/intent_accuracy": intents["intent_accuracy"],
                f"{stage}/unseen_intents": intents["unseen_intents"],
            },
            prog_bar=stage == "val",
        )
