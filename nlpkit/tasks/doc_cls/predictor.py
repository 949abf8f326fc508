"""Predictors: raw strings in, labels and scores out, from a reloaded run."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nlpkit.data.featurizers import TextFeaturizer
from nlpkit.data.inputs import check_texts, length_sorted_chunks
from nlpkit.data.labels import LabelVocab
from nlpkit.tasks.doc_cls.model import DocClassifier


class DocClassificationPredictor:
    """``predict(["text", ...]) -> [{"label": ..., "scores": {label: p}}]`` (``labels`` for multi-label).

    The featurizer is the run's (``featurizer=subword`` or ``word``). A text it gives no tokens (only
    possible for a blank text under ``featurizer=word``) has nothing to score: ``predict`` refuses blank
    texts, and ``predict_any`` answers ``label=None`` with no scores, as the exported graph does.
    """

    def __init__(self, model: DocClassifier, featurizer: TextFeaturizer, labels: LabelVocab):
        self.model = model.eval()
        self.featurizer = featurizer
        self.labels = labels

    def scores(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Per-label probabilities ``[N, L]`` in input order, for any text (blank ones included: the
        export's parity gate compares them with the graph's; zeros for a text without tokens)."""
        return self.scores_with_presence(texts, batch_size)[0]

    @torch.inference_mode()
    def scores_with_presence(
        self, texts: Sequence[str], batch_size: int = 64
    ) -> tuple[torch.Tensor, list[bool]]:
        """``scores`` and, per text, whether the featurizer gave it any token (a text without is not
        scored: ``predict_any`` answers no label, the exported graph "")."""
        if isinstance(texts, str):
            raise TypeError("scores() takes a list of texts, not one string")
        features = self.featurizer.encode_batch(list(texts))
        out = torch.zeros(len(features), len(self.labels))
        has_tokens = [bool(len(item["tokens"])) for item in features]
        scored = [i for i, present in enumerate(has_tokens) if present]
        for chunk in length_sorted_chunks([len(features[i]["tokens"]) for i in scored], batch_size):
            rows = [scored[j] for j in chunk]
            out[rows] = self.model.scores(self.featurizer.collate([features[i] for i in rows]))
        return out, has_tokens

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        check_texts(texts)  # a list, no blank text: the same rule as the ONNX model and the server
        return self.predict_any(texts, batch_size)

    def predict_any(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        """``predict`` without the blank-text check: the model's answer to any text, which the exported
        graph reproduces for blank ones too (the export's parity gate compares the two)."""
        probabilities, has_tokens = self.scores_with_presence(texts, batch_size)
        results = []
        for row, present in zip(probabilities, has_tokens):
            if not present:
                results.append(
                    {"labels": [], "scores": {}} if self.labels.multilabel else {"label": None, "scores": {}}
                )
                continue
            scores = {name: float(p) for name, p in zip(self.labels.names, row)}
            if self.labels.multilabel:
                threshold = self.model.output.threshold
                results.append({"labels": [n for n, p in scores.items() if p >= threshold], "scores": scores})
            else:
                results.append({"label": self.labels.names[int(row.argmax())], "scores": scores})
        return results
