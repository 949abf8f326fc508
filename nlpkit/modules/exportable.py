"""Export hooks on the PyTorch side (NeMo's ``Exportable``, ``nemo/core/classes/exportable.py``).

The components know how they export; the export side (``nlpkit.export.pipeline``) only drives them:

* A **model** subclasses :class:`Exportable`: ``input_example()`` gives named example tensors (in the
  order ``forward_for_export`` takes them), ``forward_for_export(*tensors)`` returns the network's
  outputs, named by ``export_outputs``. No export code makes up tensors or knows a model's inputs.
* A **component** may define ``forward_for_export(...)``: a forward with the same results that exports
  better (the BiLSTM: one native ONNX ``LSTM`` op per layer instead of ~100 nodes). The TorchScript
  exporter traces it in place of ``forward``. Constants the hook derives from parameters (the char
  CNN's merged filter bank) are built by an optional ``prepare_export()`` before the trace, so they
  enter the graph as initializers, and dropped by ``finish_export()`` after it.
* An **output layer** describes its decision with ``onnx_decoding() -> Decoding``: a kind and its
  constants (``argmax``; ``threshold`` and its value; ``crf_viterbi`` and the CRF potentials).

Why a description rather than ONNX nodes or a table keyed by class: components may not import
``nlpkit.export`` or ``onnx`` (tests/test_architecture.py), and a description keeps the decision where
the layer is defined. The export side keeps one graph recipe per *kind* (``nlpkit.export.decoding``),
never per class, so a user's own output layer exports by returning a known kind, with no isinstance
check and no edit to nlpkit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from nlpkit.errors import ExportError

#: lengths of the two example rows every model exports from: one full, one padded
EXAMPLE_LENGTHS = (4, 2)


@dataclass(frozen=True)
class Decoding:
    """How an output layer decides, for the exported graph: ``kind`` names a graph recipe of
    ``nlpkit.export.decoding`` and ``params`` holds its constants (numbers or numpy arrays)."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)


def embedding_inputs(embedding: torch.nn.Module) -> list[str]:
    """The batch keys a token embedding reads, in order (its ``input_keys``)."""
    return list(getattr(embedding, "input_keys", ("tokens",)))


def embedding_example(embedding: torch.nn.Module, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
    """Example values of every input ``embedding`` reads, for rows of ``lengths [B]`` tokens: its own
    ``input_example(lengths)`` (it knows its vocabulary size)."""
    hook = getattr(embedding, "input_example", None)
    if hook is None:
        raise ExportError(
            f"refused: the embedding {type(embedding).__name__} has no input_example(lengths), so its "
            "inputs cannot be exported; add one returning {input key: example tensor}"
        )
    return dict(hook(lengths))


class Exportable:
    """Mixin of a model that exports: ``input_example`` + ``forward_for_export`` + ``export_outputs``.

    The default ``input_example`` suits every model over a token embedding (``self.embedding``):
    ``tokens [B, T]``, ``lengths [B]`` and whatever else the embedding reads (``chars [B, T, C]``,
    ``shapes [B, T]``), in that order.
    """

    #: names of ``forward_for_export``'s outputs, in order
    export_outputs: ClassVar[tuple[str, ...]]

    def text_inputs(self) -> list[str]:
        """Names of one text's featurizer tensors the network reads: ``tokens``, ``lengths``, then the
        embedding's other inputs."""
        reads = embedding_inputs(self.embedding)
        return ["tokens", "lengths", *(k for k in reads if k not in ("tokens", "lengths"))]

    def export_inputs(self) -> list[str]:
        """Names of ``forward_for_export``'s inputs, in order (one text's, by default)."""
        return self.text_inputs()

    def text_example(self) -> dict[str, torch.Tensor]:
        """Two rows (``EXAMPLE_LENGTHS``: one full, one padded) of one text's inputs, in
        ``text_inputs`` order."""
        lengths = torch.tensor(EXAMPLE_LENGTHS, dtype=torch.long)
        example = {"lengths": lengths, **embedding_example(self.embedding, lengths)}
        if "tokens" not in example:
            raise ExportError(
                f"{type(self.embedding).__name__} reads no 'tokens' input to size the batch from"
            )
        return {name: example[name] for name in self.text_inputs()}

    def input_example(self) -> dict[str, torch.Tensor]:
        """Example values of every input, in ``export_inputs`` order (one text's, by default)."""
        return self.text_example()

    def export_axis_suffix(self, name: str) -> str:
        """What the exported graph appends to the names of input ``name``'s non-batch axes: "" (inputs
        share their ``time`` axis, as a text's tokens and characters do); a model whose inputs vary in
        length apart (two texts) gives each group its own."""
        return ""

    def export_batch(self, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """``forward_for_export``'s positional tensors as the batch dict ``forward`` takes."""
        return dict(zip(self.export_inputs(), inputs))

    def forward_for_export(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        raise NotImplementedError
