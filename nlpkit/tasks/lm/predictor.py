"""Language-model predictor: raw strings in, each text's log-probability (and its words') out."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nlpkit.data.featurizers import TextFeaturizer
from nlpkit.data.inputs import check_texts, length_sorted_chunks


class LMPredictor:
    """``predict(["text", ...]) -> [{"tokens": [str], "token_log_probs": [float], "log_prob": float}]``,
    in input order.

    Sentence semantics (what the exported file computes): each text is scored on its own from a zero
    state, ``<eos>`` as the first input; ``log_prob`` is the sum over its words and the ``<eos>`` after
    them, ``token_log_probs`` one natural-log probability per whitespace word.
    """

    def __init__(self, model, featurizer: TextFeaturizer):
        self.model = model.eval()
        self.featurizer = featurizer

    @torch.inference_mode()
    def scores(self, texts: Sequence[str], batch_size: int = 64) -> list[tuple[list[float], float]]:
        """``(word log-probs, sentence log-prob)`` per text; a blank text scores its ``<eos>`` alone
        (the export's gate compares those too; ``predict`` refuses them)."""
        if isinstance(texts, str):
            raise TypeError("scores() takes a list of texts, not one string")
        ids = [self.featurizer.words.encode(text.split()) for text in texts]
        out: list = [None] * len(ids)
        for chunk in length_sorted_chunks([len(i) for i in ids], batch_size):
            width = max(1, max(len(ids[i]) for i in chunk))
            tokens = torch.full((len(chunk), width), self.featurizer.pad_id, dtype=torch.long)  # [B, T]
            for row, i in enumerate(chunk):
                tokens[row, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
            lengths = torch.tensor([len(ids[i]) for i in chunk], dtype=torch.long)
            words, sentence = self.model.forward_for_export(tokens, lengths)  # [B, T], [B]
            for row, i in enumerate(chunk):
                out[i] = (words[row, : len(ids[i])].tolist(), float(sentence[row]))
        return out

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        check_texts(texts)
        return [
            {"tokens": text.split(), "token_log_probs": words, "log_prob": sentence}
            for text, (words, sentence) in zip(texts, self.scores(texts, batch_size))
        ]
