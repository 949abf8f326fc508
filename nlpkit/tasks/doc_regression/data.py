"""Text regression data: a text and a real-valued target per row, featurized like ``doc_cls``.

Any reader of document classification (``builtin``, ``tsv``, ``csv``, ``jsonl``) by overrides alone:
``data.text_field`` and ``data.target_field`` name the columns. A target that is not a finite number is
a bad row naming file and line (``on_bad_row=skip`` counts it instead). A batch is the featurizer's
tensors (``tokens [B, T]``, ``lengths [B]``, ...) plus ``targets [B]`` float.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch

from nlpkit.data.config import SplitsConfig, choices, featurizer_field
from nlpkit.data.constraints import one_character
from nlpkit.data.featurizers import TextFeaturizer, train_featurizer
from nlpkit.data.readers import Example, read_examples
from nlpkit.data.splits import SplitDataModule
from nlpkit.tasks.doc_cls.data import EncodedDocs

#: the featurizer a data section without ``featurizer.name`` uses
DEFAULT_FEATURIZER = "subword"


@dataclass
class RegressionDataConfig(SplitsConfig):
    """Where the data is and how it is read.

    format: ``builtin`` (generated; the target is ``num_slots``), ``tsv``, ``csv`` or ``jsonl``.
    text_field/target_field: column or JSON field names; the target must be a number.
    has_header/columns/delimiter: as for document classification.
    featurizer: ``featurizer=subword`` (default) or ``featurizer=word``.
    """

    format: str = field(default="builtin", metadata=choices("builtin", "tsv", "csv", "jsonl"))
    text_field: str = "text"
    target_field: str = "score"
    has_header: bool = True
    columns: list[str] | None = None
    delimiter: str | None = field(default=None, metadata=one_character())
    featurizer: Any = featurizer_field(DEFAULT_FEATURIZER)


class RegressionCollator:
    """``[(features, target)] -> {featurizer batch..., "targets": [B]}``."""

    def __init__(self, featurizer: TextFeaturizer):
        self.featurizer = featurizer

    def __call__(self, items: list[tuple[dict, torch.Tensor]]) -> dict[str, torch.Tensor]:
        batch = self.featurizer.collate([features for features, _ in items])
        batch["targets"] = torch.stack([target for _, target in items])  # [B]
        return batch


class DocRegressionDataModule(SplitDataModule):
    """Reads each split, trains the featurizer on train (or takes a run's), encodes once."""

    def __init__(self, config, featurizer: TextFeaturizer | None = None):
        super().__init__(config)
        self.featurizer = featurizer

    def read_split(self, path: str) -> list[tuple[Example, float]]:
        cfg = self.config
        reader = SimpleNamespace(
            format=cfg.format, text_field=cfg.text_field, label_field=cfg.target_field,
            has_header=cfg.has_header, columns=cfg.columns, delimiter=cfg.delimiter, label_delimiter=None,
        )  # fmt: skip
        rows = []
        for example in read_examples(path, reader, self.policy):
            target = _number(example.labels[0])
            if target is None:
                self.policy.bad(example.origin, f"target {example.labels[0]!r} is not a finite number")
                continue
            rows.append((example, target))
        return rows

    def load(self) -> None:
        if self._loaded:
            return
        raw = self.read_splits(need_train=self.featurizer is None)
        if self.featurizer is None:
            texts = (example.text for example, _ in raw["train"])
            self.featurizer = train_featurizer(self.config, texts, DEFAULT_FEATURIZER)
        for split, rows in raw.items():
            examples = [example for example, _ in rows]
            targets = [torch.tensor(target, dtype=torch.float32) for _, target in rows]
            self.splits[split] = EncodedDocs(
                self.featurizer.encode_batch([e.text for e in examples]), targets, examples
            )
        self._loaded = True

    def collator(self, train: bool) -> RegressionCollator:
        return RegressionCollator(self.featurizer)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
