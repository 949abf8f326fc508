"""Word-tagging predictor: whitespace-separated text in, one tag per token (and the spans) out."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nlpkit.data.featurizers import WordFeaturizer
from nlpkit.data.inputs import check_texts
from nlpkit.data.labels import LabelVocab
from nlpkit.data.tag_schemes import span_dicts
from nlpkit.tasks.tagging.model import WordTagger, word_tags


class TaggingPredictor:
    """``predict(["text ..."]) -> [{"tokens": [...], "tags": [...], "spans": [...]}]``.

    Text is split on whitespace, as the training tokens were (each token gets exactly one tag; with
    ``featurizer=wordpiece``, a token past ``max_length`` pieces gets ``O``);
    ``predict_tokens`` takes already-tokenized sentences. Each span is
    ``{"type", "start", "end", "text"}`` with ``end`` inclusive, computed like conlleval.
    """

    def __init__(self, model: WordTagger, features: WordFeaturizer, labels: LabelVocab):
        self.model = model.eval()
        self.features = features
        self.labels = labels

    @torch.no_grad()
    def predict_tokens(self, sentences: Sequence[Sequence[str]], batch_size: int = 64) -> list[list[str]]:
        """Tag names per token, in input order; an empty sentence gets no tags."""
        out: list[list[str]] = [[] for _ in sentences]
        for chunk, batch in self.features.batches(sentences, batch_size):
            predicted = self.model.decode(batch).tolist()
            scored = self.model.scored_words(batch)
            for row, i in enumerate(chunk):
                out[i] = word_tags(self.labels.names, predicted[row], scored[row], len(sentences[i]))
        return out

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        check_texts(texts)  # a list, no blank text: the same rule as the ONNX model and the server
        return self.predict_any(texts, batch_size)

    def predict_any(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        """``predict`` without the blank-text check: the model's answer to any text, which the exported
        graph reproduces for blank ones too (the export's parity gate compares the two)."""
        sentences = [text.split() for text in texts]
        return [
            {"tokens": tokens, "tags": tags, "spans": span_dicts(tokens, tags)}
            for tokens, tags in zip(sentences, self.predict_tokens(sentences, batch_size))
        ]
