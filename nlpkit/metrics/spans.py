"""Span precision / recall / F1 with conlleval's semantics, and token accuracy."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torchmetrics import Metric

from nlpkit.data.tag_schemes import spans, split_tag


def span_counts(
    pairs: Iterable[tuple[Sequence[str], Sequence[str]]],
) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """``(gold, predicted)`` tag sequences -> per-type counts of correct, predicted and gold spans."""
    correct: dict[str, int] = {}
    predicted: dict[str, int] = {}
    gold: dict[str, int] = {}
    for gold_tags, pred_tags in pairs:
        gold_spans = set(spans(gold_tags))
        pred_spans = set(spans(pred_tags))
        for kind, _, _ in gold_spans:
            gold[kind] = gold.get(kind, 0) + 1
        for kind, _, _ in pred_spans:
            predicted[kind] = predicted.get(kind, 0) + 1
        for kind, _, _ in gold_spans & pred_spans:
            correct[kind] = correct.get(kind, 0) + 1
    return correct, predicted, gold


def prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def span_report(
    correct: dict[str, int], predicted: dict[str, int], gold: dict[str, int]
) -> dict[str, dict[str, float]]:
    """Micro totals (``"overall"``) and one entry per type: precision, recall, f1, support, predicted."""
    report = {
        "overall": {
            **prf(sum(correct.values()), sum(predicted.values()), sum(gold.values())),
            "support": sum(gold.values()),
            "predicted": sum(predicted.values()),
        }
    }
    for kind in sorted(set(gold) | set(predicted)):
        c, p, g = correct.get(kind, 0), predicted.get(kind, 0), gold.get(kind, 0)
        report[kind] = {**prf(c, p, g), "support": g, "predicted": p}
    return report


def span_f1(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """Micro span F1 over sentences (conlleval's ``FB1``, as a fraction)."""
    return span_report(*span_counts(zip(gold, predicted)))["overall"]["f1"]


def span_types(tag_names: Sequence[str]) -> list[str]:
    """The span types a tag vocabulary can produce (``B-PER``, ``I-PER`` -> ``PER``), sorted."""
    return sorted({kind for prefix, kind in map(split_tag, tag_names) if prefix != "O" and kind})


class SpanF1(Metric):
    """Counts correct, predicted and gold spans per type, and correct tokens, over an epoch.

    ``update(gold, predicted)`` takes tag-name sequences (one per sentence); ``compute()`` returns
    ``{"report": span_report(...), "token_accuracy": float}``: micro totals under ``"overall"`` and one
    entry per type, exactly conlleval's numbers. Gold spans of a type the tag vocabulary does not have
    (a test split with types training never saw) count, all under the entry ``UNSEEN``: the model
    cannot predict them, so they are recall errors. (Count tensors have one slot a type, so that
    torchmetrics can sum them across DDP processes; the names of unseen types are not kept.)

    Args:
        tag_names: the tag vocabulary; its span types index the per-type count tensors.
    """

    full_state_update = False
    #: the report entry of gold spans whose type is not in the tag vocabulary
    UNSEEN = "<unseen type>"

    def __init__(self, tag_names: Sequence[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.types = [*span_types(tag_names), self.UNSEEN]
        self._index = {kind: i for i, kind in enumerate(self.types[:-1])}
        for name in ("correct", "predicted", "gold"):
            self.add_state(name, torch.zeros(len(self.types), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("tokens", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("tokens_correct", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> None:
        for state, counts in zip(
            (self.correct, self.predicted, self.gold), span_counts(zip(gold, predicted))
        ):
            for kind, n in counts.items():
                state[self._index.get(kind, -1)] += n  # -1: UNSEEN
        for g, p in zip(gold, predicted):
            self.tokens += len(g)
            self.tokens_correct += sum(a == b for a, b in zip(g, p))

    def compute(self) -> dict:
        def as_dict(state: torch.Tensor) -> dict[str, int]:
            return {kind: int(n) for kind, n in zip(self.types, state.tolist()) if n}

        tokens = int(self.tokens)
        return {
            "report": span_report(as_dict(self.correct), as_dict(self.predicted), as_dict(self.gold)),
            "token_accuracy": int(self.tokens_correct) / tokens if tokens else 0.0,
        }
