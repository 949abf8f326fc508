"""Semantic-parsing metrics as Gupta et al. (2018) report them, over whole epochs.

- ``exact_match``: the predicted tree string equals the gold one;
- labeled bracketing ``bracket_precision``/``bracket_recall``/``bracket_f1``: each non-terminal is a
  ``(label, first token, end token)`` bracket, counted as a multiset per tree;
- ``intent_accuracy``: the root's intent is right;
- ``well_formed``: the share of predictions that are valid TOP trees (a parse the rules refuse counts
  as not well formed and gets no bracket; with the decoder's mask it is always 1.0).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torchmetrics import Metric

from nlpkit.tasks.semantic_parse.tree import Tree, parse_tree


class TreeMetrics(Metric):
    """``update(gold trees [N] as strings, predicted trees [N], each a Tree or None if ill-formed)``."""

    full_state_update = False
    counts = ("total", "exact", "intent", "well_formed", "gold_brackets", "predicted_brackets", "matched")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in self.counts:
            self.add_state(name, torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, gold: Sequence[str], predicted: Sequence[Tree | None]) -> None:
        for gold_text, tree in zip(gold, predicted):
            reference = parse_tree(gold_text)
            gold_brackets = Counter(reference.brackets())
            self.total += 1
            self.gold_brackets += sum(gold_brackets.values())
            if tree is None:
                continue
            brackets = Counter(tree.brackets())
            self.well_formed += 1
            self.exact += int(str(tree) == str(reference))
            self.intent += int(tree.label == reference.label)
            self.predicted_brackets += sum(brackets.values())
            self.matched += sum((brackets & gold_brackets).values())

    def compute(self) -> dict[str, float]:
        total, matched = int(self.total), int(self.matched)
        precision = matched / int(self.predicted_brackets) if int(self.predicted_brackets) else 0.0
        recall = matched / int(self.gold_brackets) if int(self.gold_brackets) else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "exact_match": _share(total, int(self.exact)),
            "bracket_precision": precision,
            "bracket_recall": recall,
            "bracket_f1": f1,
            "intent_accuracy": _share(total, int(self.intent)),
            "well_formed": _share(total, int(self.well_formed)),
        }


def _share(total: int, count: int) -> float:
    return count / total if total else 0.0
