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

    def select(self, rows: torch.Tensor) -> None:
        """Keep the states of ``rows [R]`` (in that order, repeats allowed): beam search's reordering
        of hypotheses after each step."""
        for name in ("h", "c", "x", "open", "label", "top", "ptr", "n_open"):
            setattr(self, name, getattr(self, name).index_select(0, rows))

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
    ``decode(batch) -> list of action-id lists`` (masked; greedy, or beam search with ``beam_size`` > 1).

    Args:
        embedding, representation: the shared token encoder (``representation`` per token).
        nt_kinds: ``"intent"``/``"slot"`` of each NT action (action ids 2...).
        stack_dim: stack-LSTM and composition width.
        action_dim: action embedding and history-LSTM width.
        hidden_dim: the action scorer's hidden layer.
        compose: ``bilstm`` or ``sum``.
        max_open: the most non-terminals open at once.
        dropout: on the scorer's input.
        beam_size: hypotheses ``decode`` keeps per sentence (1: greedy).
        word_pieces: the featurizer gives word pieces (``featurizer=wordpiece``): the buffer is each
            word's first-piece state (``TokenEncoderModel.encode``).
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
        beam_size: int = 1,
        word_pieces: bool = False,
    ):
        super().__init__(embedding, representation, word_pieces)
        if beam_size < 1:
            raise ConfigError(f"model.beam_size={beam_size}: must be >= 1 (1 is greedy decoding)")
        self.beam_size = int(beam_size)
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
        states, mask = self.encode(batch)  # [B, T, R]: per word (a piece featurizer's: first pieces)
        lengths = mask.long().sum(1)  # [B] words
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
    def decode(self, batch: Mapping[str, torch.Tensor], beam_size: int | None = None) -> list[list[int]]:
        """Masked decoding, batched: each example's action ids, up to its root's REDUCE. Greedy when
        ``beam_size`` (default: the model's ``beam_size``) is 1, else :meth:`beam_decode`."""
        beam_size = self.beam_size if beam_size is None else int(beam_size)
        if beam_size > 1:
            return self.beam_decode(batch, beam_size)[0]
        states, mask = self.encode(batch)
        lengths = mask.long().sum(1)
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

    @torch.no_grad()
    def beam_decode(
        self, batch: Mapping[str, torch.Tensor], beam_size: int
    ) -> tuple[list[list[int]], list[float]]:
        """Beam search under the mask, batched: ``(action ids, log-probability)`` of each example's best
        complete parse among the ``beam_size`` hypotheses kept per step (a hypothesis' score: the sum
        of its actions' log-softmax over the valid actions, as training's cross-entropy scores them).

        The ``B x K`` hypotheses are the rows of one batched parser state; each step scores every row,
        takes each example's ``K`` best (row, action) extensions and reorders the rows to them. A
        finished hypothesis stays in the beam with its score (its only extension: itself), so the loop
        ends when every kept hypothesis is finished; one that ran out of valid extensions (fewer
        than ``K`` exist early on) is dead: score ``-inf``, never extended.
        """
        states, mask = self.encode(batch)
        batch_size, k = states.size(0), beam_size
        states = states.repeat_interleave(k, 0)  # [B*K, T, R]: K copies of each example
        lengths = mask.long().sum(1).repeat_interleave(k, 0)
        stacks, history = self._start(states)
        score = torch.full((batch_size, k), float("-inf"), device=states.device)
        score[:, 0] = 0.0  # one live hypothesis per example to start from
        taken = torch.zeros(batch_size * k, 0, dtype=torch.long, device=states.device)
        base = torch.arange(batch_size, device=states.device).unsqueeze(1) * k  # [B, 1] first row
        n_actions = self.n_actions
        for _ in range(self.max_steps(states.size(1))):
            done = stacks.finished.view(batch_size, k)
            if bool((done | torch.isinf(score)).all()):
                break
            log_probs = self._scores(states, lengths, stacks, history[0]).log_softmax(-1)  # [B*K, A]
            log_probs = log_probs.masked_fill(log_probs <= MASKED / 2, float("-inf"))  # invalid: never
            stay = torch.full_like(log_probs, float("-inf"))
            stay[:, 0] = 0.0  # a finished hypothesis' only extension is itself, at no cost
            log_probs = torch.where(stacks.finished.unsqueeze(1), stay, log_probs)
            candidates = (score.view(-1, 1) + log_probs).view(batch_size, k * n_actions)
            score, index = candidates.topk(k, dim=1)  # [B, K]
            rows = (base + index // n_actions).view(-1)  # the parent row of each kept hypothesis
            action = (index % n_actions).view(-1)
            stacks.select(rows)
            history = (history[0].index_select(0, rows), history[1].index_select(0, rows))
            active = ~stacks.finished & torch.isfinite(score.view(-1))
            action = torch.where(active, action, torch.full_like(action, -1))
            taken = torch.cat([taken.index_select(0, rows), action.unsqueeze(1)], 1)
            self._take(states, stacks, action, active)
            history = self._advance_history(history, action, active)
        score = score.masked_fill(~stacks.finished.view(batch_size, k), float("-inf"))
        best_score, best = score.max(1)  # [B]
        columns = taken.view(batch_size, k, -1)[torch.arange(batch_size), best].tolist()
        return [[a for a in row if a >= 0] for row in columns], best_score.tolist()


def build_rnng_parser(model_cfg, *, nt_kinds: Sequence[str], max_open: int, **encoder_sizes) -> RNNGParser:
    """The token encoder (see ``build_token_encoder``) and the parser sized from its ``output_dim``."""
    word_pieces = bool(encoder_sizes.get("word_pieces", False))
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
        beam_size=int(model_cfg.get("beam_size", 1)),
        word_pieces=word_pieces,
    )
