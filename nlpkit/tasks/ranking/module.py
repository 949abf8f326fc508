"""Ranking: the LightningModule. Loss ``task.loss``:

* ``pairwise`` (PyText's ``QueryDocPairwiseRankingModel`` recipe): for each correct candidate of a
  query, ``task.negatives`` of its wrong ones drawn at random (0: all), margin ranking loss
  ``max(0, margin - s(q, pos) + s(q, neg))`` averaged over the (query, positive, negative) triples;
* ``listwise``: softmax over each query's candidates, ``-log`` of the probability mass on its correct
  ones, averaged over queries.

Queries without a correct candidate add no loss. Metrics MAP and MRR (``metrics.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from nlpkit.tasks.ranking.metrics import RankingMetrics
from nlpkit.training.module import TaskModule


def pairwise_loss(scores, relevant, index, margin: float, negatives: int) -> torch.Tensor:
    """Margin ranking loss over (positive, negative) candidates of the same query ``[N]`` inputs."""
    same = index[:, None] == index[None, :]  # [N, N]
    triples = same & relevant[:, None] & ~relevant[None, :]  # [pos, neg]
    if negatives > 0:  # keep `negatives` random wrong candidates per positive
        draw = torch.rand(triples.shape, device=scores.device).masked_fill(~triples, -1.0)
        k = min(negatives, triples.size(1))
        kept = torch.zeros_like(triples)
        kept.scatter_(1, draw.topk(k, dim=1).indices, True)
        triples &= kept
    if not bool(triples.any()):
        return scores.sum() * 0.0  # no query with both kinds: no signal, but a graph for backward
    diff = margin - scores[:, None] + scores[None, :]  # [N, N] margin - s_pos + s_neg
    return diff[triples].clamp(min=0).mean()


def listwise_loss(scores, relevant, index) -> torch.Tensor:
    """``-log sum_{correct} softmax(scores of the query)`` averaged over queries with a correct one."""
    losses = []
    for query in torch.unique(index):
        rows = index == query
        s, r = scores[rows], relevant[rows]
        if bool(r.any()):
            losses.append(torch.logsumexp(s, 0) - torch.logsumexp(s[r], 0))
    return torch.stack(losses).mean() if losses else scores.sum() * 0.0


#: the ``task`` keys of the loss and their defaults (``RankingTaskConfig``'s; a multi-task sub-task's
#: ``task`` section has none of them)
LOSS_DEFAULTS = {"loss": "pairwise", "margin": 1.0, "negatives": 0}


class RankingModule(TaskModule):
    """Logs ``{stage}/map``, ``{stage}/mrr`` (and the counts of scored and excluded queries)."""

    def __init__(self, model, optim_cfg, task_cfg):
        super().__init__(model, [], optim_cfg, str(task_cfg.monitor), str(task_cfg.monitor_mode))
        self.loss_kind = str(task_cfg.get("loss", LOSS_DEFAULTS["loss"]))
        self.margin = float(task_cfg.get("margin", LOSS_DEFAULTS["margin"]))
        self.negatives = int(task_cfg.get("negatives", LOSS_DEFAULTS["negatives"]))
        self.metrics = nn.ModuleDict(
            {f"{stage}_metrics": RankingMetrics() for stage in ("train", "val", "test")}
        )

    def losses(self, outputs, batch):
        scores = outputs["logits"][:, 0]  # [N]
        relevant = batch["labels"] > 0
        if self.loss_kind == "listwise":
            return {"loss": listwise_loss(scores, relevant, batch["index"])}
        return {"loss": pairwise_loss(scores, relevant, batch["index"], self.margin, self.negatives)}

    def update_metrics(self, outputs, batch, stage):
        self.metrics[f"{stage}_metrics"].update(outputs["logits"][:, 0], batch["labels"], batch["index"])

    def reset_metrics(self, stage):
        self.metrics[f"{stage}_metrics"].reset()

    def compute_metrics(self, stage):
        return {f"{stage}/{k}": v for k, v in self.metrics[f"{stage}_metrics"].compute().items()}
