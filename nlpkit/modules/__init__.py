"""Plain ``nn.Module`` components. None of them imports Lightning or Hydra.

Every component subclasses the base class of its kind (:mod:`nlpkit.modules.base`): a token embedding,
a seq2seq or seq2vec encoder, a decoder, or a document- or word-level output layer. The base states the
forward contract and the declared widths (``output_dim``, and ``input_dim`` where the builder injects
it), so the model sizes the next layer from the previous one, token embedding -> representation ->
decoder -> output layer, and validation refuses a component of the wrong kind for a task's slot
(:func:`nlpkit.modules.kinds.check_component_kinds`).
"""

from nlpkit.modules.base import (
    KINDS,
    Component,
    Decoder,
    DocOutputLayer,
    Layer,
    OutputLayer,
    Seq2SeqEncoder,
    Seq2VecEncoder,
    TokenEmbedding,
    ValueOutputLayer,
    WordOutputLayer,
)
from nlpkit.modules.kinds import check_component_kinds, kind_of

__all__ = [
    "KINDS",
    "Component",
    "Decoder",
    "DocOutputLayer",
    "Layer",
    "OutputLayer",
    "Seq2SeqEncoder",
    "Seq2VecEncoder",
    "TokenEmbedding",
    "ValueOutputLayer",
    "WordOutputLayer",
    "check_component_kinds",
    "kind_of",
]
