"""Word tagging: the LightningModule that trains a ``WordTagger`` and scores spans like conlleval."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from nlpkit.metrics import SpanF1
from nlpkit.tasks.tagging.model import WordTagger, word_tags
from nlpkit.training.module import TaskModule


class TaggingModule(TaskModule):
    """Owns loss, decoding, span metrics, logging and optimizers; the network is a plain ``WordTagger``.

    Logs ``{stage}/loss``, and for val/test ``{stage}/span_f1``, ``span_precision``, ``span_recall``,
    ``token_accuracy``. ``test_report`` holds the per-type report after testing.
    """

    def __init__(
        self,
        model: WordTagger,
        label_names: Sequence[str],
        optim_cfg,
        monitor: str = "val/span_f1",
        monitor_mode: str = "max",
    ):
        super().__init__(model, label_names, optim_cfg, monitor, monitor_mode)
        self.scorers = nn.ModuleDict({"val": SpanF1(label_names), "test": SpanF1(label_names)})
        self.test_report: dict | None = None
        self.val_report: dict | None = None

    def losses(self, outputs, batch):
        return {"loss": self.model.output.loss(outputs["emissions"], batch["tags"], outputs["mask"])}

    def predicted_tags(self, outputs, batch) -> list[list[str]]:
        """The decoded tag names of each sentence, one per gold word (a word past a piece featurizer's
        cut: ``O``, see ``TokenEncoderModel.scored_words``)."""
        predicted = self.model.output.decode(outputs["emissions"], outputs["mask"]).cpu().tolist()
        scored = self.model.scored_words(batch)
        return [
            word_tags(self.label_names, row, n, len(gold))
            for row, n, gold in zip(predicted, scored, batch["gold"])
        ]

    def update_metrics(self, outputs, batch, stage):
        if stage != "train":  # spans are scored on val/test; decoding every training batch costs time
            self.scorers[stage].update(batch["gold"], self.predicted_tags(outputs, batch))

    def reset_metrics(self, stage):
        if stage in self.scorers:
            self.scorers[stage].reset()

    def compute_metrics(self, stage):
        if stage not in self.scorers:
            return {}
        spans = self.scorers[stage].compute()  # summed over DDP processes by torchmetrics
        report = spans["report"]
        setattr(self, f"{stage}_report", report)
        overall = report["overall"]
        return {
            f"{stage}/span_f1": overall["f1"],
            f"{stage}/span_precision": overall["precision"],
            f"{stage}/span_recall": overall["recall"],
            f"{stage}/token_accuracy": spans["token_accuracy"],
        }
