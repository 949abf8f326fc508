"""Intent accuracy and frame accuracy (PyText's joint intent-slot metric)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric


class FrameAccuracy(Metric):
    """Counts over an epoch: intent accuracy, frame accuracy (intent and every slot tag right), and
    gold intents the model cannot predict (unseen in training; they count as errors).

    ``update(gold_intents, predicted_intents, gold_tags=None, predicted_tags=None)``: without tags
    (intent-only models) frame accuracy equals intent accuracy. ``compute()`` returns
    ``{"intent_accuracy", "frame_accuracy", "unseen_intents", "total"}``.

    Args:
        intent_names: the intents the model can predict (``unseen_intents`` counts the others).
    """

    full_state_update = False

    def __init__(self, intent_names: Sequence[str] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        self.known = set(intent_names)
        for name in ("total", "intent_correct", "frame_correct", "unseen"):
            self.add_state(name, torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        gold_intents: Sequence[str],
        predicted_intents: Sequence[str],
        gold_tags: Sequence[Sequence[str]] | None = None,
        predicted_tags: Sequence[Sequence[str]] | None = None,
    ) -> None:
        no_tags = [()] * len(gold_intents)
        for gi, pi, gt, pt in zip(
            gold_intents, predicted_intents, gold_tags or no_tags, predicted_tags or no_tags
        ):
            intent_ok = gi == pi
            self.total += 1
            self.intent_correct += int(intent_ok)
            self.frame_correct += int(intent_ok and list(gt) == list(pt))
            self.unseen += int(bool(self.known) and gi not in self.known)

    def compute(self) -> dict[str, float]:
        total = int(self.total)
        return {
            "intent_accuracy": int(self.intent_correct) / total if total else 0.0,
            "frame_accuracy": int(self.frame_correct) / total if total else 0.0,
            "unseen_intents": float(self.unseen),
            "total": float(total),
        }
