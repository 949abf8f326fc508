"""Language-model data: plain text, one line per sentence or paragraph, as word ids with ``<eos>``.

Two ways to batch the same lines (``data.mode``):

* ``stream`` (truncated BPTT, Zaremba et al. 2014; pytorch/examples ``word_language_model``): every
  line's words and its ``<eos>`` are one contiguous stream, cut into ``batch_size`` rows side by side
  (``batchify``); batch ``i`` is columns ``[i * bptt, (i + 1) * bptt)`` of every row. The model carries
  its hidden state from one batch to the next (detached). The stream starts with one ``<eos>`` of
  context, so every token of the split, ``<eos>`` included, is a target exactly once; the last row is
  padded (masked targets) rather than the remainder dropped.
* ``sentence``: each line is one example scored from a zero state: inputs ``<eos> w1 .. wn``, targets
  ``w1 .. wn <eos>``; padded, length-bucketed batches. This is what the exported model computes.

A batch: ``tokens [B, T]`` inputs, ``targets [B, T]``, ``mask [B, T]`` (real targets), ``lengths [B]``.
The vocabulary is the word featurizer's (``featurizer=word``: ``min_freq``, ``max_vocab``,
``lowercase``) trained on the training lines; ``<eos>`` is a word of it, ``<unk>`` the featurizer's.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from nlpkit.data.batching import BucketBatchSampler, pad_sequences
from nlpkit.data.config import SplitsConfig, choices, featurizer_field
from nlpkit.data.constraints import at_least
from nlpkit.data.featurizers import TextFeaturizer, featurizer_name, featurizer_options, train_featurizer
from nlpkit.data.splits import SplitDataModule
from nlpkit.errors import DataError

#: the featurizer a data section without ``featurizer.name`` uses (one id per whitespace word)
DEFAULT_FEATURIZER = "word"
#: end of a line: appended to every line, and the first input of a sentence
EOS = "<eos>"

log = logging.getLogger(__name__)


@dataclass
class LMDataConfig(SplitsConfig):
    """Where the text is and how it is batched.

    format: ``text`` (one line per sentence/paragraph) or ``builtin`` (the generated utterances'
        ``text`` field, JSON lines). A blank line is one ``<eos>`` in a stream (the literature's
        WikiText counts), and skipped in sentence mode.
    mode: ``stream`` (truncated BPTT over one contiguous stream, state carried across batches) or
        ``sentence`` (each line scored from a zero state, padded batches).
    bptt: time steps per stream batch (``mode=stream``).
    max_line_tokens: ``mode=sentence`` only: a line with more words than this is a bad row.
    featurizer: ``featurizer=word`` options: ``min_freq``, ``max_vocab``, ``lowercase``.
    extra_train_paths: more training text after ``train_path`` (pre-training a model for a task on
        the task's own text too): plain text files, or ``.tsv``/``.csv`` files with a header row whose
        column ``extra_train_field`` holds the text (a classifier's training file as it is).
    """

    format: str = field(default="text", metadata=choices("text", "builtin"))
    mode: str = field(default="stream", metadata=choices("stream", "sentence"))
    bptt: int = field(default=35, metadata=at_least(1))
    max_line_tokens: int = field(default=10_000, metadata=at_least(1))
    featurizer: Any = featurizer_field(DEFAULT_FEATURIZER, per_token=True)
    extra_train_paths: list[str] = field(default_factory=list)
    extra_train_field: str = "text"


def read_lines(path: str, fmt: str, keep_blank: bool = False) -> list[list[str]]:
    """The whitespace tokens of every line of ``path`` (``builtin``: each JSON line's ``text``); blank
    lines only with ``keep_blank`` (as ``[]``: in a stream each is one ``<eos>``, as pytorch/examples
    and the published WikiText-2 figures count them)."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{path}: file not found")
    lines = []
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if fmt == "builtin":
                try:
                    line = json.loads(line)["text"]
                except (ValueError, KeyError, TypeError) as err:
                    raise DataError(
                        f"{path}:{number}: not a JSON object with a 'text' field ({err})"
                    ) from err
            tokens = line.split()
            if tokens or keep_blank:
                lines.append(tokens)
    return lines


def read_column_lines(path: str, field_name: str) -> list[list[str]]:
    """The whitespace tokens of column ``field_name`` of a ``.tsv``/``.csv`` file with a header row
    (blank texts skipped); a missing column or a short row is an error naming the file and line."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{path}: file not found")
    delimiter = "\t" if file.suffix == ".tsv" else ","
    with file.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(
            handle, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        )
        header = next(rows, None)
        if header is None or field_name not in header:
            raise DataError(
                f"{path}:1: no column {field_name!r} in the header {header} (data.extra_train_field)"
            )
        column = header.index(field_name)
        lines = []
        for number, row in enumerate(rows, start=2):
            if len(row) <= column:
                raise DataError(f"{path}:{number}: {len(row)} fields, no {field_name!r} column")
            tokens = row[column].split()
            if tokens:
                lines.append(tokens)
    return lines


def eos_id(featurizer: TextFeaturizer) -> int:
    """The id of ``<eos>`` in a language model's vocabulary (refuses a vocabulary without one)."""
    found = featurizer.tokenizer.tokenizer.get_vocab().get(EOS)
    if found is None:
        raise DataError(f"the vocabulary has no {EOS!r} entry: not a language model's vocabulary")
    return found


class StreamSplit(Dataset):
    """One split as ``batch_size`` contiguous rows; item ``i`` is the ``i``-th BPTT window of every row.

    ``ids`` is the split's stream (``<eos>``, then each line's words and ``<eos>``): inputs are
    ``ids[:-1]``, targets ``ids[1:]``, so every token after the first is predicted exactly once.
    """

    def __init__(
        self, ids: torch.Tensor, batch_size: int, bptt: int, pad_id: int, rank: int = 0, world: int = 1
    ):
        inputs, targets = ids[:-1], ids[1:]
        rows = batch_size * world
        width = math.ceil(len(inputs) / rows)
        mask = torch.zeros(rows * width, dtype=torch.bool)
        mask[: len(inputs)] = True
        pad = rows * width - len(inputs)
        self.inputs = torch.cat([inputs, inputs.new_full((pad,), pad_id)]).view(rows, width)[rank::world]
        self.targets = torch.cat([targets, targets.new_full((pad,), pad_id)]).view(rows, width)[rank::world]
        self.mask = mask.view(rows, width)[rank::world]  # [B, W]: the last rows' tails are padding
        self.bptt = bptt
        self.num_targets = int(self.mask.sum())

    def __len__(self) -> int:
        return math.ceil(self.inputs.size(1) / self.bptt)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        cols = slice(index * self.bptt, (index + 1) * self.bptt)
        mask = self.mask[:, cols]  # [B, T]
        return {
            "tokens": self.inputs[:, cols],  # [B, T]
            "targets": self.targets[:, cols],  # [B, T]
            "mask": mask,
            # the window's width for every row: stream rows are never shortened (state carries on)
            "lengths": torch.full((mask.size(0),), mask.size(1), dtype=torch.long),
        }


class SentenceSplit(Dataset):
    """One split as lines: item ``i`` is ``(inputs <eos> w1..wn, targets w1..wn <eos>)``."""

    def __init__(self, lines: Sequence[torch.Tensor], eos: int):
        self.items = [
            (torch.cat([line.new_tensor([eos]), line]), torch.cat([line, line.new_tensor([eos])]))
            for line in lines
        ]
        self.lengths = [len(inputs) for inputs, _ in self.items]
        self.num_targets = sum(self.lengths)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.items[index]


class SentenceCollator:
    """``[(inputs [n], targets [n])] -> {"tokens", "targets", "mask", "lengths"}``, padded."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        tokens, lengths = pad_sequences([inputs for inputs, _ in items], self.pad_id)  # [B, T], [B]
        targets, _ = pad_sequences([t for _, t in items], self.pad_id)
        mask = torch.arange(tokens.size(1)).unsqueeze(0) < lengths.unsqueeze(1)  # [B, T]
        return {"tokens": tokens, "targets": targets, "mask": mask, "lengths": lengths}


def sentence_batch(lines: Sequence[Sequence[int]], eos: int, pad_id: int) -> dict[str, torch.Tensor]:
    """The sentence-mode batch of word-id lists (what the predictor and the export score)."""
    split = SentenceSplit([torch.tensor(list(ids), dtype=torch.long) for ids in lines], eos)
    return SentenceCollator(pad_id)([split[i] for i in range(len(split))])


class LMDataModule(SplitDataModule):
    """Reads each split's lines, trains the word vocabulary on train (or takes a run's), encodes once."""

    unit = "lines"

    def __init__(self, config, featurizer: TextFeaturizer | None = None):
        super().__init__(config)
        self.featurizer = featurizer
        self.lines: dict[str, list[torch.Tensor]] = {}
        self.splits = self.lines  # split -> its encoded lines (what ``train`` checks for a test split)
        self._raw: dict[str, list[list[str]]] | None = None

    def read_split(self, path: str) -> list[list[str]]:
        lines = read_lines(path, str(self.config.format), keep_blank=str(self.config.mode) == "stream")
        if str(self.config.mode) == "sentence":
            limit = int(self.config.max_line_tokens)
            kept = []
            for number, tokens in enumerate(lines, start=1):
                if len(tokens) > limit:
                    self.policy.bad(
                        f"{path}: non-blank line {number}",
                        f"{len(tokens)} words > data.max_line_tokens={limit}",
                    )
                    continue
                kept.append(tokens)
            lines = kept
        return lines

    # ------------------------------------------------------------------ a featurizer shared in multi-task
    def featurizer_spec(self) -> tuple[str, dict]:
        """``(featurizer name, its options)``: a multi-task run shares one only between equal specs."""
        return featurizer_name(self.config, DEFAULT_FEATURIZER), featurizer_options(self.config)

    def training_texts(self) -> list[list[str]]:
        """The training lines as token lists, each ending in ``<eos>`` (so a shared vocabulary has it)."""
        return [[*line, EOS] for line in self._read()["train"]]

    def train_featurizer(self, texts: list) -> TextFeaturizer:
        return train_featurizer(self.config, texts, DEFAULT_FEATURIZER)

    def use_featurizer(self, featurizer: TextFeaturizer) -> None:
        self.featurizer = featurizer

    def _read(self) -> dict[str, list[list[str]]]:
        if self._raw is None:
            self._raw = self.read_splits(need_train=self.featurizer is None)
            if "train" in self._raw:
                for path in self.config.extra_train_paths or []:
                    self._raw["train"] += self._read_extra(str(path))
        return self._raw

    def _read_extra(self, path: str) -> list[list[str]]:
        """One of ``data.extra_train_paths``: a text file like ``train_path``, or a table's column."""
        if Path(path).suffix in (".tsv", ".csv"):
            lines = read_column_lines(path, str(self.config.extra_train_field))
        else:
            lines = self.read_split(path)
        log.info("extra training text %s: %d lines", path, len(lines))
        return lines

    def load(self) -> None:
        if self._loaded:
            return
        raw = self._read()
        if self.featurizer is None:
            # <eos> is a word of every line, so the vocabulary has it (and counts it)
            self.featurizer = self.train_featurizer(self.training_texts())
        encode = self.featurizer.words.encode
        for split, lines in raw.items():
            self.lines[split] = [torch.tensor(encode(line), dtype=torch.long) for line in lines]
        self._loaded = True

    @property
    def eos_id(self) -> int:
        return eos_id(self.featurizer)

    def split_data(self, split: str) -> Dataset:
        """``split`` as the configured mode batches it (this process's rows under DDP)."""
        if split not in self.lines:
            raise DataError(f"no {split} split: set data.{split}_path")
        cfg = self.config
        eos = self.eos_id
        if str(cfg.mode) == "sentence":
            return SentenceSplit(self.lines[split], eos)
        rank, world = self._ranks()
        stream = torch.cat(
            [torch.tensor([eos])] + [torch.cat([line, line.new_tensor([eos])]) for line in self.lines[split]]
        )
        size = int(cfg.batch_size if split == "train" else cfg.eval_batch_size)
        return StreamSplit(stream, size, int(cfg.bptt), self.featurizer.pad_id, rank, world)

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = self.split_data(split)
        cfg = self.config
        if isinstance(dataset, StreamSplit):  # windows in stream order: the state carries across them
            return DataLoader(dataset, batch_size=None, shuffle=False)
        rank, world_size = self._ranks()
        seed = torch.initial_seed() % 2**31
        sampler = BucketBatchSampler(
            dataset.lengths, int(cfg.batch_size if train else cfg.eval_batch_size), shuffle=train, seed=seed,
            pool_batches=int(cfg.bucket_pool_batches), rank=rank, world_size=world_size,
        )  # fmt: skip
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=SentenceCollator(self.featurizer.pad_id))
