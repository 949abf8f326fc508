"""Export nlpkit's ``BiLSTM`` as ONNX's own bidirectional ``LSTM`` op with ``sequence_lens``.

Traced as written, each BiLSTM layer exports as two one-direction LSTM nodes plus the gathers that
reverse every sequence within its length (~100 nodes for one layer). ONNX's ``LSTM`` does exactly
that computation in one node: ``direction="bidirectional"`` with ``sequence_lens`` runs the backward
direction over each sequence's own tokens. Same weights (gate blocks reordered from PyTorch's
i, f, g, o to ONNX's i, o, f, c), same results at real tokens; padding positions are zero. The
parity gate checks the exported graph either way. Used by the ``torchscript`` exporter (the
``dynamo`` exporter has no symbolic hook and exports the module as written).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
from torch import nn

from nlpkit.modules.representation.bilstm import BiLSTM, reverse_padded


class _BidirectionalLayer(torch.autograd.Function):
    """One BiLSTM layer: the eager result of the two one-direction LSTMs; exported as one ONNX ``LSTM``
    node. The weights are Function inputs (the tracer cannot follow parameters captured otherwise);
    the gate reordering below is constant-folded into the initializers at export."""

    @staticmethod
    def forward(ctx, x, lengths, *weights):  # weights: w_ih, w_hh, b_ih, b_hh of forward, then backward
        hidden = weights[1].size(1)
        zeros = x.new_zeros(1, x.size(0), hidden)

        def run(inputs, params):
            return torch.lstm(inputs, (zeros, zeros), list(params), True, 1, 0.0, False, False, True)[0]

        forward_states = run(x, weights[:4])  # [B, T, H]
        backward_states = reverse_padded(run(reverse_padded(x, lengths), weights[4:]), lengths)
        return torch.cat([forward_states, backward_states], dim=-1)  # [B, T, 2H]

    @staticmethod
    def symbolic(g, x, lengths, *weights):
        def onnx_gates(weight):
            # PyTorch's gate blocks (input, forget, cell, output) -> ONNX's (input, output, forget, cell)
            i, f, c, o = g.op("Split", weight, axis_i=0, num_outputs_i=4, outputs=4)
            return g.op("Concat", i, o, f, c, axis_i=0)

        def both_directions(forward_value, backward_value):
            axis = g.op("Constant", value_t=torch.tensor([0]))
            return g.op(
                "Concat",
                g.op("Unsqueeze", forward_value, axis),
                g.op("Unsqueeze", backward_value, axis),
                axis_i=0,
            )

        fwd, bwd = [onnx_gates(w) for w in weights[:4]], [onnx_gates(w) for w in weights[4:]]
        w_ih, w_hh = (
            both_directions(fwd[0], bwd[0]),
            both_directions(fwd[1], bwd[1]),
        )  # [2, 4H, D], [2, 4H, H]
        biases = both_directions(
            g.op("Concat", fwd[2], fwd[3], axis_i=0), g.op("Concat", bwd[2], bwd[3], axis_i=0)
        )  # [2, 8H]
        time_major = g.op("Transpose", x, perm_i=[1, 0, 2])  # [T, B, D]
        seq_lens = g.op("Cast", lengths, to_i=6)  # int32
        states, _, _ = g.op(
            "LSTM",
            time_major,
            w_ih,
            w_hh,
            biases,
            seq_lens,
            hidden_size_i=int(weights[1].type().sizes()[1]),
            direction_s="bidirectional",
            outputs=3,
        )  # [T, 2, B, H]
        batch_major = g.op("Transpose", states, perm_i=[2, 0, 1, 3])  # [B, T, 2, H]
        return g.op("Reshape", batch_major, g.op("Constant", value_t=torch.tensor([0, 0, -1])))


def _export_forward(module: BiLSTM, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``BiLSTM.forward`` in eval mode (no dropout), one ``_BidirectionalLayer`` per layer."""
    lengths = mask.long().sum(1)
    for fwd, bwd in zip(module.forward_layers, module.backward_layers):
        weights = [
            getattr(m, name)
            for m in (fwd, bwd)
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
        ]
        x = _BidirectionalLayer.apply(x, lengths, *weights)
    return x * mask.unsqueeze(-1).to(x.dtype)


def _exportable(lstm: nn.LSTM) -> bool:
    return lstm.num_layers == 1 and not lstm.bidirectional and lstm.bias and lstm.proj_size == 0


@contextlib.contextmanager
def native_bilstm(model: nn.Module) -> Iterator[int]:
    """While active, every eligible ``BiLSTM`` in ``model`` exports as native LSTM nodes; yields how
    many modules were switched. Outside the block the model is unchanged."""
    switched = [
        m
        for m in model.modules()
        if isinstance(m, BiLSTM)
        and all(_exportable(lstm) for lstm in (*m.forward_layers, *m.backward_layers))
    ]
    for module in switched:
        module.forward = functools.partial(_export_forward, module)
    try:
        yield len(switched)
    finally:
        for module in switched:
            del module.forward  # back to the class's forward
