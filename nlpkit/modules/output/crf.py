"""Linear-chain CRF output layer (Lafferty et al., 2001; Lample et al., 2016).

Score of a tag sequence ``y`` for emissions ``E``::

    s(y) = start[y_1] + sum_t E[t, y_t] + sum_t trans[y_{t-1}, y_t] + end[y_n]

The loss is ``log Z - s(gold)`` with ``log Z`` from the forward algorithm; decoding is Viterbi. Both
are batched tensor ops looping over time only, and handle padding by carrying the state through
masked steps. With ``constrained`` the scheme's invalid transitions (``O -> I-X`` under BIO, ...)
get a large negative score, in training and decoding alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nlpkit.modules.base import WordOutputLayer
from nlpkit.modules.exportable import Decoding

NEG = -1.0e4  # score of a forbidden transition: large enough to never win, finite to keep gradients clean


class CRFOutput(WordOutputLayer):
    """``loss(emissions [B, T, L], tags [B, T], mask [B, T])``, ``decode(emissions, mask) -> [B, T]``.

    Every sequence must have at least one real token, and the mask must be a prefix (no gaps).

    Args:
        num_labels: number of tags (injected).
        allowed_transitions: which tags may start a sequence, follow each tag and end one, as
            ``(start [L], transition [L][L], end [L])`` booleans (injected by the model builder from the
            tag names and scheme, ``nlpkit.data.tag_schemes.allowed_transitions``); needed for
            ``constrained``. The component itself knows nothing of tag schemes.
        constrained: forbid the transitions ``allowed_transitions`` does not allow.
    """

    def __init__(
        self,
        num_labels: int,
        allowed_transitions: tuple[Sequence[bool], Sequence[Sequence[bool]], Sequence[bool]] | None = None,
        constrained: bool = True,
    ):
        super().__init__()
        self.num_labels = num_labels
        self.output_dim = num_labels
        self.transitions = nn.Parameter(torch.empty(num_labels, num_labels).uniform_(-0.1, 0.1))
        self.start_transitions = nn.Parameter(torch.empty(num_labels).uniform_(-0.1, 0.1))
        self.end_transitions = nn.Parameter(torch.empty(num_labels).uniform_(-0.1, 0.1))
        start = torch.zeros(num_labels)
        trans = torch.zeros(num_labels, num_labels)
        end = torch.zeros(num_labels)
        if constrained:
            if allowed_transitions is None or len(allowed_transitions[0]) != num_labels:
                raise ValueError("CRFOutput(constrained=True) needs allowed_transitions for every tag")
            ok_start, ok_trans, ok_end = allowed_transitions
            start = NEG * (1.0 - torch.tensor(ok_start, dtype=torch.float))
            trans = NEG * (1.0 - torch.tensor(ok_trans, dtype=torch.float))
            end = NEG * (1.0 - torch.tensor(ok_end, dtype=torch.float))
        # Buffers, not parameters: saved with the weights, never trained.
        self.register_buffer("start_penalty", start)
        self.register_buffer("transition_penalty", trans)
        self.register_buffer("end_penalty", end)

    def potentials(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``start [L]``, ``transitions [L, L]`` (from, to), ``end [L]`` with the constraints added."""
        return (
            self.start_transitions + self.start_penalty,
            self.transitions + self.transition_penalty,
            self.end_transitions + self.end_penalty,
        )

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Forward algorithm: ``log Z [B]``."""
        start, trans, end = self.potentials()
        alpha = start + emissions[:, 0]  # [B, L]
        for t in range(1, emissions.size(1)):
            step = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)
        return torch.logsumexp(alpha + end, dim=1)

    def sequence_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``s(tags) [B]`` for the given tag sequences."""
        start, trans, end = self.potentials()
        weights = mask.to(emissions.dtype)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # [B, T]
        score = start[tags[:, 0]] + (emitted * weights).sum(1)
        if tags.size(1) > 1:
            score = score + (trans[tags[:, :-1], tags[:, 1:]] * weights[:, 1:]).sum(1)
        last = tags.gather(1, (mask.long().sum(1) - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        return score + end[last]

    def loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per sentence."""
        return (self.log_partition(emissions, mask) - self.sequence_score(emissions, tags, mask)).mean()

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Viterbi: the highest-scoring tag sequence ``[B, T]`` (0 at padding)."""
        start, trans, end = self.potentials()
        batch, steps, labels = emissions.shape
        score = start + emissions[:, 0]  # [B, L]
        identity = torch.arange(labels, device=emissions.device).expand(batch, labels)
        backpointers = []
        for t in range(1, steps):
            best, previous = (score.unsqueeze(2) + trans.unsqueeze(0)).max(dim=1)  # over the previous tag
            keep = mask[:, t].unsqueeze(1)
            score = torch.where(keep, best + emissions[:, t], score)
            backpointers.append(torch.where(keep, previous, identity))  # padding: stay on the same tag
        tag = (score + end).argmax(dim=1)  # [B]
        path = [tag]
        for pointers in reversed(backpointers):
            tag = pointers.gather(1, tag.unsqueeze(1)).squeeze(1)
            path.append(tag)
        path.reverse()
        return torch.stack(path, dim=1) * mask.long()

    def scores(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-token marginal probabilities ``[B, T, L]`` (forward-backward via autograd)."""
        with torch.enable_grad():
            emissions = emissions.detach().requires_grad_(True)
            log_z = self.log_partition(emissions, mask).sum()
            (marginals,) = torch.autograd.grad(log_z, emissions)
        return marginals * mask.unsqueeze(-1).to(marginals.dtype)

    @torch.no_grad()
    def onnx_decoding(self) -> Decoding:
        """Export hook: Viterbi over the potentials as ``decode`` uses them (constraints added)."""
        start, transitions, end = (t.detach().cpu().numpy() for t in self.potentials())
        return Decoding("crf_viterbi", {"start": start, "transitions": transitions, "end": end})
