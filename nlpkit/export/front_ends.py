"""The featurizer step of an export: the front-end graph and its parity checks, one per featurizer kind.

:data:`FRONT_ENDS` maps the featurizer kind to its front end:

* ``subword`` (:class:`SubwordFrontEnd`): the HF ``tokenizers`` featurizer of document classification
  (normalize, pre-tokenize, WordLevel lookup, truncation) as built by :mod:`nlpkit.export.text_graph`;
  checked against HF on every code point and against ``Featurizer.encode_batch`` token id by token id
  (``featurizer=subword``, :class:`nlpkit.data.featurizers.SubwordFeaturizer`).
* ``ngram`` (:class:`NgramFrontEnd`): the same graph, then each adjacent pair of word ids looked up as
  a bigram id and interleaved (``featurizer=ngram``, :class:`nlpkit.data.featurizers.NgramFeaturizer`);
  the same checks against its ``with_bigrams`` encoding, every bigram included.
* ``word`` (:class:`WordFrontEnd`): ``text.split()`` + word ids, character ids and casing classes of the
  word-level tasks (and ``task=doc_cls featurizer=word``), as built by :mod:`nlpkit.export.word_graph`;
  checked against :class:`nlpkit.data.featurizers.WordFeaturizer` on every code point and feature by
  feature.

A front end writes the network's inputs (``model/<name>``) that the exported network reads, and names
what the heads need of it (:class:`FrontEndValues`: the text's tokens, their mask, their count).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
from onnx import TensorProto, helper

from nlpkit.errors import ExportError
from nlpkit.export import graph as G
from nlpkit.export.parity import EDGE_CASES, MIXED_BATCH, check_result
from nlpkit.export.text_graph import (
    GraphBuilder,
    TokenizerSpec,
    all_characters,
    build_text_nodes,
    hf_front_end,
    lowercase_divergence,
    opset_imports,
)
from nlpkit.export.word_graph import WordFeatureNames, WordFeatureSpec, build_word_nodes
from nlpkit.utils.io import sha256_file

#: file names of a run's (or a multi-task sub-task's) vocabularies, as the tasks' data modules save them
TOKENIZER_FILE = "tokenizer.json"
CHARS_FILE = "chars.json"

Timer = Callable[[str, Callable[[], Any]], Any]  # runs a step and records its seconds under a name


@dataclass
class FrontEndValues:
    """Graph values a front end computes besides the network's inputs (``None``: not computed)."""

    tokens: str | None = None  # string [B, T]: the text's tokens, "" at padding
    mask: str | None = None  # bool [B, T]: true at real tokens
    count: str | None = None  # int64 [B]: real tokens per text (0 for an empty text)
    #: bool [B, T]: the tokens the network scored (None: every real token); a tag head answers the
    #: others (past a piece featurizer's cut) with the outside tag, as the predictors do
    scored: str | None = None


class FrontEnd:
    """One featurizer kind's part of the graph and of the parity gate."""

    kind: ClassVar[str]
    #: the network inputs this front end can write
    provides: ClassVar[tuple[str, ...]]
    #: whether it counts each text's tokens (``FrontEndValues.count``): a text without any then gets
    #: "" and zero scores from a label head, as the word-level predictors answer it
    counts_tokens: ClassVar[bool] = False

    def __init__(self, tokenizer: TokenizerSpec, featurizer: Any, vocab_dir: Path):
        self.tokenizer = tokenizer
        self.featurizer = featurizer
        self.vocab_dir = Path(vocab_dir)
        self.tokenizer_path = self.vocab_dir / TOKENIZER_FILE
        python = self.python_featurizer
        if (python.pad_id, python.unk_id) != (tokenizer.pad_id, tokenizer.unk_id):
            raise ExportError("tokenizer.json and the loaded featurizer disagree on pad/unk ids")

    @property
    def python_featurizer(self):
        """The HF-backed ``Featurizer`` (word ids, ``tokenizer.json``) of the PyTorch side's featurizer
        (``featurizer``: a :class:`nlpkit.data.featurizers.TextFeaturizer` of this front end's kind)."""
        return self.featurizer.tokenizer

    def check_reads(self, reads: set[str]) -> None:
        unknown = sorted(reads - set(self.provides))
        if unknown:
            raise ExportError(
                f"refused: the network reads {unknown}, which the {self.kind} featurizer's graph does not "
                f"compute (it gives {', '.join(self.provides)})"
            )

    def build(self, b: GraphBuilder, text: str, reads: set[str], suffix: str = "") -> FrontEndValues:
        """Write ``model/<name><suffix>`` for every network input ``name`` in ``reads`` (``suffix``: one
        of several string inputs, e.g. ``_a``); return the other values."""
        raise NotImplementedError

    def edge_cases(self) -> list[str]:
        """Texts the gate adds to the split's: the shared edge cases and this featurizer's own."""
        raise NotImplementedError

    def metadata(self, run_dir: Path) -> dict[str, str]:
        raise NotImplementedError

    def checks(
        self,
        model: onnx.ModelProto,
        reads: set[str],
        split: str,
        texts: list[str],
        edge: list[str],
        timed: Timer,
    ) -> dict[str, dict]:
        """The featurizer's parity checks (name -> result) on ``model`` (the assembled graph)."""
        raise NotImplementedError


# ------------------------------------------------------------------------------------ subword
class SubwordFrontEnd(FrontEnd):
    """``text [B]`` -> ``tokens [B, T]``, ``lengths [B]`` as ``Featurizer.encode_batch`` (an empty text
    is ``[<unk>]``, so every text gets a prediction)."""

    kind = "subword"
    provides = ("tokens", "lengths")

    def build(self, b, text, reads, suffix=""):
        self.check_reads(reads)
        tokens, lengths = (G.MODEL_PREFIX + name + suffix for name in ("tokens", "lengths"))
        build_text_nodes(b, self.tokenizer, text, tokens, lengths)
        return FrontEndValues()

    def edge_cases(self):
        edge = list(EDGE_CASES)
        max_length = self.tokenizer.max_length
        if max_length is not None:
            words = [w for w in self.python_featurizer.vocab if w not in ("<pad>", "<unk>")] or ["word"]
            edge.append(" ".join(words[i % len(words)] for i in range(max_length + 7)))
            edge.append(" ".join(["."] * (max_length + 3)))
        return edge

    def metadata(self, run_dir):
        return {
            "tokenizer": self.tokenizer.description,
            "max_length": json.dumps(self.tokenizer.max_length),
        }

    @property
    def description(self) -> str:
        return "Tokenization runs in the graph: " + self.tokenizer.description

    def checks(self, model, reads, split, texts, edge, timed):
        debug = G.with_debug_outputs(
            debug_model(model),
            [
                ("debug/tokens", TensorProto.INT64),
                ("debug/lengths", TensorProto.INT64),
                ("debug/pieces", TensorProto.STRING),
            ],
        )
        session = G.session(debug)
        groups = {split: texts, "edge_cases": edge, "vocabulary": list(self.python_featurizer.vocab)}
        return {
            "tokenizer_all_codepoints": timed(
                "tokenizer_all_codepoints", lambda: check_all_codepoints(session, self.tokenizer)
            ),
            "token_ids": timed(
                "token_ids",
                lambda: check_token_ids(session, self.python_featurizer, groups, [1, MIXED_BATCH]),
            ),
        }


class _NgramIds:
    """The ids ``featurizer=ngram`` gives, in the ``Featurizer`` shape the subword checks read
    (``encode_batch -> [[id, ...]]``, ``vocab``, ``pad_id``, ``unk_id``): words and bigrams interleaved,
    and the bigrams as ``"first second"`` texts in the vocabulary group."""

    def __init__(self, featurizer: Any):
        self.featurizer = featurizer
        self.pad_id, self.unk_id = featurizer.pad_id, featurizer.unk_id
        self.vocab = featurizer.vocab

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        rows = self.featurizer.tokenizer.encode_batch(texts)
        return [self.featurizer.with_bigrams(ids) for ids in rows]


class NgramFrontEnd(SubwordFrontEnd):
    """``text [B]`` -> ``tokens [B, 2n - 1]`` (``u1 b12 u2 ... un``), ``lengths [B]`` as
    ``NgramFeaturizer.encode_batch``: the subword graph's word ids, then the pair key ``ui * words +
    uj`` through one int64 ``LabelEncoder`` (``<unk-bigram>`` by default), interleaved."""

    kind = "ngram"

    @property
    def python_featurizer(self):
        return _NgramIds(self.featurizer)

    def build(self, b, text, reads, suffix=""):
        self.check_reads(reads)
        tokens, lengths = (G.MODEL_PREFIX + name + suffix for name in ("tokens", "lengths"))
        words, counts = b.name("word_ids"), b.name("word_lengths")
        build_text_nodes(b, self.tokenizer, text, words, counts)  # [B, L] pad-padded, [B] >= 1
        f = self.featurizer
        int64 = functools.partial(b.const, dtype=np.int64)
        pad = int64(f.pad_id)
        batch = b.op("Slice", [b.op("Shape", [words]), b.const([0]), b.const([1])], "batch")
        pad_column = b.op(
            "ConstantOfShape",
            [b.op("Concat", [batch, b.const([1])], axis=0)],
            "pad_column",
            value=helper.make_tensor("v", TensorProto.INT64, [1], [f.pad_id]),
        )
        following = b.op(
            "Slice",
            [
                b.op("Concat", [words, pad_column], axis=1),
                b.const([1]),
                b.const([np.iinfo(np.int64).max]),
                b.const([1]),
            ],
            "following",
        )  # [B, L]: each word's successor (pad after the last)
        key = b.op("Add", [b.op("Mul", [words, int64(f.words)]), following], "pair_key")
        pairs = sorted(f.bigram_ids.items())
        bigram = b.op(
            "LabelEncoder",
            [key],
            "bigram_ids",
            domain="ai.onnx.ml",
            keys_int64s=[k for k, _ in pairs],
            values_int64s=[v for _, v in pairs],
            default_int64=f.unk_bigram_id,
        )
        width = b.op(
            "Squeeze", [b.op("Slice", [b.op("Shape", [words]), b.const([1]), b.const([2])])], "width"
        )
        position = b.op("Unsqueeze", [b.op("Range", [int64(0), width, int64(1)]), b.const([0])], "position")
        real_pair = b.op(
            "Less",
            [b.op("Add", [position, int64(1)]), b.op("Unsqueeze", [counts, b.const([1])])],
            "real_pair",
        )  # [B, L]: word i has a successor
        bigram = b.op("Where", [real_pair, bigram, pad], "bigram_or_pad")
        stacked = b.op(
            "Concat",
            [b.op("Unsqueeze", [words, b.const([2])]), b.op("Unsqueeze", [bigram, b.const([2])])],
            "stacked",
            axis=2,
        )  # [B, L, 2]
        interleaved = b.op("Reshape", [stacked, b.const([0, -1])], "interleaved")  # [B, 2L]
        both = b.op("Sub", [b.op("Mul", [counts, int64(2)]), int64(1)], outputs=[lengths])
        longest = b.op("ReduceMax", [both], "longest", keepdims=1)
        b.op("Slice", [interleaved, b.const([0]), longest, b.const([1])], outputs=[tokens])
        return FrontEndValues()


def debug_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a subword-front-end graph with Identity nodes exposing the token ids, lengths and raw
    pieces under stable names (``debug/tokens``, ``debug/lengths``, ``debug/pieces``)."""
    debug = onnx.ModelProto()
    debug.CopyFrom(model)
    pieces = next(o for n in debug.graph.node if n.op_type == "Tokenizer" for o in n.output)
    for source, target in [
        (G.MODEL_PREFIX + "tokens", "debug/tokens"),
        (G.MODEL_PREFIX + "lengths", "debug/lengths"),
        (pieces, "debug/pieces"),
    ]:
        debug.graph.node.append(helper.make_node("Identity", [source], [target], name=target))
    return debug


@functools.lru_cache(maxsize=2)
def _hf_pieces_of_all_characters(normalizer_json: str, pre_tokenizer_json: str) -> list[str]:
    """HF normalize + pre-tokenize of every character (cached: it only depends on these two steps)."""
    tok = hf_front_end(normalizer_json, pre_tokenizer_json)
    text = all_characters()
    normalized = tok.normalizer.normalize_str(text) if tok.normalizer else text
    return [piece for piece, _ in tok.pre_tokenizer.pre_tokenize_str(normalized)]


def check_all_codepoints(debug_session, spec: TokenizerSpec) -> dict:
    """Every Unicode scalar value in one string: graph pieces == HF normalize + pre-tokenize."""
    text = all_characters()
    expected = _hf_pieces_of_all_characters(spec.normalizer_json, spec.pre_tokenizer_json)
    divergent = lowercase_divergence(spec.normalizer_json, spec.pre_tokenizer_json) if spec.lowercase else {}
    table = str.maketrans(divergent)
    pieces = debug_session.run(["debug/pieces"], {"text": np.array([text], dtype=object)})[0][0]
    got = [p.translate(table) for p in pieces if p != " "]
    mismatch = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), None)
    if mismatch is None and len(expected) != len(got):
        mismatch = min(len(expected), len(got))
    result = {
        "passed": mismatch is None,
        "characters": len(text),
        "pieces": len(expected),
        "lowercase_compensated_characters": len(divergent),
    }
    if mismatch is not None:
        result["first_mismatch"] = {
            "index": mismatch,
            "hf": expected[mismatch : mismatch + 3],
            "onnx": got[mismatch : mismatch + 3],
        }
    return result


def check_token_ids(debug_session, featurizer, groups: dict[str, list[str]], batch_sizes) -> dict:
    """Graph token ids (and pad-id padding) == ``featurizer.encode_batch``, per group, per batch size
    (the vocabulary group in one batch)."""
    mismatches: list[dict] = []
    counts = {}
    for group, texts in groups.items():
        counts[group] = len(texts)
        expected = featurizer.encode_batch(texts)
        sizes = batch_sizes if group != "vocabulary" else [max(1, len(texts))]
        for batch_size in sizes:
            runs = G.run_batched(debug_session, texts, batch_size, ["debug/tokens", "debug/lengths"])
            offset = 0
            for tokens, lengths in runs:
                for row in range(tokens.shape[0]):
                    want = expected[offset + row]
                    n = int(lengths[row])
                    got = tokens[row, :n].tolist()
                    padding_ok = bool(np.all(tokens[row, n:] == featurizer.pad_id))
                    if got != want or not padding_ok:
                        mismatches.append(
                            {
                                "group": group,
                                "batch_size": batch_size,
                                "text": texts[offset + row][:200],
                                "hf_ids": want[:40],
                                "onnx_ids": tokens[row].tolist()[:40],
                            }
                        )
                offset += tokens.shape[0]
    return check_result(mismatches, counts, batch_sizes)


# --------------------------------------------------------------------------------------- word
class WordFrontEnd(FrontEnd):
    """``text [B]`` -> whitespace tokens, ``tokens`` (word ids) ``[B, T]``, ``lengths [B]`` (at least 1),
    ``chars [B, T, C]``, ``shapes [B, T]`` as ``WordFeaturizer`` of ``text.split()``. A text without
    tokens has nothing for the model to score: the heads answer it with ""/zeros, as the predictors."""

    kind = "word"
    provides = ("tokens", "lengths", "chars", "shapes")
    counts_tokens = True

    def __init__(self, tokenizer: TokenizerSpec, featurizer: Any, vocab_dir: Path):
        super().__init__(tokenizer, featurizer, vocab_dir)  # featurizer: WordFeaturizer
        self.chars_path = self.vocab_dir / CHARS_FILE
        chars = featurizer.chars
        self.spec = WordFeatureSpec(tokenizer, list(chars.chars), chars.max_word_length)

    def build(self, b, text, reads, suffix=""):
        self.check_reads(reads)
        features = build_word_nodes(b, self.spec, text, chars="chars" in reads, shapes="shapes" in reads)
        for name, value in [
            ("tokens", features.words),
            ("lengths", features.lengths),
            ("chars", features.chars),
            ("shapes", features.shapes),
        ]:
            if name in reads:
                b.op("Identity", [value], outputs=[G.MODEL_PREFIX + name + suffix])
        return FrontEndValues(tokens=features.tokens, mask=features.mask, count=features.count)

    def edge_cases(self):
        vocab = [w for w in self.python_featurizer.vocab if w not in ("<pad>", "<unk>")] or ["word"]
        long_word = "".join(self.spec.chars[:5] or ["x"]) * (self.spec.max_word_length + 3)
        return [
            *EDGE_CASES,
            " ".join(vocab[i % len(vocab)] for i in range(300)),  # a long sentence
            f"{long_word} short {long_word.upper()}",  # words past max_word_length
            "<pad> <PAD> <unk> a<pad>b",
            "McDonald iPhone USA Usa uSA x2 2x 42 ½ ² ३ _ -- 'Quote' ÉCOLE Ǆemo ǅemo ǆemo",
        ]

    def vocabulary_texts(self) -> list[str]:
        """Every vocabulary word (as is, UPPER and Title) and every known character, as tokens."""
        vocab = list(self.python_featurizer.vocab)
        chunks = [vocab[i : i + 200] for i in range(0, len(vocab), 200)]
        texts = [" ".join(chunk) for chunk in chunks]
        texts += [" ".join(w.upper() for w in chunk) for chunk in chunks]
        texts += [" ".join(w.title() for w in chunk) for chunk in chunks]
        chars = [c for c in self.spec.chars if not c.isspace()]
        texts += [" ".join(chars[i : i + 200]) for i in range(0, len(chars), 200)]
        return texts

    def metadata(self, run_dir):
        return {
            "chars_sha256": sha256_file(self.chars_path),
            "chars_file": str(self.chars_path.relative_to(run_dir)),
            "tokenizer": "str.split() whitespace tokens; " + self.tokenizer.description,
            "max_word_length": json.dumps(self.spec.max_word_length),
        }

    @property
    def description(self) -> str:
        return "Input 'text': string [batch] of raw UTF-8, split on whitespace like str.split()."

    def checks(self, model, reads, split, texts, edge, timed):
        features = FeatureChecker(self, reads)
        return {
            "features_all_codepoints": timed("features_all_codepoints", features.check_all_codepoints),
            "features": timed(
                "features",
                lambda: features.check_groups(
                    {split: texts, "edge_cases": edge, "vocabulary": self.vocabulary_texts()},
                    [1, MIXED_BATCH],
                ),
            ),
        }


def word_front_end_model(spec: WordFeatureSpec, reads: set[str]) -> tuple[onnx.ModelProto, WordFeatureNames]:
    """The word graph's featurizer alone (same builder, same spec), for checking features on large inputs."""
    b = GraphBuilder("nlpkit/")
    names = build_word_nodes(b, spec, "text", chars="chars" in reads, shapes="shapes" in reads)
    outputs = [
        (names.tokens, TensorProto.STRING, 2),
        (names.count, TensorProto.INT64, 1),
        (names.words, TensorProto.INT64, 2),
    ]
    if names.chars:
        outputs.append((names.chars, TensorProto.INT64, 3))
    if names.shapes:
        outputs.append((names.shapes, TensorProto.INT64, 2))
    graph = helper.make_graph(
        b.nodes,
        "nlpkit_front_end",
        [G.string_input("text")],
        [helper.make_tensor_value_info(n, t, [f"d{i}" for i in range(rank)]) for n, t, rank in outputs],
        initializer=b.initializers,
    )
    model = helper.make_model(graph, opset_imports=opset_imports(), producer_name="nlpkit")
    model.ir_version = 9
    return model, names


class FeatureChecker:
    """Runs the word front end and compares with ``WordFeaturizer`` token by token."""

    def __init__(self, front: WordFrontEnd, reads: set[str]):
        model, self.names = word_front_end_model(front.spec, reads)
        self.session = G.session(model)
        self.features = front.featurizer
        self.outputs = [self.names.tokens, self.names.count, self.names.words]
        self.outputs += [n for n in (self.names.chars, self.names.shapes) if n]

    def reference(self, tokens: list[str]) -> dict[str, list]:
        from nlpkit.data.token_features import word_shape

        return {
            "words": self.features.words.encode(tokens),
            "chars": [self.features.chars.encode(t) for t in tokens],
            "shapes": [word_shape(t) for t in tokens],
        }

    def compare_row(self, text: str, got: dict[str, np.ndarray], row: int) -> dict | None:
        tokens = text.split()
        n = int(got["count"][row])
        graph_tokens = [str(t) for t in got["tokens"][row]]
        problem = None
        if n != len(tokens) or graph_tokens[:n] != tokens or any(graph_tokens[n:]):
            problem = {"field": "tokens", "python": tokens[:20], "onnx": graph_tokens[:20]}
        else:
            want = self.reference(tokens)
            if got["words"][row, :n].tolist() != want["words"]:
                problem = {
                    "field": "word_ids",
                    "python": want["words"][:20],
                    "onnx": got["words"][row, :n].tolist()[:20],
                }
            elif "shapes" in got and got["shapes"][row, :n].tolist() != want["shapes"]:
                problem = {
                    "field": "shapes",
                    "python": want["shapes"][:20],
                    "onnx": got["shapes"][row, :n].tolist()[:20],
                }
            elif "chars" in got:
                for i, ids in enumerate(want["chars"]):
                    row_ids = got["chars"][row, i]
                    if row_ids[: len(ids)].tolist() != ids or row_ids[len(ids) :].any():
                        problem = {
                            "field": "char_ids",
                            "token": tokens[i],
                            "python": ids,
                            "onnx": row_ids.tolist(),
                        }
                        break
        if problem is not None:
            problem["text"] = text[:200]
        return problem

    def run(self, texts: list[str]) -> dict[str, np.ndarray]:
        values = self.session.run(self.outputs, {"text": np.array(texts, dtype=object)})
        keys = ["tokens", "count", "words"] + [
            k for k, n in (("chars", self.names.chars), ("shapes", self.names.shapes)) if n
        ]
        return dict(zip(keys, values))

    def check_groups(self, groups: dict[str, list[str]], batch_sizes) -> dict:
        mismatches, counts = [], {}
        for group, texts in groups.items():
            counts[group] = len(texts)
            for batch_size in batch_sizes if len(texts) > 1 else [1]:
                for start in range(0, len(texts), batch_size):
                    chunk = texts[start : start + batch_size]
                    got = self.run(chunk)
                    for row, text in enumerate(chunk):
                        problem = self.compare_row(text, got, row)
                        if problem is not None:
                            mismatches.append({"group": group, "batch_size": batch_size, **problem})
        return check_result(mismatches, counts, batch_sizes)

    def check_all_codepoints(self) -> dict:
        """Every code point that is not whitespace, as a one-character token: same features.

        Python side: ``WordEncoder`` and ``word_shape`` as ``WordFeaturizer`` calls them; character ids
        straight from the character vocabulary's index (``CharVocab.encode`` of a one-character token).
        Multi-character tokens are compared through ``WordFeaturizer`` itself in ``check_groups``.
        """
        from nlpkit.data.token_features import CharVocab

        tokens, shapes = _codepoint_tokens()
        got = self.run([" ".join(tokens)])
        fields = {
            "tokens": (got["tokens"][0].tolist(), tokens),
            "word_ids": (got["words"][0].tolist(), _codepoint_word_ids(self.features.words)),
        }
        if "shapes" in got:
            fields["shapes"] = (got["shapes"][0].tolist(), list(shapes))
        if "chars" in got:
            index = self.features.chars.index
            fields["char_ids"] = (
                got["chars"][0, :, 0].tolist(),
                [index.get(ch, CharVocab.UNK_ID) for ch in tokens],
            )
        result: dict[str, Any] = {"tokens": len(tokens), "fields": list(fields)}
        first = None
        for field, (onnx_values, python_values) in fields.items():
            if onnx_values != python_values:
                i = next((i for i, (a, b) in enumerate(zip(onnx_values, python_values)) if a != b), None)
                i = min(len(onnx_values), len(python_values)) if i is None else i
                first = {"field": field, "index": i, "token": tokens[i] if i < len(tokens) else None,
                         "python": python_values[i : i + 3], "onnx": onnx_values[i : i + 3]}  # fmt: skip
                break
        result["passed"] = first is None
        if first is not None:
            result["first_mismatch"] = first
        return result


@functools.lru_cache(maxsize=1)
def _codepoint_tokens() -> tuple[list[str], tuple[int, ...]]:
    """Every non-whitespace code point as a token, and its ``word_shape`` (data-independent: computed
    once per process)."""
    from nlpkit.data.token_features import word_shape

    tokens = [ch for ch in all_characters() if not ch.isspace()]
    return tokens, tuple(word_shape(ch) for ch in tokens)


#: normalizer (as JSON) -> the vocabulary key of every code point of ``_codepoint_tokens``
_CODEPOINT_KEYS: dict[str, list[str]] = {}


def _codepoint_word_ids(words: Any) -> list[int]:
    """``WordEncoder.encode`` of ``_codepoint_tokens``: the normalized keys (~3 s for 1.1M code points)
    are computed once per process and normalizer; only the vocabulary lookup is per run."""
    tokens, _ = _codepoint_tokens()
    normalizer = json.dumps(json.loads(words.featurizer.tokenizer.to_str()).get("normalizer"))
    keys = _CODEPOINT_KEYS.get(normalizer)
    if keys is None:
        keys = [words.normalize(token) for token in tokens]
        _CODEPOINT_KEYS.clear()  # one normalizer kept: ~1.1M short strings
        _CODEPOINT_KEYS[normalizer] = keys
    return [words.key_id(key) for key in keys]


# ---------------------------------------------------------------------------------- wordpiece
class WordPieceFrontEnd(FrontEnd):
    """``text [B]`` -> ``tokens [B, T]`` (``[CLS] pieces [SEP]``), ``lengths [B]`` as
    ``WordPieceFeaturizer.encode_batch`` (:mod:`nlpkit.export.wordpiece_graph`). The file needs
    onnxruntime-extensions (``StringJoin``, ``WordpieceTokenizer``); its metadata says so, and nlpkit's
    loaders register the library for it."""

    kind = "wordpiece"
    provides = ("tokens", "lengths")

    def __init__(self, tokenizer, featurizer: Any, vocab_dir: Path):  # tokenizer: WordPieceSpec
        self.tokenizer = tokenizer
        self.featurizer = featurizer
        self.vocab_dir = Path(vocab_dir)
        self.tokenizer_path = self.vocab_dir / TOKENIZER_FILE
        if (featurizer.pad_id, featurizer.unk_id) != (tokenizer.pad_id, tokenizer.unk_id):
            raise ExportError("tokenizer.json and the loaded featurizer disagree on pad/unk ids")

    @property
    def python_featurizer(self):
        return self.featurizer

    def build(self, b, text, reads, suffix=""):
        from nlpkit.export.wordpiece_graph import build_wordpiece_nodes

        self.check_reads(reads)
        tokens, lengths = (G.MODEL_PREFIX + name + suffix for name in ("tokens", "lengths"))
        build_wordpiece_nodes(b, self.tokenizer, text, tokens, lengths)
        return FrontEndValues()

    def edge_cases(self):
        vocab = [w for w in self.featurizer.vocab if w.isalpha()] or ["word"]
        long_words = " ".join(
            vocab[(i * 7919) % len(vocab)] for i in range((self.tokenizer.max_length or 64) + 7)
        )
        return [
            *EDGE_CASES,
            long_words,  # truncated: [CLS] + max_length - 2 pieces + [SEP]
            " ".join(["."] * ((self.tokenizer.max_length or 64) + 3)),
            "[CLS] [SEP] [PAD] [UNK] [MASK] ##ing a##b",  # special tokens as text are text
            "a" * (self.tokenizer.max_input_chars_per_word + 1)
            + " "
            + "b" * self.tokenizer.max_input_chars_per_word,
            "naïve café résumé Ångström Øre Ħ ł ß ﬁ ǅ Ⅻ ①",  # accents, ligatures, compatibility forms
            "北京大学 東京 豈 更 𠀀 一丁 ㄅ ぁ ァ 가각 ᄀ",  # CJK (+ compatibility ideographs), kana, Hangul
            "zero\u200bwidth soft\u00adhyphen joiner\u200d bidi\u202e mark\u0301\u0301 \ufeffbom \x00nul \ufffd",
            "wordwithunknown☃piece xyz☃ ☃ 🙂smile",  # a word WordPiece cannot cover -> one [UNK]
        ]

    def metadata(self, run_dir):
        return {
            "tokenizer": self.tokenizer.description,
            "max_length": json.dumps(self.tokenizer.max_length),
            "requires_onnxruntime_extensions": "true",
        }

    @property
    def description(self) -> str:
        return (
            "Tokenization runs in the graph (needs onnxruntime-extensions: "
            "SessionOptions.register_custom_ops_library(onnxruntime_extensions.get_library_path())): "
            + self.tokenizer.description
        )

    def _model(self, build, outputs: list[tuple[str, int, int]]) -> onnx.ModelProto:
        from nlpkit.export.wordpiece_graph import CONTRIB

        b = GraphBuilder("nlpkit/")
        names = build(b)
        graph = helper.make_graph(
            b.nodes,
            "nlpkit_front_end",
            [G.string_input("text")],
            [helper.make_tensor_value_info(n(names), t, [f"d{i}" for i in range(r)]) for n, t, r in outputs],
            initializer=b.initializers,
        )
        model = helper.make_model(graph, opset_imports=[*opset_imports(), helper.make_opsetid(CONTRIB, 1)])
        model.ir_version = 9
        return model

    def ids_model(self) -> onnx.ModelProto:
        """The featurizer part of the graph alone (same builder): ``tokens``, ``lengths``."""
        from nlpkit.export.wordpiece_graph import build_wordpiece_nodes

        outputs = [(lambda _: "tokens", TensorProto.INT64, 2), (lambda _: "lengths", TensorProto.INT64, 1)]
        return self._model(
            lambda b: build_wordpiece_nodes(b, self.tokenizer, "text", "tokens", "lengths"), outputs
        )

    def words_model(self) -> onnx.ModelProto:
        """Its normalization and pre-tokenization alone (same builder): ``words`` ``[B, W]``."""
        from nlpkit.export.wordpiece_graph import build_word_nodes

        def build(b):
            return b.op("Identity", [build_word_nodes(b, self.tokenizer, "text")], outputs=["words"])

        return self._model(build, [(lambda _: "words", TensorProto.STRING, 2)])

    def checks(self, model, reads, split, texts, edge, timed):
        groups = {split: texts, "edge_cases": edge, "vocabulary": list(self.featurizer.vocab)}
        return {
            "tokenizer_all_codepoints": timed("tokenizer_all_codepoints", self.check_all_codepoints),
            "token_ids": timed(
                "token_ids",
                lambda: self.check_token_ids(G.session(self.ids_model()), groups, [1, MIXED_BATCH]),
            ),
        }

    def check_all_codepoints(self) -> dict:
        """Every Unicode scalar value in one text (``all_codepoints_text``): the graph's words (normalized
        and pre-tokenized, before WordPiece) == HF's normalize + pre-tokenize of that text."""
        from nlpkit.export.wordpiece_graph import (
            PAD_WORD,
            all_codepoints_text,
            codepoint_table,
            hf_words_of_all_codepoints,
        )

        spec = self.tokenizer
        expected = hf_words_of_all_codepoints(spec.normalizer_json, spec.pre_tokenizer_json)
        session = G.session(self.words_model())
        words = session.run(["words"], {"text": np.array([all_codepoints_text()], dtype=object)})[0][0]
        got = [str(w) for w in words if w != PAD_WORD]
        mismatch = next((i for i, (a, c) in enumerate(zip(expected, got)) if a != c), None)
        if mismatch is None and len(expected) != len(got):
            mismatch = min(len(expected), len(got))
        result = {
            "passed": mismatch is None,
            "characters": len(all_characters()),
            "words": len(expected),
            "table_entries": len(codepoint_table(spec.normalizer_json, spec.pre_tokenizer_json)),
        }
        if mismatch is not None:
            result["first_mismatch"] = {"index": mismatch, "hf": [w[:80] for w in expected[mismatch : mismatch + 3]],
                                        "onnx": [w[:80] for w in got[mismatch : mismatch + 3]]}  # fmt: skip
        return result

    def check_token_ids(self, session, groups: dict[str, list[str]], batch_sizes) -> dict:
        """Graph token ids (and ``[PAD]`` padding) == ``WordPieceFeaturizer.encode_batch``, per group and
        batch size (the vocabulary group in batches of 512)."""
        mismatches: list[dict] = []
        counts = {}
        pad = self.featurizer.pad_id
        for group, texts in groups.items():
            counts[group] = len(texts)
            expected = [f["tokens"].tolist() for f in self.featurizer.encode_batch(texts)]
            for batch_size in batch_sizes if group != "vocabulary" else [512]:
                offset = 0
                for tokens, lengths in G.run_batched(session, texts, batch_size, ["tokens", "lengths"]):
                    for row in range(tokens.shape[0]):
                        want, n = expected[offset + row], int(lengths[row])
                        got = tokens[row, :n].tolist()
                        if got != want or not bool(np.all(tokens[row, n:] == pad)):
                            mismatches.append({"group": group, "batch_size": batch_size,
                                               "text": texts[offset + row][:200], "hf_ids": want[:40],
                                               "onnx_ids": tokens[row].tolist()[:40]})  # fmt: skip
                    offset += tokens.shape[0]
        return check_result(mismatches, counts, batch_sizes)


class WordPieceWordFrontEnd(WordPieceFrontEnd):
    """``featurizer=wordpiece`` in a word-level task: ``text [B]`` -> whitespace words (as
    :class:`WordFrontEnd` splits them), each word WordPiece'd on its own, ``tokens [B, T]`` (``[CLS]
    pieces [SEP]``), ``lengths [B]``, ``word_starts [B, W]`` (each word's first piece) and ``word_lengths
    [B]`` (the words not cut by ``max_length``), as ``WordPieceFeaturizer.encode_batch`` of
    ``text.split()`` (:func:`nlpkit.export.wordpiece_graph.build_word_alignment_nodes`). A word past the
    cut is answered with the outside tag; a text without words gets "" and zeros, as the predictors."""

    kind = "wordpiece_words"
    provides = ("tokens", "lengths", "word_starts", "word_lengths")
    counts_tokens = True

    def build(self, b, text, reads, suffix=""):
        from nlpkit.export.wordpiece_graph import build_word_alignment_nodes

        self.check_reads(reads)
        names = build_word_alignment_nodes(b, self.tokenizer, text)
        for name, value in [
            ("tokens", names.pieces),
            ("lengths", names.lengths),
            ("word_starts", names.word_starts),
            ("word_lengths", names.word_lengths),
        ]:
            if name in reads:
                b.op("Identity", [value], outputs=[G.MODEL_PREFIX + name + suffix])
        return FrontEndValues(tokens=names.tokens, mask=names.mask, count=names.count, scored=names.scored)

    def edge_cases(self):
        vocab = [w for w in self.featurizer.vocab if w.isalpha()] or ["word"]
        many_words = " ".join(
            vocab[(i * 7919) % len(vocab)] for i in range((self.tokenizer.max_length or 64) + 9)
        )
        return [
            *super().edge_cases(),
            many_words,  # more words than pieces kept: the words past the cut are answered O
            "don't U.S.A. e-mail (parens) $5.00 3:30pm #tag @user",  # punctuation inside a word
            "\u200b \x00 \ufffd a\x00b soft\u00ad",  # words the normalizer empties: one [UNK] each
            "☃☃☃ ☃x x☃ ☃",  # words that are all [UNK]
            "unbelievably antidisestablishmentarianism Donaudampfschifffahrt",  # several pieces each
        ]

    @property
    def description(self) -> str:
        return (
            "Input 'text': string [batch] of raw UTF-8, split on whitespace like str.split(); each word "
            "WordPiece'd in the graph (needs onnxruntime-extensions: SessionOptions."
            "register_custom_ops_library(onnxruntime_extensions.get_library_path())), read at its first "
            "piece: " + self.tokenizer.description
        )

    def features_model(self) -> onnx.ModelProto:
        """The featurizer part of the graph alone (same builder): pieces, lengths, word starts and
        lengths, the word count."""
        from nlpkit.export.wordpiece_graph import build_word_alignment_nodes

        keys = ("pieces", "lengths", "word_starts", "word_lengths", "count")

        def build(b):
            names = build_word_alignment_nodes(b, self.tokenizer, "text")
            for key in keys:
                b.op("Identity", [getattr(names, key)], outputs=[key])
            return names

        ranks = {"pieces": 2, "word_starts": 2}
        outputs = [(lambda _, k=k: k, TensorProto.INT64, ranks.get(k, 1)) for k in keys]
        return self._model(build, outputs)

    def checks(self, model, reads, split, texts, edge, timed):
        vocab = [w for w in self.featurizer.vocab]
        groups = {split: texts, "edge_cases": edge, "vocabulary": [" ".join(vocab[i : i + 50]) for i in range(0, len(vocab), 50)]}  # fmt: skip
        return {
            "tokenizer_all_codepoints": timed("tokenizer_all_codepoints", self.check_all_codepoints),
            "word_pieces": timed(
                "word_pieces",
                lambda: self.check_word_pieces(G.session(self.features_model()), groups, [1, MIXED_BATCH]),
            ),
        }

    def check_word_pieces(self, session, groups: dict[str, list[str]], batch_sizes) -> dict:
        """Graph pieces (``[PAD]``-padded), word starts (0-padded) and word lengths ==
        ``WordPieceFeaturizer.encode_batch`` of each text's ``text.split()``, per group and batch size."""
        mismatches: list[dict] = []
        counts = {}
        pad = self.featurizer.pad_id
        outputs = ["pieces", "lengths", "word_starts", "word_lengths", "count"]
        for group, texts in groups.items():
            counts[group] = len(texts)
            expected = self.featurizer.encode_batch([text.split() for text in texts]) if texts else []
            for batch_size in batch_sizes if group != "vocabulary" else [64]:
                offset = 0
                for pieces, lengths, starts, kept, count in G.run_batched(
                    session, texts, batch_size, outputs
                ):
                    for row in range(pieces.shape[0]):
                        want, n, words = expected[offset + row], int(lengths[row]), int(count[row])
                        got = {
                            "tokens": pieces[row, :n].tolist(),
                            "word_starts": starts[row, :words].tolist(),
                            "word_lengths": int(kept[row]),
                        }
                        wanted = {
                            "tokens": want["tokens"].tolist(),
                            "word_starts": want["word_starts"].tolist(),
                            "word_lengths": max(int(want["word_lengths"]), 1),  # the graph's floor
                        }
                        padded = bool(np.all(pieces[row, n:] == pad)) and not starts[row, words:].any()
                        if got != wanted or not padded:
                            field = next((k for k in got if got[k] != wanted[k]), "padding")
                            mismatches.append({"group": group, "batch_size": batch_size, "field": field,
                                               "text": texts[offset + row][:200], "python": str(wanted.get(field, ""))[:300],
                                               "onnx": str(got.get(field, ""))[:300]})  # fmt: skip
                    offset += pieces.shape[0]
        return check_result(mismatches, counts, batch_sizes)


# ------------------------------------------------------------------------------------ registry
#: featurizer kind -> its front end (``wordpiece_words``: ``featurizer=wordpiece`` in a word-level task)
FRONT_ENDS: dict[str, type[FrontEnd]] = {
    "subword": SubwordFrontEnd,
    "ngram": NgramFrontEnd,
    "word": WordFrontEnd,
    "wordpiece": WordPieceFrontEnd,
    "wordpiece_words": WordPieceWordFrontEnd,
}


def read_front_end_spec(kind: str, vocab_dir: Path):
    """What the front end of featurizer ``kind`` reproduces, read from the run's ``tokenizer.json``
    (refusing what it cannot reproduce, before any heavy work)."""
    from nlpkit.export.text_graph import read_tokenizer_spec

    if kind not in ("wordpiece", "wordpiece_words"):
        return read_tokenizer_spec(Path(vocab_dir) / TOKENIZER_FILE)
    from nlpkit.data.featurizers.wordpiece import PRETRAINED_FILE
    from nlpkit.export.wordpiece_graph import read_wordpiece_spec

    try:
        pad_token = json.loads((Path(vocab_dir) / PRETRAINED_FILE).read_text(encoding="utf-8"))["pad_token"]
    except (OSError, ValueError, KeyError) as err:
        raise ExportError(f"{Path(vocab_dir) / PRETRAINED_FILE}: unreadable ({err})") from err
    return read_wordpiece_spec(Path(vocab_dir) / TOKENIZER_FILE, pad_token)


def front_end(kind: str, tokenizer: TokenizerSpec, featurizer: Any, vocab_dir: Path) -> FrontEnd:
    """The front end of featurizer ``kind`` over a run's vocabularies in ``vocab_dir`` (``tokenizer`` is
    ``read_tokenizer_spec`` of its ``tokenizer.json``, read first: it refuses before heavy work)."""
    if kind not in FRONT_ENDS:
        raise ExportError(
            f"refused: no ONNX front end for featurizer kind {kind!r} (known: {', '.join(FRONT_ENDS)})"
        )
    return FRONT_ENDS[kind](tokenizer, featurizer, vocab_dir)


def timer(seconds: dict[str, float]) -> Timer:
    """A :data:`Timer` recording into ``seconds``."""

    def timed(name: str, step: Callable[[], Any]) -> Any:
        tick = time.perf_counter()
        try:
            return step()
        finally:
            seconds[name] = round(time.perf_counter() - tick, 3)

    return timed
