"""Two-tower pair model: one shared token embedding, a sequence-to-vector encoder per tower (one module
shared by both, or two), the towers' vectors combined, then a decoder.

``model.combine``:

* ``mlp`` (the classic recipe, InferSent / PyText's ``PairwiseModel``): ``[a, b, |a - b|, a * b]``
  ``[N, 4H]`` -> ``model.decoder`` (MLP) -> ``[N, num_outputs]``; ``model.features`` picks which of
  ``a``, ``b``, ``abs_diff``, ``product`` (each ``[N, H]``) and ``cosine`` (``[N, 1]``: with random
  embeddings, a soft word-overlap signal from the first step) are concatenated (default the first four);
* ``cosine``: ``scale * cos(a, b) + bias`` ``[N, 1]`` (learned scale and bias, so an MSE target on any
  range fits); one output only (regression, ranking), no decoder.

``model.shared_encoder`` (default true): both texts go through one encoder (a siamese network);
false builds a second one of the same config for the second text (``representation_b``).

Export (``nlpkit.modules.exportable``): ``PairModel.forward_for_export`` takes each tower's featurizer
tensors, suffixed ``_a`` and ``_b`` (``tokens_a, lengths_a, ..., tokens_b, lengths_b, ...``), and returns
``scores``: the output layer's scores ``[B, L]`` (classification), the value ``[B]`` (regression), or
the raw score ``[B]`` (ranking: no output layer). ``PairModel.tower(second)`` is one tower alone
(:class:`Tower`: text -> its vector), what the embedding file exports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nlpkit.errors import ConfigError
from nlpkit.modules.base import embed_inputs
from nlpkit.modules.exportable import Exportable
from nlpkit.modules.masking import sequence_mask
from nlpkit.registry import build_component
from nlpkit.tasks.doc_cls.model import check_embedding_inputs

COMBINATIONS = ("mlp", "cosine")
#: what ``model.features`` may list for ``combine=mlp``: the towers' vectors and their interactions
FEATURES = {
    "a": lambda a, b: a,
    "b": lambda a, b: b,
    "abs_diff": lambda a, b: (a - b).abs(),
    "product": lambda a, b: a * b,
    "cosine": lambda a, b: nn.functional.cosine_similarity(a, b, dim=-1).unsqueeze(-1),
}
#: features one wide, not H: a scalar per pair
SCALAR_FEATURES = {"cosine"}
DEFAULT_FEATURES = ("a", "b", "abs_diff", "product")


class CosineScore(nn.Module):
    """``scale * cos(a, b) + bias``: ``[N, H], [N, H] -> [N, 1]``. Both are learned from their initial
    values: start them where the target's range is (STS-B's 0-5: scale 5, bias 0, i.e.
    sentence-transformers' cosine against score / 5), or an MSE far from its minimum pushes a
    pretrained encoder to move every cosine at once before the two find their place."""

    def __init__(self, scale: float = 1.0, bias: float = 0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (self.scale * nn.functional.cosine_similarity(a, b, dim=-1) + self.bias).unsqueeze(-1)


def encode_text(
    embedding: nn.Module, encoder: nn.Module, features: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """One tower: a featurizer batch -> ``[B, H]``."""
    mask = sequence_mask(features["tokens"], features["lengths"])  # [B, T]
    return encoder(embed_inputs(embedding, features), mask)  # [B, T, E] -> [B, H]


class Tower(Exportable, nn.Module):
    """One tower of a :class:`PairModel` (its embedding and one encoder, shared with it, not copies):
    ``forward_for_export(tokens, lengths, ...) -> embedding [B, H]``."""

    export_outputs = ("embedding",)

    def __init__(self, embedding: nn.Module, encoder: nn.Module):
        super().__init__()
        self.embedding = embedding
        self.encoder = encoder

    @property
    def output_dim(self) -> int:
        return int(self.encoder.output_dim)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return encode_text(self.embedding, self.encoder, features)  # [B, H]

    def forward_for_export(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self(self.export_batch(inputs))


#: the network input suffixes of the two towers' featurizer tensors (``tokens_a``, ``tokens_b``, ...)
TOWER_SUFFIXES = ("_a", "_b")


class PairModel(Exportable, nn.Module):
    """``forward({"a", "b", "index"}) -> {"logits": [N, num_outputs]}`` (``index [N]``: row i pairs the
    first text ``a[index[i]]`` with the second text ``b[i]``; a ranking batch encodes each query once)."""

    export_outputs = ("scores",)

    def __init__(
        self,
        embedding: nn.Module,
        representation: nn.Module,
        combine: str,
        decoder: nn.Module | None = None,
        output: nn.Module | None = None,
        representation_b: nn.Module | None = None,
        features: tuple[str, ...] = DEFAULT_FEATURES,
        cosine_init: tuple[float, float] = (1.0, 0.0),
    ):
        super().__init__()
        self.features = tuple(features)
        self.embedding = embedding
        self.representation = representation
        self.representation_b = representation_b
        self.combine = combine
        self.decoder = decoder
        self.cosine = CosineScore(*cosine_init) if combine == "cosine" else None
        self.output = output

    def encoder(self, second: bool = False) -> nn.Module:
        """The first text's encoder, or the second's (the same module when shared)."""
        return self.representation_b if second and self.representation_b is not None else self.representation

    def encode(self, features: Mapping[str, torch.Tensor], second: bool = False) -> torch.Tensor:
        """One tower: a featurizer batch -> ``[B, H]``."""
        return encode_text(self.embedding, self.encoder(second), features)

    def tower(self, second: bool = False) -> Tower:
        """One tower alone (sharing this model's modules): what ``embed`` runs and the embedding file holds."""
        return Tower(self.embedding, self.encoder(second))

    def combine_vectors(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The towers' vectors ``[N, H]`` each -> logits ``[N, num_outputs]``."""
        if self.cosine is not None:
            return self.cosine(a, b)  # [N, 1]
        combined = torch.cat(
            [FEATURES[name](a, b) for name in self.features], dim=-1
        )  # [N, len(features) * H]
        return self.decoder(combined)  # [N, L]

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        a = self.encode(batch["a"])[batch["index"]]  # [N, H]
        b = self.encode(batch["b"], second=True)  # [N, H]
        return {"logits": self.combine_vectors(a, b)}

    # ------------------------------------------------------------------------------------ export
    def export_inputs(self) -> list[str]:
        """Each tower's featurizer tensors, suffixed: ``tokens_a, lengths_a, ..., tokens_b, ...``."""
        tower = self.text_inputs()
        return [name + suffix for suffix in TOWER_SUFFIXES for name in tower]

    def input_example(self) -> dict[str, torch.Tensor]:
        """The example rows of one text, for each tower (the second's rows in the other order, so the
        two towers' lengths differ)."""
        one = self.text_example()
        example = {f"{name}_a": value for name, value in one.items()}
        example.update({f"{name}_b": value.flip(0) for name, value in one.items()})
        return {name: example[name] for name in self.export_inputs()}

    def export_axis_suffix(self, name: str) -> str:
        """The towers' inputs vary in length apart: their non-batch axes get their own names."""
        return next((s for s in TOWER_SUFFIXES if name.endswith(s)), "")

    def forward_for_export(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Both towers' tensors -> ``scores``: ``[B, L]`` probabilities (classification), ``[B]``
        values (regression), ``[B]`` raw scores (ranking, no output layer)."""
        named = dict(zip(self.export_inputs(), inputs))
        a, b = (
            {name[: -len(s)]: value for name, value in named.items() if name.endswith(s)}
            for s in TOWER_SUFFIXES
        )
        logits = self.combine_vectors(self.encode(a), self.encode(b, second=True))  # [B, L]
        return self.output.scores(logits) if self.output is not None else logits[:, 0]


def build_pair_model(
    model_cfg, *, num_outputs: int, with_output: bool, featurizer: str = "subword", **sizes
) -> PairModel:
    """Build each component from its config node (``sizes``: the featurizer's). ``num_outputs``: labels
    (classification), or 1 (a score); ``with_output``: build ``model.output`` (the loss and predictions
    of task=pair; task=ranking's loss is its module's)."""
    combine = str(model_cfg.get("combine", "mlp"))
    if combine not in COMBINATIONS:
        raise ConfigError(f"model.combine={combine!r}: choose one of {', '.join(COMBINATIONS)}")
    if combine == "cosine" and num_outputs != 1:
        raise ConfigError(
            f"model.combine=cosine gives one score per pair, but this task needs {num_outputs} outputs: "
            "use model.combine=mlp for classification (or output=regression)"
        )
    features = tuple(str(f) for f in model_cfg.get("features", DEFAULT_FEATURES))
    unknown = [f for f in features if f not in FEATURES]
    if unknown or not features:
        raise ConfigError(f"model.features={list(features)}: list one or more of {', '.join(FEATURES)}")
    check_embedding_inputs(model_cfg, list(sizes), featurizer)
    vocab = sizes.get("vocab")
    embedding = build_component(
        model_cfg.embedding, {**sizes, "vocab": list(vocab) if vocab is not None else None}, "model.embedding"
    )
    towers = [
        build_component(model_cfg.representation, {"input_dim": embedding.output_dim}, "model.representation")
        for _ in range(1 if bool(model_cfg.get("shared_encoder", True)) else 2)
    ]
    decoder = None
    if combine == "mlp":
        decoder = build_component(
            model_cfg.decoder,
            {
                "input_dim": sum(1 if f in SCALAR_FEATURES else towers[0].output_dim for f in features),
                "output_dim": num_outputs,
            },
            "model.decoder",
        )
    output = (
        build_component(model_cfg.output, {"num_labels": num_outputs}, "model.output")
        if with_output
        else None
    )
    cosine_init = (float(model_cfg.get("cosine_scale", 1.0)), float(model_cfg.get("cosine_bias", 0.0)))
    return PairModel(
        embedding,
        towers[0],
        combine,
        decoder,
        output,
        towers[1] if len(towers) > 1 else None,
        features,
        cosine_init,
    )
