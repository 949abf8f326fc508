"""Text regression predictor: raw strings in, ``{"score": value}`` out."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nlpkit.data.featurizers import TextFeaturizer
from nlpkit.data.inputs import check_texts, length_sorted_chunks


class DocRegressionPredictor:
    """``predict(["text", ...]) -> [{"score": float}]``, in input order."""

    def __init__(self, model, featurizer: TextFeaturizer):
        self.model = model.eval()
        self.featurizer = featurizer

    @torch.inference_mode()
    def values(self, texts: Sequence[str], batch_size: int = 64) -> tuple[torch.Tensor, list[bool]]:
        """The predicted value of every text ``[N]`` and whether the featurizer gave it any token (a
        text without, possible for a blank text under ``featurizer=word``, is not scored: 0). Blank
        texts included: the export's gate compares them with the graph's; ``predict`` refuses them."""
        if isinstance(texts, str):
            raise TypeError("values() takes a list of texts, not one string")
        features = self.featurizer.encode_batch(list(texts))
        out = torch.zeros(len(features))
        present = [bool(len(item["tokens"])) for item in features]
        scored = [i for i, has_tokens in enumerate(present) if has_tokens]
        for chunk in length_sorted_chunks([len(features[i]["tokens"]) for i in scored], batch_size):
            rows = [scored[j] for j in chunk]
            batch = self.featurizer.collate([features[i] for i in rows])
            out[rows] = self.model.output.predict(self.model(batch)["logits"])  # [len(rows)]
        return out, present

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        check_texts(texts)
        return [{"score": float(value)} for value in self.values(texts, batch_size)[0]]
