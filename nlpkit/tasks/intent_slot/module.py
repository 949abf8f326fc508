"""Joint intent-slot: the LightningModule that trains an ``IntentSlotModel`` and scores frames."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from nlpkit.metrics import FrameAccuracy
from nlpkit.tasks.intent_slot.model import IntentSlotModel
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

    def losses(self, outputs, batch):
        slot_loss = self.model.output.loss(outputs["emissions"], batch["tags"], outputs["mask"])
        intent_logits = outputs["intent_logits"]
        known = batch["intents"] >= 0  # an intent unseen in training has no class to learn
        if known.any():
            intent_loss = self.model.doc_output.loss(intent_logits[known], batch["intents"][known])
        else:
            intent_loss = intent_logits.sum() * 0.0
        loss = self.intent_weight * intent_loss + self.slot_weight * slot_loss
        return {"loss": loss, "intent_loss": intent_loss, "slot_loss": slot_loss}

    def update_metrics(self, outputs, batch, stage):
        if stage == "train":
            return
        tags = self.predicted_tags(outputs, batch)
        intents = [self.intent_names[i] for i in outputs["intent_logits"].argmax(-1).cpu().tolist()]
        self.scorers[stage].update(batch["gold"], tags)
        self.frames[stage].update(batch["gold_intents"], intents, batch["gold"], tags)

    def reset_metrics(self, stage):
        super().reset_metrics(stage)
        if stage in self.frames:
            self.frames[stage].reset()

    def compute_metrics(self, stage):
        if stage not in self.scorers:
            return {}
        # every process computes spans, then frames, in this order: torchmetrics sums their counts
        spans = self.scorers[stage].compute()
        report = spans["report"]
        setattr(self, f"{stage}_report", report)
        overall = report["overall"]
        frames = self.frames[stage].compute()
        return {
            f"{stage}/slot_f1": overall["f1"],
            f"{stage}/slot_precision": overall["precision"],
            f"{stage}/slot_recall": overall["recall"],
            f"{stage}/token_accuracy": spans["token_accuracy"],
            f"{stage}/intent_accuracy": frames["intent_accuracy"],
            f"{stage}/frame_accuracy": frames["frame_accuracy"],
            f"{stage}/unseen_intents": frames["unseen_intents"],
        }
