"""TOP semantic-parsing data: the ``data`` schema for ``task=semantic_parse`` and its data module.

The files are TOP's TSV (no header): ``raw utterance <TAB> tokenized utterance <TAB> tree``. The model
reads the tokenized utterance (one position per whitespace token, ``featurizer=word``); the tree is
validated (``tree.parse_tree``) and its terminals must be exactly the tokenized utterance. A bad row
(not three columns, a tree that breaks a rule, terminals that differ from the tokens) raises
``DataError("file:line: ...")`` or, with ``data.on_bad_row=skip``, is counted and dropped.

A batch is the featurizer's (``tokens [B, T]``, ``lengths [B]``, ``chars [B, T, C]``, ``shapes [B, T]``)
plus ``actions [B, L]`` (the oracle's action ids, -100 after each sequence's end, and -100 for an
``NT`` whose label training never saw), ``forced [B, L]`` (the action applied in teacher forcing:
an unseen label replaced by a seen one of the same kind), ``action_lengths [B]`` and ``gold`` (the
gold tree strings, what the metrics compare with).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nlpkit.data.batching import EncodedSplit, pad_sequences, replace_singletons
from nlpkit.data.config import SplitsConfig, choices, featurizer_field
from nlpkit.data.constraints import at_least, between
from nlpkit.data.featurizers import Features, TextFeaturizer, train_featurizer
from nlpkit.data.labels import LabelVocab
from nlpkit.data.readers import _decoded_lines
from nlpkit.data.splits import SplitDataModule
from nlpkit.errors import DataError
from nlpkit.tasks.semantic_parse.tree import REDUCE, SHIFT, Tree, TreeError, label_kind, oracle, parse_tree
from nlpkit.tasks.tagging.data import warn_unseen

log = logging.getLogger(__name__)

ACTIONS_FILE = "actions.json"
DEFAULT_FEATURIZER = "word"
#: target id of a step the loss ignores (padding, or an NT label unseen in training)
IGNORE = -100


@dataclass
class SemanticParseDataConfig(SplitsConfig):
    """Where TOP-format data is and how it is read.

    format: ``top``: ``raw <TAB> tokenized <TAB> tree``, no header (TOP v1's train/eval/test.tsv).
    max_open: the most non-terminals open at once (the tree depth) a tree may have and the parser may
        build; a deeper tree is a bad row. TOP v1's deepest tree has 8.
    unk_replace_prob: in training, replace each word seen once in train by ``<unk>`` with this probability.
    featurizer: ``featurizer=word`` (one position per tokenized-utterance token).
    """

    format: str = field(default="top", metadata=choices("top"))
    max_open: int = field(default=10, metadata=at_least(1))
    unk_replace_prob: float = field(default=0.0, metadata=between(0, 1))
    featurizer: Any = featurizer_field(DEFAULT_FEATURIZER, per_token=True, aligned=True)


@dataclass(frozen=True)
class ParseExample:
    tokens: tuple[str, ...]
    tree: Tree
    origin: str  # path:line


@dataclass
class EncodedParse:
    features: Features
    actions: torch.Tensor  # [L] targets (IGNORE for an unseen label)
    forced: torch.Tensor  # [L] applied actions
    gold: str


class ActionVocab(LabelVocab):
    """``SHIFT``, ``REDUCE``, then the non-terminal labels (sorted); ``is_intent`` per id."""

    @classmethod
    def from_labels(cls, labels: set[str]) -> ActionVocab:
        return cls([SHIFT, REDUCE, *sorted(labels)])

    @property
    def nt_kinds(self) -> list[str]:
        """``"intent"``/``"slot"`` for each NT action (ids 2...)."""
        return [label_kind(name) for name in self.names[2:]]


def read_top(path: str | Path, max_open: int, policy) -> list[ParseExample]:
    """One ``ParseExample`` per good row of a TOP TSV file (see the module docstring)."""
    path = Path(path)
    out = []
    for number, line in _decoded_lines(path, policy):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        origin = f"{path}:{number}"
        columns = text.split("\t")
        if len(columns) != 3:
            policy.bad(
                origin, f"bad row: {len(columns)} tab-separated column(s), expected 3 (raw, tokenized, tree)"
            )
            continue
        tokens = tuple(columns[1].split())
        if not tokens:
            policy.bad(origin, "empty utterance: the tokenized column has no token")
            continue
        try:
            tree = parse_tree(columns[2], max_open)
        except TreeError as err:
            policy.bad(origin, f"bad tree: {err}")
            continue
        terminals = tree.tokens()
        if tuple(terminals) != tokens:
            at = next(
                (i for i, (a, b) in enumerate(zip(terminals, tokens)) if a != b),
                min(len(terminals), len(tokens)),
            )
            policy.bad(
                origin,
                f"tree tokens differ from the utterance: at token {at + 1} the tree has "
                f"{terminals[at] if at < len(terminals) else '(nothing)'!r}, the utterance "
                f"{tokens[at] if at < len(tokens) else '(nothing)'!r}",
            )
            continue
        out.append(ParseExample(tokens, tree, origin))
    return out


class EncodedParses(EncodedSplit):
    """Encoded parses (bucketed by oracle action count) and the examples they came from."""

    def __init__(self, items: list[EncodedParse], examples: list[ParseExample]):
        super().__init__(items, [len(item.actions) for item in items])
        self.examples = examples


class ParseCollator:
    """Pads a batch; in training, replaces singleton words by ``<unk>`` with ``unk_replace_prob``."""

    def __init__(
        self, features: TextFeaturizer, singletons=None, unk_replace_prob: float = 0.0, seed: int = 0
    ):
        self.features = features
        self.singletons = singletons
        self.unk_replace_prob = unk_replace_prob
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, items: list[EncodedParse]) -> dict:
        batch = self.features.collate([it.features for it in items])
        batch["actions"], batch["action_lengths"] = pad_sequences([it.actions for it in items], IGNORE)
        batch["forced"], _ = pad_sequences([it.forced for it in items], 0)
        batch["gold"] = [it.gold for it in items]
        if self.singletons is not None and self.unk_replace_prob > 0:
            batch["tokens"] = replace_singletons(
                batch["tokens"], self.singletons, self.unk_replace_prob, self.features.unk_id, self.generator
            )
        return batch


class SemanticParseDataModule(SplitDataModule):
    """Reads train/val/test TOP files and encodes each once: word features and oracle actions.

    Pass ``featurizer`` and ``actions`` to reuse a trained run's vocabularies; otherwise both are built
    from the training split. ``unseen_labels`` counts val/test non-terminal labels training never saw
    (such a tree can never be parsed exactly; its step is left out of the loss)."""

    unit = "trees"

    def __init__(self, config, featurizer: TextFeaturizer | None = None, actions: ActionVocab | None = None):
        super().__init__(config)
        self.featurizer = featurizer
        self.actions = actions
        self.splits: dict[str, EncodedParses] = {}
        self.unseen_labels: dict[str, int] = {}

    def read_split(self, path: str) -> list[ParseExample]:
        return read_top(path, int(self.config.max_open), self.policy)

    def load(self) -> None:
        """Read, build vocabularies (if not given) and encode. Idempotent."""
        if self._loaded:
            return
        raw = self.read_splits(need_train=self.featurizer is None)
        train = raw.get("train", [])
        if self.featurizer is None:
            self.featurizer = train_featurizer(
                self.config, (e.tokens for e in train), DEFAULT_FEATURIZER, per_token=True, aligned=True
            )
        if self.actions is None:
            labels = {a for e in train for a in oracle(e.tree) if a not in (SHIFT, REDUCE)}
            self.actions = ActionVocab.from_labels(labels)
        for split, examples in raw.items():
            self.splits[split] = self._encode(examples)
        warn_unseen(
            self.unseen_labels, "gold non-terminal labels not seen in training (such trees are always wrong)"
        )
        if self.policy.total_skipped:
            log.warning("data: %s", self.policy.report())
        self._loaded = True

    def _fallbacks(self) -> dict[str, int]:
        """A seen label id per kind, applied in teacher forcing in place of an unseen label."""
        kinds = self.actions.nt_kinds
        fallback = {}
        for kind in ("intent", "slot"):
            ids = [i + 2 for i, k in enumerate(kinds) if k == kind]
            if not ids:
                raise DataError(f"the training split has no {kind} label: a TOP tree needs intents and slots")
            fallback[kind] = ids[0]
        return fallback

    def _encode(self, examples: list[ParseExample]) -> EncodedParses:
        index = self.actions.index
        fallback = self._fallbacks() if examples else {}
        items, kept = [], []
        for example in examples:
            features = self.featurizer.encode(example.tokens)
            seen = int(features["word_lengths"]) if "word_lengths" in features else len(example.tokens)
            if seen < len(example.tokens):  # a piece featurizer's max_length cut words off: no parse
                self.policy.bad(
                    example.origin,
                    f"{len(example.tokens)} tokens need more than data.featurizer.max_length="
                    f"{self.config.featurizer.max_length} word pieces (the parser sees {seen}): raise it",
                )
                continue
            targets, forced = [], []
            for action in oracle(example.tree):
                if action in index:
                    targets.append(index[action])
                    forced.append(index[action])
                else:
                    self.unseen_labels[action] = self.unseen_labels.get(action, 0) + 1
                    targets.append(IGNORE)
                    forced.append(fallback[label_kind(action)])
            kept.append(example)
            items.append(
                EncodedParse(
                    features,
                    torch.tensor(targets, dtype=torch.long),
                    torch.tensor(forced, dtype=torch.long),
                    str(example.tree),
                )
            )
        return EncodedParses(items, kept)

    def _singletons(self) -> torch.Tensor | None:
        if float(self.config.unk_replace_prob) <= 0 or "train" not in self.splits:
            return None
        counts = torch.bincount(
            torch.cat([item.features["tokens"] for item in self.splits["train"].items]),
            minlength=self.featurizer.vocab_size,
        )
        return counts == 1

    def collator(self, train: bool):
        return ParseCollator(
            self.featurizer,
            self._singletons() if train else None,
            float(self.config.unk_replace_prob),
            torch.initial_seed() % 2**31,
        )


__all__ = [
    "ACTIONS_FILE",
    "ActionVocab",
    "ParseExample",
    "SemanticParseDataConfig",
    "SemanticParseDataModule",
    "read_top",
]
