"""A pretrained checkpoint's WordPiece tokenizer (``featurizer=wordpiece``) as ONNX nodes.

Reproduces ``WordPieceFeaturizer.encode_batch`` (HF ``tokenizers``: ``BertNormalizer`` ->
``BertPreTokenizer`` -> ``WordPiece`` -> ``[CLS] $A [SEP]`` -> right truncation) in the graph:

===============================  ===================================================================
HF ``tokenizers`` step           ONNX
===============================  ===================================================================
``BertNormalizer`` (clean text,  one table over every code point, read off HF itself (each code point
CJK spacing, accent stripping,   normalized alone; each punctuation character of the result spaced
lowercasing) + the punctuation   out, whitespace made a space): ``com.microsoft.Tokenizer`` splits the
and whitespace split of          text into the characters the table changes and runs of the others,
``BertPreTokenizer``             ``ai.onnx.ml.LabelEncoder`` maps each changed one, ``StringJoin``
                                 (onnxruntime-extensions) joins them: words separated by spaces
words                            ``com.microsoft.Tokenizer`` ``[^ ]+`` -> ``[batch, words]``
``WordPiece``                    onnxruntime-extensions ``WordpieceTokenizer`` per word (greedy longest
                                 match, ``##`` continuation, ``max_input_chars_per_word``); a word it
                                 cannot cover gives its covered pieces + ``[UNK]``, which the graph
                                 turns into one ``[UNK]`` as HF does
piece ids                        ``ai.onnx.ml.LabelEncoder`` (the vocabulary)
truncation + ``[CLS]``/``[SEP]``  int64 ``ScatterND`` into a ``[batch, T]`` grid padded with ``[PAD]``
===============================  ===================================================================

Why a table rather than the extensions' ``BertTokenizer`` / ``BasicTokenizer`` ops: their normalization
differs from HF's on over a million code points (accent stripping, Unicode versions). The table is HF's
own answer for each code point, so the graph agrees with the installed ``tokenizers`` by construction,
and the export gate checks it on every code point anyway. (HF strips accents after a whole-string NFD;
per code point is the same except where canonical reordering moves a combining mark that is not a
nonspacing one: the gate's test split and edge cases cover real text.)

Computing the table normalizes all 1.1M code points with HF (seconds), so it is kept per process and on
disk (``NLPKIT_CACHE_DIR``, default ``~/.cache/nlpkit``), keyed by the normalizer and pre-tokenizer JSON
and the ``tokenizers`` version: it depends on nothing else (not on the vocabulary).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

from nlpkit.errors import ExportError
from nlpkit.export.text_graph import GraphBuilder, _char_class, all_characters

CONTRIB = "ai.onnx.contrib"  # onnxruntime-extensions' operator domain
KEEP = "<nlpkit:keep>"  # the table's default: "this piece is not changed" (no code point maps to it)
SEPARATOR = "\u2603"  # joins the code points for one HF call; normalizes to itself, made by no other
PAD_WORD = " "  # the word splitter's padding: WordpieceTokenizer gives no piece for it
WORD, PUNCT, SPACE = 0, 1, 2


@dataclass
class WordPieceSpec:
    """What the graph reproduces, read from (and checked against) a wordpiece run's ``tokenizer.json``."""

    vocab: dict[str, int]
    unk_token: str
    pad_id: int
    cls_id: int
    sep_id: int
    prefix: str
    max_input_chars_per_word: int
    max_length: int | None
    normalizer_json: str
    pre_tokenizer_json: str
    tokenizer_json: str
    notes: list[str] = field(default_factory=list)

    @property
    def unk_id(self) -> int:
        return self.vocab[self.unk_token]

    @property
    def description(self) -> str:
        return " -> ".join(
            [
                "BertNormalizer + BertPreTokenizer (per-code-point table)",
                f"WordPiece({len(self.vocab)}, '{self.prefix}')",
                "[CLS] $A [SEP]",
                f"truncate({self.max_length})" if self.max_length else "no truncation",
            ]
        )


def read_wordpiece_spec(path: str | Path, pad_token: str) -> WordPieceSpec:
    """Parse a wordpiece run's ``tokenizer.json``; refuse what the graph cannot reproduce."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ExportError(f"{path}: cannot read the tokenizer ({err})") from err
    return parse_wordpiece_spec(text, pad_token, str(path))


def parse_wordpiece_spec(text: str, pad_token: str, path: str = "tokenizer.json") -> WordPieceSpec:
    """:func:`read_wordpiece_spec` of a ``tokenizer.json``'s text (``path`` names it in errors): what a
    loaded ``WordPieceFeaturizer`` holds (``tokenizer.to_str()``) without a file."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise ExportError(f"{path}: cannot read the tokenizer ({err})") from err
    model = spec.get("model") or {}
    if model.get("type") != "WordPiece":
        raise ExportError(f"{path}: refused: tokenizer model {model.get('type')!r}, not WordPiece")
    vocab = {str(k): int(v) for k, v in (model.get("vocab") or {}).items()}
    unk = str(model.get("unk_token"))
    for token in (unk, pad_token, "[CLS]", "[SEP]"):
        if token not in vocab:
            raise ExportError(f"{path}: refused: the vocabulary has no {token!r}")
    if spec.get("added_tokens"):
        raise ExportError(
            f"{path}: refused: added tokens are matched in raw text, which the graph does not do"
        )
    normalizer = spec.get("normalizer") or {}
    if normalizer.get("type") != "BertNormalizer":
        raise ExportError(f"{path}: refused: normalizer {normalizer.get('type')!r} (only BertNormalizer)")
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") != "BertPreTokenizer":
        raise ExportError(f"{path}: refused: pre-tokenizer {pre.get('type')!r} (only BertPreTokenizer)")
    post = spec.get("post_processor") or {}
    single = post.get("single") or []
    template = [next(iter(step.values())).get("id") for step in single if isinstance(step, dict)]
    if post.get("type") == "TemplateProcessing" and template == ["[CLS]", "A", "[SEP]"]:
        pass
    elif post.get("type") != "BertProcessing":
        raise ExportError(f"{path}: refused: post-processor {post.get('type')!r} is not [CLS] $A [SEP]")
    if spec.get("padding") is not None:
        raise ExportError(f"{path}: refused: HF padding is on; nlpkit pads per batch")
    truncation = spec.get("truncation")
    max_length = None
    if truncation is not None:
        if truncation.get("direction", "Right") != "Right":
            raise ExportError(f"{path}: refused: truncation direction {truncation.get('direction')!r}")
        max_length = int(truncation["max_length"])
        if max_length < 3:
            raise ExportError(f"{path}: refused: truncation max_length {max_length} < 3")
    return WordPieceSpec(
        vocab=vocab,
        unk_token=unk,
        pad_id=vocab[pad_token],
        cls_id=vocab["[CLS]"],
        sep_id=vocab["[SEP]"],
        prefix=str(model.get("continuing_subword_prefix") or "##"),
        max_input_chars_per_word=int(model.get("max_input_chars_per_word") or 100),
        max_length=max_length,
        normalizer_json=json.dumps(normalizer, sort_keys=True),
        pre_tokenizer_json=json.dumps(pre, sort_keys=True),
        tokenizer_json=text,
    )


# ----------------------------------------------------------------------------------- the table
def _hf_front(normalizer_json: str, pre_tokenizer_json: str):
    from nlpkit.export.text_graph import hf_front_end

    return hf_front_end(normalizer_json, pre_tokenizer_json)


def _cache_file(kind: str, normalizer_json: str, pre_tokenizer_json: str) -> Path:
    import tokenizers

    key = hashlib.sha256(
        "\n".join([kind, normalizer_json, pre_tokenizer_json, tokenizers.__version__]).encode()
    ).hexdigest()[:24]
    root = Path(os.environ.get("NLPKIT_CACHE_DIR") or Path.home() / ".cache" / "nlpkit")
    return root / "wordpiece" / f"{kind}-{key}.json"


def _cached(kind: str, normalizer_json: str, pre_tokenizer_json: str, compute):
    """``compute()``'s JSON-able result, read from the disk cache when there (written when not)."""
    path = _cache_file(kind, normalizer_json, pre_tokenizer_json)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8") as tmp:
            json.dump(value, tmp, ensure_ascii=False)
        os.replace(tmp.name, path)
    except OSError:
        pass  # a read-only home: recompute next time
    return value


def _classes(chars: str, pre) -> dict[str, int]:
    """WORD / PUNCT / SPACE of each character of ``chars`` as HF's pre-tokenizer treats it: one call over
    them all gives runs; characters in no run are whitespace, runs longer than one are word characters,
    and a one-character run is a word character exactly when it stays joined to a following ``a``."""
    runs = pre.pre_tokenize_str(chars)
    classes = dict.fromkeys(chars, SPACE)
    for _, (start, end) in runs:
        if end - start > 1:
            for ch in chars[start:end]:
                classes[ch] = WORD
        else:
            ch = chars[start]
            classes[ch] = WORD if len(pre.pre_tokenize_str(ch + "a")) == 1 else PUNCT
    return classes


@functools.lru_cache(maxsize=2)
def _normalization(normalizer_json: str, pre_tokenizer_json: str) -> dict:
    """One HF normalization of every code point (``SEPARATOR`` between them) and what is read off it:

    * ``table``: ``{code point: its normalized, pre-split text}`` for every code point the two steps
      change: HF's normalization of that code point, each punctuation character spaced out, whitespace
      a space. Joining the images of a text's code points and splitting at spaces gives HF's words.
    * ``words``: HF's pre-tokenization of that normalized text: what the graph must split the text of
      every code point (``all_codepoints_text``) into (the separator is a word character, so most
      words are long runs of code points).
    """

    def compute() -> dict:
        tok = _hf_front(normalizer_json, pre_tokenizer_json)
        text = all_codepoints_text()
        if tok.normalizer.normalize_str(SEPARATOR) != SEPARATOR:
            raise ExportError(
                f"refused: the normalizer changes U+{ord(SEPARATOR):04X}, the table's separator"
            )
        normalized = tok.normalizer.normalize_str(text)
        parts = normalized.split(SEPARATOR)  # the text ends with a separator: one more, empty part
        chars = text[::2]
        if len(parts) != len(chars) + 1 or parts.pop():
            raise ExportError("refused: the normalizer makes the table's separator out of other code points")
        classes = _classes("".join(sorted(set(normalized))), tok.pre_tokenizer)
        table = {}
        for ch, image in zip(chars, parts):
            if image == ch and classes.get(ch) == WORD:
                continue
            table[ch] = "".join(
                f" {d} " if classes[d] == PUNCT else " " if classes[d] == SPACE else d for d in image
            )
        words = [piece for piece, _ in tok.pre_tokenizer.pre_tokenize_str(normalized)]
        return {"table": table, "words": words}

    return _cached("normalization", normalizer_json, pre_tokenizer_json, compute)


@functools.lru_cache(maxsize=1)
def all_codepoints_text() -> str:
    """Every Unicode scalar value but ``SEPARATOR``, each followed by ``SEPARATOR``."""
    return "".join(ch + SEPARATOR for ch in all_characters() if ch != SEPARATOR)


def codepoint_table(normalizer_json: str, pre_tokenizer_json: str) -> dict[str, str]:
    """See :func:`_normalization`."""
    return _normalization(normalizer_json, pre_tokenizer_json)["table"]


def hf_words_of_all_codepoints(normalizer_json: str, pre_tokenizer_json: str) -> list[str]:
    """See :func:`_normalization`."""
    return _normalization(normalizer_json, pre_tokenizer_json)["words"]


def split_table(table: dict[str, str]) -> tuple[list[str], list[str], dict[str, str]]:
    """The table as the graph applies it: the code points it removes and those it spaces out unchanged
    (a regex class each: ~140k private-use and format characters, ~80k punctuation and CJK ideographs),
    and the rest as a lookup (~15k entries: case, accents, whitespace)."""
    removed = [ch for ch, image in table.items() if image == ""]
    spaced = [ch for ch, image in table.items() if image == f" {ch} "]
    gone = set(removed) | set(spaced)
    return removed, spaced, {ch: image for ch, image in table.items() if ch not in gone}


# ---------------------------------------------------------------------------------- the nodes
@dataclass
class WordPieceNames:
    """Graph values of the WordPiece front end (the words and piece ids are debug outputs of the gate)."""

    tokens: str  # int64 [B, T]: [CLS] pieces [SEP], [PAD] after
    lengths: str  # int64 [B]
    words: str  # string [B, W]: the normalized, pre-tokenized words (PAD_WORD-padded)


def build_word_nodes(b: GraphBuilder, spec: WordPieceSpec, text: str) -> str:
    """``text [B]`` string -> HF's normalized, pre-tokenized words ``[B, W]`` (``PAD_WORD``-padded)."""
    removed, spaced, table = split_table(codepoint_table(spec.normalizer_json, spec.pre_tokenizer_json))
    i64 = functools.partial(b.const, dtype=np.int64)

    # 1. normalize + pre-split. The code points the table removes match nothing (dropped); those it spaces
    # out unchanged (punctuation, CJK) and those it maps otherwise are pieces of their own; runs of the
    # others are one piece each, kept as they are.
    r, s_, m = (_char_class([ord(ch) for ch in chars]) for chars in (removed, spaced, table))
    pieces = b.op(
        "Tokenizer",
        [text],
        "chars",
        domain="com.microsoft",
        mark=0,
        mincharnum=1,
        pad_value=PAD_WORD,
        tokenexp=f"[{s_}]|[{m}]|[^{r}{s_}{m}]+",
    )  # fmt: skip  [B, P]
    mapped = b.op("LabelEncoder", [pieces], "mapped", domain="ai.onnx.ml", keys_strings=list(table),
                  values_strings=list(table.values()), default_string=KEEP)  # fmt: skip
    space = b.const(np.array([" "], dtype=object))
    around = b.op("StringConcat", [b.op("StringConcat", [space, pieces], "left"), space], "spaced")
    is_spaced = b.op("RegexFullMatch", [pieces], "is_spaced", pattern=f"[{s_}]")
    keep = b.op("Equal", [mapped, b.const(np.array([KEEP], dtype=object))], "unchanged")
    normalized = b.op("Where", [is_spaced, around, b.op("Where", [keep, pieces, mapped])], "normalized")
    joined = b.op(
        "StringJoin", [normalized, b.const(np.array([""], dtype=object)), i64(1)], "joined", domain=CONTRIB
    )
    return b.op(
        "Tokenizer",
        [joined],
        "words",
        domain="com.microsoft",
        mark=0,
        mincharnum=1,
        pad_value=PAD_WORD,
        tokenexp="[^ ]+",
    )  # fmt: skip  [B, W]


@dataclass
class FlatPieces:
    """The WordPiece ids of a batch of texts, flat: piece ``k`` is ``values[k]``, the ``position[k]``-th
    piece of text ``row[k]``; ``per_text [B]`` pieces per text (before any truncation)."""

    values: str  # int64 [K]
    row: str  # int64 [K]
    position: str  # int64 [K]
    per_text: str  # int64 [B]
    batch: str  # int64 [1] = B
    words: str  # string [B, W]: the normalized, pre-tokenized words (PAD_WORD-padded)


def build_flat_pieces(b: GraphBuilder, spec: WordPieceSpec, text: str) -> FlatPieces:
    """``text [B]`` string -> the HF pieces of each text (normalize, pre-tokenize, WordPiece), flat."""
    i64 = functools.partial(b.const, dtype=np.int64)
    words = build_word_nodes(b, spec, text)

    # 2. WordPiece, one row per word: flat pieces [M] and each word's range [begin, end)
    batch = b.op("Slice", [b.op("Shape", [words]), i64([0]), i64([1])], "batch")  # [1]
    width = b.op("Slice", [b.op("Shape", [words]), i64([1]), i64([2])], "width")  # [1]
    flat_words = b.op("Reshape", [words, i64([-1])], "flat_words")  # [B*W]
    wp = b.nodes_out("WordpieceTokenizer", [flat_words, i64(np.zeros(0, dtype=np.int64))], 4, "wordpiece",
                     domain=CONTRIB, vocab=json.dumps(spec.vocab, ensure_ascii=False), suffix_indicator=spec.prefix,
                     unknown_token=spec.unk_token, max_input_chars_per_word=spec.max_input_chars_per_word)  # fmt: skip
    piece_text, _, begins, ends = wp  # [M], -, [B*W], [B*W]
    ids = b.op(
        "LabelEncoder",
        [piece_text],
        "piece_ids",
        domain="ai.onnx.ml",
        keys_strings=list(spec.vocab),
        values_int64s=list(spec.vocab.values()),
        default_int64=spec.unk_id,
    )  # fmt: skip  [M]

    # 3. a word holding any [UNK] piece is one [UNK] (HF), not its covered pieces + [UNK] (the op)
    is_unk = b.op("Cast", [b.op("Equal", [ids, i64(spec.unk_id)])], to=TensorProto.INT64)  # [M]
    prefix = b.op("Concat", [i64([0]), b.op("CumSum", [is_unk, i64(0)])], "unk_prefix", axis=0)  # [M+1]
    unk_in_word = b.op("Sub", [b.op("Gather", [prefix, ends]), b.op("Gather", [prefix, begins])])  # [B*W]
    bad = b.op("Greater", [unk_in_word, i64(0)], "bad_word")  # [B*W]
    count = b.op("Sub", [ends, begins], "pieces_per_word")
    count = b.op("Where", [bad, b.op("Min", [count, i64(1)]), count], "kept_per_word")  # [B*W]
    # the word of each flat piece: a 1 at each non-empty word's first piece, cumulated
    total = b.op("Shape", [ids])  # [1] = M
    starts = b.op(
        "ScatterElements",
        [
            b.op(
                "ConstantOfShape",
                [b.op("Add", [total, i64([1])])],
                value=helper.make_tensor("z", TensorProto.INT64, [1], [0]),
            ),
            begins,
            b.op("Cast", [b.op("Greater", [b.op("Sub", [ends, begins]), i64(0)])], to=TensorProto.INT64),
        ],
        "word_starts",
        axis=0,
        reduction="max",
    )  # fmt: skip  [M+1]
    nonempty = b.op(
        "Reshape", [b.op("NonZero", [b.op("Greater", [b.op("Sub", [ends, begins]), i64(0)])]), i64([-1])]
    )
    starts_m = b.op("Slice", [starts, i64([0]), total], "starts_m")  # [M]
    rank = b.op("Sub", [b.op("CumSum", [starts_m, i64(0)]), i64(1)], "word_rank")  # [M]
    word_of = b.op("Gather", [nonempty, rank], "word_of_piece")  # [M]
    offset = b.op(
        "Sub",
        [
            b.op("Range", [i64(0), b.op("Squeeze", [total, i64([0])]), i64(1)]),
            b.op("Gather", [begins, word_of]),
        ],
        "offset_in_word",
    )  # fmt: skip  [M]
    kept = b.op("Less", [offset, b.op("Gather", [count, word_of])], "kept_piece")  # [M]
    value = b.op("Where", [b.op("Gather", [bad, word_of]), i64(spec.unk_id), ids], "piece_value")  # [M]

    # 4. each text's kept pieces, in order: position = rank within its text
    index = b.op("Reshape", [b.op("NonZero", [kept]), i64([-1])], "kept_index")  # [K]
    values = b.op("Gather", [value, index], "kept_values")  # [K]
    divisor = b.op("Max", [width, i64([1])], "width_or_1")  # an all-empty batch has no words (and no pieces)
    row = b.op("Div", [b.op("Gather", [word_of, index]), divisor], "kept_row")  # [K] text of each piece
    per_word = b.op(
        "Reshape", [count, b.op("Concat", [batch, width], axis=0)], "per_word", allowzero=1
    )  # [B, W]
    per_text = b.op("ReduceSum", [per_word, i64([1])], "pieces_per_text", keepdims=0)  # fmt: skip  [B]
    first = b.op("Sub", [b.op("CumSum", [per_text, i64(0)]), per_text], "text_start")  # [B]
    position = b.op(
        "Sub",
        [
            b.op("Range", [i64(0), b.op("Squeeze", [b.op("Shape", [index]), i64([0])]), i64(1)]),
            b.op("Gather", [first, row]),
        ],
        "kept_position",
    )  # fmt: skip  [K]
    return FlatPieces(values, row, position, per_text, batch, words)


def build_wordpiece_nodes(
    b: GraphBuilder, spec: WordPieceSpec, text: str, tokens_out: str, lengths_out: str
) -> WordPieceNames:
    """``text [B]`` string -> ``tokens_out [B, T]`` int64, ``lengths_out [B]`` int64, as the featurizer."""
    i64 = functools.partial(b.const, dtype=np.int64)
    flat = build_flat_pieces(b, spec, text)
    values, row, position, per_text, batch = flat.values, flat.row, flat.position, flat.per_text, flat.batch
    limit = np.iinfo(np.int64).max if spec.max_length is None else spec.max_length - 2
    n_pieces = b.op("Min", [per_text, i64(limit)], "n_pieces")  # [B]
    fits = b.op("Reshape", [b.op("NonZero", [b.op("Less", [position, i64(limit)])]), i64([-1])])
    columns = b.op("Add", [b.op("Gather", [position, fits]), i64(1)], "columns")  # after [CLS]
    rows = b.op("Gather", [row, fits], "rows")

    # 5. the [B, T] grid: [CLS] pieces [SEP] [PAD]...
    steps = b.op(
        "Add", [b.op("ReduceMax", [b.op("Concat", [n_pieces, i64([0])], axis=0)], keepdims=1), i64([2])]
    )
    grid = b.op("ConstantOfShape", [b.op("Concat", [batch, steps], axis=0)],
                value=helper.make_tensor("pad", TensorProto.INT64, [1], [spec.pad_id]))  # fmt: skip
    where = b.op(
        "Concat", [b.op("Unsqueeze", [rows, i64([1])]), b.op("Unsqueeze", [columns, i64([1])])], axis=1
    )
    grid = b.op("ScatterND", [grid, where, b.op("Gather", [values, fits])], "pieces_grid")
    column = b.op(
        "Unsqueeze", [b.op("Range", [i64(0), b.op("Squeeze", [steps, i64([0])]), i64(1)]), i64([0])]
    )
    lengths = b.op("Add", [n_pieces, i64(2)], outputs=[lengths_out])  # [B]
    grid = b.op("Where", [b.op("Equal", [column, i64(0)]), i64(spec.cls_id), grid], "with_cls")
    at_sep = b.op("Equal", [column, b.op("Unsqueeze", [b.op("Sub", [lengths, i64(1)]), i64([1])])])
    b.op("Where", [at_sep, i64(spec.sep_id), grid], outputs=[tokens_out])
    return WordPieceNames(tokens=tokens_out, lengths=lengths, words=flat.words)


# ------------------------------------------------------------------------ words -> first pieces
@dataclass
class WordAlignmentNames:
    """Graph values of the WordPiece word front end (word-level tasks)."""

    tokens: str  # string [B, W]: the text's whitespace words, "" at padding
    mask: str  # bool [B, W]: true at real words
    count: str  # int64 [B]: words per text (0 for an empty text)
    scored: str  # bool [B, W]: the words the model sees (not cut by max_length)
    pieces: str  # int64 [B, T]: [CLS] pieces of the words [SEP], [PAD] after
    lengths: str  # int64 [B]
    word_starts: str  # int64 [B, W]: each word's first piece (0 for a word cut or padding)
    word_lengths: str  # int64 [B]: words not cut, at least 1


def build_word_alignment_nodes(b: GraphBuilder, spec: WordPieceSpec, text: str) -> WordAlignmentNames:
    """``text [B]`` -> ``WordPieceFeaturizer.encode_batch`` of ``text.split()``: each whitespace word
    WordPiece'd on its own (one flat row per word through :func:`build_flat_pieces`), a word without
    pieces one ``[UNK]``, the pieces cut at ``max_length - 2``, and each word's first-piece index from
    the exclusive cumulative sum of the per-word piece counts."""
    from nlpkit.export.word_graph import build_whitespace_tokens

    i64 = functools.partial(b.const, dtype=np.int64)
    words, mask, count, _ = build_whitespace_tokens(b, text)  # [B, W], [B, W], [B]
    shape_bw = b.op("Shape", [words], "shape_bw")
    width = b.op("Slice", [shape_bw, i64([1]), i64([2])], "words_width")  # [1] = W >= 1
    flat = build_flat_pieces(b, spec, b.op("Reshape", [words, i64([-1])], "flat_word_texts"))  # B*W rows

    # pieces per word: a real word without pieces is one [UNK]; padding words none
    per_word = b.op("Reshape", [flat.per_text, shape_bw], "pieces_of_word")  # [B, W]
    per_word = b.op("Where", [mask, b.op("Max", [per_word, i64(1)]), i64(0)], "pieces_or_unk")  # [B, W]
    starts = b.op("Add", [b.op("CumSum", [per_word, i64(1)], exclusive=1), i64(1)], "first_piece")  # [B, W]
    total = b.op("ReduceSum", [per_word, i64([1])], "pieces_per_text", keepdims=0)  # [B]
    limit = np.iinfo(np.int64).max - 2 if spec.max_length is None else spec.max_length - 2
    scored = b.op("And", [mask, b.op("LessOrEqual", [starts, i64(limit)])], "scored_words")  # [B, W]
    word_starts = b.op("Where", [scored, starts, i64(0)], "word_starts")
    kept = b.op("ReduceSum", [b.op("Cast", [scored], to=TensorProto.INT64), i64([1])], keepdims=0)
    word_lengths = b.op("Max", [kept, i64(1)], "word_lengths")  # [B]: the model always sees one
    n_pieces = b.op("Min", [total, i64(limit)], "n_pieces")  # [B]
    lengths = b.op("Add", [n_pieces, i64(2)], "piece_lengths")  # [B]

    # the [B, T] grid: [CLS], [UNK] where a piece goes (kept for the words without any), [SEP], [PAD]
    steps = b.op("ReduceMax", [lengths], "piece_steps", keepdims=1)  # [1]
    column = b.op(
        "Unsqueeze", [b.op("Range", [i64(0), b.op("Squeeze", [steps, i64([0])]), i64(1)]), i64([0])]
    )  # [1, T]
    last = b.op("Unsqueeze", [b.op("Sub", [lengths, i64(1)]), i64([1])])  # [B, 1]
    grid = b.op("Where", [b.op("Less", [column, last]), i64(spec.unk_id), i64(spec.pad_id)])
    grid = b.op("Where", [b.op("Equal", [column, last]), i64(spec.sep_id), grid])
    grid = b.op("Where", [b.op("Equal", [column, i64(0)]), i64(spec.cls_id), grid], "piece_grid")  # [B, T]
    # each flat piece k (word row f = b * W + w, position p) goes to column starts[f] + p of text b
    text_of = b.op("Div", [flat.row, width], "text_of_piece")  # [K]
    target = b.op(
        "Add", [b.op("Gather", [b.op("Reshape", [starts, i64([-1])]), flat.row]), flat.position], "column_of"
    )  # [K]
    fits = b.op("Reshape", [b.op("NonZero", [b.op("LessOrEqual", [target, i64(limit)])]), i64([-1])])
    where = b.op(
        "Concat",
        [
            b.op("Unsqueeze", [b.op("Gather", [text_of, fits]), i64([1])]),
            b.op("Unsqueeze", [b.op("Gather", [target, fits]), i64([1])]),
        ],
        axis=1,
    )  # [K', 2]
    pieces = b.op("ScatterND", [grid, where, b.op("Gather", [flat.values, fits])], "word_pieces_grid")
    return WordAlignmentNames(
        tokens=words,
        mask=mask,
        count=count,
        scored=scored,
        pieces=pieces,
        lengths=lengths,
        word_starts=word_starts,
        word_lengths=word_lengths,
    )
