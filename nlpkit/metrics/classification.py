"""Document classification metrics: micro accuracy and macro F1 (exact match for multi-label)."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MultilabelAccuracy,
    MultilabelExactMatch,
    MultilabelF1Score,
)


class MacroF1(MulticlassF1Score):
    """Macro F1 over the classes seen in targets or predictions, averaged in float64.

    torchmetrics averages per-class F1 in float32 as ``sum(score / n)``: ten perfect classes give
    1.0000001. The same per-class scores averaged in float64 never exceed 1.
    """

    def __init__(self, num_classes: int):
        super().__init__(num_classes=num_classes, average="none")

    def compute(self) -> torch.Tensor:
        per_class = super().compute().double()
        tp, fp, _, fn = self._final_state()
        present = (tp + fp + fn) > 0  # torchmetrics' macro average skips absent classes too
        if not present.any():
            return torch.zeros((), dtype=torch.float32, device=per_class.device)
        return per_class[present].mean().float()


class MultilabelMacroF1(MultilabelF1Score):
    """Macro F1 over every label, averaged in float64 (see ``MacroF1``)."""

    def __init__(self, num_labels: int):
        super().__init__(num_labels=num_labels, average="none")

    def compute(self) -> torch.Tensor:
        return super().compute().double().mean().float()


def classification_metrics(num_labels: int, multilabel: bool) -> MetricCollection:
    """``accuracy`` (micro; exact-match for multi-label) and ``macro_f1``."""
    if multilabel:
        return MetricCollection(
            {
                "accuracy": MultilabelExactMatch(num_labels=num_labels),
                "label_accuracy": MultilabelAccuracy(num_labels=num_labels, average="micro"),
                "macro_f1": MultilabelMacroF1(num_labels),
            }
        )
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes=num_labels, average="micro"),
            "macro_f1": MacroF1(num_labels),
        }
    )
