"""Predictors: raw strings in, labels and scores out, from a reloaded run."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nlpkit.data.batching import pad_sequences
from nlpkit.data.featurizer import Featurizer
from nlpkit.data.inputs import check_texts
from nlpkit.data.labels import LabelVocab
from nlpkit.tasks.doc_cls.model import DocClassifier


class DocClassificationPredictor:
    """``predict(["text", ...]) -> [{"label": ..., "scores": {label: p}}]`` (``labels`` for multi-label)."""

    def __init__(self, model: DocClassifier, featurizer: Featurizer, labels: LabelVocab):
        self.model = model.eval()
        self.featurizer = featurizer
        self.labels = labels

    @torch.inference_mode()
    def scores(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Per-label probabilities ``[N, L]`` in input order, for any text (blank ones included: the
        export's parity gate compares them with the graph's); ``predict`` refuses blank texts."""
        if isinstance(texts, str):
            raise TypeError("scores() takes a list of texts, not one string")
        ids = self.featurizer.encode_batch(list(texts))
        out = []
        for start in range(0, len(ids), batch_size):
            tokens, lengths = pad_sequences(
                [torch.tensor(x) for x in ids[start : start + batch_size]], self.featurizer.pad_id
            )
            out.append(self.model.scores({"tokens": tokens, "lengths": lengths}))
        return torch.cat(out) if out else torch.zeros(0, len(self.labels))

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        check_texts(texts)  # a list, no blank text: the same rule as the ONNX model and the server
        probabilities = self.scores(texts, batch_size)
        results = []
        for row in probabilities:
            scores = {name: float(p) for name, p in zip(self.labels.names, row)}
            if self.labels.multilabel:
                threshold = self.model.output.threshold
                results.append({"labels": [n for n, p in scores.items() if p >= threshold], "scores": scores})
            else:
                results.append({"label": self.labels.names[int(row.argmax())], "scores": scores})
        return results
