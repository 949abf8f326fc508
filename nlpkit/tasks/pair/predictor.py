"""Pair predictor: ``[(text_a, text_b), ...]`` in, ``{"label", "scores"}`` (classification) or
``{"score"}`` (regression) out, in input order; ``embed(texts)``: one tower's vectors, as the exported
``embedding.onnx`` gives them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nlpkit.data.featurizers import TextFeaturizer
from nlpkit.data.inputs import check_pairs, check_texts, length_sorted_chunks

__all__ = ["PairPredictor", "check_pairs"]


class PairPredictor:
    """``predict([(a, b), ...])``; ``labels``: the class names (``None`` for regression).

    ``inputs`` names the two texts (as the exported file's string inputs and ``nlpkit.predict``'s
    output fields do)."""

    inputs: tuple[str, str] = ("text_a", "text_b")

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
        names = self.labels.names
        return [
            {"label": names[int(row.argmax())], "scores": {n: float(p) for n, p in zip(names, row)}}
            for row in scores
        ]

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], batch_size: int = 64, second: bool = True) -> np.ndarray:
        """One tower's vector of every text ``[N, H]`` float32, in input order: the second text's tower
        (``second=False``: the first's; the same one with a shared encoder), what ``embedding.onnx``
        holds. Index documents with it and compare queries by vector."""
        check_texts(texts)
        tower = self.model.tower(second)
        features = self.featurizer.encode_batch(list(texts))
        out = np.zeros((len(texts), tower.output_dim), dtype=np.float32)
        for rows in length_sorted_chunks([len(f["tokens"]) for f in features], batch_size):
            vectors = tower(self.featurizer.collate([features[i] for i in rows]))  # [len(rows), H]
            out[rows] = vectors.float().numpy()
        return out
