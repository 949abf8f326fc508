"""RNNG predictor: tokenized text in (whitespace tokens, as TOP's second column), tree strings out."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nlpkit.data.featurizers import WordFeaturizer
from nlpkit.data.inputs import TextRefusedError, check_texts
from nlpkit.tasks.semantic_parse.data import ActionVocab
from nlpkit.tasks.semantic_parse.model import RNNGParser
from nlpkit.tasks.semantic_parse.module import actions_to_tree


class SemanticParsePredictor:
    """``predict(["what is the weather"]) -> ["[IN:GET_WEATHER what is the weather ]"]``.

    The text is split on whitespace (tokenize it as TOP's tokenized column does: ``what 's``); the
    decoder (greedy, or a beam search) runs under the valid-action mask, so every result is a
    well-formed TOP tree.
    """

    def __init__(self, model: RNNGParser, features: WordFeaturizer, actions: ActionVocab):
        self.model = model.eval()
        self.features = features
        self.actions = actions

    @torch.no_grad()
    def predict(self, texts: Sequence[str], batch_size: int = 64, beam_size: int | None = None) -> list[str]:
        """One tree string per text; ``beam_size`` overrides the run's ``model.beam_size`` (1: greedy)."""
        check_texts(texts)  # a list, no blank text: the rule every predictor keeps
        if beam_size is not None and int(beam_size) < 1:
            raise ValueError(f"beam_size={beam_size}: must be >= 1 (1 is greedy decoding)")
        sentences = [text.split() for text in texts]
        results: list[str] = [""] * len(sentences)
        for chunk, batch in self.features.batches(sentences, batch_size):
            if "word_lengths" in batch:  # a piece featurizer: every word must fit in max_length pieces
                for row, seen in zip(chunk, batch["word_lengths"].tolist()):
                    if seen < len(sentences[row]):
                        raise TextRefusedError(
                            row,
                            f"its {len(sentences[row])} tokens need more word pieces than the "
                            f"featurizer's max_length (the parser would see {seen}); shorten the text",
                        )
            for row, ids in zip(chunk, self.model.decode(batch, beam_size)):
                tree = actions_to_tree(ids, self.actions.names, sentences[row], self.model.max_open)
                if tree is None:  # the mask makes this unreachable; say so loudly if it is not
                    raise RuntimeError(f"the decoder built an ill-formed tree for {texts[row]!r}")
                results[row] = str(tree)
        return results
