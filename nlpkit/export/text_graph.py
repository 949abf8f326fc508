"""The word-level featurizer as standard ONNX ops: raw UTF-8 strings in, token ids and lengths out.

Reproduces ``nlpkit.data.featurizer.Featurizer.encode_batch`` with onnxruntime's built-in ops only
(no onnxruntime-extensions):

==========================  ==============================================================
HF ``tokenizers`` step      ONNX
==========================  ==============================================================
``Replace('İ','i')`` +      ``StringNormalizer(case_change_action=LOWER, locale=C.UTF-8)``;
``Lowercase``               characters onnxruntime leaves alone but HF lowercases (Unicode
                            versions differ) get extra vocabulary keys, see below
``Whitespace``              ``com.microsoft.Tokenizer`` with a regex ``[W]+|[^W S]+`` whose
                            classes W (HF ``\\w``) and S (HF ``\\s``) are read off HF itself
``WhitespaceSplit``         ``com.microsoft.Tokenizer`` with ``[^S]+``
``WordLevel`` lookup        ``ai.onnx.ml.LabelEncoder`` (default: ``<unk>`` id)
truncation (right)          ``Slice``
empty -> ``[<unk>]``, pad   int64 ``Where``/``Concat``/``Slice``
==========================  ==============================================================

Anything else in a ``tokenizer.json`` (NFC, other normalizers or pre-tokenizers, added tokens
matched in raw text, HF padding, left truncation) is refused with :class:`ExportError` rather than
exported with a different tokenization.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nlpkit.errors import ExportError

OPSET = 20  # StringConcat (multi-label names) needs 20
ML_OPSET = 3  # LabelEncoder-2: keys_strings / values_int64s / default_int64
MS_OPSET = 1
LOCALE = "C.UTF-8"  # the default en_US.UTF-8 is missing on bare Debian images
PAD_PIECE = " "  # Tokenizer's padding value: never a token, since tokens never contain whitespace
DOTTED_CAPITAL_I = "\u0130"
MAX_VARIANT_CHARS = 6  # vocabulary tokens with more divergent characters than this are refused


# ------------------------------------------------------------------------------------------- spec
@dataclass
class TokenizerSpec:
    """What the graph has to reproduce, read from (and checked against) a ``tokenizer.json``."""

    vocab: dict[str, int]
    unk_id: int
    pad_id: int
    lowercase: bool
    split_punctuation: bool
    max_length: int | None
    normalizer_json: str
    pre_tokenizer_json: str
    notes: list[str] = field(default_factory=list)

    @property
    def description(self) -> str:
        steps = (["Replace(İ->i)", "Lowercase"] if self.lowercase else []) + [
            "Whitespace" if self.split_punctuation else "WhitespaceSplit",
            f"WordLevel({len(self.vocab)})",
            f"truncate({self.max_length})" if self.max_length else "no truncation",
        ]
        return " -> ".join(steps)


def _flatten_normalizer(node) -> list[dict]:
    if node is None:
        return []
    if node.get("type") == "Sequence":
        return [step for child in node.get("normalizers", []) for step in _flatten_normalizer(child)]
    return [node]


def _is_dotted_i_replace(step: dict) -> bool:
    pattern = step.get("pattern") or {}
    return (
        step.get("type") == "Replace"
        and pattern.get("String") == DOTTED_CAPITAL_I
        and step.get("content") == "i"
    )


def read_tokenizer_spec(
    path: str | Path, pad_token: str = "<pad>", unk_token: str = "<unk>"
) -> TokenizerSpec:
    """Parse ``tokenizer.json`` and refuse whatever the graph cannot reproduce exactly."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ExportError(f"{path}: cannot read the tokenizer ({err})") from err
    where = f"{path}"
    retrain = "retrain the run with the current nlpkit featurizer, which only uses exportable steps"

    model = spec.get("model") or {}
    if model.get("type") != "WordLevel":
        raise ExportError(
            f"{where}: tokenizer model {model.get('type')!r} is not supported by the ONNX export "
            "(only WordLevel, i.e. nlpkit's word featurizer)"
        )
    vocab = dict(model.get("vocab") or {})
    if model.get("unk_token") != unk_token or unk_token not in vocab or pad_token not in vocab:
        raise ExportError(f"{where}: vocabulary lacks {pad_token!r}/{unk_token!r}: not an nlpkit tokenizer")
    if len(set(vocab.values())) != len(vocab):
        raise ExportError(f"{where}: vocabulary maps several tokens to one id")

    added = [token.get("content") for token in spec.get("added_tokens") or []]
    if added:
        raise ExportError(
            f"{where}: refused: added tokens {added[:5]} — HF cuts them out of the raw text before "
            f"normalizing (e.g. 'a{added[0]}b' -> a, {added[0]}, b), which no standard ONNX op reproduces; {retrain}"
        )

    steps = _flatten_normalizer(spec.get("normalizer"))
    types = [step.get("type") for step in steps]
    if types == []:
        lowercase = False
    elif types == ["Lowercase"]:
        raise ExportError(
            f"{where}: refused: Lowercase without the Replace('İ','i') step — HF lowercases 'İ' (U+0130) to "
            "'i' + U+0307 but onnxruntime's StringNormalizer to 'i', so 'İstanbul' would tokenize differently; "
            f"{retrain}"
        )
    elif len(steps) == 2 and _is_dotted_i_replace(steps[0]) and types[1] == "Lowercase":
        lowercase = True
    else:
        unsupported = [t for t in types if t not in ("Lowercase", "Replace")] or types
        hint = (
            " (no ONNX op performs Unicode composition)"
            if any(t and t.startswith("NF") for t in types)
            else ""
        )
        raise ExportError(
            f"{where}: refused: normalizer steps {types} cannot be reproduced in the ONNX graph; "
            f"{unsupported[0]!r} is not supported{hint}. Exportable: none, or Replace('İ','i') + Lowercase; {retrain}"
        )

    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") not in ("Whitespace", "WhitespaceSplit"):
        raise ExportError(
            f"{where}: refused: pre-tokenizer {pre.get('type')!r} is not supported by the ONNX export "
            "(only Whitespace and WhitespaceSplit)"
        )
    if spec.get("padding") is not None:
        raise ExportError(
            f"{where}: refused: HF padding is enabled in the tokenizer; nlpkit pads in the model"
        )
    if spec.get("post_processor") is not None:
        raise ExportError(f"{where}: refused: a post-processor is set; nlpkit tokenizers have none")
    truncation = spec.get("truncation")
    max_length = None
    if truncation is not None:
        if truncation.get("direction", "Right") != "Right":
            raise ExportError(
                f"{where}: refused: truncation direction {truncation.get('direction')!r} (only Right)"
            )
        max_length = int(truncation["max_length"])
        if max_length < 1:
            raise ExportError(f"{where}: truncation max_length {max_length} < 1")
    return TokenizerSpec(
        vocab=vocab,
        unk_id=int(vocab[unk_token]),
        pad_id=int(vocab[pad_token]),
        lowercase=lowercase,
        split_punctuation=pre["type"] == "Whitespace",
        max_length=max_length,
        normalizer_json=json.dumps(spec.get("normalizer"), sort_keys=True),
        pre_tokenizer_json=json.dumps(pre, sort_keys=True),
    )


# ----------------------------------------------------------------------------- character tables
ALL_CODEPOINTS = tuple(c for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)


@functools.lru_cache(maxsize=1)
def all_characters() -> str:
    return "".join(map(chr, ALL_CODEPOINTS))


def codepoint_ranges(codepoints) -> list[tuple[int, int]]:
    """Sorted code points as inclusive ``(first, last)`` runs of consecutive values."""
    out: list[tuple[int, int]] = []
    for c in sorted(codepoints):
        if out and c == out[-1][1] + 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


def _char_class(codepoints: list[int]) -> str:
    return "".join(
        f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in codepoint_ranges(codepoints)
    )


@functools.lru_cache(maxsize=2)
def character_classes(pre_tokenizer_json: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(word, space)`` codepoints as the installed HF ``tokenizers`` classifies them.

    HF ``Whitespace`` is ``\\w+|[^\\w\\s]+`` with Rust's Unicode classes; re2's ``\\w``/``\\s`` are ASCII.
    Pre-tokenizing one string holding every codepoint gives runs of one class each: characters no
    run covers are whitespace, and each run's first character, tried after an ``a``, tells word from
    punctuation. The result matches the installed ``tokenizers`` version by construction.
    """
    from tokenizers import pre_tokenizers

    text = all_characters()
    pre = pre_tokenizers.Whitespace()
    runs = pre.pre_tokenize_str(text)
    covered = np.zeros(len(text), dtype=bool)
    word: list[int] = []
    for _, (start, end) in runs:
        covered[start:end] = True
        if len(pre.pre_tokenize_str("a" + text[start])) == 1:
            word.extend(ord(ch) for ch in text[start:end])
    space = [ord(text[i]) for i in np.flatnonzero(~covered)]
    return tuple(word), tuple(space)


def split_regex(
    split_punctuation: bool, pre_tokenizer_json: str, divergent: dict[str, str] | None = None
) -> str:
    """The ``tokenexp`` for ``com.microsoft.Tokenizer``. A character in ``divergent`` (left as is by
    onnxruntime, lowercased by HF) gets the class of HF's lowercase, the character HF splits on."""
    word, space = character_classes(pre_tokenizer_json)
    word_set, space_set = set(word), set(space)
    for onnx_char, hf_char in (divergent or {}).items():
        o, h = ord(onnx_char), ord(hf_char)
        word_set.discard(o)
        space_set.discard(o)
        if h in word_set:
            word_set.add(o)
        elif h in space_set:
            space_set.add(o)
    space_class = _char_class(list(space_set))
    if not split_punctuation:
        return f"[^{space_class}]+"
    word_class = _char_class(list(word_set))
    return f"[{word_class}]+|[^{word_class}{space_class}]+"


def onnx_lowercase(texts: list[str]) -> list[str]:
    """onnxruntime's ``StringNormalizer`` lowercasing, run on this machine's onnxruntime."""
    import onnxruntime as ort

    graph = helper.make_graph(
        [helper.make_node("StringNormalizer", ["x"], ["y"], case_change_action="LOWER", locale=LOCALE)],
        "lower",
        [helper.make_tensor_value_info("x", TensorProto.STRING, [None])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(session.run(None, {"x": np.array(texts, dtype=object)})[0])


@functools.lru_cache(maxsize=2)
def lowercase_divergence(normalizer_json: str, pre_tokenizer_json: str) -> dict[str, str]:
    """``{onnx_char: hf_char}`` for every character the two lowercasings map differently.

    Exportable only when each such character is left unchanged by onnxruntime, maps to a single
    character in HF and is never produced by HF normalization (so a graph token holding it can only
    come from that input character). The split regex then gives it the class of HF's lowercase
    (:func:`split_regex`), the graph's token differs from HF's exactly by these substitutions, and
    the vocabulary lookup gets a key for each variant. Raises :class:`ExportError` otherwise.
    (With onnxruntime 1.32 on Debian: the 55 characters Unicode 16 gave a lowercase.)
    """
    hf_normalizer = _hf_normalizer(json.loads(normalizer_json))
    chars = list(all_characters())
    joined = hf_normalizer.normalize_str("".join(chars))
    hf = list(joined) if len(joined) == len(chars) else [hf_normalizer.normalize_str(ch) for ch in chars]
    ort_lower = list(onnx_lowercase(["".join(chars)])[0])
    if len(ort_lower) != len(chars):
        ort_lower = onnx_lowercase(chars)
    hf_image = set(hf)
    divergent: dict[str, str] = {}
    for src, h, o in zip(chars, hf, ort_lower):
        if h == o:
            continue
        ok = len(h) == 1 and o == src and o not in hf_image
        if not ok:
            raise ExportError(
                f"refused: lowercasing of {src!r} (U+{ord(src):04X}) differs — HF gives {h!r}, onnxruntime "
                f"{o!r} — in a way the graph cannot compensate; the featurizer's normalizer is not exportable"
            )
        divergent[o] = h
    return divergent


def hf_front_end(normalizer_json: str, pre_tokenizer_json: str):
    """A HF tokenizer holding only these normalizer and pre-tokenizer (read from their JSON)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    tokenizer = Tokenizer(WordLevel({"x": 0}, unk_token="x"))
    spec = json.loads(tokenizer.to_str())
    spec["normalizer"] = json.loads(normalizer_json)
    spec["pre_tokenizer"] = json.loads(pre_tokenizer_json)
    return Tokenizer.from_str(json.dumps(spec))


def _hf_normalizer(node):
    return hf_front_end(json.dumps(node), json.dumps(None)).normalizer or _Identity()


class _Identity:
    @staticmethod
    def normalize_str(text: str) -> str:
        return text


def lookup_table(spec: TokenizerSpec, divergent: dict[str, str]) -> tuple[list[str], list[int]]:
    """LabelEncoder keys and values: the vocabulary, each token's spellings as onnxruntime lowercases
    them (see :func:`lowercase_divergence`), and the padding piece mapped to -1."""
    back: dict[str, list[str]] = {}
    for onnx_char, hf_char in divergent.items():
        back.setdefault(hf_char, []).append(onnx_char)
    keys: dict[str, int] = {}
    for token, token_id in spec.vocab.items():
        keys[token] = token_id
        positions = [i for i, ch in enumerate(token) if ch in back]
        if not positions:
            continue
        if len(positions) > MAX_VARIANT_CHARS:
            raise ExportError(f"refused: vocabulary token {token!r} has too many case-divergent characters")
        variants = [token]
        for i in positions:
            variants = [v[:i] + alt + v[i + 1 :] for v in variants for alt in [v[i], *back[v[i]]]]
        for variant in variants:
            if variant in keys and keys[variant] != token_id:
                raise ExportError(f"refused: vocabulary spellings collide at {variant!r}")
            keys[variant] = token_id
    if PAD_PIECE in keys:
        raise ExportError(f"refused: the vocabulary holds {PAD_PIECE!r}, used as the graph's padding piece")
    keys[PAD_PIECE] = -1
    return list(keys), list(keys.values())


# -------------------------------------------------------------------------------------- builder
class GraphBuilder:
    """Tiny helper: unique names, constants as initializers, nodes in order."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def const(self, value, hint: str = "const", dtype=None) -> str:
        name = self.name(hint)
        array = np.array(value, dtype=dtype if dtype is not None else None)
        if array.dtype.kind in "UO":
            array = array.astype(object)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def op(
        self,
        op_type: str,
        inputs: list[str],
        hint: str | None = None,
        outputs: list[str] | None = None,
        domain: str = "",
        **attrs,
    ) -> str:
        outputs = outputs or [self.name(hint or op_type.lower())]
        self.nodes.append(
            helper.make_node(op_type, inputs, outputs, name=self.name(op_type), domain=domain, **attrs)
        )
        return outputs[0]

    def names_of(
        self, ids: str, names: list[str], hint: str | None = None, outputs: list[str] | None = None
    ) -> str:
        """int64 class ids -> their names (``LabelEncoder``; '' for an id out of range)."""
        return self.op(
            "LabelEncoder",
            [ids],
            hint or "names",
            outputs=outputs,
            domain="ai.onnx.ml",
            keys_int64s=list(range(len(names))),
            values_strings=list(names),
            default_string="",
        )

    def nodes_out(
        self, op_type: str, inputs: list[str], count: int, hint: str, domain: str = "", **attrs
    ) -> list[str]:
        """A node with ``count`` outputs; returns their names."""
        outputs = [self.name(f"{hint}_out{i}") for i in range(count)]
        self.op(op_type, inputs, hint, outputs=outputs, domain=domain, **attrs)
        return outputs


def build_text_nodes(
    builder: GraphBuilder,
    spec: TokenizerSpec,
    text: str,
    tokens_out: str,
    lengths_out: str,
) -> dict[str, str]:
    """Add the featurizer's nodes: ``text [N]`` string -> ``tokens_out [N, T]`` int64 (right-padded with
    the pad id, ``T`` = longest encoding) and ``lengths_out [N]`` int64. Returns debug value names."""
    b = builder
    divergent = lowercase_divergence(spec.normalizer_json, spec.pre_tokenizer_json) if spec.lowercase else {}
    normalized = (
        b.op("StringNormalizer", [text], "normalized", case_change_action="LOWER", locale=LOCALE)
        if spec.lowercase
        else text
    )
    pieces = b.op(
        "Tokenizer",
        [normalized],
        "pieces",
        domain="com.microsoft",
        mark=0,
        mincharnum=1,
        pad_value=PAD_PIECE,
        tokenexp=split_regex(spec.split_punctuation, spec.pre_tokenizer_json, divergent),
    )  # [N, P] strings, PAD_PIECE-padded; P may be 0
    if spec.max_length is not None:
        pieces_kept = b.op(
            "Slice", [pieces, b.const([0]), b.const([spec.max_length]), b.const([1])], "truncated"
        )
    else:
        pieces_kept = pieces
    keys, values = lookup_table(spec, divergent)
    ids = b.op(
        "LabelEncoder",
        [pieces_kept],
        "ids",
        domain="ai.onnx.ml",
        keys_strings=keys,
        values_int64s=values,
        default_int64=spec.unk_id,
    )  # [N, P'] int64, -1 at padding
    # One extra padding column, so an all-empty batch still has a column to hold [<unk>].
    batch = b.op("Slice", [b.op("Shape", [ids]), b.const([0]), b.const([1])], "batch")
    column = b.op(
        "ConstantOfShape",
        [b.op("Concat", [batch, b.const([1])], axis=0)],
        "column",
        value=helper.make_tensor("v", TensorProto.INT64, [1], [-1]),
    )
    ids = b.op("Concat", [ids, column], "ids_col", axis=1)
    valid = b.op("GreaterOrEqual", [ids, b.const(0, dtype=np.int64)], "valid")
    count = b.op(
        "ReduceSum", [b.op("Cast", [valid], to=TensorProto.INT64), b.const([1])], "count", keepdims=0
    )
    lengths = b.op("Max", [count, b.const(1, dtype=np.int64)], outputs=[lengths_out])
    longest = b.op("ReduceMax", [lengths], "longest", keepdims=1)  # [1]
    ids = b.op("Slice", [ids, b.const([0]), longest, b.const([1])], "ids_trim")
    empty = b.op("Unsqueeze", [b.op("Equal", [count, b.const(0, dtype=np.int64)]), b.const([1])], "empty")
    first = b.op("Slice", [ids, b.const([0]), b.const([1]), b.const([1])], "first")
    first = b.op("Where", [empty, b.const(spec.unk_id, dtype=np.int64), first], "first_unk")
    rest = b.op("Slice", [ids, b.const([1]), b.const([np.iinfo(np.int64).max]), b.const([1])], "rest")
    ids = b.op("Concat", [first, rest], "ids_unk", axis=1)
    negative = b.op("Less", [ids, b.const(0, dtype=np.int64)], "is_pad")
    b.op("Where", [negative, b.const(spec.pad_id, dtype=np.int64), ids], outputs=[tokens_out])
    return {"pieces": pieces}


def opset_imports() -> list[onnx.OperatorSetIdProto]:
    return [
        helper.make_opsetid("", OPSET),
        helper.make_opsetid("ai.onnx.ml", ML_OPSET),
        helper.make_opsetid("com.microsoft", MS_OPSET),
    ]
