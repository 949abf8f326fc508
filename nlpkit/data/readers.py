"""Readers turn a file into ``Example``s, naming the file and line of every bad row.

Formats (``data.format``): ``tsv``/``csv`` (header row or ``data.columns``), ``jsonl``,
``label_text`` (one ``label<space>text`` per line, as in SST-2's ``stsa.binary.*``) and ``builtin``
(nlpkit's generated JSONL). A bad row either stops the run with ``DataError("file:line: problem")``
or, with ``data.on_bad_row=skip``, is counted and reported at the end.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nlpkit.errors import DataError

log = logging.getLogger(__name__)

# A delimited field may be as long as a line: csv's default limit (131,072 characters) made a long
# document a "field larger than field limit" traceback. The largest value the C long takes.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class Example:
    """One labelled text. ``labels`` has one entry for single-label data, several for multi-label."""

    text: str
    labels: tuple[str, ...]
    origin: str  # "path:line", for error messages


@dataclass
class BadRowPolicy:
    """Decides what a bad row does: raise (``error``) or get counted (``skip``)."""

    mode: str = "error"
    skipped: Counter = field(default_factory=Counter)
    first_examples: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in ("error", "skip"):
            raise DataError(f"data.on_bad_row must be 'error' or 'skip', got {self.mode!r}")

    def bad(self, origin: str, problem: str) -> None:
        message = f"{origin}: {problem}"
        if self.mode == "error":
            raise DataError(message + "  (set data.on_bad_row=skip to skip and count such rows)")
        self.skipped[problem.split(":")[0]] += 1
        if len(self.first_examples) < 5:
            self.first_examples.append(message)

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def report(self) -> str:
        if not self.total_skipped:
            return "no bad rows"
        kinds = ", ".join(f"{count} {kind}" for kind, count in self.skipped.most_common())
        return f"skipped {self.total_skipped} bad rows ({kinds}); first: " + " | ".join(self.first_examples)


def _decoded_lines(path: Path, policy: BadRowPolicy) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each line, reporting invalid UTF-8 as a bad row."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                policy.bad(
                    f"{path}:{number}", f"invalid UTF-8: byte {raw[err.start]:#04x} at column {err.start + 1}"
                )
                continue
            if number == 1:
                line = line.lstrip("\ufeff")
            yield number, line


def _make_example(
    text: object, label: object, origin: str, policy: BadRowPolicy, label_delimiter: str | None
) -> Example | None:
    if not isinstance(text, str) or not text.strip():
        policy.bad(origin, "empty text")
        return None
    if label is None or (isinstance(label, str) and not label.strip()):
        policy.bad(origin, "missing label")
        return None
    if isinstance(label, list):
        labels = tuple(str(x).strip() for x in label)
    elif label_delimiter:
        labels = tuple(x.strip() for x in str(label).split(label_delimiter) if x.strip())
    else:
        labels = (str(label).strip(),)
    if not labels:
        policy.bad(origin, "missing label")
        return None
    return Example(text=text, labels=labels, origin=origin)


def iter_delimited(
    path: Path,
    *,
    delimiter: str,
    text_field: str,
    label_field: str,
    has_header: bool,
    columns: list[str] | None,
    policy: BadRowPolicy,
    label_delimiter: str | None = None,
    quoting: bool = True,
) -> Iterator[Example]:
    """TSV/CSV with a header row, or headerless with ``columns`` naming each column, one example at a
    time: never holding the file (``data.streaming``)."""
    last_line = [0]  # physical number of the line csv read last: a row's origin, even when quoted
    # fields span lines or invalid-UTF-8 lines were skipped

    def texts() -> Iterator[str]:
        for number, text in _decoded_lines(path, policy):
            last_line[0] = number
            yield text

    reader = csv.reader(
        texts(), delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE
    )
    header: list[str] | None = None if has_header else list(columns or [])
    if not has_header and not header:
        raise DataError(f"{path}: data.has_header=false needs data.columns naming each column")
    for row in reader:
        origin = f"{path}:{last_line[0]}"
        if not row or all(not cell.strip() for cell in row):
            continue  # blank line
        if header is None:
            header = [cell.strip() for cell in row]
            for name, role in ((text_field, "text_field"), (label_field, "label_field")):
                if name not in header:
                    raise DataError(
                        f"{origin}: header has no column {name!r} (data.{role}); columns are {header}"
                    )
            continue
        if len(row) != len(header):
            policy.bad(
                origin, f"wrong column count: expected {len(header)} ({', '.join(header)}), got {len(row)}"
            )
            continue
        record = dict(zip(header, row))
        if text_field not in record:
            raise DataError(f"{origin}: no column {text_field!r} (data.text_field); columns are {header}")
        if label_field not in record:
            raise DataError(f"{origin}: no column {label_field!r} (data.label_field); columns are {header}")
        example = _make_example(record[text_field], record[label_field], origin, policy, label_delimiter)
        if example:
            yield example


def json_records(path: Path, policy: BadRowPolicy) -> Iterator[tuple[str, dict]]:
    """``("path:line", object)`` for each non-blank JSONL line; invalid JSON or a non-object is a bad row."""
    for number, line in _decoded_lines(path, policy):
        if not line.strip():
            continue
        origin = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            policy.bad(origin, f"invalid JSON: {err.msg} at column {err.colno}")
            continue
        if not isinstance(record, dict):
            policy.bad(origin, f"invalid JSON: expected an object, got {type(record).__name__}")
            continue
        yield origin, record


def iter_jsonl(
    path: Path, *, text_field: str, label_field: str, policy: BadRowPolicy, label_delimiter: str | None = None
) -> Iterator[Example]:
    for origin, record in json_records(path, policy):
        for name, role in ((text_field, "text_field"), (label_field, "label_field")):
            if name not in record:
                policy.bad(origin, f"missing field: {name!r} (data.{role}); fields are {sorted(record)}")
                break
        else:
            example = _make_example(record[text_field], record[label_field], origin, policy, label_delimiter)
            if example:
                yield example


def iter_label_text(
    path: Path, *, policy: BadRowPolicy, label_delimiter: str | None = None
) -> Iterator[Example]:
    for number, line in _decoded_lines(path, policy):
        if not line.strip():
            continue
        origin = f"{path}:{number}"
        parts = line.strip().split(maxsplit=1)
        if len(parts) < 2:
            policy.bad(origin, "empty text")
            continue
        example = _make_example(parts[1], parts[0], origin, policy, label_delimiter)
        if example:
            yield example


def read_examples(path: str | Path, data_cfg, policy: BadRowPolicy) -> list[Example]:
    """Read one split with the reader ``data_cfg.format`` selects."""
    return list(iter_examples(path, data_cfg, policy))


def iter_examples(path: str | Path, data_cfg, policy: BadRowPolicy) -> Iterator[Example]:
    """``read_examples`` one example at a time (the file is never held whole)."""
    path = Path(path)
    fmt = str(data_cfg.format)
    if fmt in ("tsv", "csv"):
        delimiter = data_cfg.delimiter or ("\t" if fmt == "tsv" else ",")
        return iter_delimited(
            path,
            delimiter=delimiter,
            text_field=data_cfg.text_field,
            label_field=data_cfg.label_field,
            has_header=data_cfg.has_header,
            columns=list(data_cfg.columns) if data_cfg.columns else None,
            policy=policy,
            label_delimiter=data_cfg.label_delimiter,
            quoting=fmt == "csv",
        )
    if fmt in ("jsonl", "builtin"):
        return iter_jsonl(
            path,
            text_field=data_cfg.text_field,
            label_field=data_cfg.label_field,
            policy=policy,
            label_delimiter=data_cfg.label_delimiter,
        )
    if fmt == "label_text":
        return iter_label_text(path, policy=policy, label_delimiter=data_cfg.label_delimiter)
    raise DataError(f"unknown data.format {fmt!r}; choose one of tsv, csv, jsonl, label_text, builtin")
