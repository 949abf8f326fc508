"""Joint intent-slot: the LightningModule that trains an ``IntentSlotModel`` and scores frames."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nlpkit.metrics import FrameAccuracy
from nlpkit.tasks.intent_slot.model import IntentSlotModel
from nlpkit.tasks.tagging.model import sequence_mask
from nlpkit.tasks.tagging.module import TaggingModule


class IntentSlotModule(TaggingModule):
    """Loss ``intent_weight * intent CE + slot_weight * slot loss`` (softmax or CRF NLL).

    Logs ``{stage}/loss``, ``intent_loss``, ``slot_loss``; for val/test ``intent_accuracy``,
    ``slot_f1`` (conlleval span F1), ``slot_precision``, ``slot_recall``, ``frame_accuracy`` and
    ``unseen_intents`` (gold intents never seen in training, all counted as errors).
    """

    loss_names = ("loss", "intent_loss", "slot_loss")

    def __init__(
        self,
        model: IntentSlotModel,
        label_names: Sequence[str],
        intent_names: Sequence[str],
        optim_cfg,
        monitor: str = "val/frame_accuracy",
        monitor_mode: str = "max",
        intent_weight: float = 1.0,
        slot_weight: float = 1.0,
    ):
        super().__init__(model, label_names, optim_cfg, monitor, monitor_mode)
        self.intent_names = list(intent_names)
        self.intent_weight = float(intent_weight)
        self.slot_weight = float(slot_weight)
        self.frames = nn.ModuleDict(
            {"val": FrameAccuracy(self.intent_names), "test": FrameAccuracy(self.intent_names)}
        )

    def forward(self, tokens, lengths, chars=None, shapes=None):
        return self.model(tokens, lengths, chars, shapes)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        intent_logits, emissions = self(
            batch["tokens"], batch["lengths"], batch.get("chars"), batch.get("shapes")
        )
        mask = sequence_mask(batch["tokens"], batch["lengths"])
        slot_loss = self.model.output.loss(emissions, batch["tags"], mask)
        known = batch["intents"] >= 0  # an intent unseen in training has no class to learn
        if known.any():
            intent_loss = self.model.doc_output.loss(intent_logits[known], batch["intents"][known])
        else:
            intent_loss = intent_logits.sum() * 0.0
        loss = self.intent_weight * intent_loss + self.slot_weight * slot_loss
        batch_size = batch["tokens"].size(0)
        for name, value in (("loss", loss), ("intent_loss", intent_loss), ("slot_loss", slot_loss)):
            self.track_loss(stage, name, value, batch_size)
        if stage != "train":
            predicted = self.model.output.decode(emissions, mask).cpu().tolist()
            tags = [
                [self.label_names[i] for i in row[:n]] for row, n in zip(predicted, batch["lengths"].tolist())
            ]
            intents = [self.intent_names[i] for i in intent_logits.argmax(-1).cpu().tolist()]
            self.scorers[stage].update(batch["gold"], tags)
            self.frames[stage].update(batch["gold_intents"], intents, batch["gold"], tags)
        return loss

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self.frames["val"].reset()

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.frames["test"].reset()

    def _log_spans(self, stage: str) -> dict:
        # every process computes spans, then frames, in this order: torchmetrics sums their counts
        spans = self.scorers[stage].compute()
        report = spans["report"]
        overall = report["overall"]
        frames = self.frames[stage].compute()
        self.log_dict(
            {
                f"{stage}/slot_f1": overall["f1"],
                f"{stage}/slot_precision": overall["precision"],
                f"{stage}/slot_recall": overall["recall"],
                f"{stage}/token_accuracy": spans["token_accuracy"],
                f"{stage}/intent_accuracy": frames["intent_accuracy"],
                f"{stage}/frame_accuracy": frames["frame_accuracy"],
                f"{stage}/unseen_intents": frames["unseen_intents"],
            },
            prog_bar=stage == "val",
        )
        return report
