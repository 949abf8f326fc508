"""A pretrained transformer encoder (HF ``transformers``) as a contextual token embedding.

As AllenNLP's ``PretrainedTransformerEmbedder``: word-piece ids ``[B, T]`` (``featurizer=wordpiece``:
``[CLS] pieces [SEP]``) -> the encoder's last hidden states ``[B, T, hidden]``, one vector per piece in
context. A seq2vec representation pools them for a document (``representation=mean`` or ``cls``); a
seq2seq one, or none, keeps them per token. The architecture and weights are read by
``transformers.AutoModel`` from a local HF checkpoint directory (``config.json`` + ``model.safetensors``):
``path``, or, when null, the featurizer's own checkpoint (``data.featurizer.path``; itself null: the
built-in all-MiniLM-L6-v2 package of ``nlpkit[pretrained]``). Restoring a run rebuilds the same
architecture from that directory and takes the fine-tuned weights from the run's checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from nlpkit.errors import ConfigError
from nlpkit.modules.base import TokenEmbedding
from nlpkit.utils.pretrained import checkpoint_dir, require


class TransformerEmbedding(TokenEmbedding):
    """``forward(tokens [B, T], lengths [B]) -> [B, T, hidden]``: the encoder over the first ``lengths``
    pieces of each row (an attention mask hides the padding; its states are zeroed).

    freeze: keep the pretrained weights fixed (only the layers above train).
    dropout: the checkpoint's hidden/attention dropout, overridden when set.
    """

    input_keys = ("tokens", "lengths")
    #: its parameters take ``optim.encoder_lr`` (``nlpkit.training.optim.parameter_groups``)
    pretrained: ClassVar[bool] = True

    def __init__(
        self,
        vocab_size: int,
        padding_idx: int = 0,
        path: str | None = None,
        checkpoint: str | None = None,
        freeze: bool = False,
        dropout: float | None = None,
    ):
        super().__init__()
        transformers = require("transformers", "embedding=transformer")
        if path is None and checkpoint is None:
            raise ConfigError(
                "embedding=transformer reads its own checkpoint's word pieces: use featurizer=wordpiece "
                "(model=minilm picks both), or name the checkpoint with model.embedding.path"
            )
        source = path if path is not None else checkpoint
        self.path = str(checkpoint_dir(source, "model.embedding.path"))
        overrides = {}
        if dropout is not None:
            overrides = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
        config = transformers.AutoConfig.from_pretrained(self.path, **overrides)
        if int(config.vocab_size) != int(vocab_size):
            raise ConfigError(
                f"model.embedding.path={self.path!r} has {config.vocab_size} word pieces but the featurizer "
                f"{vocab_size}: the embedding and data.featurizer.path must name the same checkpoint"
            )
        self.encoder = transformers.AutoModel.from_pretrained(self.path, config=config)
        self.encoder.train()  # from_pretrained leaves it in eval mode: Lightning would train without dropout
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # BERT's tanh pooler: unused here (pooling is the next slot's)
        self.padding_idx = padding_idx
        self.vocab_size = int(vocab_size)
        self.output_dim = int(config.hidden_size)
        self.freeze = freeze
        if freeze:
            self.encoder.requires_grad_(False)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(tokens.size(1), device=tokens.device)
        mask = steps.unsqueeze(0) < lengths.unsqueeze(1)  # [B, T]
        states = self.encoder(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
        return states * mask.unsqueeze(-1).to(states.dtype)  # [B, T, H], zero at padding

    def input_example(self, lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """Export example: ``tokens [B, max(lengths)]`` (distinct ids, padding after each row), ``lengths``."""
        batch, steps = len(lengths), int(lengths.max())
        ids = (1000 + torch.arange(batch * steps).view(batch, steps)) % self.vocab_size
        real = torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)
        return {"tokens": torch.where(real, ids, self.padding_idx), "lengths": lengths}

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.path)
