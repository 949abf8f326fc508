"""How a prediction is shaped from the graph's outputs: one small, torch-free shaper per head kind.

An exported file says what its heads are in its ``heads`` metadata entry, a JSON list written by the
export side's heads (``nlpkit.export.heads``, each head's ``serving()``), one object per head::

    {"kind": "label",                                          # a kind registered here
     "outputs": {"label": "intent", "scores": "intent_scores"},  # role -> graph output it reads
     "keys": {"label": "intent", "scores": "intent_scores"},     # role -> response key (default: role)
     "names": "intents",                                         # metadata field with its names
     "noun": "intent"}                                           # what a name is, for the docs

Kinds (``HEAD_KINDS``, filled by ``@head_kind``):

* ``label``: ``label`` string ``[B]``, ``scores`` float ``[B, L]`` -> ``{"label": name, "scores": {name: p}}``;
* ``multilabel``: the same outputs, ``label`` the names joined by ``delimiter`` -> ``{"labels": [...],
  "scores": {...}}``;
* ``tags``: ``tokens``, ``tags`` string ``[B, T]`` ("" at padding) -> ``{"tokens", "tags", "spans"}``;
* ``value``: ``value`` float ``[B]`` -> ``{"value": float}`` (a regression score, a relevance score, a
  log-probability: whatever one number per text the head's ``noun`` says);
* ``vector``: ``vector`` float ``[B, H]`` -> ``{"vector": [float, ...]}`` (a text's embedding).

``OnnxPredictor`` merges the dicts of a file's heads, in order, into one dict per text, and
``nlpkit.serving.schemas`` builds the response model from the same heads: a new task whose export
declares its heads is served without any change here. Files exported before ``heads`` existed are read
through :func:`legacy_heads`, the one place task names appear in serving.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from nlpkit.data.tag_schemes import span_dicts  # pure Python, no torch
from nlpkit.errors import ArtifactError

HEADS_FIELD = "heads"

#: a metadata problem -> the error naming the file and the field (``ModelFields.problem``)
Problem = Callable[[str, str], ArtifactError]


@dataclass(frozen=True)
class Output:
    """What a head kind needs of one graph output: its onnxruntime type and rank."""

    type: str  # "tensor(string)" or "tensor(float)"
    rank: int


@dataclass(frozen=True)
class ResponseField:
    """One key of a prediction: its JSON type (``str``, ``str_list``, ``float``, ``float_map``,
    ``spans``) and its description for the OpenAPI document."""

    key: str
    type: str
    description: str


STRING_B, STRING_BT, FLOAT_B, FLOAT_BL = (
    Output("tensor(string)", 1),
    Output("tensor(string)", 2),
    Output("tensor(float)", 1),
    Output("tensor(float)", 2),
)


class ServedHead(ABC):
    """One head of an exported file, as serving reads it: which graph outputs, which response keys.

    A subclass declares ``kind``, the graph outputs it reads (``outputs``: role -> requirement), the
    response keys it writes (``keys``: role names; a description may rename each), whether it has
    names (``has_names``) and its other description entries (``options``: name -> JSON type, default).
    """

    kind: ClassVar[str]
    outputs: ClassVar[dict[str, Output]]
    keys: ClassVar[tuple[str, ...]]
    has_names: ClassVar[bool] = True
    default_noun: ClassVar[str]
    options: ClassVar[dict[str, tuple[type, Any]]] = {}

    def __init__(
        self,
        outputs: dict[str, str],
        keys: dict[str, str],
        names_field: str | None,
        noun: str,
        **options: Any,
    ):
        self.output_of = outputs  # role -> graph output name
        self.key_of = keys  # role -> response key
        self.names_field = names_field
        self.noun = noun
        self.names: list[str] = []  # filled by ``read_heads`` from ``names_field``
        for name, value in options.items():
            setattr(self, name, value)

    def describe(self) -> dict[str, Any]:
        """The description this head was read from (what an export writes; defaults filled in)."""
        out = {"kind": self.kind, "outputs": dict(self.output_of), "keys": dict(self.key_of)}
        if self.has_names:
            out["names"] = self.names_field
        out["noun"] = self.noun
        out.update({name: getattr(self, name) for name in self.options})
        return out

    @abstractmethod
    def fields(self) -> list[ResponseField]:
        """The keys this head adds to a prediction, in order."""

    @abstractmethod
    def shape(self, values: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """Its graph outputs for one batch (role -> array) -> its part of each text's prediction."""

    def check(self, values: dict[str, np.ndarray], problem: Problem) -> None:  # noqa: B027 - optional
        """One probe batch against the names (role -> array); raises ``problem(field, what)``. By
        default nothing to check (a kind without names)."""


HEAD_KINDS: dict[str, type[ServedHead]] = {}


def head_kind(cls: type[ServedHead]) -> type[ServedHead]:
    """Register a head kind under its ``kind``."""
    if cls.kind in HEAD_KINDS:
        raise ValueError(f"head kind {cls.kind!r} registered twice")
    HEAD_KINDS[cls.kind] = cls
    return cls


@head_kind
class ServedLabel(ServedHead):
    """``label`` string ``[B]`` + ``scores`` float ``[B, L]`` -> the best name and every name's score."""

    kind = "label"
    outputs = {"label": STRING_B, "scores": FLOAT_BL}
    keys = ("label", "scores")
    default_noun = "label"

    def fields(self) -> list[ResponseField]:
        return [
            ResponseField(self.key_of["label"], "str", f"the most probable {self.noun}"),
            ResponseField(self.key_of["scores"], "float_map", f"probability of every {self.noun}"),
        ]

    def shape(self, values: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        label, scores = self.key_of["label"], self.key_of["scores"]
        return [
            {label: str(name), scores: {n: float(p) for n, p in zip(self.names, row)}}
            for name, row in zip(values["label"], values["scores"])
        ]

    def check(self, values: dict[str, np.ndarray], problem: Problem) -> None:
        check_score_width(values["scores"], self.names, self.names_field, problem)
        for row, emitted in zip(values["scores"], values["label"]):
            best = self.names[int(np.argmax(row))]
            if best != str(emitted):
                raise problem(
                    self.names_field,
                    f"does not match the graph: the best score is at the position of {best!r}, "
                    f"the graph names it {str(emitted)!r}",
                )


@head_kind
class ServedMultiLabel(ServedHead):
    """``label`` string ``[B]`` (the names that are on, joined by ``delimiter``) + ``scores`` float
    ``[B, L]`` (independent probabilities) -> the list of names and every name's score."""

    kind = "multilabel"
    outputs = {"label": STRING_B, "scores": FLOAT_BL}
    keys = ("labels", "scores")
    default_noun = "label"
    options = {"delimiter": (str, ",")}
    delimiter: str

    def fields(self) -> list[ResponseField]:
        return [
            ResponseField(self.key_of["labels"], "str_list", f"every {self.noun} predicted on"),
            ResponseField(
                self.key_of["scores"], "float_map", f"independent probability of every {self.noun}"
            ),
        ]

    def split(self, joined: Any) -> list[str]:
        return [name for name in str(joined).split(self.delimiter) if name]

    def shape(self, values: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        labels, scores = self.key_of["labels"], self.key_of["scores"]
        return [
            {labels: self.split(joined), scores: {n: float(p) for n, p in zip(self.names, row)}}
            for joined, row in zip(values["label"], values["scores"])
        ]

    def check(self, values: dict[str, np.ndarray], problem: Problem) -> None:
        check_score_width(values["scores"], self.names, self.names_field, problem)
        for joined in values["label"]:
            unknown = [name for name in self.split(joined) if name not in self.names]
            if unknown:
                raise problem(
                    self.names_field, f"does not name the {self.noun} {unknown[0]!r} the graph emits"
                )


@head_kind
class ServedTags(ServedHead):
    """``tokens`` + ``tags`` string ``[B, T]`` ("" at padding) -> the tokens, a tag per token, and the
    tags read as typed spans."""

    kind = "tags"
    outputs = {"tokens": STRING_BT, "tags": STRING_BT}
    keys = ("tokens", "tags", "spans")
    default_noun = "tag"

    def fields(self) -> list[ResponseField]:
        return [
            ResponseField(self.key_of["tokens"], "str_list", "the text's tokens, as the model saw them"),
            ResponseField(self.key_of["tags"], "str_list", f"one {self.noun} per token"),
            ResponseField(self.key_of["spans"], "spans", f"the {self.noun}s read as typed spans"),
        ]

    def shape(self, values: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        tokens_key, tags_key, spans_key = (self.key_of[role] for role in self.keys)
        out = []
        for token_row, tag_row in zip(values["tokens"], values["tags"]):
            words = [str(t) for t in token_row if t != ""]
            tags = [str(t) for t in tag_row[: len(words)]]
            out.append({tokens_key: words, tags_key: tags, spans_key: span_dicts(words, tags)})
        return out

    def check(self, values: dict[str, np.ndarray], problem: Problem) -> None:
        unknown = sorted({str(tag) for tag in values["tags"].ravel()} - set(self.names) - {""})
        if unknown:
            raise problem(
                self.names_field, f"does not name the {self.noun}s the graph emits ({unknown[:3]} missing)"
            )


@head_kind
class ServedValue(ServedHead):
    """``value`` float ``[B]`` -> one number per text (a regression or relevance score, a
    log-probability: the ``noun`` says which)."""

    kind = "value"
    outputs = {"value": FLOAT_B}
    keys = ("value",)
    has_names = False
    default_noun = "score"

    def fields(self) -> list[ResponseField]:
        return [ResponseField(self.key_of["value"], "float", f"the text's {self.noun} (one number)")]

    def shape(self, values: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        key = self.key_of["value"]
        return [{key: float(value)} for value in values["value"]]


@head_kind
class ServedVector(ServedHead):
    """``vector`` float ``[B, H]`` -> one vector per text (a tower's embedding of the text)."""

    kind = "vector"
    outputs = {"vector": FLOAT_BL}
    keys = ("vector",)
    has_names = False
    default_noun = "embedding"

    def fields(self) -> list[ResponseField]:
        return [ResponseField(self.key_of["vector"], "float_list", f"the text's {self.noun} (a vector)")]

    def shape(self, values: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        key = self.key_of["vector"]
        return [{key: [float(v) for v in row]} for row in values["vector"]]


@head_kind
class ServedTokenValues(ServedHead):
    """``tokens`` string ``[B, T]`` ("" at padding) + ``values`` float ``[B, T]`` -> the tokens and one
    number per token (a language model's log-probability of each word: the ``noun`` says which)."""

    kind = "token_values"
    outputs = {"tokens": STRING_BT, "values": FLOAT_BL}
    keys = ("tokens", "values")
    has_names = False
    default_noun = "value"

    def fields(self) -> list[ResponseField]:
        return [
            ResponseField(self.key_of["tokens"], "str_list", "the text's tokens, as the model saw them"),
            ResponseField(self.key_of["values"], "float_list", f"one {self.noun} per token"),
        ]

    def shape(self, values: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        tokens_key, values_key = self.key_of["tokens"], self.key_of["values"]
        out = []
        for token_row, value_row in zip(values["tokens"], values["values"]):
            words = [str(t) for t in token_row if t != ""]
            out.append({tokens_key: words, values_key: [float(v) for v in value_row[: len(words)]]})
        return out


def check_score_width(scores: np.ndarray, names: list[str], field: str, problem: Problem) -> None:
    if scores.ndim != 2 or scores.shape[1] != len(names):
        raise problem(
            field,
            f"has {len(names)} names but the graph outputs "
            f"{scores.shape[-1] if scores.ndim else 0} scores per text",
        )


def parse_heads(raw: Any, problem: Problem, field: str = HEADS_FIELD) -> list[ServedHead]:
    """The heads of a ``heads`` entry (already JSON-decoded), every entry checked: a known kind, every
    graph output its kind reads, known response keys, no key written by two heads."""
    if not isinstance(raw, list) or not raw:
        raise problem(field, f"must be a non-empty JSON list of heads, got {json.dumps(raw)[:60]!r}")
    heads: list[ServedHead] = []
    written: dict[str, int] = {}
    for index, entry in enumerate(raw):
        where = f"head {index}"
        if not isinstance(entry, dict):
            raise problem(field, f"{where} must be a JSON object, got {json.dumps(entry)[:60]!r}")
        kind = entry.get("kind")
        if not isinstance(kind, str) or kind not in HEAD_KINDS:  # (a JSON list is not hashable)
            raise problem(
                field,
                f"{where} has kind {kind!r}, not a head kind this server shapes ({', '.join(HEAD_KINDS)})",
            )
        cls = HEAD_KINDS[kind]
        what = f"{where} ({kind})"
        allowed = {"kind", "outputs", "keys", "noun", *cls.options, *(["names"] if cls.has_names else [])}
        extra = sorted(set(entry) - allowed)
        if extra:
            raise problem(field, f"{where} ({kind}) has unknown entries {extra} (known: {sorted(allowed)})")
        outputs = _string_map(
            entry.get("outputs"), set(cls.outputs), True, f"{what} 'outputs'", field, problem
        )
        renamed = _string_map(entry.get("keys", {}), set(cls.keys), False, f"{what} 'keys'", field, problem)
        keys = {role: renamed.get(role, role) for role in cls.keys}
        for key in keys.values():
            if key.startswith(("_", "model_")):
                raise problem(field, f"{what} response key {key!r}: a key may not start with '_' or 'model_'")
            if key in written:
                raise problem(
                    field, f"response key {key!r} is written by head {written[key]} and head {index}"
                )
            written[key] = index
        names_field = entry.get("names") if cls.has_names else None
        if cls.has_names and not (isinstance(names_field, str) and names_field):
            raise problem(field, f"{what} needs 'names': the metadata field holding its names")
        noun = entry.get("noun", cls.default_noun)
        if not isinstance(noun, str) or not noun:
            raise problem(field, f"{what} 'noun' must be a non-empty string")
        options = {}
        for name, (wanted, default) in cls.options.items():
            value = entry.get(name, default)
            if not isinstance(value, wanted) or value == "":
                raise problem(field, f"{what} {name!r} must be a non-empty {wanted.__name__}")
            options[name] = value
        heads.append(cls(outputs, keys, names_field, noun, **options))
    return heads


def _string_map(
    value: Any, roles: set[str], complete: bool, what: str, field: str, problem: Problem
) -> dict[str, str]:
    """A JSON object from (some, or with ``complete`` all) ``roles`` to non-empty strings."""
    if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
        raise problem(field, f"{what} must be a JSON object of names, got {json.dumps(value)[:60]!r}")
    unknown = sorted(set(value) - roles)
    missing = sorted(roles - set(value)) if complete else []
    if unknown or missing:
        found = "; ".join(
            ([f"unknown {unknown}"] if unknown else []) + ([f"missing {missing}"] if missing else [])
        )
        raise problem(field, f"{what}: its roles are {sorted(roles)} ({found})")
    return dict(value)


def check_graph_outputs(
    heads: Sequence[ServedHead], graph: dict[str, tuple[str, int]], source: str
) -> str | None:
    """The first way ``heads`` do not fit the graph's outputs (``graph``: name -> (onnxruntime type,
    rank)), as a message naming the output and ``source`` (the metadata that declared the heads), or
    ``None`` when every output a head reads exists with the type and rank its kind needs."""
    for head in heads:
        needed = list(head.output_of.values())
        missing = [name for name in needed if name not in graph]
        if missing:
            return (
                f"graph has no output {', '.join(map(repr, missing))}, which {source} needs "
                f"(a {head.kind!r} head reads {', '.join(needed)})"
            )
        for role, name in head.output_of.items():
            want, (have_type, have_rank) = head.outputs[role], graph[name]
            if (have_type, have_rank) != (want.type, want.rank):
                return (
                    f"graph output {name!r} is {have_type} of rank {have_rank}; the {head.kind!r} head of "
                    f"{source} reads it as its {role!r}: {want.type} of rank {want.rank}"
                )
    return None


def legacy_heads(task: str, multilabel: bool, delimiter: str) -> list[dict[str, Any]] | None:
    """The ``heads`` entry of a file exported before the export wrote one, from its ``task`` (and, for
    ``doc_cls``, its ``multilabel`` and ``label_delimiter`` fields); ``None`` for a task that had no
    export then. The only place task names appear in serving: a new task's export writes ``heads``."""
    label = {"kind": "label", "outputs": {"label": "label", "scores": "scores"}, "names": "labels"}
    intent = {
        "kind": "label",
        "outputs": {"label": "intent", "scores": "intent_scores"},
        "keys": {"label": "intent", "scores": "intent_scores"},
        "names": "intents",
        "noun": "intent",
    }

    def tags(name: str, noun: str) -> dict[str, Any]:
        return {
            "kind": "tags",
            "outputs": {"tokens": "tokens", "tags": name},
            "keys": {"tags": name},
            "names": "labels",
            "noun": noun,
        }

    if multilabel and task == "doc_cls":
        return [{**label, "kind": "multilabel", "delimiter": delimiter}]
    return {
        "doc_cls": [label],
        "tagging": [tags("tags", "tag")],
        "intent": [intent],
        "intent_slot": [intent, tags("slots", "slot tag")],
    }.get(task)


def read_heads(fields: Any, task: str) -> tuple[list[ServedHead], str]:
    """The heads of an exported file and the metadata that declared them (for error messages):
    its ``heads`` entry, or for a file exported before that entry existed, :func:`legacy_heads` of its
    ``task``. Each head's names are read from its ``names`` field. ``fields``: the file's
    ``ModelFields`` (typed metadata reads whose errors name the file and field)."""
    if HEADS_FIELD in fields.meta:
        raw, source = fields.json(HEADS_FIELD, list, default=None), f"metadata {HEADS_FIELD!r}"
    else:
        multilabel = fields.json("multilabel", bool, default=False)
        delimiter = fields.json("label_delimiter", str, default=None, nullable=True) or ","
        raw, source = legacy_heads(task, multilabel, delimiter), f"metadata 'task' {task!r}"
        if raw is None:
            raise fields.problem(
                HEADS_FIELD,
                f"is missing, and metadata 'task' {task!r} is no task whose files were exported without "
                "it: re-export the run with this nlpkit",
            )
    heads = parse_heads(raw, fields.problem)
    for head in heads:
        if head.names_field is not None:
            head.names = fields.names(head.names_field)
    return heads, source
