"""Featurizers: raw text (or a dataset's token lists) -> model inputs, one kind per ``featurizer=`` choice.

``subword`` (:mod:`.subword`, document classification's default), ``ngram`` (:mod:`.ngram`: subword's
words with their bigrams, for a fastText-style bag) and ``word`` (:mod:`.word`, word +
characters + casing: the word-level tasks', and ``task=doc_cls featurizer=word``) register themselves
with :func:`nlpkit.registry.register_featurizer`; a featurizer of a user's own package does the same
and is imported with ``imports=[...]``. See :class:`.base.TextFeaturizer` for the contract.
"""

from nlpkit.data.featurizers.base import (
    Features,
    TextFeaturizer,
    featurizer_class,
    featurizer_name,
    featurizer_options,
    load_featurizer,
    schema_for,
    train_featurizer,
)
from nlpkit.data.featurizers.ngram import NgramConfig, NgramFeaturizer
from nlpkit.data.featurizers.subword import SubwordConfig, SubwordFeaturizer
from nlpkit.data.featurizers.word import WordConfig, WordFeaturizer
from nlpkit.data.featurizers.wordpiece import WordPieceConfig, WordPieceFeaturizer

__all__ = [
    "Features",
    "NgramConfig",
    "NgramFeaturizer",
    "SubwordConfig",
    "SubwordFeaturizer",
    "TextFeaturizer",
    "WordConfig",
    "WordFeaturizer",
    "WordPieceConfig",
    "WordPieceFeaturizer",
    "featurizer_class",
    "featurizer_name",
    "featurizer_options",
    "load_featurizer",
    "schema_for",
    "train_featurizer",
]
