"""Text regression predictor: raw strings in, ``{"score": value}`` out."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nlpkit.data.featurizers import TextFeaturizer
from nlpkit.data.inputs import check_texts


class DocRegressionPredictor:
    """``predict(["text", ...]) -> [{"score": float}]``, in input order."""

    def __init__(self, model, featurizer: TextFeaturizer):
        self.model = model.eval()
        self.featurizer = featurizer

    @torch.inference_mode()
    def values(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """The predicted value of every text ``[N]`` (blank ones included: the export's gate compares
        them with the graph's; ``predict`` refuses blank texts)."""
        features = self.featurizer.encode_batch(list(texts))
        out = []
        for start in range(0, len(features), batch_size):
            batch = self.featurizer.collate(features[start : start + batch_size])
            out.append(self.model.output.predict(self.model(batch)["logits"]))
        return torch.cat(out) if out else torch.zeros(0)

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        check_texts(texts)
        return [{"score": float(value)} for value in self.values(texts, batch_size)]
