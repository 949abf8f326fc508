"""The label vocabulary: label names in a fixed order, saved as ``labels.json`` in the run dir."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from nlpkit.errors import ArtifactError
from nlpkit.utils.io import write_json


class LabelVocab:
    """Maps label names to contiguous ids. Built sorted from training data so runs are stable."""

    def __init__(self, names: Iterable[str], multilabel: bool = False):
        self.names = list(names)
        self.multilabel = multilabel
        self.index = {name: i for i, name in enumerate(self.names)}
        if len(self.index) != len(self.names):
            raise ArtifactError("label vocabulary has duplicate names")

    @classmethod
    def build(cls, label_sets: Iterable[Iterable[str]], multilabel: bool = False) -> LabelVocab:
        return cls(sorted({label for labels in label_sets for label in labels}), multilabel=multilabel)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self.index

    def save(self, path: str | Path) -> None:
        write_json(path, {"labels": self.names, "multilabel": self.multilabel})

    @classmethod
    def load(cls, path: str | Path) -> LabelVocab:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(data["labels"], multilabel=bool(data.get("multilabel", False)))
        except FileNotFoundError as err:
            raise ArtifactError(f"{path}: label vocabulary not found") from err
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ArtifactError(f"{path}: not a valid label vocabulary ({err})") from err
