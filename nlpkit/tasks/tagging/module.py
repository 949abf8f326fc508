"""Word tagging: the LightningModule that trains a ``WordTagger`` and scores spans like conlleval."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nlpkit.metrics import SpanF1
from nlpkit.tasks.tagging.model import WordTagger, sequence_mask
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

    def forward(self, tokens, lengths, chars=None, shapes=None) -> torch.Tensor:
        return self.model(tokens, lengths, chars, shapes)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        emissions = self(batch["tokens"], batch["lengths"], batch.get("chars"), batch.get("shapes"))
        mask = sequence_mask(batch["tokens"], batch["lengths"])
        loss = self.model.output.loss(emissions, batch["tags"], mask)
        self.track_loss(stage, "loss", loss, batch["tokens"].size(0))
        if stage != "train":
            predicted = self.model.output.decode(emissions, mask).cpu().tolist()
            names = [
                [self.label_names[i] for i in row[:n]] for row, n in zip(predicted, batch["lengths"].tolist())
            ]
            self.scorers[stage].update(batch["gold"], names)
        return loss

    def on_validation_epoch_start(self) -> None:
        self.scorers["val"].reset()

    def on_test_epoch_start(self) -> None:
        self.scorers["test"].reset()

    def _log_spans(self, stage: str) -> dict:
        spans = self.scorers[stage].compute()  # summed over DDP processes by torchmetrics
        report = spans["report"]
        overall = report["overall"]
        self.log_dict(
            {
                f"{stage}/span_f1": overall["f1"],
                f"{stage}/span_precision": overall["precision"],
                f"{stage}/span_recall": overall["recall"],
                f"{stage}/token_accuracy": spans["token_accuracy"],
            },
            prog_bar=stage == "val",
        )
        return report

    def _log_epoch_metrics(self, stage: str) -> None:
        if stage == "val":
            self.val_report = self._log_spans("val")
        elif stage == "test":
            self.test_report = self._log_spans("test")
