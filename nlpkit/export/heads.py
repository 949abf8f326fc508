"""The decoding step of an export: a head reads one network output and writes graph outputs.

* :class:`LabelHead`: ``scores [B, L]`` -> a name per text (``label``/``intent`` string ``[B]``) and the
  scores (float ``[B, L]``), decoded as its output layer's ``onnx_decoding()`` says (argmax, threshold).
* :class:`TagHead`: ``emissions [B, T, L]`` -> ``tokens`` and a tag per token (``tags``/``slots`` string
  ``[B, T]``, "" at padding), decoded by argmax or CRF Viterbi.
* :class:`ValueHead`: one float per text (``[B]`` or ``[B, 1]``) -> a float output ``[B]``: a
  regression score, a relevance score, a log-probability.
* :class:`VectorHead`: a vector per text (``[B, H]``) -> a float output ``[B, H]``: a text's embedding.

Each head also reads its outputs back as rows (``rows``) and compares them with the PyTorch
predictor's rows (``compare``): the prediction part of the parity gate. ``check_network`` refuses a
network output of the wrong shape before anything is built, and ``serving()`` is the head's entry in
the file's ``heads`` metadata: how ``nlpkit.serving`` shapes its part of a prediction (the kinds and
their entries: :mod:`nlpkit.serving.heads`), so a new task's export needs no serving change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from onnx import TensorProto, helper

from nlpkit.data.tag_schemes import OUTSIDE
from nlpkit.errors import ExportError
from nlpkit.export.decoding import LABEL_DECODINGS, TAG_DECODINGS, decoding_of
from nlpkit.export.front_ends import FrontEndValues
from nlpkit.export.graph import MODEL_PREFIX
from nlpkit.export.parity import SCORE_TOLERANCE, check_result
from nlpkit.export.text_graph import GraphBuilder

Shape = list[int | str | None]  # a network output's declared shape: sizes, axis names, None unknown


def _refuse_shape(head: str, network: str, shape: Shape, want: str) -> ExportError:
    return ExportError(f"refused: the {head} reads network output {network!r} as {want}, but it is {shape}")


@dataclass
class Check:
    """Mismatches of one parity check over every batch size; ``tolerance``: a score check."""

    examples: int
    batch_sizes: list[int]
    tolerance: float | None = None
    found: list[dict] = field(default_factory=list)
    max_abs_diff: float = 0.0

    def score(self, diff: float, record: dict) -> None:
        """Record one comparison's largest difference; a NaN difference (one side NaN) is a mismatch,
        never within tolerance (``nan > tolerance`` is False, and ``max`` would drop it)."""
        diff = float("inf") if np.isnan(diff) else diff
        self.max_abs_diff = max(self.max_abs_diff, diff)
        if diff > self.tolerance:
            self.found.append({**record, "max_abs_diff": diff})

    def result(self) -> dict:
        out = check_result(self.found, self.examples, self.batch_sizes)
        if self.tolerance is not None:
            out.update(max_abs_diff=self.max_abs_diff, tolerance=self.tolerance)
        return out


class LabelHead:
    """A document-level head: ``network`` scores ``[B, L]`` -> outputs ``label`` and ``scores``.

    With a front end that counts tokens (word), a text without tokens gets "" and zero scores (the
    word-level predictors do not score it); otherwise every text gets the network's answer.

    Args:
        layer: the output layer (its ``onnx_decoding()`` picks the recipe).
        names: the label names, in score order.
        network: the network output holding the scores.
        label, scores: the graph outputs' names.
        checks: the parity checks' names for ``label`` and ``scores``.
        noun: what a label is, for the descriptions ("label", "intent").
        delimiter: multi-label: what joins the names that are on.
        names_field: the metadata field the task writes the names to ("labels", "intents"); serving
            reads them from there.
        keys: the response keys serving answers with, by role (default: ``label``/``scores`` named as
            the outputs; multi-label ``labels``/``scores``).
    """

    def __init__(
        self,
        layer,
        names: list[str],
        network: str = "scores",
        label: str = "label",
        scores: str = "scores",
        checks: tuple[str, str] = ("labels", "scores"),
        noun: str = "label",
        delimiter: str | None = None,
        names_field: str = "labels",
        keys: dict[str, str] | None = None,
    ):
        self.decoding = decoding_of(layer, LABEL_DECODINGS, "output layer")
        self.names, self.network, self.label, self.scores = list(names), network, label, scores
        self.checks, self.noun = checks, noun
        self.delimiter = delimiter or ","
        self.multilabel = self.decoding.kind == "threshold"
        self.names_field = names_field
        default = {"labels": "labels"} if self.multilabel else {"label": label}
        self.keys = {**default, "scores": scores, **(keys or {})}

    def check_network(self, shape: Shape | None) -> None:
        """The scores are ``[B, n_labels]``."""
        if shape is not None and (len(shape) != 2 or shape[1] not in (len(self.names), None)):
            raise _refuse_shape(
                f"{self.noun} head", self.network, shape, f"scores [batch, {len(self.names)}]"
            )

    def serving(self) -> dict[str, Any]:
        """This head's ``heads`` metadata entry: a ``label`` (or ``multilabel``) head over its outputs."""
        entry = {
            "kind": "multilabel" if self.multilabel else "label",
            "outputs": {"label": self.label, "scores": self.scores},
            "keys": dict(self.keys),
            "names": self.names_field,
            "noun": self.noun,
        }
        return {**entry, "delimiter": self.delimiter} if self.multilabel else entry

    @property
    def outputs(self) -> list[str]:
        return [self.label, self.scores]

    def value_infos(self) -> list:
        return [
            helper.make_tensor_value_info(self.label, TensorProto.STRING, ["batch"]),
            helper.make_tensor_value_info(self.scores, TensorProto.FLOAT, ["batch", len(self.names)]),
        ]

    def build(self, b: GraphBuilder, values: FrontEndValues) -> None:
        scores = MODEL_PREFIX + self.network
        recipe = LABEL_DECODINGS[self.decoding.kind]
        params = {**self.decoding.params, "delimiter": self.delimiter}
        if values.count is None:
            b.op("Identity", [scores], outputs=[self.scores])
            recipe(b, self.scores, self.names, self.label, **params)
            return
        has_tokens = b.op("Greater", [values.count, b.const(np.int64(0))], "has_tokens")  # [B]
        keep = b.op("Unsqueeze", [has_tokens, b.const([1])], "keep")
        b.op("Where", [keep, scores, b.const(np.float32(0))], outputs=[self.scores])
        label = recipe(b, self.scores, self.names, b.name(f"{self.noun}_name"), **params)
        b.op("Where", [has_tokens, label, b.const([""])], outputs=[self.label])

    def describe(self, counts_tokens: bool) -> dict[str, str]:
        """The ``outputs`` metadata entries."""
        if self.multilabel:
            label = "string [batch]: names with score >= threshold joined by label_delimiter ('' if none)"
            scores = f"float [batch, n_{self.noun}s]: per-label sigmoid"
        else:
            label, scores = (
                f"string [batch]: argmax {self.noun} name",
                f"float [batch, n_{self.noun}s]: softmax",
            )
        if counts_tokens:
            label, scores = label + " ('' for a text without tokens)", scores + " (zeros without tokens)"
        return {self.label: label, self.scores: scores}

    def doc(self) -> str:
        """This head's outputs, for the graph's doc string."""
        return f"'{self.label}' string [batch] ('' without tokens), '{self.scores}' float [batch, n_{self.noun}s]"

    def from_prediction(self, prediction: dict) -> dict[str, Any]:
        """A predictor's dict (``{label: name or None, scores: {name: probability}}``) as this head's row:
        no name (a text without tokens) is "" with zero scores."""
        name = prediction[self.label]
        if name is None:
            return {self.label: "", self.scores: np.zeros(len(self.names))}
        return {self.label: name, self.scores: np.array([prediction[self.scores][n] for n in self.names])}

    def rows(self, named: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        return [
            {self.label: str(label), self.scores: scores}
            for label, scores in zip(named[self.label], named[self.scores])
        ]

    def new_checks(self, examples: int, batch_sizes: list[int]) -> dict[str, Check]:
        return {
            self.checks[0]: Check(examples, batch_sizes),
            self.checks[1]: Check(examples, batch_sizes, tolerance=SCORE_TOLERANCE),
        }

    def compare(self, want: dict, have: dict, record: dict, checks: dict[str, Check]) -> None:
        """Same name; scores within ``SCORE_TOLERANCE``."""
        if have[self.label] != want[self.label]:
            checks[self.checks[0]].found.append(
                {**record, "torch": want[self.label], "onnx": have[self.label]}
            )
        have_scores, want_scores = np.asarray(have[self.scores]), np.asarray(want[self.scores])
        diff = np.abs(have_scores - want_scores)
        diff[np.isnan(have_scores) & np.isnan(want_scores)] = 0.0  # the same NaN on both sides is equal
        checks[self.checks[1]].score(float(diff.max()) if diff.size else 0.0, record)


class TagHead:
    """A word-level head: ``network`` emissions ``[B, T, L]`` -> outputs ``tokens`` and ``tags``.

    Args:
        layer: the output layer (``onnx_decoding()``: argmax or crf_viterbi).
        names: the tag names, in emission order.
        network: the network output holding the emissions.
        tags: the tags output's (and its parity check's, and its response key's) name.
        noun: what a tag is, for the descriptions ("tag", "slot tag").
        names_field: the metadata field the task writes the tag names to.
    """

    def __init__(
        self,
        layer,
        names: list[str],
        network: str = "emissions",
        tags: str = "tags",
        noun: str = "tag",
        names_field: str = "labels",
    ):
        self.decoding = decoding_of(layer, TAG_DECODINGS, "output layer")
        self.names, self.network, self.tags = list(names), network, tags
        self.noun, self.names_field = noun, names_field

    def check_network(self, shape: Shape | None) -> None:
        """The emissions are ``[B, T, n_tags]``."""
        if shape is not None and (len(shape) != 3 or shape[2] not in (len(self.names), None)):
            raise _refuse_shape(
                "tag head", self.network, shape, f"emissions [batch, time, {len(self.names)}]"
            )

    def serving(self) -> dict[str, Any]:
        """This head's ``heads`` metadata entry: a ``tags`` head, answering ``tokens``, its tags, ``spans``."""
        return {
            "kind": "tags",
            "outputs": {"tokens": "tokens", "tags": self.tags},
            "keys": {"tokens": "tokens", "tags": self.tags, "spans": "spans"},
            "names": self.names_field,
            "noun": self.noun,
        }

    @property
    def outputs(self) -> list[str]:
        return ["tokens", self.tags]

    def value_infos(self) -> list:
        string_bt = ["batch", "max_tokens"]
        return [
            helper.make_tensor_value_info("tokens", TensorProto.STRING, string_bt),
            helper.make_tensor_value_info(self.tags, TensorProto.STRING, string_bt),
        ]

    def build(self, b: GraphBuilder, values: FrontEndValues) -> None:
        if values.tokens is None or values.mask is None:
            raise ExportError(
                "refused: a tagging head needs the word featurizer's tokens (featurizer kind 'word')"
            )
        recipe = TAG_DECODINGS[self.decoding.kind]
        scored = values.scored or values.mask  # the tokens the network scored
        ids = recipe(b, MODEL_PREFIX + self.network, scored, **self.decoding.params)
        tags = b.names_of(ids, self.names, "tag_names")
        if values.scored is not None:  # a token past a piece featurizer's cut: the outside tag
            tags = b.op("Where", [values.scored, tags, b.const([OUTSIDE])], "tags_or_outside")
        b.op("Where", [values.mask, tags, b.const([""])], outputs=[self.tags])
        b.op("Identity", [values.tokens], outputs=["tokens"])

    def describe(self, counts_tokens: bool) -> dict[str, str]:
        return {
            "tokens": "string [batch, max_tokens]: whitespace tokens, '' at padding",
            self.tags: f"string [batch, max_tokens]: tag per token ({self.decoding.kind}), '' at padding",
        }

    def doc(self) -> str:
        return (
            f"'tokens' and '{self.tags}' string [batch, max_tokens], '' at padding. "
            f"Decoding: {self.decoding.kind}"
        )

    def from_prediction(self, prediction: dict) -> dict[str, Any]:
        """A predictor's dict (``{"tokens": [...], tags: [...]}``) as this head's row."""
        return {"tokens": prediction["tokens"], self.tags: prediction[self.tags]}

    def rows(self, named: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        rows = []
        for tokens, tags in zip(named["tokens"], named[self.tags]):
            n = sum(1 for t in tokens if t != "")
            rows.append(
                {
                    "tokens": [str(t) for t in tokens[:n]],
                    self.tags: [str(t) for t in tags[:n]],
                    f"{self.tags}/padding_empty": not any(tags[n:]) and not any(tokens[n:]),
                }
            )
        return rows

    def new_checks(self, examples: int, batch_sizes: list[int]) -> dict[str, Check]:
        return {self.tags: Check(examples, batch_sizes)}

    def compare(self, want: dict, have: dict, record: dict, checks: dict[str, Check]) -> None:
        """Same tokens, same tags, "" at every padding position."""
        key = self.tags
        if have["tokens"] != want["tokens"] or have[key] != want[key] or not have[f"{key}/padding_empty"]:
            checks[key].found.append({**record, "torch": want[key][:30], "onnx": have[key][:30]})


#: what a value head's output layer may decode with: the value as the network gives it
VALUE_DECODINGS = {"value": None}


class ValueHead:
    """A document-level value head: one float per text, e.g. ``ValueHead(network="scores",
    output="score")`` for a regression model whose ``forward_for_export`` returns ``scores [B]``.

    The network output may be ``[B]`` or ``[B, 1]``; the graph output is float ``[batch]``. With a
    front end that counts tokens (word), a text without tokens gets 0.0 (the reference prediction's
    ``None`` reads as 0.0 too). Parity: every value within ``SCORE_TOLERANCE`` of the PyTorch
    predictor's (NaN only where it has NaN too). Served as ``{key: float}`` (serving kind ``value``).

    Args:
        layer: the output layer, if any: its ``onnx_decoding()`` must be ``Decoding("value")`` (the
            network's output as it is, e.g. ``RegressionOutput``); anything else is refused.
        network: the network output holding the values, float ``[B]`` or ``[B, 1]``.
        output: the graph output's name.
        key: the response key serving answers with, and the key of the PyTorch predictor's dict the
            reference rows are read from (default: ``output``).
        noun: what the value is, for the descriptions ("score", "relevance", "log-probability").
        check: the parity check's name in the export report (default: ``output``).
        relative: compare ``|a - b| / max(1, |a|)`` with the tolerance: for a value that is a sum of
            many terms (a sentence's log-probability over hundreds of words), whose float32 rounding
            grows with its size.
    """

    def __init__(
        self,
        layer=None,
        network: str = "scores",
        output: str = "score",
        key: str | None = None,
        noun: str = "score",
        check: str | None = None,
        relative: bool = False,
    ):
        if layer is not None:
            decoding_of(layer, VALUE_DECODINGS, "output layer")
        self.network, self.output, self.noun = network, output, noun
        self.key = key or output
        self.check = check or output
        self.relative = relative

    @property
    def outputs(self) -> list[str]:
        return [self.output]

    def value_infos(self) -> list:
        return [helper.make_tensor_value_info(self.output, TensorProto.FLOAT, ["batch"])]

    def check_network(self, shape: Shape | None) -> None:
        """The values are ``[B]`` or ``[B, 1]`` (anything wider would be flattened into wrong rows)."""
        if shape is not None and not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise _refuse_shape("value head", self.network, shape, "values [batch] or [batch, 1]")

    def build(self, b: GraphBuilder, values: FrontEndValues) -> None:
        flat = b.op("Reshape", [MODEL_PREFIX + self.network, b.const([-1])], "values")  # [B]
        if values.count is None:
            b.op("Identity", [flat], outputs=[self.output])
            return
        has_tokens = b.op("Greater", [values.count, b.const(np.int64(0))], "has_tokens")  # [B]
        b.op("Where", [has_tokens, flat, b.const(np.float32(0))], outputs=[self.output])

    def describe(self, counts_tokens: bool) -> dict[str, str]:
        """The ``outputs`` metadata entry."""
        text = f"float [batch]: the text's {self.noun}"
        return {self.output: text + (" (0 for a text without tokens)" if counts_tokens else "")}

    def doc(self) -> str:
        return f"'{self.output}' float [batch] ({self.noun})"

    def serving(self) -> dict[str, Any]:
        """This head's ``heads`` metadata entry: a ``value`` head, answering ``{key: float}``."""
        return {
            "kind": "value",
            "outputs": {"value": self.output},
            "keys": {"value": self.key},
            "noun": self.noun,
        }

    def from_prediction(self, prediction: dict) -> dict[str, Any]:
        """A predictor's dict (``{key: float or None}``) as this head's row; ``None`` (no tokens) is 0.0."""
        value = prediction[self.key]
        return {self.output: 0.0 if value is None else float(value)}

    def rows(self, named: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        return [{self.output: float(value)} for value in named[self.output]]

    def new_checks(self, examples: int, batch_sizes: list[int]) -> dict[str, Check]:
        return {self.check: Check(examples, batch_sizes, tolerance=SCORE_TOLERANCE)}

    def compare(self, want: dict, have: dict, record: dict, checks: dict[str, Check]) -> None:
        """Within ``SCORE_TOLERANCE``; the same non-finite value (NaN, +-inf) on both sides is equal,
        one side's NaN is a mismatch (``abs(nan - x)`` would compare as within any tolerance)."""
        a, b = float(want[self.output]), float(have[self.output])
        same = a == b or (np.isnan(a) and np.isnan(b))
        diff = 0.0 if same else abs(a - b)
        if self.relative and not same:
            diff /= max(1.0, abs(a))
        checks[self.check].score(float("inf") if np.isnan(diff) else diff, {**record, "torch": a, "onnx": b})


class VectorHead:
    """A document-level vector head: the network's ``[B, H]`` vector per text as a float output
    ``[batch, H]``, e.g. ``VectorHead(network="embedding", output="embedding")`` for one tower of a
    two-tower model. Parity: every component within ``SCORE_TOLERANCE`` of the PyTorch side's. Served as
    ``{key: [float, ...]}`` (serving kind ``vector``).

    Args:
        dim: the vector's width ``H``.
        network: the network output holding the vectors.
        output: the graph output's name (and the response key, and the reference rows' key).
        noun: what the vector is, for the descriptions ("embedding").
    """

    def __init__(
        self, dim: int, network: str = "embedding", output: str = "embedding", noun: str = "embedding"
    ):
        self.dim, self.network, self.output, self.noun = int(dim), network, output, noun

    @property
    def outputs(self) -> list[str]:
        return [self.output]

    def value_infos(self) -> list:
        return [helper.make_tensor_value_info(self.output, TensorProto.FLOAT, ["batch", self.dim])]

    def check_network(self, shape: Shape | None) -> None:
        if shape is not None and (len(shape) != 2 or shape[1] not in (self.dim, None)):
            raise _refuse_shape("vector head", self.network, shape, f"vectors [batch, {self.dim}]")

    def build(self, b: GraphBuilder, values: FrontEndValues) -> None:
        b.op("Identity", [MODEL_PREFIX + self.network], outputs=[self.output])

    def describe(self, counts_tokens: bool) -> dict[str, str]:
        return {self.output: f"float [batch, {self.dim}]: the text's {self.noun}"}

    def doc(self) -> str:
        return f"'{self.output}' float [batch, {self.dim}] ({self.noun})"

    def serving(self) -> dict[str, Any]:
        """This head's ``heads`` metadata entry: a ``vector`` head, answering ``{key: [float, ...]}``."""
        return {
            "kind": "vector",
            "outputs": {"vector": self.output},
            "keys": {"vector": self.output},
            "noun": self.noun,
        }

    def from_prediction(self, prediction: dict) -> dict[str, Any]:
        return {self.output: np.asarray(prediction[self.output], dtype=np.float32)}

    def rows(self, named: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        return [{self.output: row} for row in named[self.output]]

    def new_checks(self, examples: int, batch_sizes: list[int]) -> dict[str, Check]:
        return {self.output: Check(examples, batch_sizes, tolerance=SCORE_TOLERANCE)}

    def compare(self, want: dict, have: dict, record: dict, checks: dict[str, Check]) -> None:
        """Every component within ``SCORE_TOLERANCE``; a NaN or a wrong width is a mismatch."""
        a, b = np.asarray(want[self.output]), np.asarray(have[self.output])
        if a.shape != b.shape:
            diff = float("inf")
        else:
            gaps = np.abs(a - b)
            diff = float("inf") if np.isnan(gaps).any() else float(gaps.max(initial=0.0))
        checks[self.output].score(diff, {**record, "torch": a[:8].tolist(), "onnx": b[:8].tolist()})


class TokenValueHead:
    """A word-level value head: one float per token, e.g. a language model's log-probability of each
    word. ``network`` float ``[B, T]`` -> outputs ``tokens`` (string ``[B, T]``, "" at padding) and
    ``output`` (float ``[B, T]``, 0 at padding). Parity: the same tokens and every value within
    ``SCORE_TOLERANCE``. Served as ``{"tokens": [...], key: [float, ...]}`` (serving kind
    ``token_values``).

    Args:
        network: the network output holding the values, float ``[B, T]``.
        output: the graph output's name (and the response key, and the predictor's dict key).
        noun: what a value is, for the descriptions ("log-probability").
    """

    def __init__(self, network: str, output: str, noun: str = "value"):
        self.network, self.output, self.noun = network, output, noun

    @property
    def outputs(self) -> list[str]:
        return ["tokens", self.output]

    def value_infos(self) -> list:
        bt = ["batch", "max_tokens"]
        return [
            helper.make_tensor_value_info("tokens", TensorProto.STRING, bt),
            helper.make_tensor_value_info(self.output, TensorProto.FLOAT, bt),
        ]

    def check_network(self, shape: Shape | None) -> None:
        if shape is not None and len(shape) != 2:
            raise _refuse_shape("token value head", self.network, shape, "values [batch, time]")

    def build(self, b: GraphBuilder, values: FrontEndValues) -> None:
        if values.tokens is None or values.mask is None:
            raise ExportError(
                "refused: a token value head needs the word featurizer's tokens (featurizer kind 'word')"
            )
        b.op(
            "Where", [values.mask, MODEL_PREFIX + self.network, b.const(np.float32(0))], outputs=[self.output]
        )
        b.op("Identity", [values.tokens], outputs=["tokens"])

    def describe(self, counts_tokens: bool) -> dict[str, str]:
        return {
            "tokens": "string [batch, max_tokens]: whitespace tokens, '' at padding",
            self.output: f"float [batch, max_tokens]: each token's {self.noun}, 0 at padding",
        }

    def doc(self) -> str:
        return f"'tokens' string and '{self.output}' float [batch, max_tokens] ({self.noun} per token)"

    def serving(self) -> dict[str, Any]:
        return {
            "kind": "token_values",
            "outputs": {"tokens": "tokens", "values": self.output},
            "keys": {"tokens": "tokens", "values": self.output},
            "noun": self.noun,
        }

    def from_prediction(self, prediction: dict) -> dict[str, Any]:
        return {"tokens": prediction["tokens"], self.output: [float(v) for v in prediction[self.output]]}

    def rows(self, named: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        rows = []
        for tokens, row in zip(named["tokens"], named[self.output]):
            n = sum(1 for t in tokens if t != "")
            rows.append({"tokens": [str(t) for t in tokens[:n]], self.output: [float(v) for v in row[:n]]})
        return rows

    def new_checks(self, examples: int, batch_sizes: list[int]) -> dict[str, Check]:
        return {self.output: Check(examples, batch_sizes, tolerance=SCORE_TOLERANCE)}

    def compare(self, want: dict, have: dict, record: dict, checks: dict[str, Check]) -> None:
        """The same tokens, and each value within ``SCORE_TOLERANCE`` (a NaN on either side, or other
        tokens, is a mismatch)."""
        a, b = want[self.output], have[self.output]
        if have["tokens"] != want["tokens"] or len(a) != len(b):
            checks[self.output].score(
                float("inf"), {**record, "torch": want["tokens"][:30], "onnx": have["tokens"][:30]}
            )
            return
        diffs = [abs(x - y) if x != y else 0.0 for x, y in zip(a, b)]
        diff = max((float("inf") if np.isnan(d) else d for d in diffs), default=0.0)
        checks[self.output].score(diff, {**record, "torch": a[:30], "onnx": b[:30]})
