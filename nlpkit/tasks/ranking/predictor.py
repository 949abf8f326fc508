"""Ranking predictor: ``[(query, candidate), ...]`` -> ``{"score"}`` (higher: more relevant), and
``rank(query, candidates)`` -> the candidates best first."""

from __future__ import annotations

from collections.abc import Sequence

from nlpkit.tasks.pair.predictor import PairPredictor, check_pairs


class RankingPredictor(PairPredictor):
    inputs = ("query", "document")

    def predict(self, pairs: Sequence, batch_size: int = 64) -> list[dict]:
        pairs = check_pairs(pairs)
        return [{"score": float(v)} for v in self.logits(pairs, batch_size)[:, 0]]

    def rank(self, query: str, candidates: Sequence[str]) -> list[dict]:
        """``[{"candidate", "score"}]`` sorted by score, highest first (ties keep the given order)."""
        scored = self.predict([(query, c) for c in candidates])
        rows = [{"candidate": c, "score": s["score"]} for c, s in zip(candidates, scored)]
        return sorted(rows, key=lambda row: -row["score"])
