"""Pair predictor: ``[(text_a, text_b), ...]`` in, ``{"label", "scores"}`` (classification) or
``{"score"}`` (regression) out, in input order."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nlpkit.data.featurizers import TextFeaturizer
from nlpkit.data.inputs import EMPTY_TEXT_MESSAGE, EmptyTextError, length_sorted_chunks


def check_pairs(pairs: Sequence) -> list[tuple[str, str]]:
    """``TypeError`` unless ``pairs`` is a list of two-text pairs; ``EmptyTextError`` naming the first
    blank text."""
    if isinstance(pairs, str) or not isinstance(pairs, Sequence):
        raise TypeError("predict() takes a list of (text_a, text_b) pairs")
    out = []
    for i, pair in enumerate(pairs):
        if (
            isinstance(pair, str)
            or not isinstance(pair, Sequence)
            or len(pair) != 2
            or not all(isinstance(t, str) for t in pair)
        ):
            raise TypeError(f"pairs[{i}] must be two texts (text_a, text_b), got {pair!r}")
        for j, text in enumerate(pair):
            if not text.strip():
                raise EmptyTextError(f"pairs[{i}][{j}] is {EMPTY_TEXT_MESSAGE}")
        out.append((pair[0], pair[1]))
    return out


class PairPredictor:
    """``predict([(a, b), ...])``; ``labels``: the class names (``None`` for regression)."""

    def __init__(self, model, featurizer: TextFeaturizer, labels=None):
        self.model = model.eval()
        self.featurizer = featurizer
        self.labels = labels

    @torch.inference_mode()
    def logits(self, pairs: Sequence[tuple[str, str]], batch_size: int = 64) -> torch.Tensor:
        """The model's logits of every pair ``[N, L]``, in input order (batches of similar lengths:
        ``length_sorted_chunks``)."""
        first = self.featurizer.encode_batch([a for a, _ in pairs])
        second = self.featurizer.encode_batch([b for _, b in pairs])
        lengths = [max(len(a["tokens"]), len(b["tokens"])) for a, b in zip(first, second)]
        out: torch.Tensor | None = None
        for rows in length_sorted_chunks(lengths, batch_size):
            batch = {
                "a": self.featurizer.collate([first[i] for i in rows]),
                "b": self.featurizer.collate([second[i] for i in rows]),
                "index": torch.arange(len(rows)),
            }
            logits = self.model(batch)["logits"]  # [len(rows), L]
            if out is None:
                out = torch.zeros(len(pairs), logits.size(-1))
            out[rows] = logits
        return out if out is not None else torch.zeros(0, 1)

    def predict(self, pairs: Sequence, batch_size: int = 64) -> list[dict]:
        pairs = check_pairs(pairs)
        logits = self.logits(pairs, batch_size)
        output = self.model.output
        if self.labels is None:
            return [{"score": float(v)} for v in output.predict(logits)]
        scores = output.scores(logits)
        return [
            {"label": self.labels.names[int(row.argmax())], "scores": [float(p) for p in row]}
            for row in scores
        ]
