"""The word-level featurizer as standard ONNX ops: raw text in; tokens, word ids, characters, casing out.

Reproduces ``nlpkit.data.featurizers.WordFeaturizer`` applied to ``text.split()`` (what the tagging and
intent-slot predictors do) with onnxruntime built-in ops only:

=================================  ===============================================================
PyTorch side                       ONNX
=================================  ===============================================================
``text.split()``                   ``com.microsoft.Tokenizer`` with ``[^S]+``, S = every character
                                   for which Python's ``str.isspace`` holds
word id: normalize + lookup,       ``StringNormalizer`` (lowercase, when the tokenizer lowercases),
``<pad>`` -> ``<unk>``             ``ai.onnx.ml.LabelEncoder`` (default ``<unk>``), as in
                                   :mod:`nlpkit.export.text_graph`
character ids (first               ``Tokenizer`` with ``.`` on each token (one piece per code point),
``max_word_length`` characters)    ``Slice``, ``LabelEncoder`` (default: the character ``<unk>``)
casing class (``word_shape``)      ``RegexFullMatch`` per class, the character classes read off
                                   Python's own ``isdigit``/``isalnum``/``isalpha``/``islower``/
                                   ``isupper`` over every code point, then ``Where``
=================================  ===============================================================

Every value the model sees is checked against the Python featurizer by the parity gate
(the word front end of :mod:`nlpkit.export.front_ends`) before a file is written.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from nlpkit.export.text_graph import (
    LOCALE,
    PAD_PIECE,
    ExportError,
    GraphBuilder,
    TokenizerSpec,
    _char_class,
    all_characters,
    lookup_table,
    lowercase_divergence,
)

#: the character Tokenizer's padding piece: longer than one code point, so never a real character
CHAR_PAD_PIECE = "<pad>"


@dataclass
class WordFeatureSpec:
    """What the graph reproduces: the word tokenizer, the character vocabulary and its truncation."""

    tokenizer: TokenizerSpec
    chars: list[str]  # CharVocab.chars: character i has id i + 2 (0 = padding, 1 = unknown)
    max_word_length: int


@dataclass
class WordFeatureNames:
    """Graph value names the front end writes."""

    tokens: str  # string [B, T]: the text's tokens, "" at padding
    count: str  # int64 [B]: real tokens per text (0 for an empty text)
    lengths: str  # int64 [B]: max(count, 1) — the model always sees at least one position
    mask: str  # bool [B, T]: true at real tokens
    words: str  # int64 [B, T]: word ids, pad id at padding
    chars: str  # int64 [B, T, C]: character ids, 0 at padding
    shapes: str  # int64 [B, T]: casing class ids, 0 at padding


# ------------------------------------------------------------------------- character classes
@functools.lru_cache(maxsize=1)
def _python_classes() -> dict[str, str]:
    """re2 character classes (without brackets) built from Python's own predicates on every code point."""
    text = all_characters()
    groups: dict[str, list[int]] = {"space": [], "digit": [], "alnum": [], "alpha": [], "notlower": []}
    groups.update({"notupper": [], "upper": []})
    for ch in text:
        code = ord(ch)
        if ch.isspace():
            groups["space"].append(code)
        if ch.isdigit():
            groups["digit"].append(code)
        if ch.isalnum():
            groups["alnum"].append(code)
        if ch.isalpha():
            groups["alpha"].append(code)
            if not ch.islower():
                groups["notlower"].append(code)
            if ch.isupper():
                groups["upper"].append(code)
            else:
                groups["notupper"].append(code)
    return {name: _char_class(codes) for name, codes in groups.items()}


def split_on_python_whitespace() -> str:
    """``tokenexp`` splitting exactly like ``str.split()`` with no argument."""
    return f"[^{_python_classes()['space']}]+"


def shape_patterns() -> list[tuple[str, str]]:
    """``(shape name, full-match regex)`` in ``word_shape``'s order of precedence (first match wins)."""
    c = _python_classes()
    return [
        ("numeric", f"[{c['digit']}]+"),
        ("has_digit", f"(?s).*[{c['digit']}].*"),
        ("punct", f"[^{c['alnum']}]*"),
        ("other", f"[^{c['alpha']}]*"),
        ("lower", f"[^{c['notlower']}]*"),
        ("upper", f"[^{c['notupper']}]*"),
        ("title", f"[^{c['alpha']}]*[{c['upper']}][^{c['notlower']}]*"),
    ]


# ----------------------------------------------------------------------------------- nodes
def word_lookup_table(spec: TokenizerSpec, divergent: dict[str, str]) -> tuple[list[str], list[int]]:
    """Keys/values for the word ``LabelEncoder``: ``lookup_table`` with the pad token's spellings sent
    to ``<unk>`` (``WordEncoder`` treats a literal ``<pad>`` token in the data as an unknown word)."""
    keys, values = lookup_table(spec, divergent)
    return keys, [spec.unk_id if v == spec.pad_id else v for v in values]


def build_whitespace_tokens(b: GraphBuilder, text: str) -> tuple[str, str, str, str]:
    """``text [B]`` -> ``(tokens [B, T] string ("" at padding), mask [B, T] bool, count [B], lengths [B])``:
    ``text.split()``, ``lengths = max(count, 1)`` and ``T = max(lengths) >= 1``. The word-level front ends
    (this one's and the WordPiece word front end) split text this way."""
    i64 = np.int64
    pieces = b.op(
        "Tokenizer",
        [text],
        "pieces",
        domain="com.microsoft",
        mark=0,
        mincharnum=1,
        pad_value=PAD_PIECE,
        tokenexp=split_on_python_whitespace(),
    )  # [B, P], PAD_PIECE-padded; P may be 0
    batch = b.op("Slice", [b.op("Shape", [pieces]), b.const([0]), b.const([1])], "batch")
    pad_column = b.op("Expand", [b.const([[PAD_PIECE]]), b.op("Concat", [batch, b.const([1])], axis=0)])
    pieces = b.op("Concat", [pieces, pad_column], "pieces_col", axis=1)  # [B, P + 1]
    is_token = b.op("Not", [b.op("Equal", [pieces, b.const([PAD_PIECE])])], "is_token")
    count = b.op(
        "ReduceSum", [b.op("Cast", [is_token], to=TensorProto.INT64), b.const([1])], "count", keepdims=0
    )
    lengths = b.op("Max", [count, b.const(1, dtype=i64)], "lengths")
    steps = b.op("ReduceMax", [lengths], "steps", keepdims=1)  # [1] = T >= 1
    pieces = b.op("Slice", [pieces, b.const([0]), steps, b.const([1])], "pieces_t")  # [B, T]
    mask = b.op("Slice", [is_token, b.const([0]), steps, b.const([1])], "mask")  # [B, T]
    tokens = b.op("Where", [mask, pieces, b.const([""])], "tokens")  # [B, T], "" at padding
    return tokens, mask, count, lengths


def build_word_nodes(
    b: GraphBuilder, spec: WordFeatureSpec, text: str, chars: bool = True, shapes: bool = True
) -> WordFeatureNames:
    """Add the front end reading ``text [B]``; returns the names of what it computes. ``chars`` /
    ``shapes``: whether the model reads those features (the names are ``""`` when not built)."""
    tok = spec.tokenizer
    if tok.split_punctuation:
        raise ExportError(
            "refused: the word tokenizer splits punctuation (pre-tokenizer Whitespace); word-level tasks "
            "look tokens up whole (WhitespaceSplit)"
        )
    i64 = np.int64
    tokens, mask, count, lengths = build_whitespace_tokens(b, text)

    # word ids
    shape_bt = b.op("Shape", [tokens], "shape_bt")
    flat = b.op("Reshape", [tokens, b.const([-1])], "flat_tokens")  # [B*T]
    divergent = lowercase_divergence(tok.normalizer_json, tok.pre_tokenizer_json) if tok.lowercase else {}
    if tok.lowercase:
        flat = b.op("StringNormalizer", [flat], "lowered", case_change_action="LOWER", locale=LOCALE)
    keys, values = word_lookup_table(tok, divergent)
    ids = b.op(
        "LabelEncoder",
        [flat],
        "word_ids_flat",
        domain="ai.onnx.ml",
        keys_strings=keys,
        values_int64s=values,
        default_int64=tok.unk_id,
    )
    ids = b.op("Reshape", [ids, shape_bt], "word_ids_bt")
    words = b.op("Where", [mask, ids, b.const(tok.pad_id, dtype=i64)], "words")  # [B, T]

    names = WordFeatureNames(
        tokens=tokens, count=count, lengths=lengths, mask=mask, words=words, chars="", shapes=""
    )
    if chars:
        names.chars = _character_ids(b, spec, tokens, shape_bt)
    if shapes:
        names.shapes = _casing_classes(b, tokens, mask)
    return names


def _character_ids(b: GraphBuilder, spec: WordFeatureSpec, tokens: str, shape_bt: str) -> str:
    """``tokens [B, T]`` -> character ids ``[B, T, C]``: one piece per code point, the first
    ``max_word_length`` kept, ``C >= 1``, 0 at padding."""
    i64 = np.int64
    char_pieces = b.op(
        "Tokenizer",
        [tokens],
        "char_pieces",
        domain="com.microsoft",
        mark=0,
        mincharnum=1,
        pad_value=CHAR_PAD_PIECE,
        tokenexp="(?s).",
    )  # [B, T, W]; W = 0 when every token is ""
    char_pad = b.op(
        "Expand",
        [b.const([[[CHAR_PAD_PIECE]]]), b.op("Concat", [shape_bt, b.const([1])], axis=0)],
        "char_pad_column",
    )
    char_pieces = b.op("Concat", [char_pieces, char_pad], "char_pieces_col", axis=2)
    is_char = b.op("Not", [b.op("Equal", [char_pieces, b.const([CHAR_PAD_PIECE])])], "is_char")
    char_count = b.op(
        "ReduceSum", [b.op("Cast", [is_char], to=TensorProto.INT64), b.const([2])], "char_count", keepdims=0
    )
    width = b.op(
        "Max",
        [
            b.op(
                "ReduceMax", [b.op("Min", [char_count, b.const(spec.max_word_length, dtype=i64)])], keepdims=0
            ),
            b.const([1], dtype=i64),
        ],
        "width",
    )  # [1]
    char_pieces = b.op("Slice", [char_pieces, b.const([0]), width, b.const([2])], "char_pieces_w")
    char_keys = [*spec.chars, CHAR_PAD_PIECE]
    char_values = [i + 2 for i in range(len(spec.chars))] + [0]
    return b.op(
        "LabelEncoder",
        [char_pieces],
        "chars",
        domain="ai.onnx.ml",
        keys_strings=char_keys,
        values_int64s=char_values,
        default_int64=1,
    )  # [B, T, C]


def _casing_classes(b: GraphBuilder, tokens: str, mask: str) -> str:
    """``tokens [B, T]`` -> ``word_shape`` ids ``[B, T]``: the first pattern that fully matches."""
    from nlpkit.data.token_features import SHAPES

    shapes = b.const(np.int64(SHAPES.index("mixed")))
    for name, pattern in reversed(shape_patterns()):
        hit = b.op("RegexFullMatch", [tokens], f"is_{name}", pattern=pattern)
        shapes = b.op("Where", [hit, b.const(np.int64(SHAPES.index(name))), shapes], f"shape_{name}")
    return b.op("Where", [mask, shapes, b.const(np.int64(0))], "shapes")  # [B, T], 0 at padding
