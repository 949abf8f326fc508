"""Typed schemas of the ``data`` config section: what every task shares, and text classification."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nlpkit.data.constraints import at_least, between, choices, non_empty, one_character
from nlpkit.data.featurizers import schema_for

__all__ = ["DocDataConfig", "SplitsConfig", "UNSEEN_LABELS", "choices", "featurizer_field"]

#: what a val/test label that training never saw is (``data.unseen_labels``)
UNSEEN_LABELS = ("bad_row", "scored_wrong")


def featurizer_field(default: str, per_token: bool = False, aligned: bool = False) -> Any:
    """The ``data.featurizer`` field: the options of the featurizer its ``name`` picks (``featurizer=...``),
    ``default`` when it names none; ``per_token``: only featurizers with one position per dataset token
    (``aligned``: or pieces aligned to the tokens, ``TextFeaturizer.aligns_words``)."""
    return field(default=None, metadata={"schema_of": schema_for(default, per_token, aligned)})


@dataclass
class SplitsConfig:
    """Fields every task's ``data`` section has: splitting, batching and bad-row handling.

    val_fraction/split_seed: without ``val_path``, this seeded fraction of train is held out.
    bucket_pool_batches: length bucketing pools this many batches (0 = off).
    on_bad_row: ``error`` stops at the first bad row naming file and line; ``skip`` counts and reports.
    """

    train_path: str | None = None
    val_path: str | None = None
    test_path: str | None = None
    val_fraction: float = field(default=0.1, metadata=between(0, 1, high_open=True))
    split_seed: int = 0
    batch_size: int = field(default=32, metadata=at_least(1))
    eval_batch_size: int = field(default=256, metadata=at_least(1))
    bucket_pool_batches: int = field(default=50, metadata=at_least(0))
    num_workers: int = field(default=0, metadata=at_least(0))
    on_bad_row: str = field(default="error", metadata=choices("error", "skip"))


@dataclass
class DocDataConfig(SplitsConfig):
    """Where the data is and how it is read, featurized and batched.

    format: reader: ``builtin`` (generated), ``tsv``, ``csv``, ``jsonl``, ``label_text``.
    train_path/val_path/test_path: split files; without ``val_path`` a seeded ``val_fraction`` of
        train is held out; without ``test_path`` there is no test evaluation.
    text_field/label_field: column or JSON field names.
    has_header/columns: delimited files without a header name their columns with ``columns``.
    delimiter: override the format's delimiter.
    label_delimiter: set (e.g. ``","``) for multi-label data: labels split on it.
    on_bad_row: ``error`` stops at the first bad row naming file and line; ``skip`` counts and reports.
    streaming: read the training file afresh each epoch instead of holding it (large files); needs
        ``val_path``; one process, ``num_workers=0``.
    shuffle_buffer: with ``streaming``, examples mixed in memory at a time (seeded, approximate shuffle).
    featurizer: ``featurizer=subword`` (default; punctuation split from words) or ``featurizer=word``
        (whitespace tokens with word + character + casing features); ``name`` picks it, the other keys
        are its options (``nlpkit.data.featurizers``).
    unseen_labels: a val/test label that training never saw: ``bad_row`` (handled by ``on_bad_row``)
        or ``scored_wrong`` (kept, always a wrong prediction, counted as ``{stage}/unseen_labels``;
        single-label data only).
    """

    format: str = field(default="builtin", metadata=choices("builtin", "tsv", "csv", "jsonl", "label_text"))
    text_field: str = "text"
    label_field: str = "label"
    has_header: bool = True
    columns: list[str] | None = None
    delimiter: str | None = field(default=None, metadata=one_character())
    label_delimiter: str | None = field(default=None, metadata=non_empty())
    featurizer: Any = featurizer_field("subword")
    unseen_labels: str = field(default="bad_row", metadata=choices(*UNSEEN_LABELS))
    streaming: bool = False
    shuffle_buffer: int = field(default=10000, metadata=at_least(1))
