"""Word tagging: the LightningModule that trains a ``WordTagger`` and scores spans like conlleval."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nlpkit.data.tag_schemes import span_counts, span_report
from nlpkit.models.word_tagger import WordTagger, sequence_mask
from nlpkit.training.distributed import sum_counts
from nlpkit.training.module import TaskModule


class SpanScorer:
    """Accumulates span and token counts over an epoch; ``report()`` gives conlleval's numbers."""

    #: the counts, summed across DDP processes by ``sync``
    COUNTS = ("correct", "predicted", "gold", "tokens", "tokens_correct")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.correct: dict[str, int] = {}
        self.predicted: dict[str, int] = {}
        self.gold: dict[str, int] = {}
        self.tokens = 0
        self.tokens_correct = 0

    def update(self, gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> None:
        correct, pred, gold_counts = span_counts(zip(gold, predicted))
        for total, part in ((self.correct, correct), (self.predicted, pred), (self.gold, gold_counts)):
            for kind, n in part.items():
                total[kind] = total.get(kind, 0) + n
        for g, p in zip(gold, predicted):
            self.tokens += len(g)
            self.tokens_correct += sum(a == b for a, b in zip(g, p))

    def sync(self) -> None:
        """Under DDP, make the counts those of every process together (call on every process)."""
        sum_counts(self, self.COUNTS)

    def report(self) -> dict[str, dict[str, float]]:
        return span_report(self.correct, self.predicted, self.gold)

    @property
    def token_accuracy(self) -> float:
        return self.tokens_correct / self.tokens if self.tokens else 0.0


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
        self.scorers = {"val": SpanScorer(), "test": SpanScorer()}
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
        scorer = self.scorers[stage]
        scorer.sync()
        report = scorer.report()
        overall = report["overall"]
        self.log_dict(
            {
                f"{stage}/span_f1": overall["f1"],
                f"{stage}/span_precision": overall["precision"],
                f"{stage}/span_recall": overall["recall"],
                f"{stage}/token_accuracy": scorer.token_accuracy,
            },
            prog_bar=stage == "val",
        )
        return report

    def _log_epoch_metrics(self, stage: str) -> None:
        if stage == "val":
            self.val_report = self._log_spans("val")
        elif stage == "test":
            self.test_report = self._log_spans("test")
