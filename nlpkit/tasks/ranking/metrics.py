"""MAP and MRR over queries, as ``trec_eval`` computes them for answer sentence selection.

Per query, candidates are ranked by score, highest first (ties keep the data's order). Average
precision is the mean, over the correct candidates, of the precision at each one's rank; reciprocal
rank is 1 / the rank of the first correct candidate. MAP and MRR average them over the queries that
have at least one correct candidate: a query with none is excluded (counted as ``excluded_queries``),
the convention of the WikiQA paper (Yang et al. 2015) and its ``*-filtered.ref`` files.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


def query_ap_rr(scores: torch.Tensor, relevant: torch.Tensor) -> tuple[float, float] | None:
    """``(average precision, reciprocal rank)`` of one query's candidates; ``None`` without a correct one."""
    if not bool(relevant.any()):
        return None
    order = torch.sort(scores, descending=True, stable=True).indices
    hits = relevant[order].float()  # [n] 1 at correct candidates, in rank order
    ranks = torch.arange(1, len(hits) + 1, dtype=torch.float32)
    precision = hits.cumsum(0) / ranks
    ap = float((precision * hits).sum() / hits.sum())
    rr = float(1.0 / ranks[hits.bool()][0])
    return ap, rr


class RankingMetrics(Metric):
    """``update(scores [N], relevant [N], index [N])`` (``index``: each candidate's query, queries
    whole within a batch); ``compute() -> {"map", "mrr", "queries", "excluded_queries"}``. Sums, so
    DDP processes reduce them by summing."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        for name in ("ap_sum", "rr_sum", "queries", "excluded"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, scores: torch.Tensor, relevant: torch.Tensor, index: torch.Tensor) -> None:
        scores, relevant, index = scores.detach().cpu(), relevant.detach().cpu() > 0, index.detach().cpu()
        for query in torch.unique(index):
            rows = index == query
            result = query_ap_rr(scores[rows], relevant[rows])
            if result is None:
                self.excluded += 1
                continue
            self.ap_sum += result[0]
            self.rr_sum += result[1]
            self.queries += 1

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.queries.clamp(min=1)
        return {
            "map": (self.ap_sum / n).float(),
            "mrr": (self.rr_sum / n).float(),
            "queries": self.queries.float(),
            "excluded_queries": self.excluded.float(),
        }
