"""Composed-label decoder: labels that are combinations of parts (ATIS's ``atis_flight#atis_airfare``)
are scored from their parts, so a rare combination borrows strength from its common parts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from nlpkit.modules.base import Decoder
from nlpkit.modules.decoder.mlp import MLPDecoder


def label_parts(label_names: Sequence[str], delimiter: str) -> tuple[list[str], torch.Tensor]:
    """``(parts, membership [L, P])``: the sorted distinct parts of ``label_names`` split on
    ``delimiter``, and which parts each label is made of (1.0 / 0.0)."""
    split = [[part for part in name.split(delimiter) if part] or [name] for name in label_names]
    parts = sorted({part for pieces in split for part in pieces})
    index = {part: i for i, part in enumerate(parts)}
    membership = torch.zeros(len(label_names), len(parts))
    for row, pieces in enumerate(split):
        membership[row, [index[p] for p in pieces]] = 1.0
    return parts, membership


class ComposedLabelDecoder(Decoder):
    """``forward(x [B, input_dim]) -> logits [B, L]`` over the known labels, each label's logit the
    log-likelihood of its part set under independent part probabilities plus a per-label bias:

        logit(label) = sum_{p in label} log sigmoid(z_p) + sum_{p not in label} log(1 - sigmoid(z_p)) + b_label

    with part logits ``z [B, P]`` from an MLP. Trained with the usual softmax cross-entropy over the
    labels, predictions stay among the labels seen in training (a softmax over ``L``), but the rare
    ``a#b`` gets its evidence from every example of ``a`` and of ``b``. A label without ``delimiter``
    is one part; with no composed label at all this is a softmax over per-part log-likelihoods.

    Args:
        input_dim: document vector width.
        output_dim: number of labels (must equal ``len(label_names)``).
        label_names: the label vocabulary, in id order (injected by the model builder).
        delimiter: separates the parts of a composed label.
        hidden_dims, dropout, activation: the part MLP's, as :class:`MLPDecoder`.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        label_names: Sequence[str],
        delimiter: str = "#",
        hidden_dims: Sequence[int] = (128,),
        dropout: float = 0.0,
        activation: str = "relu",
    ):
        super().__init__()
        if len(label_names) != output_dim:
            raise ValueError(f"{len(label_names)} label names for {output_dim} outputs")
        if not delimiter:
            raise ValueError("delimiter must be a non-empty string")
        self.parts, membership = label_parts(label_names, delimiter)
        self.register_buffer("membership", membership)  # [L, P]
        self.part_logits = MLPDecoder(input_dim, len(self.parts), hidden_dims, dropout, activation)
        self.label_bias = nn.Parameter(torch.zeros(output_dim))
        self.delimiter = delimiter
        self.input_dim = input_dim
        self.output_dim = output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.part_logits(x)  # [B, P]
        present, absent = F.logsigmoid(z), F.logsigmoid(-z)  # log sigmoid(z), log(1 - sigmoid(z))
        # [B, P] x [P, L] -> [B, L]
        return present @ self.membership.t() + absent @ (1.0 - self.membership).t() + self.label_bias

    def forward_for_export(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` with ``log sigmoid`` written out as ``min(z, 0) - log(1 + exp(-|z|))``: the
        exporter writes ``F.logsigmoid`` as ``Log(Sigmoid(z))``, which is ``-inf`` once ``sigmoid``
        underflows (``z`` < ~-88, reached by confident trained models), and ``-inf x 0`` in the
        membership product is NaN. This form is finite for every ``z`` and equal to ``logsigmoid``."""
        z = self.part_logits(x)  # [B, P]
        present, absent = _log_sigmoid(z), _log_sigmoid(-z)
        return present @ self.membership.t() + absent @ (1.0 - self.membership).t() + self.label_bias


def _log_sigmoid(z: torch.Tensor) -> torch.Tensor:
    """``log sigmoid(z)`` from ops that stay finite in any exporter: ``min(z, 0) - log(1 + e^-|z|)``."""
    return torch.clamp(z, max=0.0) - torch.log(1.0 + torch.exp(-z.abs()))
