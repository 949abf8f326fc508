"""Joint intent-slot predictor: whitespace-separated text in, the intent and one slot tag per token out."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nlpkit.data.featurizers import WordFeaturizer
from nlpkit.data.inputs import check_texts
from nlpkit.data.labels import LabelVocab
from nlpkit.data.tag_schemes import span_dicts
from nlpkit.tasks.intent_slot.model import IntentSlotModel
from nlpkit.tasks.tagging.model import word_tags


class IntentSlotPredictor:
    """``predict(["text ..."]) -> [{"intent", "intent_scores", "tokens", "slots", "spans"}]``.

    Text is split on whitespace (one slot tag per token); ``intent_scores`` maps every intent to its
    probability. An empty text gets ``intent=None`` and no slots.
    """

    def __init__(
        self, model: IntentSlotModel, features: WordFeaturizer, labels: LabelVocab, intents: LabelVocab
    ):
        self.model = model.eval()
        self.features = features
        self.labels = labels
        self.intents = intents

    @torch.no_grad()
    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        check_texts(texts)  # a list, no blank text: the same rule as the ONNX model and the server
        return self.predict_any(texts, batch_size)

    def predict_any(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        """``predict`` without the blank-text check: the model's answer to any text, which the exported
        graph reproduces for blank ones too (the export's parity gate compares the two)."""
        sentences = [text.split() for text in texts]
        results = [
            {"intent": None, "intent_scores": {}, "tokens": [], "slots": [], "spans": []} for _ in sentences
        ]
        for chunk, batch in self.features.batches(sentences, batch_size):
            probabilities, tags = self.model.decode(batch)
            scored, tags = self.model.scored_words(batch), tags.tolist()
            for row, i in enumerate(chunk):
                tokens = sentences[i]
                slots = word_tags(self.labels.names, tags[row], scored[row], len(tokens))
                scores = {name: float(p) for name, p in zip(self.intents.names, probabilities[row].tolist())}
                results[i] = {
                    "intent": self.intents.names[int(probabilities[row].argmax())],
                    "intent_scores": scores,
                    "tokens": tokens,
                    "slots": slots,
                    "spans": span_dicts(tokens, slots),
                }
        return results
