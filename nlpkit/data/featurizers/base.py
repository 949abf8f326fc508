"""What every featurizer does: raw text (or a dataset's token list) -> the tensors a model reads.

A featurizer is trained on the training split, saved into a run directory and loaded from it, so
training, evaluation, prediction and export all see one featurization. Each kind registers itself
(``@register_featurizer``) and is picked per run with ``featurizer=<name>`` (``data.featurizer.name``);
its options are the rest of ``data.featurizer``, validated by its ``config_class``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from nlpkit.errors import ConfigError
from nlpkit.registry import get_featurizer

#: one example's features: ``tokens [n]`` and whatever else the featurizer makes (``chars [n, C]`` ...)
Features = dict[str, torch.Tensor]


class TextFeaturizer:
    """The featurizer contract. Subclasses set the class attributes and implement every method.

    name: registry key (``data.featurizer.name``).
    config_class: dataclass of its ``data.featurizer`` options (with a ``name`` field).
    files: the files ``save`` writes into a run directory (what ``load`` reads back).
    per_token: encodes a given token list to exactly one position per token (what word tagging needs:
        one tag per dataset token); a featurizer that re-splits text cannot.
    aligns_words: encodes a token list to sub-word pieces plus each token's first piece
        (``word_starts [W]``, ``word_lengths``): what a word-level model over a pretrained encoder reads
        (``tagging``, ``intent_slot``; ``nlpkit.tasks.tagging.model.TokenEncoderModel``).
    size_names: the keys of ``sizes()`` (known before training: config validation checks that the
        embedding reads only inputs the featurizer makes).
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    files: ClassVar[tuple[str, ...]]
    per_token: ClassVar[bool] = False
    aligns_words: ClassVar[bool] = False
    size_names: ClassVar[tuple[str, ...]] = ("vocab_size", "padding_idx", "unk_idx", "vocab")

    @classmethod
    def train(cls, inputs: Iterable[str | Sequence[str]], config: Any) -> TextFeaturizer:
        """Build the vocabularies from the training split's texts (or token lists), one pass."""
        raise NotImplementedError

    @classmethod
    def load(cls, directory: str | Path) -> TextFeaturizer:
        """The featurizer a run directory holds (``files``); ``ArtifactError`` when one is missing."""
        raise NotImplementedError

    def save(self, directory: str | Path) -> None:
        raise NotImplementedError

    def encode(self, item: str | Sequence[str]) -> Features:
        """One example's tensors: a text, or a token list when ``per_token``."""
        raise NotImplementedError

    def encode_batch(self, items: Sequence[str | Sequence[str]]) -> list[Features]:
        return [self.encode(item) for item in items]

    def collate(self, items: Sequence[Features]) -> dict[str, torch.Tensor]:
        """Pad examples into a batch: ``tokens [B, T]``, ``lengths [B]`` and the featurizer's others."""
        raise NotImplementedError

    # The word vocabulary: both built-in kinds keep it in ``self.tokenizer`` (an ``nlpkit.data.featurizer``
    # ``Featurizer``: the HF tokenizer with nlpkit's pad/unk conventions); another kind overrides these.
    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_id

    @property
    def unk_id(self) -> int:
        return self.tokenizer.unk_id

    @property
    def vocab(self) -> list[str]:
        """Word vocabulary, in id order."""
        return self.tokenizer.vocab

    def sizes(self, fresh: bool = False) -> dict[str, Any]:
        """What an embedding is sized from (``build_component`` passes each one its class accepts):
        ``vocab_size``, ``padding_idx``, ``unk_idx`` and the featurizer's others (``num_chars``,
        ``num_shapes``); ``vocab`` (tokens in id order) only for fresh training, where pretrained
        vectors may need it."""
        return {
            "vocab_size": self.vocab_size,
            "padding_idx": self.pad_id,
            "unk_idx": self.unk_id,
            "vocab": self.vocab if fresh else None,
        }


def featurizer_name(data_cfg: Any, default: str) -> str:
    """The featurizer a ``data`` section names (``data.featurizer.name``), or the task's ``default``
    (a run directory written before featurizers had names)."""
    node = data_cfg.get("featurizer") if data_cfg is not None else None
    name = node.get("name") if node is not None else None
    return str(name) if name else default


def featurizer_options(data_cfg: Any) -> dict[str, Any]:
    """``data.featurizer`` without ``name``, as plain values."""
    from omegaconf import DictConfig, OmegaConf

    node = data_cfg.get("featurizer") if data_cfg is not None else None
    if node is None:
        return {}
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    values.pop("name", None)
    return values


def featurizer_class(
    data_cfg: Any, default: str, per_token: bool = False, aligned: bool = False
) -> type[TextFeaturizer]:
    """The featurizer class ``data_cfg`` names; ``per_token``: the task needs one position per dataset
    token (word tagging), which a re-splitting featurizer is refused for unless ``aligned`` (the task
    also reads pieces aligned to words, ``aligns_words``)."""
    name = featurizer_name(data_cfg, default)
    cls = get_featurizer(name)
    if per_token and not (cls.per_token or (aligned and cls.aligns_words)):
        able = _per_token_names(aligned)
        raise ConfigError(
            f"data.featurizer.name={name!r} (featurizer={name}) cannot featurize this task's data: it re-splits "
            f"text, and a word-level task needs one feature per dataset token (its tag's token); use "
            f"featurizer={' or featurizer='.join(able)}"
        )
    return cls


def _per_token_names(aligned: bool = False) -> list[str]:
    from nlpkit.registry import FEATURIZERS

    return sorted(
        name for name, cls in FEATURIZERS.items() if cls.per_token or (aligned and cls.aligns_words)
    )


def train_featurizer(
    data_cfg: Any,
    inputs: Iterable[str | Sequence[str]],
    default: str,
    per_token: bool = False,
    aligned: bool = False,
):
    """A featurizer of the kind ``data_cfg`` names, trained on ``inputs`` with its options."""
    cls = featurizer_class(data_cfg, default, per_token, aligned)
    return cls.train(inputs, cls.config_class(**featurizer_options(data_cfg)))


def load_featurizer(
    data_cfg: Any, directory: str | Path, default: str, per_token: bool = False, aligned: bool = False
):
    """The featurizer of the kind ``data_cfg`` names, as saved in ``directory`` (a run directory)."""
    return featurizer_class(data_cfg, default, per_token, aligned).load(Path(directory))


def schema_for(default: str, per_token: bool = False, aligned: bool = False):
    """``data.featurizer``'s schema chooser for ``nlpkit.config`` (``metadata={"schema_of": ...}``): the
    options dataclass of the featurizer the node names (``default`` when it names none)."""

    def choose(node: Any) -> type:
        return featurizer_class({"featurizer": node}, default, per_token, aligned).config_class

    return choose


__all__ = [
    "Features",
    "TextFeaturizer",
    "featurizer_class",
    "featurizer_name",
    "featurizer_options",
    "load_featurizer",
    "schema_for",
    "train_featurizer",
]
