"""Bidirectional LSTM encoder and the document representation built on it (paper Figure 1).

``BiLSTM.forward_for_export`` is its export hook (``nlpkit.modules.exportable``): traced as written,
each layer exports as two one-direction LSTM nodes plus the gathers that reverse every sequence within
its length (~100 nodes a layer). ONNX's own ``LSTM`` does that computation in one node:
``direction="bidirectional"`` with ``sequence_lens`` runs the backward direction over each sequence's
own tokens. Same weights (gate blocks reordered from PyTorch's i, f, g, o to ONNX's i, o, f, c), same
results at real tokens; padding positions are zero. The parity gate checks the exported graph.
"""

from __future__ import annotations

import torch
from torch import nn

from nlpkit.modules.base import Seq2SeqEncoder, Seq2VecEncoder
from nlpkit.modules.representation.pooling import make_pooling


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence within its own length; padding positions stay where they are.

    ``x [B, T, D]``. Expressed as a gather so it exports to ONNX and runs the same at any padding.
    """
    steps = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # [1, T]
    lengths = lengths.unsqueeze(1)  # [B, 1]
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # [B, T]
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


def _run_lstm(lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """``lstm(x)`` states; in float32 under CPU autocast (``trainer.precision=bf16-mixed``): oneDNN has
    no bf16 LSTM on CPUs without native bf16 support and fails there. The rest still runs in bf16."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return lstm(x.float())[0]
    return lstm(x)[0]


class _BidirectionalLayer(torch.autograd.Function):
    """One BiLSTM layer: the eager result of the two one-direction LSTMs; exported (TorchScript
    exporter) as one ONNX ``LSTM`` node. The weights are Function inputs (the tracer cannot follow
    parameters captured otherwise); the gate reordering is constant-folded into the initializers."""

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
        w_ih = both_directions(fwd[0], bwd[0])  # [2, 4H, D]
        w_hh = both_directions(fwd[1], bwd[1])  # [2, 4H, H]
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


def _native(lstm: nn.LSTM) -> bool:
    """Whether ``lstm`` maps onto one direction of ONNX's ``LSTM`` op as ``_BidirectionalLayer`` writes it."""
    return lstm.num_layers == 1 and not lstm.bidirectional and lstm.bias and lstm.proj_size == 0


class BiLSTM(Seq2SeqEncoder):
    """Stacked bidirectional LSTM emitting per-token states ``[B, T, 2 * hidden_dim]``.

    The backward direction runs over each sequence reversed within its own length instead of over
    packed sequences: results do not depend on how much padding a batch has, and the module exports
    to ONNX as plain LSTM + gather nodes.
    """

    def __init__(self, input_dim: int, hidden_dim: int = 200, num_layers: int = 2, dropout: float = 0.4):
        super().__init__()
        self.input_dim = input_dim
        self.forward_layers = nn.ModuleList()
        self.backward_layers = nn.ModuleList()
        for layer in range(num_layers):
            layer_input = input_dim if layer == 0 else 2 * hidden_dim
            self.forward_layers.append(nn.LSTM(layer_input, hidden_dim, batch_first=True))
            self.backward_layers.append(nn.LSTM(layer_input, hidden_dim, batch_first=True))
        self.dropout = nn.Dropout(dropout)
        self.output_dim = 2 * hidden_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.long().sum(1)
        for index, (fwd, bwd) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if index > 0:
                x = self.dropout(x)
            forward_states = _run_lstm(fwd, x)  # [B, T, H]
            backward_states = _run_lstm(bwd, reverse_padded(x, lengths))
            x = torch.cat([forward_states, reverse_padded(backward_states, lengths)], dim=-1)  # [B, T, 2H]
        return x * mask.unsqueeze(-1).to(x.dtype)  # padding states zeroed

    def forward_for_export(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``forward`` in eval mode (no dropout) with one native bidirectional ONNX ``LSTM`` per layer."""
        layers = list(zip(self.forward_layers, self.backward_layers))
        if not all(_native(fwd) and _native(bwd) for fwd, bwd in layers):
            return BiLSTM.forward(self, x, mask)  # not self.forward: export swaps that for this method
        lengths = mask.long().sum(1)
        for fwd, bwd in layers:
            weights = [
                getattr(m, name)
                for m in (fwd, bwd)
                for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
            ]
            x = _BidirectionalLayer.apply(x, lengths, *weights)
        return x * mask.unsqueeze(-1).to(x.dtype)


class BiLSTMRepresentation(Seq2VecEncoder):
    """BiLSTM over the embedded tokens, pooled into one document vector.

    Args:
        input_dim: embedding width (from the token embedding's ``output_dim``).
        hidden_dim: LSTM state size per direction.
        num_layers: stacked BiLSTM layers.
        dropout: on the embeddings, between layers and before pooling.
        pooling: one of ``max``, ``mean``, ``last``, ``self_attention``.
        attention_dim: hidden size of the self-attention scorer.
        attention_hops: number of self-attention distributions.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int = 200,
        num_layers: int = 2,
        dropout: float = 0.4,
        pooling: str = "self_attention",
        attention_dim: int = 128,
        attention_hops: int = 1,
    ):
        super().__init__()
        self.input_dim = input_dim
        self.dropout = nn.Dropout(dropout)
        self.encoder = BiLSTM(input_dim, hidden_dim, num_layers, dropout)
        self.pooling = make_pooling(
            pooling,
            self.encoder.output_dim,
            attention_dim=attention_dim,
            n_hops=attention_hops,
            dropout=dropout,
        )
        self.output_dim = self.pooling.output_dim

    def forward(self, embedded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(self.dropout(embedded), mask)  # [B, T, 2H]
        return self.dropout(self.pooling(states, mask))  # [B, output_dim]
