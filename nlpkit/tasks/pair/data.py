"""Sentence-pair data: two texts and a label or a score per row (``task=pair``); with a query id per row,
a query's candidates grouped together (``task=ranking``, :class:`RankingDataModule`).

Readers by overrides alone: ``data.format=tsv|csv|jsonl`` (or ``builtin``, generated pairs),
``data.text_a_field``, ``data.text_b_field``, ``data.label_field`` (and ``data.group_field`` for ranking).
Delimited files have a header row or ``data.columns``; ``data.extra_columns=ignore`` reads rows longer
than the header (STS-B's files carry source columns on some rows). A bad row (a missing or blank text,
a non-numeric score, a wrong column count) is a ``DataError`` naming file and line, or with
``data.on_bad_row=skip`` a counted skip. Both texts of every pair go through one featurizer trained on
the training split's texts (``a`` and ``b``), so both towers share one vocabulary and one embedding.

A pair batch is ``{"a": featurizer batch of the first texts, "b": ... of the second, "index": [N] (row
i's first text is a[index[i]]), "labels": [N]}``; a ranking batch holds whole queries: ``a`` the queries
``[Q]``, ``b`` every candidate ``[N]``, ``index`` its query, ``labels`` 1/0 relevance.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from nlpkit.data.builtin_pairs import ensure_builtin_pairs
from nlpkit.data.config import SplitsConfig, choices, featurizer_field
from nlpkit.data.constraints import one_character
from nlpkit.data.featurizers import TextFeaturizer, featurizer_name, featurizer_options, train_featurizer
from nlpkit.data.labels import LabelVocab
from nlpkit.data.readers import _decoded_lines, json_records
from nlpkit.data.splits import SplitDataModule
from nlpkit.errors import DataError

#: the featurizer a data section without ``featurizer.name`` uses
DEFAULT_FEATURIZER = "subword"


@dataclass
class PairDataConfig(SplitsConfig):
    """Where the pairs are and how they are read.

    format: ``builtin`` (generated pairs of built-in utterances), ``tsv``, ``csv`` or ``jsonl``.
    text_a_field/text_b_field/label_field: column or JSON field names; the label is a class name
      (``output=softmax``) or a number (``output=regression``).
    has_header/columns/delimiter: a header row, or ``columns`` naming each column; the delimiter
      defaults to tab (tsv) or comma (csv). TSV is read without quoting (quotes are text).
    extra_columns: ``error`` (a row longer than the header is a bad row) or ``ignore``.
    label_type: ``class`` (a label name) or ``score`` (a number); ``auto``: ``score`` under a one-value
      output layer (``output=regression``), else ``class`` (filled in by validation).
    featurizer: ``featurizer=subword`` (default) or ``featurizer=word``.
    """

    format: str = field(default="builtin", metadata=choices("builtin", "tsv", "csv", "jsonl"))
    text_a_field: str = "text_a"
    text_b_field: str = "text_b"
    label_field: str = "label"
    has_header: bool = True
    columns: list[str] | None = None
    delimiter: str | None = field(default=None, metadata=one_character())
    extra_columns: str = field(default="error", metadata=choices("error", "ignore"))
    label_type: str = field(default="auto", metadata=choices("auto", "class", "score"))
    featurizer: Any = featurizer_field(DEFAULT_FEATURIZER)


@dataclass
class RankingDataConfig(PairDataConfig):
    """A pair data section plus the query id: ``group_field`` (rows of one query are its candidates;
    a label > 0 is a correct candidate)."""

    text_a_field: str = "query"
    text_b_field: str = "candidate"
    group_field: str = "qid"


@dataclass(frozen=True)
class PairRow:
    """One row: two texts, its raw label and where it came from (``path:line``)."""

    text_a: str
    text_b: str
    label: str
    origin: str
    group: str | None = None


def iter_records(path: Path, cfg, fields: list[str], policy) -> Iterator[tuple[str, dict]]:
    """``("path:line", {field: value})`` of every row of a TSV/CSV/JSONL file holding ``fields``."""
    fmt = str(cfg.format)
    if fmt in ("jsonl", "builtin"):
        for origin, record in json_records(path, policy):
            missing = [f for f in fields if f not in record]
            if missing:
                policy.bad(origin, f"missing field: {missing[0]!r}; fields are {sorted(record)}")
                continue
            yield origin, record
        return
    delimiter = cfg.delimiter or ("\t" if fmt == "tsv" else ",")
    last_line = [0]

    def lines() -> Iterator[str]:
        for number, text in _decoded_lines(path, policy):
            last_line[0] = number
            yield text

    quoting = csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE
    header = None if cfg.has_header else list(cfg.columns or [])
    if not cfg.has_header and not header:
        raise DataError(f"{path}: data.has_header=false needs data.columns naming each column")
    for row in csv.reader(lines(), delimiter=delimiter, quoting=quoting):
        origin = f"{path}:{last_line[0]}"
        if not row or all(not cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            missing = [f for f in fields if f not in header]
            if missing:
                raise DataError(f"{origin}: header has no column {missing[0]!r}; columns are {header}")
            continue
        if len(row) < len(header) or (len(row) > len(header) and cfg.extra_columns != "ignore"):
            policy.bad(
                origin, f"wrong column count: expected {len(header)} ({', '.join(header)}), got {len(row)}"
            )
            continue
        record = dict(zip(header, row))
        missing = [f for f in fields if f not in record]
        if missing:
            raise DataError(f"{origin}: no column {missing[0]!r}; columns are {header}")
        yield origin, record


def number(text: Any) -> float | None:
    """``text`` as a finite float, or ``None``."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_pair_rows(path: str, cfg, policy, group_field: str | None = None) -> list[PairRow]:
    """Every usable row of one file; blank texts and a missing label are bad rows."""
    names = {
        "text_a_field": cfg.text_a_field,
        "text_b_field": cfg.text_b_field,
        "label_field": cfg.label_field,
    }
    if group_field:
        names["group_field"] = group_field
    rows = []
    for origin, record in iter_records(Path(path), cfg, list(names.values()), policy):
        values = {role: record[name] for role, name in names.items()}
        blank = next((r for r in ("text_a_field", "text_b_field") if not str(values[r] or "").strip()), None)
        if blank is not None:
            which = "first" if blank == "text_a_field" else "second"
            policy.bad(origin, f"empty {which} text (data.{blank}={names[blank]!r})")
            continue
        label = values["label_field"]
        if label is None or not str(label).strip():
            policy.bad(origin, f"missing label (data.label_field={cfg.label_field!r})")
            continue
        group = str(values["group_field"]).strip() if group_field else None
        if group_field and not group:
            policy.bad(origin, f"missing query id (data.group_field={group_field!r})")
            continue
        rows.append(
            PairRow(
                str(values["text_a_field"]), str(values["text_b_field"]), str(label).strip(), origin, group
            )
        )
    return rows


class EncodedPairs(Dataset):
    """Featurized pairs and their targets, encoded once."""

    def __init__(self, a: list, b: list, targets: list[torch.Tensor], rows: list[PairRow]):
        self.a, self.b, self.targets, self.rows = a, b, targets, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        return self.a[index], self.b[index], self.targets[index]

    @property
    def lengths(self) -> list[int]:
        return [max(len(a["tokens"]), len(b["tokens"])) for a, b in zip(self.a, self.b)]


class PairCollator:
    """``[(features_a, features_b, target)] -> {"a", "b", "index" [B], "labels" [B]}``."""

    def __init__(self, featurizer: TextFeaturizer):
        self.featurizer = featurizer

    def __call__(self, items) -> dict[str, Any]:
        return {
            "a": self.featurizer.collate([a for a, _, _ in items]),
            "b": self.featurizer.collate([b for _, b, _ in items]),
            "index": torch.arange(len(items)),
            "labels": torch.stack([t for _, _, t in items]),
        }


class PairDataModule(SplitDataModule):
    """Reads each split, trains the featurizer on train's texts (or takes a run's), encodes once.

    ``regression``: the label is a number (a score) rather than a class name (``labels``: the class
    vocabulary, built from train, or the run's)."""

    unit = "pairs"

    def __init__(self, config, regression: bool, featurizer: TextFeaturizer | None = None, labels=None):
        super().__init__(config)
        self.regression = regression
        self.featurizer = featurizer
        self.labels = labels
        self._raw: dict[str, list] | None = None

    def read(self) -> dict[str, list]:
        """The raw rows of each split, read once (a multi-task run reads every sub-task's training data
        first, to train one featurizer for a shared embedding, then calls ``load``)."""
        if self._raw is None:
            self._raw = self.read_splits(need_train=self.featurizer is None)
        return self._raw

    # ---------------------------------------------------------------- one featurizer for several modules
    # (nlpkit.tasks.multitask.data.SharedFeaturizerData: a multi-task run's shared embedding)
    def featurizer_spec(self) -> tuple[str, dict]:
        return featurizer_name(self.config, DEFAULT_FEATURIZER), featurizer_options(self.config)

    def training_texts(self) -> list[str]:
        """Both texts of every training row (a ranking query once)."""
        return list(self._texts(self.read()["train"]))

    def train_featurizer(self, texts: list[str]) -> TextFeaturizer:
        return train_featurizer(self.config, texts, DEFAULT_FEATURIZER)

    def use_featurizer(self, featurizer: TextFeaturizer) -> None:
        self.featurizer = featurizer

    @staticmethod
    def _texts(rows: list[PairRow]):
        return (text for row in rows for text in (row.text_a, row.text_b))

    def read_splits(self, need_train: bool) -> dict[str, list]:
        if str(self.config.format) == "builtin" and self.config.train_path:
            ensure_builtin_pairs(Path(self.config.train_path).parent)
        return super().read_splits(need_train)

    def read_split(self, path: str) -> list[PairRow]:
        rows = read_pair_rows(path, self.config, self.policy)
        if not self.regression:
            return rows
        kept = []
        for row in rows:
            if number(row.label) is None:
                self.policy.bad(row.origin, f"score {row.label!r} is not a finite number")
                continue
            kept.append(row)
        return kept

    def _target(self, row: PairRow) -> torch.Tensor | None:
        if self.regression:
            return torch.tensor(number(row.label), dtype=torch.float32)
        if row.label not in self.labels.index:
            self.policy.bad(
                row.origin, f"label {row.label!r} is not one of the training labels {self.labels.names}"
            )
            return None
        return torch.tensor(self.labels.index[row.label])

    def _train_featurizer(self, raw: dict[str, list]) -> None:
        if self.featurizer is None:
            self.featurizer = train_featurizer(self.config, self._texts(raw["train"]), DEFAULT_FEATURIZER)

    def load(self) -> None:
        if self._loaded:
            return
        raw = self.read()
        self._train_featurizer(raw)
        if not self.regression and self.labels is None:
            self.labels = LabelVocab.build([(row.label,) for row in raw["train"]])
        for split, rows in raw.items():
            kept, targets = [], []
            for row in rows:
                target = self._target(row)
                if target is not None:
                    kept.append(row)
                    targets.append(target)
            encode = self.featurizer.encode_batch
            self.splits[split] = EncodedPairs(
                encode([r.text_a for r in kept]), encode([r.text_b for r in kept]), targets, kept
            )
        self._loaded = True

    def collator(self, train: bool) -> PairCollator:
        return PairCollator(self.featurizer)


# ----------------------------------------------------------------------------------- ranking
class EncodedQueries(Dataset):
    """One item per query: its features, its candidates' features and their 1/0 relevance."""

    def __init__(
        self,
        queries: list,
        candidates: list[list],
        relevance: list[torch.Tensor],
        groups: list[list[PairRow]],
    ):
        self.queries, self.candidates, self.relevance, self.groups = queries, candidates, relevance, groups

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int):
        return self.queries[index], self.candidates[index], self.relevance[index]

    @property
    def lengths(self) -> list[int]:
        return [max(len(c["tokens"]) for c in cands) for cands in self.candidates]


class QueryCollator:
    """``[(query, [candidates], relevance [n])] -> {"a" [Q], "b" [N], "index" [N], "labels" [N]}``."""

    def __init__(self, featurizer: TextFeaturizer):
        self.featurizer = featurizer

    def __call__(self, items) -> dict[str, Any]:
        index = torch.cat([torch.full((len(c),), i, dtype=torch.long) for i, (_, c, _) in enumerate(items)])
        return {
            "a": self.featurizer.collate([q for q, _, _ in items]),
            "b": self.featurizer.collate([f for _, c, _ in items for f in c]),
            "index": index,  # [N]: the query of each candidate
            "labels": torch.cat([r for _, _, r in items]),  # [N]
        }


class RankingDataModule(PairDataModule):
    """Rows grouped by ``data.group_field`` into queries, in first-seen order. A label is relevance: a
    number, > 0 for a correct candidate. A query id found in two split files is an error naming both
    (its candidates would be scored apart); a query whose rows disagree on its text is a bad row."""

    unit = "queries"

    def __init__(self, config, featurizer: TextFeaturizer | None = None):
        super().__init__(config, regression=True, featurizer=featurizer)

    def read_split(self, path: str) -> list[list[PairRow]]:
        groups: dict[str, list[PairRow]] = {}
        for row in read_pair_rows(path, self.config, self.policy, str(self.config.group_field)):
            if number(row.label) is None:
                self.policy.bad(row.origin, f"relevance label {row.label!r} is not a number")
                continue
            first = groups.setdefault(row.group, [row])[0]
            if first is row:
                continue
            if row.text_a != first.text_a:
                self.policy.bad(
                    row.origin, f"query {row.group!r} has another text here than at {first.origin}"
                )
                continue
            groups[row.group].append(row)
        return list(groups.values())

    def read_splits(self, need_train: bool) -> dict[str, list]:
        raw = super().read_splits(need_train)
        seen: dict[str, str] = {}
        for groups in raw.values():
            for group in groups:
                key = group[0].group
                if key in seen:
                    raise DataError(
                        f"{group[0].origin}: query id {key!r} ({self.config.group_field}) is also in another "
                        f"split file, at {seen[key]}: one query's candidates must be in one file"
                    )
                seen[key] = group[0].origin
        return raw

    @staticmethod
    def _texts(groups: list[list[PairRow]]):
        return (t for group in groups for t in [group[0].text_a] + [r.text_b for r in group])

    def load(self) -> None:
        if self._loaded:
            return
        raw = self.read()
        self._train_featurizer(raw)
        encode = self.featurizer.encode_batch
        for split, groups in raw.items():
            queries = encode([g[0].text_a for g in groups])
            candidates = [encode([r.text_b for r in g]) for g in groups]
            relevance = [torch.tensor([float(number(r.label) > 0) for r in g]) for g in groups]
            self.splits[split] = EncodedQueries(queries, candidates, relevance, groups)
        self._loaded = True

    def collator(self, train: bool) -> QueryCollator:
        return QueryCollator(self.featurizer)
