"""RNNG semantic parsing: the LightningModule that trains an ``RNNGParser`` and scores its trees."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torch.nn import functional as F

from nlpkit.tasks.semantic_parse.data import IGNORE
from nlpkit.tasks.semantic_parse.metrics import TreeMetrics
from nlpkit.tasks.semantic_parse.model import RNNGParser
from nlpkit.tasks.semantic_parse.tree import Tree, TreeError, build_tree, parse_tree
from nlpkit.training.module import TaskModule


def actions_to_tree(
    action_ids: Sequence[int], names: Sequence[str], tokens: Sequence[str], max_open: int
) -> Tree | None:
    """The tree decoded action ids build, or ``None`` when the rules refuse them (not well formed)."""
    try:
        return build_tree([names[i] for i in action_ids], tokens, max_open)
    except TreeError:
        return None


class SemanticParseModule(TaskModule):
    """Loss: cross-entropy over the oracle actions (teacher forcing, invalid actions masked), averaged
    over the batch's actions. For val/test, decodes each batch (greedy, or ``model.beam_size``) and logs ``{stage}/exact_match``,
    ``bracket_precision``, ``bracket_recall``, ``bracket_f1``, ``intent_accuracy``, ``well_formed``."""

    def __init__(
        self,
        model: RNNGParser,
        action_names: Sequence[str],
        optim_cfg,
        monitor: str,
        monitor_mode: str = "max",
    ):
        super().__init__(model, action_names, optim_cfg, monitor, monitor_mode)
        self.scorers = nn.ModuleDict({"val": TreeMetrics(), "test": TreeMetrics()})

    def losses(self, outputs, batch):
        scores = outputs["action_scores"]  # [B, L, A]
        targets = batch["actions"]  # [B, L]
        if not bool((targets != IGNORE).any()):
            return {"loss": scores.sum() * 0.0}
        return {"loss": F.cross_entropy(scores.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)}

    def update_metrics(self, outputs, batch, stage):
        if stage == "train":  # decoding every training batch would cost a second pass
            return
        decoded = self.model.decode(batch)
        predicted = [
            actions_to_tree(ids, self.label_names, parse_tree(gold).tokens(), self.model.max_open)
            for ids, gold in zip(decoded, batch["gold"])
        ]
        self.scorers[stage].update(batch["gold"], predicted)

    def reset_metrics(self, stage):
        if stage in self.scorers:
            self.scorers[stage].reset()

    def compute_metrics(self, stage):
        if stage not in self.scorers:
            return {}
        return {f"{stage}/{name}": value for name, value in self.scorers[stage].compute().items()}


__all__ = ["SemanticParseModule", "actions_to_tree"]
