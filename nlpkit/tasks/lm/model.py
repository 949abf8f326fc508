"""The language model: word embedding -> stacked LSTM -> next-word output layer (full or adaptive)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from nlpkit.errors import ConfigError
from nlpkit.modules.base import embed_inputs
from nlpkit.modules.exportable import Exportable
from nlpkit.registry import build_component


class LanguageModel(Exportable, nn.Module):
    """``forward(batch, state=None) -> {"log_probs": [B, T], "state": (h, c)}``.

    ``batch`` holds ``tokens [B, T]`` (inputs), ``targets [B, T]`` and ``mask [B, T]``; ``log_probs`` is
    ``log p(targets[b, t] | tokens[b, :t + 1], state)``, 0 where ``mask`` is false. ``state`` carries
    a stream across batches (``None``: a zero state, sentence mode).
    """

    def __init__(self, embedding: nn.Module, representation: nn.Module, output: nn.Module, eos_id: int):
        super().__init__()
        self.embedding = embedding
        self.representation = representation
        self.output = output
        self.eos_id = eos_id

    def forward(self, batch: Mapping[str, torch.Tensor], state=None) -> dict:
        embedded = embed_inputs(self.embedding, batch)  # [B, T, E]
        mask = batch["mask"]
        states, state = self.representation.run(embedded, mask, state)  # [B, T, H]
        log_probs = torch.zeros(mask.shape, dtype=states.dtype, device=states.device)  # [B, T]
        log_probs[mask] = self.output.target_log_probs(states[mask], batch["targets"][mask])  # [N]
        return {"log_probs": log_probs, "state": state}

    # ------------------------------------------------------------------ export: sentence scoring
    export_outputs = ("token_log_probs", "sentence_log_prob")

    def export_inputs(self) -> list[str]:
        return ["tokens", "lengths"]

    def input_example(self) -> dict[str, torch.Tensor]:
        return {"tokens": torch.tensor([[4, 5, 6, 7], [5, 6, 0, 0]]), "lengths": torch.tensor([4, 2])}

    def forward_for_export(
        self, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Words ``[B, T]`` (padded), ``lengths [B]`` -> each word's log-probability ``[B, T]`` (0 at
        padding) and the sentence's ``[B]``: the words' plus that of the ``<eos>`` after them, from a
        zero state with ``<eos>`` as the first input (sentence mode)."""
        batch_size, width = tokens.shape
        eos = torch.full((batch_size, 1), self.eos_id, dtype=tokens.dtype)
        inputs = torch.cat([eos, tokens], dim=1)  # [B, T + 1]
        positions = torch.arange(width + 1).unsqueeze(0)  # [1, T + 1]
        targets = torch.cat([tokens, tokens.new_zeros(batch_size, 1)], dim=1)
        targets = torch.where(
            positions == lengths.unsqueeze(1), self.eos_id, targets
        )  # <eos> after the words
        mask = positions <= lengths.unsqueeze(1)  # [B, T + 1]
        embedded = embed_inputs(self.embedding, {"tokens": inputs})  # [B, T + 1, E]
        states, _ = self.representation.run(embedded, mask)  # [B, T + 1, H]
        flat = self.output.log_probs(states.reshape(-1, states.size(-1)))  # [B * (T + 1), V]
        picked = flat.gather(1, targets.reshape(-1, 1)).view(batch_size, width + 1) * mask.to(flat.dtype)
        return picked[:, :width], picked.sum(dim=1)  # [B, T], [B]


def build_language_model(model_cfg, *, eos_id: int, **sizes) -> LanguageModel:
    """Embedding (sized by the featurizer), LSTM (from its width), output (from the LSTM's and the
    vocabulary's); ``model.tie_weights`` shares the embedding matrix with the output layer."""
    vocab = sizes.get("vocab")
    embedding = build_component(
        model_cfg.embedding, {**sizes, "vocab": list(vocab) if vocab is not None else None}, "model.embedding"
    )
    representation = build_component(
        model_cfg.representation, {"input_dim": embedding.output_dim}, "model.representation"
    )
    if not hasattr(representation, "run"):
        raise ConfigError(
            f"model.representation: {type(representation).__name__} cannot carry a hidden state; "
            "task=lm needs representation=lstm_lm"
        )
    output = build_component(
        model_cfg.output,
        {"input_dim": representation.output_dim, "vocab_size": int(sizes["vocab_size"])},
        "model.output",
    )
    if model_cfg.get("tie_weights"):
        try:
            output.tie_to(embedding.embedding.weight)
        except (ValueError, AttributeError) as err:
            raise ConfigError(f"model.tie_weights=true: {err}") from err
    return LanguageModel(embedding, representation, output, eos_id)
