"""One abstract base class per kind of component: what its ``forward`` takes and returns, and the widths
it declares so that a model builder can size the next layer from the previous one.

============  ===================  =========================================================================
kind          base                 contract
============  ===================  =========================================================================
embedding     ``TokenEmbedding``   ``forward(*batch[k] for k in input_keys) -> [B, T, output_dim]``
seq2seq       ``Seq2SeqEncoder``   ``forward(x [B, T, input_dim], mask [B, T]) -> [B, T, output_dim]``
seq2vec       ``Seq2VecEncoder``   ``forward(x [B, T, input_dim], mask [B, T]) -> [B, output_dim]``
decoder       ``Decoder``          ``forward(x [..., input_dim]) -> [..., output_dim]`` (last axis only)
doc_output    ``DocOutputLayer``   ``loss`` / ``scores`` / ``predict`` over logits ``[B, L]``
word_output   ``WordOutputLayer``  ``loss`` / ``scores`` / ``decode`` over emissions ``[B, T, L]`` + mask
value_output  ``ValueOutputLayer`` ``loss`` / ``predict`` of one real value per document from ``[B, 1]``
lm_output     ``LMOutputLayer``    ``log_probs`` of the next words from states ``[N, D]`` (language models)
layer         ``Layer``            a building block inside another component; no model slot takes one
============  ===================  =========================================================================

A task declares the kind each of its model slots needs (``Task.component_kinds``, e.g. ``representation:
seq2vec`` for document classification); :func:`nlpkit.modules.kinds.check_component_kinds` refuses a
config that puts another kind there before anything is built. The bases are plain ``nn.Module``s with
no parameters or buffers of their own: subclassing one changes no ``state_dict`` key.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn


class Component(nn.Module, metaclass=abc.ABCMeta):
    """Root of the kinds below; not a kind itself. ``kind`` names the contract, ``output_dim`` the width
    of the last axis of what the component returns."""

    kind: ClassVar[str]
    #: one line for error messages: ``TokenBiLSTMRepresentation is a seq2seq encoder``
    description: ClassVar[str]
    #: for a component built from others (``ConcatEmbedding``): the kind each entry of its
    #: ``components`` argument must have; ``None`` for every other component
    components_kind: ClassVar[str | None] = None
    output_dim: int


class TokenEmbedding(Component):
    """One vector per token: ``forward(*inputs) -> [B, T, output_dim]``.

    ``input_keys`` names the batch inputs the embedding reads, in the order ``forward`` takes them:
    ``("tokens",)`` (word ids ``[B, T]``), ``("chars",)`` (character ids ``[B, T, C]``), ``("shapes",)``
    (casing classes ``[B, T]``); a concatenation reads the union of its components' keys. A model
    calls :meth:`embed` with every input it has and the embedding takes what it declares.
    """

    kind = "embedding"
    description = "a token embedding"
    input_keys: tuple[str, ...] = ("tokens",)

    @abc.abstractmethod
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The inputs named by ``input_keys``, in that order -> ``[B, T, output_dim]``."""

    def embed(self, inputs: Mapping[str, torch.Tensor | None]) -> torch.Tensor:
        """``forward`` on the inputs this embedding reads, picked by name from ``inputs``."""
        return embed_inputs(self, inputs)


def embed_inputs(module: nn.Module, inputs: Mapping[str, torch.Tensor | None]) -> torch.Tensor:
    """Run a token embedding on the inputs it declares (``input_keys``; ``("tokens",)`` for a module
    that declares none)."""
    keys = getattr(module, "input_keys", ("tokens",))
    for key in keys:
        if inputs.get(key) is None:
            raise ValueError(
                f"{type(module).__name__} needs the {key!r} input, which the model was not given"
            )
    return module(*(inputs[key] for key in keys))


class Seq2SeqEncoder(Component):
    """Per-token states: ``forward(x [B, T, input_dim], mask [B, T] bool) -> [B, T, output_dim]``.

    States at padding positions (``mask`` false) are zero, and a token's state does not depend on how
    much padding its batch has. The encoder of word-level tasks (tagging, slots).
    """

    kind = "seq2seq"
    description = "a seq2seq encoder"
    input_dim: int

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor: ...


class Seq2VecEncoder(Component):
    """One vector per sequence: ``forward(x [B, T, input_dim], mask [B, T] bool) -> [B, output_dim]``.

    Padding positions do not change the result. Document representations (bag, DocNN, BiLSTM + pooling)
    and the poolings of per-token states are seq2vec encoders.
    """

    kind = "seq2vec"
    description = "a seq2vec encoder"
    input_dim: int

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor: ...


class Decoder(Component):
    """``forward(x [..., input_dim]) -> [..., output_dim]``, over the last axis only: a document vector
    ``[B, D]`` gives logits ``[B, L]``, per-token states ``[B, T, D]`` give emissions ``[B, T, L]``.
    ``output_dim`` is the number of labels (injected by the model builder)."""

    kind = "decoder"
    description = "a decoder"
    input_dim: int

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor: ...


class OutputLayer(Component):
    """Owns the loss, and turns the decoder's scores into probabilities and predictions. It has no
    ``forward``: the task calls the methods of its level (:class:`DocOutputLayer` or
    :class:`WordOutputLayer`). ``output_dim == num_labels``."""

    kind = "output"
    description = "an output layer"
    num_labels: int


class DocOutputLayer(OutputLayer):
    """One prediction per document, from logits ``[B, L]``.

    ``multilabel`` says whether ``predict`` gives one label id per row or a 0/1 vector.
    """

    kind = "doc_output"
    description = "a document-level output layer"
    multilabel: ClassVar[bool] = False

    @abc.abstractmethod
    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scalar loss; ``targets`` are label ids ``[B]`` (single-label) or 0/1 ``[B, L]`` (multi-label)."""

    @abc.abstractmethod
    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities ``[B, L]``."""

    @abc.abstractmethod
    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """Label ids ``[B]`` (single-label) or 0/1 ``[B, L]`` (multi-label)."""


class WordOutputLayer(OutputLayer):
    """One tag per token, from emissions ``[B, T, L]`` and the mask ``[B, T]`` (a prefix per row)."""

    kind = "word_output"
    description = "a word-level output layer"

    @abc.abstractmethod
    def loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Scalar loss over the real tokens; ``tags [B, T]``."""

    @abc.abstractmethod
    def scores(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-token probabilities ``[B, T, L]`` (zero at padding)."""

    @abc.abstractmethod
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Tag ids ``[B, T]`` (0 at padding)."""


class ValueOutputLayer(OutputLayer):
    """One real value per document (regression), from the decoder's ``[B, 1]``."""

    kind = "value_output"
    description = "a one-value (regression) output layer"

    @abc.abstractmethod
    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Scalar loss; ``logits [B, 1]``, ``targets [B]`` float."""

    @abc.abstractmethod
    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """The predicted values ``[B]``."""


class LMOutputLayer(OutputLayer):
    """Next-word distribution of a language model over the vocabulary, from states ``[N, input_dim]``.

    ``target_log_probs(states [N, D], targets [N]) -> [N]`` is what training and scoring need (an
    adaptive softmax computes it without the full distribution); ``tie_to(embedding_weight)`` shares
    the input embedding's matrix where the layer's shapes allow it (``ValueError`` naming why not).
    """

    kind = "lm_output"
    description = "a language-model output layer"
    input_dim: int

    @abc.abstractmethod
    def target_log_probs(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``log p(target | state)`` ``[N]`` for states ``[N, D]`` and word ids ``[N]``."""

    @abc.abstractmethod
    def tie_to(self, weight: nn.Parameter) -> None:
        """Use ``weight [vocab_size, D]`` (the input embedding's) as the output matrix."""


class Layer(Component):
    """A building block of other components (the character CNN's ``Highway``): it has a kind like every
    class in ``nlpkit.modules``, but no model slot takes one. ``forward(x [..., input_dim]) ->
    [..., output_dim]``."""

    kind = "layer"
    description = "a building block of other components"
    input_dim: int


#: kind -> its base class
KINDS: dict[str, type[Component]] = {
    base.kind: base
    for base in (
        TokenEmbedding,
        Seq2SeqEncoder,
        Seq2VecEncoder,
        Decoder,
        OutputLayer,
        DocOutputLayer,
        WordOutputLayer,
        ValueOutputLayer,
        LMOutputLayer,
        Layer,
    )
}
#: the base classes themselves (abstract: never a ``_target_``, never listed as components)
BASES: tuple[type[Component], ...] = (Component, *KINDS.values())
