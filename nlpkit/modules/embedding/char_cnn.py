"""Character CNN with highway layers (Kim et al., 2016, "Character-Aware Neural Language Models").

Each token's characters are embedded, convolved with filters of several widths, max-pooled over the
characters, passed through highway layers and optionally projected: one vector per token that sees
spelling, affixes and case, even for words outside the word vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nlpkit.modules.base import Layer, TokenEmbedding


class Highway(Layer):
    """``y = t * relu(W_h x) + (1 - t) * x`` with gate ``t = sigmoid(W_t x)``; the gate bias starts
    negative so each layer begins close to the identity (Srivastava et al., 2015)."""

    def __init__(self, dim: int, num_layers: int = 1, gate_bias: float = -2.0):
        super().__init__()
        self.input_dim = self.output_dim = dim
        self.transforms = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_layers))
        self.gates = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_layers))
        for gate in self.gates:
            nn.init.constant_(gate.bias, gate_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for transform, gate in zip(self.transforms, self.gates):
            t = torch.sigmoid(gate(x))
            x = t * torch.relu(transform(x)) + (1.0 - t) * x
        return x


class CharCNNEmbedding(TokenEmbedding):
    """``forward(chars [B, T, C]) -> [B, T, output_dim]``; character id 0 is padding.

    Args:
        num_chars: character vocabulary size (from the data; injected).
        char_dim: width of each character embedding.
        kernel_sizes: convolution widths (characters), one filter bank each.
        num_filters: filters per width: one number for all widths, or one per width.
        highway_layers: highway layers after pooling (0 = none).
        projection_dim: project to this width at the end (``null`` = keep the total filter count).
        activation: ``tanh`` (Kim et al.) or ``relu`` after each convolution.
    """

    input_keys = ("chars",)

    def __init__(
        self,
        num_chars: int,
        char_dim: int = 16,
        kernel_sizes: Sequence[int] = (1, 2, 3, 4, 5, 6),
        num_filters: int | Sequence[int] = 25,
        highway_layers: int = 1,
        projection_dim: int | None = None,
        activation: str = "tanh",
        padding_idx: int = 0,
    ):
        super().__init__()
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be tanh or relu, got {activation!r}")
        self.kernel_sizes = [int(k) for k in kernel_sizes]
        filters = (
            [int(num_filters)] * len(self.kernel_sizes)
            if isinstance(num_filters, int)
            else [int(n) for n in num_filters]
        )
        if len(filters) != len(self.kernel_sizes):
            raise ValueError(
                f"num_filters has {len(filters)} entries for {len(self.kernel_sizes)} kernel_sizes"
            )
        self.padding_idx = padding_idx
        self.embedding = nn.Embedding(num_chars, char_dim, padding_idx=padding_idx)
        self.convs = nn.ModuleList(
            nn.Conv1d(char_dim, n, k, padding=k - 1) for k, n in zip(self.kernel_sizes, filters)
        )
        self.activation = torch.tanh if activation == "tanh" else torch.relu
        total = sum(filters)
        self.highway = Highway(total, highway_layers) if highway_layers > 0 else nn.Identity()
        self.projection = nn.Linear(total, projection_dim) if projection_dim else nn.Identity()
        self.output_dim = int(projection_dim) if projection_dim else total
        self._export_bank: tuple[torch.Tensor, ...] | None = None  # set by prepare_export only

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        batch, steps, width = chars.shape
        flat = chars.reshape(batch * steps, width)  # [N, C]
        valid_chars = flat != self.padding_idx
        lengths = valid_chars.long().sum(1, keepdim=True)  # [N, 1]
        x = self.embedding(flat).transpose(1, 2)  # [N, E, C]
        pooled = []
        for k, conv in zip(self.kernel_sizes, self.convs):
            features = self.activation(conv(x))  # [N, F, C + k - 1]
            positions = torch.arange(features.size(-1), device=chars.device).unsqueeze(0)
            valid = (positions < lengths + k - 1).unsqueeze(1)  # windows that cover a real character
            pooled.append(features.masked_fill(~valid, -1e4).max(dim=-1).values)  # [N, F]
        has_chars = (lengths > 0).to(x.dtype)  # padding tokens get a zero vector
        words = torch.cat(pooled, dim=-1) * has_chars
        words = self.projection(self.highway(words)) * has_chars
        return words.reshape(batch, steps, -1)

    def forward_for_export(self, chars: torch.Tensor) -> torch.Tensor:
        """``forward`` with the filter banks merged into one convolution: what the exported graph runs.

        Each width-``k`` kernel is left-padded with zeros to the widest width ``K``, so output position
        ``j`` of the merged convolution (padding ``K - 1``) covers characters ``j - k + 1 .. j`` for that
        bank, exactly like its own convolution; a bank's extra trailing positions only see padding and
        are masked like its other empty windows (per-filter ``valid`` below). One ``Conv`` + one mask +
        one max instead of one each per width: dispatch, not arithmetic, dominates at serving sizes.
        """
        batch, steps, width = chars.shape
        flat = chars.reshape(batch * steps, width)  # [N, C]
        lengths = (flat != self.padding_idx).long().sum(1, keepdim=True)  # [N, 1]
        x = self.embedding(flat).transpose(1, 2)  # [N, E, C]
        weight, bias, reach = self._export_bank or self._merged_bank()  # [F, E, K], [F], [F]
        features = self.activation(nn.functional.conv1d(x, weight, bias, padding=weight.size(-1) - 1))
        banks, per_bank = len(self.convs), self.convs[0].out_channels
        if all(conv.out_channels == per_bank for conv in self.convs):
            # Equal banks: the mask is per bank, [N, banks, 1, C+K-1], a filter count smaller than
            # the features, and added rather than selected. An empty window scores at most
            # (activation's bound) - 1e4, below any window over a real character, so the max is the
            # one of ``forward``'s masked_fill wherever a word has characters; a word without
            # characters is zeroed by ``has_chars`` in both.
            positions = torch.arange(features.size(-1), device=chars.device).view(1, 1, 1, -1)
            reach_bank = reach.view(banks, per_bank)[:, :1].view(1, banks, 1, 1)
            empty = positions >= lengths.view(-1, 1, 1, 1) + reach_bank  # [N, banks, 1, C+K-1]
            scored = features.unflatten(1, (banks, per_bank)) + empty.to(features.dtype) * -1e4
            words = scored.amax(dim=-1).flatten(1)  # [N, F]
        else:
            positions = torch.arange(features.size(-1), device=chars.device).view(1, 1, -1)
            valid = positions < (lengths.unsqueeze(-1) + reach.view(1, -1, 1))  # [N, F, C+K-1]
            words = features.masked_fill(~valid, -1e4).max(dim=-1).values  # [N, F]
        has_chars = (lengths > 0).to(x.dtype)  # padding tokens get a zero vector
        words = self.projection(self.highway(words * has_chars)) * has_chars
        return words.reshape(batch, steps, -1)

    def _merged_bank(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The width banks as one: ``weight [F, E, K]`` (kernels left-padded to the widest ``K``),
        ``bias [F]`` and ``reach [F]`` (``k - 1`` of each filter's bank)."""
        widest = max(self.kernel_sizes)
        banks = list(zip(self.kernel_sizes, self.convs))
        weight = torch.cat([nn.functional.pad(conv.weight, (widest - k, 0)) for k, conv in banks])
        bias = torch.cat([conv.bias for conv in self.convs])
        reach = torch.cat([torch.full((conv.out_channels,), k - 1) for k, conv in banks])
        return weight, bias, reach.to(weight.device)

    def prepare_export(self) -> None:
        """Merge the banks once, outside the trace: the exporter then embeds them as constants (a
        weight computed inside the trace has a shape the ONNX ``Conv`` cannot be given)."""
        with torch.no_grad():
            self._export_bank = tuple(t.detach().clone() for t in self._merged_bank())

    def finish_export(self) -> None:
        """Drop the merged copy, so later training or a later export never reads stale weights."""
        self._export_bank = None

    def input_example(self, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """Export example: ``chars [B, max(lengths), 3]``, words of 1 to 3 characters, padding 0."""
        batch, steps = len(lengths), int(lengths.max())
        width = torch.tensor([2, 1, 3, 1]).repeat(steps)[:steps]  # characters per token
        ids = (2 + torch.arange(batch * steps * 3).view(batch, steps, 3) % 5).clamp(
            max=self.embedding.num_embeddings - 1
        )
        real = (torch.arange(3).view(1, 1, 3) < width.view(1, steps, 1)) & (
            torch.arange(steps).view(1, steps, 1) < lengths.view(batch, 1, 1)
        )
        return {"chars": torch.where(real, ids, self.padding_idx)}
