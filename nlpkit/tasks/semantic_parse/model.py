"""RNNG parser (Dyer et al. 2016; Gupta et al. 2018, PyText's ``RNNGParser``), batched.

Tokens are embedded by the shared word components and encoded by the representation (a BiLSTM) into
``states [B, T, R]``. The parser state has three summaries, concatenated and scored by an MLP into
one score per action (masked to the valid ones, ``valid_actions``):

- the **buffer**: the BiLSTM state of the next unshifted token (its backward half reads the rest of
  the buffer right to left, as RNNG's buffer LSTM does), zeros once the buffer is empty;
- the **stack**: a stack-LSTM (``LSTMCell``) whose state at each stack position is kept, so a pop is
  a pointer move; a learned vector while the stack is empty;
- the **history**: an ``LSTMCell`` over the embeddings of the actions taken so far.

``SHIFT`` pushes the projected token state, ``NT(label)`` the label's embedding, ``REDUCE`` pops the
innermost open non-terminal and its children and pushes their composition (``compose=bilstm``: a
BiLSTM over ``[NT, child 1 .. child k]``; ``compose=sum``: ``tanh(W [NT; sum of children])``).

Everything is batched: the stacks are tensors ``[B, S, H]`` of hidden states with per-example pointers,
each step is one ``LSTMCell`` call for all examples, and the step's REDUCEs are composed together.
Teacher forcing (``forward``) runs the oracle actions; ``decode`` runs greedy decoding under the same
mask, every example until its root closes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from nlpkit.errors import ConfigError
from nlpkit.modules.representation.bilstm import BiLSTM
from nlpkit.tasks.tagging.model import TokenEncoderModel, build_token_encoder

SHIFT_ID, REDUCE_ID, FIRST_NT = 0, 1, 2
#: score of an invalid action (finite: a padded step's row stays free of NaN)
MASKED = -1e9


class BiLSTMComposition(nn.Module):
    """``(nt [R, H], children [R, K, H], mask [R, K]) -> [R, H]``: a BiLSTM over ``[NT, children]``,
    its forward state after the last child and its backward state after the NT, projected."""

    def __init__(self, dim: int):
        super().__init__()
        self.lstm = BiLSTM(dim, dim, num_layers=1, dropout=0.0)
        self.project = nn.Linear(2 * dim, dim)
        self.dim = dim

    def forward(self, nt: torch.Tensor, children: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        sequence = torch.cat([nt.unsqueeze(1), children], 1)  # [R, K + 1, H]
        seq_mask = torch.cat([mask.new_ones(mask.size(0), 1), mask], 1)
        states = self.lstm(sequence, seq_mask)  # [R, K + 1, 2H]
        last = seq_mask.long().sum(1) - 1  # [R]
        forward_final = states[torch.arange(states.size(0)), last, : self.dim]
        backward_final = states[:, 0, self.dim :]
        return torch.tanh(self.project(torch.cat([forward_final, backward_final], -1)))


class SumComposition(nn.Module):
    """``tanh(W [NT; sum of the children])``: the cheap alternative to the BiLSTM composition."""

    def __init__(self, dim: int):
        super().__init__()
        self.project = nn.Linear(2 * dim, dim)

    def forward(self, nt: torch.Tensor, children: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        total = (children * mask.unsqueeze(-1).to(children.dtype)).sum(1)
        return torch.tanh(self.project(torch.cat([nt, total], -1)))


COMPOSITIONS = {"bilstm": BiLSTMComposition, "sum": SumComposition}


class ParserStacks:
    """The batched parser state: stack tensors ``[B, S, ...]`` and per-example pointers.

    Position 0 of every stack is an empty sentinel (its state the LSTM's zero state); ``top`` points at
    the top element, ``open_pos`` at the innermost open non-terminal (0 when none is open)."""

    def __init__(self, batch: int, depth: int, dim: int, device: torch.device):
        # stack-LSTM states and each element's input, written in place (``RNNGParser._take``)
        self.h, self.c, self.x = (torch.zeros(batch, depth, dim, device=device) for _ in range(3))
        self.open = torch.zeros(batch, depth, dtype=torch.bool, device=device)
        self.label = torch.zeros(batch, depth, dtype=torch.long, device=device)  # NT action id
        self.top = torch.zeros(batch, dtype=torch.long, device=device)
        self.ptr = torch.zeros(batch, dtype=torch.long, device=device)  # next buffer token
        self.n_open = torch.zeros(batch, dtype=torch.long, device=device)
        self.rows = torch.arange(batch, device=device)
        self.positions = torch.arange(depth, device=device)

    @property
    def open_pos(self) -> torch.Tensor:
        """``[B]``: the position of the innermost open non-terminal (0 when none)."""
        live = self.open & (self.positions.unsqueeze(0) <= self.top.unsqueeze(1))
        return (live.long() * self.positions.unsqueeze(0)).max(1).values

    @property
    def finished(self) -> torch.Tensor:
        return (self.top > 0) & (self.n_open == 0)


def valid_actions(
    stacks: ParserStacks, lengths: torch.Tensor, nt_is_intent: torch.Tensor, max_open: int
) -> torch.Tensor:
    """``[B, A]`` bool: the actions the TOP rules allow in each example's state (``tree.ParserState``
    is the same rule set, one example at a time). A finished example allows every action (its step
    is ignored), so its scores stay finite."""
    started = stacks.top > 0
    has_open = stacks.n_open > 0
    buffer_left = stacks.ptr < lengths
    open_pos = stacks.open_pos
    has_child = stacks.top > open_pos
    top_label = stacks.label[stacks.rows, open_pos]
    top_is_intent = nt_is_intent[(top_label - FIRST_NT).clamp(min=0)]
    can_open = started & has_open & buffer_left & (stacks.n_open < max_open)
    shift = started & has_open & buffer_left
    reduce = has_open & has_child & ((stacks.n_open > 1) | ~buffer_left)
    open_intent = (~started & buffer_left) | (can_open & ~top_is_intent)
    open_slot = can_open & top_is_intent
    nt = torch.where(nt_is_intent.unsqueeze(0), open_intent.unsqueeze(1), open_slot.unsqueeze(1))  # [B, N]
    valid = torch.cat([shift.unsqueeze(1), reduce.unsqueeze(1), nt], 1)
    return valid | stacks.finished.unsqueeze(1)


class RNNGParser(TokenEncoderModel):
    """``forward(batch) -> {"action_scores": [B, L, A]}`` (teacher-forced on ``batch["forced"]``, masked);
    ``decode(batch) -> list of action-id lists`` (greedy, masked).

    Args:
        embedding, representation: the shared token encoder (``representation`` per token).
        nt_kinds: ``"intent"``/``"slot"`` of each NT action (action ids 2...).
        stack_dim: stack-LSTM and composition width.
        action_dim: action embedding and history-LSTM width.
        hidden_dim: the action scorer's hidden layer.
        compose: ``bilstm`` or ``sum``.
        max_open: the most non-terminals open at once.
        dropout: on the scorer's input.
    """

    def __init__(
        self,
        embedding: nn.Module,
        representation: nn.Module,
        nt_kinds: Sequence[str],
        stack_dim: int = 128,
        action_dim: int = 32,
        hidden_dim: int = 128,
        compose: str = "bilstm",
        max_open: int = 10,
        dropout: float = 0.2,
    ):
        super().__init__(embedding, representation)
        if compose not in COMPOSITIONS:
            raise ConfigError(f"model.compose={compose!r}: choose one of {', '.join(COMPOSITIONS)}")
        token_dim = representation.output_dim
        self.n_actions = FIRST_NT + len(nt_kinds)
        self.max_open = int(max_open)
        self.stack_dim = stack_dim
        self.register_buffer(
            "nt_is_intent", torch.tensor([k == "intent" for k in nt_kinds], dtype=torch.bool)
        )
        self.token_to_stack = nn.Linear(token_dim, stack_dim)
        self.nt_embedding = nn.Embedding(len(nt_kinds), stack_dim)
        self.action_embedding = nn.Embedding(self.n_actions + 1, action_dim)  # + the start symbol
        self.stack_cell = nn.LSTMCell(stack_dim, stack_dim)
        self.history_cell = nn.LSTMCell(action_dim, action_dim)
        self.compose = COMPOSITIONS[compose](stack_dim)
        self.empty_stack = nn.Parameter(torch.zeros(stack_dim))
        self.scorer = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(token_dim + stack_dim + action_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, self.n_actions),
        )

    # ------------------------------------------------------------------ one step for the whole batch
    def _scores(self, states, lengths, stacks: ParserStacks, history: torch.Tensor) -> torch.Tensor:
        """Masked action scores ``[B, A]`` of the current states."""
        index = stacks.ptr.clamp(max=states.size(1) - 1)
        # zeros once the buffer is empty: then only REDUCE is ever valid, so nothing could learn a vector
        buffer = states[stacks.rows, index] * (stacks.ptr < lengths).unsqueeze(1).to(states.dtype)
        stack = torch.where(
            (stacks.top > 0).unsqueeze(1),
            stacks.h[stacks.rows, stacks.top],
            self.empty_stack.expand(states.size(0), -1),
        )
        scores = self.scorer(torch.cat([buffer, stack, history], -1))
        valid = valid_actions(stacks, lengths, self.nt_is_intent, self.max_open)
        return scores.masked_fill(~valid, MASKED)

    def _take(self, states, stacks: ParserStacks, action: torch.Tensor, active: torch.Tensor) -> None:
        """Apply ``action [B]`` where ``active [B]``: one stack push each (a REDUCE pushes the composition
        where its non-terminal was), one ``LSTMCell`` call for all examples."""
        is_shift = active & (action == SHIFT_ID)
        is_reduce = active & (action == REDUCE_ID)
        is_nt = active & (action >= FIRST_NT)
        token = self.token_to_stack(states[stacks.rows, stacks.ptr.clamp(max=states.size(1) - 1)])
        nt = self.nt_embedding((action - FIRST_NT).clamp(min=0))
        x = torch.where(is_shift.unsqueeze(1), token, nt)
        open_pos = stacks.open_pos
        reducing = is_reduce.nonzero().squeeze(1)
        if reducing.numel():
            x = x.index_copy(0, reducing, self._compose(stacks, reducing, open_pos[reducing]))
        pos = torch.where(is_reduce, open_pos, stacks.top + 1)
        below = (pos - 1).clamp(min=0)
        h, c = self.stack_cell(x, (stacks.h[stacks.rows, below], stacks.c[stacks.rows, below]))
        # in-place writes of the active rows only: reads of the stacks are indexing ops, whose backward
        # needs the indices, not the values, so autograd allows overwriting the buffers afterwards
        rows = active.nonzero().squeeze(1)
        at = (rows, pos[rows])
        stacks.h.index_put_(at, h[rows])
        stacks.c.index_put_(at, c[rows])
        stacks.x.index_put_(at, x[rows])
        stacks.open.index_put_(at, is_nt[rows])
        stacks.label.index_put_(at, action[rows])
        stacks.top = torch.where(active, pos, stacks.top)
        stacks.ptr = stacks.ptr + is_shift.long()
        stacks.n_open = stacks.n_open + is_nt.long() - is_reduce.long()

    def _compose(self, stacks: ParserStacks, rows: torch.Tensor, open_pos: torch.Tensor) -> torch.Tensor:
        """``[R, H]``: the compositions of the ``rows`` that REDUCE, all in one call."""
        counts = stacks.top[rows] - open_pos  # [R] children (>= 1: the mask forbids an empty REDUCE)
        width = int(counts.max())
        offsets = torch.arange(width, device=rows.device)
        positions = (open_pos.unsqueeze(1) + 1 + offsets).clamp(max=stacks.x.size(1) - 1)  # [R, K]
        children = stacks.x[rows.unsqueeze(1), positions]  # [R, K, H]
        mask = offsets.unsqueeze(0) < counts.unsqueeze(1)
        return self.compose(stacks.x[rows, open_pos], children, mask)

    def _start(self, states: torch.Tensor) -> tuple[ParserStacks, tuple[torch.Tensor, torch.Tensor]]:
        batch, length = states.shape[:2]
        stacks = ParserStacks(batch, length + self.max_open + 2, self.stack_dim, states.device)
        start = torch.full((batch,), self.n_actions, dtype=torch.long, device=states.device)
        return stacks, self.history_cell(self.action_embedding(start))

    def _advance_history(self, history, action, active):
        h, c = self.history_cell(self.action_embedding(action.clamp(min=0)), history)
        keep = active.unsqueeze(1)
        return torch.where(keep, h, history[0]), torch.where(keep, c, history[1])

    # ------------------------------------------------------------------ teacher forcing and decoding
    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        states, _ = self.encode(batch)  # [B, T, R]
        lengths = batch["lengths"]
        forced, action_lengths = batch["forced"], batch["action_lengths"]
        stacks, history = self._start(states)
        scores = []
        for step in range(forced.size(1)):
            active = step < action_lengths
            scores.append(self._scores(states, lengths, stacks, history[0]))
            self._take(states, stacks, forced[:, step], active)
            history = self._advance_history(history, forced[:, step], active)
        return {"action_scores": torch.stack(scores, 1)}  # [B, L, A]

    def max_steps(self, length: int) -> int:
        """An upper bound on a valid parse's actions over ``length`` tokens: at most ``max_open`` NTs
        open between two SHIFTs, each closed once."""
        return length * (2 * self.max_open + 1) + 2

    @torch.no_grad()
    def decode(self, batch: Mapping[str, torch.Tensor]) -> list[list[int]]:
        """Greedy masked decoding, batched: each example's action ids, up to its root's REDUCE."""
        states, _ = self.encode(batch)
        lengths = batch["lengths"]
        stacks, history = self._start(states)
        taken: list[torch.Tensor] = []
        active = torch.ones_like(lengths, dtype=torch.bool)
        for _ in range(self.max_steps(states.size(1))):
            action = self._scores(states, lengths, stacks, history[0]).argmax(-1)
            action = torch.where(active, action, torch.full_like(action, -1))
            taken.append(action)
            self._take(states, stacks, action, active)
            history = self._advance_history(history, action, active)
            active = active & ~stacks.finished
            if not bool(active.any()):
                break
        columns = torch.stack(taken, 1).tolist()  # [B, steps]
        return [[a for a in row if a >= 0] for row in columns]


def build_rnng_parser(model_cfg, *, nt_kinds: Sequence[str], max_open: int, **encoder_sizes) -> RNNGParser:
    """The token encoder (see ``build_token_encoder``) and the parser sized from its ``output_dim``."""
    embedding, representation = build_token_encoder(model_cfg, **encoder_sizes)
    return RNNGParser(
        embedding,
        representation,
        nt_kinds,
        stack_dim=int(model_cfg.stack_dim),
        action_dim=int(model_cfg.action_dim),
        hidden_dim=int(model_cfg.hidden_dim),
        compose=str(model_cfg.compose),
        max_open=max_open,
        dropout=float(model_cfg.dropout),
    )
