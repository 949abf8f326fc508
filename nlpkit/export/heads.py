"""The decoding step of an export: a head reads one network output and writes graph outputs.

* :class:`LabelHead`: ``scores [B, L]`` -> a name per text (``label``/``intent`` string ``[B]``) and the
  scores (float ``[B, L]``), decoded as its output layer's ``onnx_decoding()`` says (argmax, threshold).
* :class:`TagHead`: ``emissions [B, T, L]`` -> ``tokens`` and a tag per token (``tags``/``slots`` string
  ``[B, T]``, "" at padding), decoded by argmax or CRF Viterbi.

Each head also reads its outputs back as rows (``rows``) and compares them with the PyTorch
predictor's rows (``compare``): the prediction part of the parity gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from onnx import TensorProto, helper

from nlpkit.errors import ExportError
from nlpkit.export.decoding import LABEL_DECODINGS, TAG_DECODINGS, decoding_of
from nlpkit.export.front_ends import FrontEndValues
from nlpkit.export.graph import MODEL_PREFIX
from nlpkit.export.parity import SCORE_TOLERANCE, first_few
from nlpkit.export.text_graph import GraphBuilder


@dataclass
class Check:
    """Mismatches of one parity check over every batch size; ``tolerance``: a score check."""

    examples: int
    batch_sizes: list[int]
    tolerance: float | None = None
    found: list[dict] = field(default_factory=list)
    max_abs_diff: float = 0.0

    def score(self, diff: float, record: dict) -> None:
        self.max_abs_diff = max(self.max_abs_diff, diff)
        if diff > self.tolerance:
            self.found.append({**record, "max_abs_diff": diff})

    def result(self) -> dict:
        out = {
            "passed": not self.found,
            "examples": self.examples,
            "batch_sizes": list(self.batch_sizes),
            "mismatches": len(self.found),
            "first_mismatches": first_few(self.found),
        }
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
    ):
        self.decoding = decoding_of(layer, LABEL_DECODINGS, "output layer")
        self.names, self.network, self.label, self.scores = list(names), network, label, scores
        self.checks, self.noun = checks, noun
        self.delimiter = delimiter or ","
        self.multilabel = self.decoding.kind == "threshold"

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
        diff = np.abs(np.asarray(have[self.scores]) - np.asarray(want[self.scores]))
        checks[self.checks[1]].score(float(diff.max()) if diff.size else 0.0, record)


class TagHead:
    """A word-level head: ``network`` emissions ``[B, T, L]`` -> outputs ``tokens`` and ``tags``.

    Args:
        layer: the output layer (``onnx_decoding()``: argmax or crf_viterbi).
        names: the tag names, in emission order.
        network: the network output holding the emissions.
        tags: the tags output's (and its parity check's) name.
    """

    def __init__(self, layer, names: list[str], network: str = "emissions", tags: str = "tags"):
        self.decoding = decoding_of(layer, TAG_DECODINGS, "output layer")
        self.names, self.network, self.tags = list(names), network, tags

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
        ids = recipe(b, MODEL_PREFIX + self.network, values.mask, **self.decoding.params)
        tags = b.names_of(ids, self.names, "tag_names")
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
