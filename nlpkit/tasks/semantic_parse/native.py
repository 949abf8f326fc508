"""The RNNG parser without Python: the model directory the C++ binary reads, the binary, and its gate.

``python -m nlpkit.export run_dir=DIR`` on a ``task=semantic_parse`` run writes ``DIR/export/native/``
(:func:`export_native`) once ``native/build/nlpkit-rnng`` (``make native``) has parsed the test split and
the edge cases into exactly the Python parser's trees. Serve it with::

    native/build/nlpkit-rnng DIR/export/native [--threads N]   # a sentence a line in, a tree a line out
    native/build/nlpkit-rnng DIR/export/native --pieces        # wordpiece: the word pieces, no encoder
    python -m nlpkit.serve model=DIR                           # HTTP, through the binary's pipe

Two featurizers: ``featurizer=word`` (word + char-CNN + casing embeddings, a BiLSTM encoder) and
``featurizer=wordpiece`` + ``embedding=transformer`` + ``representation=passthrough`` (``model=rnng_minilm``:
the binary WordPieces the text and runs the HF ``BertModel`` encoder itself; the parser reads each
word's first-piece state). Any other featurizer, encoder or BERT variant is refused with the reason.

Why C++ against libtorch, not ONNX: the transition loop's control flow depends on its own predictions
(which action, hence which stack entries are read next), and libtorch runs the same kernels as the
Python model, so the trees are identical rather than close; the torch wheel already ships the headers
and libraries, so nothing new is installed.

The model directory (format ``nlpkit-rnng 2``, no pickle, read without third-party libraries; the
binary still reads format 1, written before the ``featurizer`` line, as ``featurizer=word``):

- ``model.txt``, the manifest: one record a line, ``KEY VALUE ...`` separated by single spaces, ``#``
  comments, first line ``format nlpkit-rnng 2``, last line ``end`` (a truncated file is refused).
  Sizes and choices: ``max_open``, ``compose`` (``bilstm``/``sum``), ``featurizer`` (``word`` or
  ``wordpiece``), the actions in id order (``action NAME``), ``blob FILE FLOATS CRC32`` and
  ``tensor NAME OFFSET DIM...`` per state-dict entry (``OFFSET`` in floats into the blob). Then
  ``featurizer word``: ``encoder_layers``, one ``embedding KIND PREFIX`` per token-embedding part in
  concatenation order (``word``, ``char``, ``shape``; ``PREFIX`` its state-dict prefix),
  ``char_kernels K...``, ``char_activation``, ``highway_layers``; the featurizer: ``pad_id``,
  ``unk_id``, ``max_word_length``, ``chars CP...`` (code points of character ids 2...), ``space CP...``
  (what ``str.isspace`` holds), ``normalize CP CP...`` (each code point the word tokenizer's normalizer
  changes, and what it becomes), ``casing START END FLAGS`` (code point ranges and their
  ``str.isdigit/isalnum/isalpha/islower/isupper`` bits 1/2/4/8/16, what ``word_shape`` reads);
  ``words FILE COUNT CRC32``. ``featurizer wordpiece``: ``transformer bert PREFIX`` (the ``BertModel``'s
  state-dict prefix), ``transformer_layers``, ``transformer_heads``, ``transformer_hidden``,
  ``transformer_intermediate``, ``transformer_eps`` (LayerNorm), ``transformer_activation gelu`` (HF's
  exact erf GELU), ``transformer_positions``; ``wordpiece_vocab FILE COUNT CRC32``, ``wordpiece_ids CLS
  SEP UNK PAD``, ``wordpiece_prefix`` (``##``), ``wordpiece_max_chars`` (``max_input_chars_per_word``),
  ``wordpiece_max_length`` (pieces kept, the two specials included), ``wordpiece_normalizer`` (the
  settings, for the record: the binary reads the table), ``space CP...`` (``str.isspace``: the words),
  and HF's ``BertNormalizer`` + ``BertPreTokenizer`` as one per-code-point table read off HF itself
  (:func:`wordpiece_lines`): ``wordpiece_remove START END`` (dropped: control and format characters),
  ``wordpiece_alone START END`` (a word of their own: punctuation, CJK ideographs), ``wordpiece_map CP
  CP...`` (case, accents, whitespace as 32).
- ``weights.bin``: every tensor of the parser's ``state_dict``, raw little-endian float32, back to back.
- ``words.txt`` (``featurizer=word``): the word vocabulary, one entry a line, in id order;
  ``pieces.txt`` (``featurizer=wordpiece``): the WordPiece vocabulary, the same way.
- ``metadata.json``: provenance and the parity result (not read by the binary).

The directory is built in a temporary folder beside its destination and renamed into place.

Measured on ``experiment=top_minilm`` (test exact match 81.60; 2026-12-04, a shared 2-core machine):
the gate's trees 9,075 / 9,075 identical (9,042 test + 33 edge cases; 2 texts past 128 pieces refused by
both), pieces 11,482 / 11,482, in 122-179 s; single requests, one thread (``scripts/bench_latency.py``):
Python P50 / P90 / P99 24.18 / 43.50 / 100.28 ms, the binary 10.74 / 20.36 / 40.89 ms (README).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nlpkit.errors import ExportError
from nlpkit.serving.native_parser import (  # the torch-free half: the binary and its pipe
    BINARY_ENV,
    BUILD_DIR,
    METADATA,
    NATIVE_DIR,
    SOURCE_DIR,
    NativeParser,
    native_binary,
)

FORMAT = "format nlpkit-rnng 2"
MANIFEST, BLOB, WORDS, PIECES = "model.txt", "weights.bin", "words.txt", "pieces.txt"
__all__ = [
    "BINARY_ENV",
    "NativeParser",
    "build_native",
    "export_native",
    "native_binary",
    "write_native_model",
]
#: casing bits of ``casing`` lines, in the order of ``_CASING_TESTS``
_CASING_TESTS = (str.isdigit, str.isalnum, str.isalpha, str.islower, str.isupper)


# ---------------------------------------------------------------- the model directory
@cache
def _code_points() -> tuple[int, ...]:
    return tuple(c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF)


@cache
def unicode_lines() -> tuple[str, ...]:
    """``space`` and ``casing`` records: Python's own Unicode facts, so C++ agrees with ``str``."""
    chars = [chr(c) for c in _code_points()]
    space = [str(ord(ch)) for ch in chars if ch.isspace()]
    bits = [0] * len(chars)
    for bit, test in enumerate(_CASING_TESTS):
        for i, flag in enumerate(map(test, chars)):
            if flag:
                bits[i] |= 1 << bit
    lines, start = [], None
    points = _code_points()
    for i, flags in enumerate(bits):  # ranges of consecutive code points with the same non-zero flags
        if start is not None and (flags != bits[start] or points[i] != points[i - 1] + 1):
            lines.append(f"casing {points[start]} {points[i - 1]} {bits[start]}")
            start = None
        if start is None and flags:
            start = i
    if start is not None:
        lines.append(f"casing {points[start]} {points[-1]} {bits[start]}")
    return (f"space {' '.join(space)}", *lines)


def normalize_lines(normalizer) -> list[str]:
    """``normalize`` records: every code point the word tokenizer's normalizer changes (lowercasing,
    U+0130), found by running the normalizer itself over all of them (it works one character at a time)."""
    if normalizer is None:
        return []
    points = _code_points()
    text = "\x00".join(map(chr, points))
    mapped = normalizer.normalize_str(text).split("\x00")
    if len(mapped) != len(points):
        raise ExportError("the word tokenizer's normalizer is not character by character: no native export")
    return [
        f"normalize {c} {' '.join(str(ord(ch)) for ch in out)}".rstrip()
        for c, out in zip(points, mapped)
        if out != chr(c)
    ]


def _embedding_parts(model) -> list[tuple[str, str, nn.Module]]:
    """``(kind, state-dict prefix, module)`` of each token-embedding part, in concatenation order."""
    from nlpkit.modules.embedding.char_cnn import CharCNNEmbedding
    from nlpkit.modules.embedding.concat import ConcatEmbedding
    from nlpkit.modules.embedding.shape import ShapeEmbedding
    from nlpkit.modules.embedding.word import WordEmbedding

    kinds = {WordEmbedding: "word", CharCNNEmbedding: "char", ShapeEmbedding: "shape"}
    embedding = model.embedding
    named = (
        [(f"embedding.components.{name}", m) for name, m in embedding.components.items()]
        if isinstance(embedding, ConcatEmbedding)
        else [("embedding", embedding)]
    )
    parts = []
    for prefix, module in named:
        kind = kinds.get(type(module))
        if kind is None:
            raise ExportError(
                f"the native parser has no {type(module).__name__} (model.{prefix}): it embeds tokens with "
                "word, char_cnn and shape embeddings only"
            )
        parts.append((kind, prefix, module))
    return parts


def _text_lines(lines: list[str], name: str) -> bytes:
    """A vocabulary file: one entry a line, in id order (refusing an entry holding a newline)."""
    if any("\n" in w for w in lines):
        raise ExportError(f"a vocabulary entry contains a newline: no native export ({name})")
    return "".join(w + "\n" for w in lines).encode("utf-8")


def _word_lines(model, featurizer) -> tuple[list[str], dict[str, bytes]]:
    """``featurizer=word``'s records (embeddings, BiLSTM encoder, word/char/casing tables) and words.txt."""
    from nlpkit.modules.representation.token_bilstm import TokenBiLSTMRepresentation

    if not isinstance(model.representation, TokenBiLSTMRepresentation):
        raise ExportError(
            f"the native parser encodes words with representation=token_bilstm, not "
            f"{type(model.representation).__name__}"
        )
    lines = ["featurizer word", f"encoder_layers {len(model.representation.encoder.forward_layers)}"]
    for kind, prefix, module in _embedding_parts(model):
        lines.append(f"embedding {kind} {prefix}")
        if kind == "char":
            highway = module.highway
            lines += [
                f"char_kernels {' '.join(map(str, module.kernel_sizes))}",
                f"char_activation {'tanh' if module.activation is torch.tanh else 'relu'}",
                f"highway_layers {len(highway.transforms) if hasattr(highway, 'transforms') else 0}",
            ]
    vocab = featurizer.words.vocab
    words = sorted(vocab, key=vocab.get)
    if [vocab[w] for w in words] != list(range(len(words))):
        raise ExportError("the word vocabulary's ids are not 0..n-1: no native export")
    words_bytes = _text_lines(words, WORDS)
    tokenizer = featurizer.tokenizer
    lines += [
        f"pad_id {tokenizer.pad_id}",
        f"unk_id {tokenizer.unk_id}",
        f"max_word_length {featurizer.chars.max_word_length}",
        f"chars {' '.join(str(ord(ch)) for ch in featurizer.chars.chars)}".rstrip(),
        *unicode_lines(),
        *normalize_lines(featurizer.words.normalizer),
        f"words {WORDS} {len(words)} {zlib.crc32(words_bytes)}",
    ]
    return lines, {WORDS: words_bytes}


#: the BERT encoder the binary implements (HF ``BertModel`` in eval mode); anything else is refused
_BERT_SETTINGS = {"hidden_act": "gelu", "position_embedding_type": "absolute", "is_decoder": False,
                  "add_cross_attention": False}  # fmt: skip


def _transformer_lines(model) -> list[str]:
    """``embedding=transformer``'s records: the HF ``BertModel`` configuration the binary rebuilds with
    ATen ops (its weights are state-dict entries under ``PREFIX``)."""
    from nlpkit.modules.embedding.transformer import TransformerEmbedding
    from nlpkit.modules.representation.passthrough import PassThroughRepresentation

    embedding = model.embedding
    if not isinstance(embedding, TransformerEmbedding) or not model.word_pieces:
        raise ExportError(
            f"the native parser reads word pieces through embedding=transformer, not {type(embedding).__name__}"
        )
    if not isinstance(model.representation, PassThroughRepresentation):
        raise ExportError(
            f"the native parser reads the transformer's states as they are (representation=passthrough), "
            f"not {type(model.representation).__name__}"
        )
    encoder, config = embedding.encoder, embedding.encoder.config
    if type(encoder).__name__ != "BertModel" or getattr(config, "model_type", None) != "bert":
        raise ExportError(
            f"the native parser's transformer is BERT (HF BertModel); this checkpoint is "
            f"{type(encoder).__name__} ({getattr(config, 'model_type', None)!r})"
        )
    for key, want in _BERT_SETTINGS.items():
        have = getattr(config, key, want)
        if have != want:
            raise ExportError(
                f"the native parser's BERT has {key}={want!r}; this checkpoint's config.json says {have!r} "
                "(HF 'gelu' is the exact erf GELU, the one implemented)"
            )
    if config.hidden_size % config.num_attention_heads:
        raise ExportError(
            f"hidden_size {config.hidden_size} is not a multiple of {config.num_attention_heads} heads"
        )
    return [
        "transformer bert embedding.encoder",
        f"transformer_layers {config.num_hidden_layers}",
        f"transformer_heads {config.num_attention_heads}",
        f"transformer_hidden {config.hidden_size}",
        f"transformer_intermediate {config.intermediate_size}",
        f"transformer_eps {float(config.layer_norm_eps)!r}",
        "transformer_activation gelu",
        f"transformer_positions {config.max_position_embeddings}",
    ]


def wordpiece_lines(featurizer) -> tuple[list[str], dict[str, bytes]]:
    """``featurizer=wordpiece``'s records and pieces.txt: the checkpoint's WordPiece settings, and HF's
    normalizer + BertPreTokenizer as one per-code-point table (``nlpkit.export.wordpiece_graph``'s,
    the ONNX export's): ``wordpiece_remove START END`` (what clean_text drops: control and format
    characters), ``wordpiece_alone START END`` (unchanged but a word of their own: punctuation, CJK
    ideographs), ``wordpiece_map CP CP...`` (case, accents, whitespace as 32, spaced-out punctuation)."""
    from nlpkit.export.text_graph import codepoint_ranges
    from nlpkit.export.wordpiece_graph import codepoint_table, parse_wordpiece_spec

    where = f"{featurizer.checkpoint}/tokenizer.json"
    text = featurizer.tokenizer.to_str()
    spec = parse_wordpiece_spec(text, featurizer.pad_token, where)
    if spec.max_length is None:
        raise ExportError(
            f"{where}: no truncation: the native parser cuts pieces at max_length as the featurizer"
        )
    if not spec.prefix or len(spec.prefix.split()) != 1 or spec.prefix != spec.prefix.strip():
        raise ExportError(f"{where}: continuing_subword_prefix {spec.prefix!r} is empty or holds whitespace")
    vocab = sorted(spec.vocab, key=spec.vocab.get)
    if [spec.vocab[p] for p in vocab] != list(range(len(vocab))):
        raise ExportError(f"{where}: the WordPiece vocabulary's ids are not 0..n-1: no native export")
    pieces = _text_lines(vocab, PIECES)
    normalizer = json.loads(spec.normalizer_json)
    lowercase = bool(normalizer.get("lowercase", True))
    strip = normalizer.get("strip_accents")
    settings = {
        "clean_text": bool(normalizer.get("clean_text", True)),
        "handle_chinese_chars": bool(normalizer.get("handle_chinese_chars", True)),
        "strip_accents": lowercase if strip is None else bool(strip),  # HF: None follows lowercase
        "lowercase": lowercase,
    }
    table = codepoint_table(spec.normalizer_json, spec.pre_tokenizer_json)
    removed = [ord(ch) for ch, image in table.items() if image == ""]
    alone = [ord(ch) for ch, image in table.items() if image == f" {ch} "]
    gone = set(removed) | set(alone)
    lines = [
        "featurizer wordpiece",
        f"wordpiece_vocab {PIECES} {len(vocab)} {zlib.crc32(pieces)}",
        f"wordpiece_ids {spec.cls_id} {spec.sep_id} {spec.unk_id} {spec.pad_id}",  # CLS SEP UNK PAD
        f"wordpiece_prefix {spec.prefix}",
        f"wordpiece_max_chars {spec.max_input_chars_per_word}",
        f"wordpiece_max_length {spec.max_length}",
        "wordpiece_normalizer " + " ".join(f"{k} {int(v)}" for k, v in settings.items()),
        next(line for line in unicode_lines() if line.startswith("space ")),  # str.split's words
        *(f"wordpiece_remove {a} {b}" for a, b in codepoint_ranges(removed)),
        *(f"wordpiece_alone {a} {b}" for a, b in codepoint_ranges(alone)),
        *(
            f"wordpiece_map {ord(ch)} {' '.join(str(ord(c)) for c in image)}"
            for ch, image in sorted(table.items())
            if ord(ch) not in gone
        ),
    ]
    return lines, {PIECES: pieces}


def native_files(
    model, featurizer, action_names: Sequence[str], metadata: dict[str, Any]
) -> dict[str, bytes]:
    """The model directory's files (``model.txt`` last) for an ``RNNGParser`` and its featurizer
    (``WordFeaturizer`` or ``WordPieceFeaturizer``)."""
    from nlpkit.data.featurizers.word import WordFeaturizer
    from nlpkit.data.featurizers.wordpiece import WordPieceFeaturizer

    if isinstance(featurizer, WordFeaturizer):
        text_lines, files = _word_lines(model, featurizer)
    elif isinstance(featurizer, WordPieceFeaturizer):
        encoder_lines = _transformer_lines(model)
        text_lines, files = wordpiece_lines(featurizer)
        text_lines = encoder_lines + text_lines
    else:
        raise ExportError(
            f"the native parser reads featurizer=word or featurizer=wordpiece, not {type(featurizer).__name__}"
        )
    lines = [FORMAT, f"# nlpkit RNNG parser for the nlpkit-rnng binary; see {__name__}"]
    lines += [
        f"max_open {model.max_open}",
        f"compose {'bilstm' if hasattr(model.compose, 'lstm') else 'sum'}",
        *text_lines,
    ]
    lines += [f"action {name}" for name in action_names]
    blobs, offset, tensor_lines = [], 0, []
    for name, tensor in model.state_dict().items():
        data = tensor.detach().to(torch.float32).contiguous().cpu().numpy().astype("<f4").tobytes()
        tensor_lines.append(f"tensor {name} {offset} {' '.join(map(str, tensor.shape))}".rstrip())
        blobs.append(data)
        offset += tensor.numel()
    blob = b"".join(blobs)
    lines += [f"blob {BLOB} {offset} {zlib.crc32(blob)}", *tensor_lines, "end"]
    meta = json.dumps(metadata, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return {
        BLOB: blob,
        **files,
        METADATA: meta.encode("utf-8"),
        MANIFEST: ("\n".join(lines) + "\n").encode("utf-8"),
    }


def _swap_into_place(staged: Path, out_dir: Path) -> None:
    """Rename the finished ``staged`` folder to ``out_dir``, replacing an older one (renames only)."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, old / out_dir.name)
    os.replace(staged, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def stage(files: dict[str, bytes], parent: Path, name: str = NATIVE_DIR) -> Path:
    """Write ``files`` into a new temporary folder in ``parent`` (fsynced); the caller renames it."""
    parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))
    for file_name, payload in files.items():
        with open(staged / file_name, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
    os.chmod(staged, 0o755)
    return staged


def write_native_model(predictor, out_dir: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write a ``SemanticParsePredictor``'s model directory to ``out_dir`` atomically (temp + rename)."""
    out_dir = Path(out_dir)
    files = native_files(predictor.model, predictor.features, predictor.actions.names, metadata or {})
    _swap_into_place(stage(files, out_dir.parent, out_dir.name), out_dir)
    return out_dir


# ---------------------------------------------------------------- the binary
def build_native(jobs: int = 2, quiet: bool = True) -> Path:
    """Configure and build ``native/`` with CMake against the venv's torch (what ``make native`` runs)."""
    if shutil.which("cmake") is None:
        raise ExportError("cmake is not installed: the native RNNG binary is built with CMake (>= 3.18)")
    out = subprocess.DEVNULL if quiet else None
    prefix = torch.utils.cmake_prefix_path
    steps = [
        ["cmake", "-S", str(SOURCE_DIR), "-B", str(BUILD_DIR), f"-DCMAKE_PREFIX_PATH={prefix}"],
        ["cmake", "--build", str(BUILD_DIR), f"-j{jobs}"],
    ]
    for command in steps:
        done = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, text=True)
        if done.returncode:
            raise ExportError(f"`{' '.join(command)}` failed:\n{done.stderr[-4000:]}")
    return BUILD_DIR / "nlpkit-rnng"


# ---------------------------------------------------------------- the export and its parity gate
def edge_texts(featurizer) -> list[str]:
    """Texts beyond the split: the export gate's edge cases (:func:`word_edge_texts` or
    :func:`wordpiece_edge_texts`, after the featurizer)."""
    from nlpkit.data.featurizers.wordpiece import WordPieceFeaturizer

    if isinstance(featurizer, WordPieceFeaturizer):
        return wordpiece_edge_texts(featurizer)
    return word_edge_texts(featurizer)


def word_edge_texts(featurizer) -> list[str]:
    """``featurizer=word``'s edge cases (punctuation, non-ASCII, unknown words, one token, words past
    ``max_word_length``, a long sentence) and every vocabulary word as is, UPPER and Title, and every
    known character, 200 tokens a text."""
    from nlpkit.export.parity import EDGE_CASES

    vocab = [w for w in featurizer.words.vocab if w not in ("<pad>", "<unk>")] or ["word"]
    long_word = "".join(featurizer.chars.chars[:5] or ["x"]) * (featurizer.chars.max_word_length + 3)
    texts = [t for t in EDGE_CASES if t.strip()]
    texts += [
        "hello",
        "?",
        " ".join(vocab[i % len(vocab)] for i in range(120)),
        f"{long_word} short {long_word.upper()}",
        "zzyzx qwertyuiop blorft München café naïve Ǆemo ǅemo ǆemo",
        "McDonald iPhone USA Usa uSA x2 2x 42 ½ ² ३ _ -- 'Quote'",
    ]
    chunks = [vocab[i : i + 200] for i in range(0, len(vocab), 200)]
    for case in (str, str.upper, str.title):
        texts += [" ".join(case(w) for w in chunk) for chunk in chunks]
    chars = [c for c in featurizer.chars.chars if not c.isspace()]
    texts += [" ".join(chars[i : i + 200]) for i in range(0, len(chars), 200)]
    return texts


#: tokenizer stress cases of featurizer=wordpiece: accents (composed and not), CJK, punctuation glued
#: to words, words past max_input_chars_per_word, words of characters the normalizer removes
WORDPIECE_EDGE_CASES = [
    "hello",
    "?",
    "café naïve résumé Ångström Øre ŁÓDŹ crème brûlée façade jalapeño Zürich",
    "cafe\u0301 nai\u0308ve A\u030angstro\u0308m",
    "北京天气怎么样 北京 天气 weather in 東京today 東京の天気は？ 서울 날씨",
    "what's the weather (today)? e-mail: a@b.com, 3:30pm!! don't rock'n'roll U.S.A. $5.00 #tag @user",
    "«quoted» “curly” ‘single’ — dash … ellipsis ¿qué? ¡sí! 1/2 50% a&b x_y",
    "a" * 100 + " " + "b" * 101 + " supercalifragilisticexpialidocious" * 3,
    "zero\u200bwidth soft\u00adhyphen \u200b \u00ad ok \u200d\ufeff join",
    "ΣΊΣΥΦΟΣ İstanbul ǅemo ß ﬁ Ⅻ ① ＡＢＣ ｈｅｌｌｏ",
    "[CLS] [SEP] [UNK] [PAD] [MASK] ## ##ing",
]


def wordpiece_edge_texts(featurizer) -> list[str]:
    """``featurizer=wordpiece``'s edge cases: :data:`WORDPIECE_EDGE_CASES`, the shared ones, texts at the
    ``max_length`` cut (exactly ``max_length - 2`` pieces; a last word whose first piece is the last kept
    and whose other pieces are cut; one piece more, which both sides refuse), a very long text (refused),
    and the first vocabulary pieces as words."""
    from nlpkit.export.parity import EDGE_CASES

    limit = featurizer.max_length - 2
    words = _vocab_words(featurizer)
    pieces = featurizer.pieces_of_words([words])[0]
    single = next((w for w, p in zip(words, pieces) if len(p) == 1 and w.isalpha()), "a")
    candidates = [single * k for k in range(2, 12)] + ["".join(words[i : i + 3]) for i in range(0, 300, 3)]
    multi = next(
        (w for w, p in zip(candidates, featurizer.pieces_of_words([candidates])[0]) if len(p) > 1), None
    )
    texts = [t for t in EDGE_CASES if t.strip()] + WORDPIECE_EDGE_CASES
    texts += [" ".join([single] * limit), " ".join([single] * (limit + 1)), "what is the weather " * 100]
    if multi is not None:
        texts.append(" ".join([single] * (limit - 1) + [multi]))
    chunks = [words[i : i + limit // 2] for i in range(0, min(len(words), 4 * (limit // 2)), limit // 2)]
    texts += [" ".join(chunk) for chunk in chunks if chunk]
    return texts


def _vocab_words(featurizer) -> list[str]:
    """The vocabulary's pieces as words (continuation pieces without their prefix; specials left out)."""
    from nlpkit.export.wordpiece_graph import parse_wordpiece_spec

    spec = parse_wordpiece_spec(featurizer.tokenizer.to_str(), featurizer.pad_token)
    out = []
    for piece in featurizer.vocab:
        word = piece[len(spec.prefix) :] if piece.startswith(spec.prefix) and piece != spec.prefix else piece
        if word.strip() and not (piece.startswith("[") and piece.endswith("]")) and len(word.split()) == 1:
            out.append(word)
    return out


def piece_texts(featurizer) -> list[str]:
    """The piece check's texts beyond the split and edge cases: every vocabulary piece as a word (as is,
    UPPER, Title) and every code point between two ``x`` (its normalization and split class in a word),
    500 words a text (the piece check is not cut at ``max_length``)."""
    words = _vocab_words(featurizer)
    texts = [" ".join(case(w) for w in words[i : i + 500]) for case in (str, str.upper, str.title)
             for i in range(0, len(words), 500)]  # fmt: skip
    glued = [f"x{chr(c)}x" for c in _code_points() if not chr(c).isspace() and c != 0]
    texts += [" ".join(glued[i : i + 500]) for i in range(0, len(glued), 500)]
    return texts


def piece_lines(featurizer, texts: Sequence[str]) -> list[str]:
    """What ``nlpkit-rnng --pieces`` answers for each text, from the featurizer: each word's piece ids
    (HF's, ``,``-joined), ``|``, the model's input row (``[CLS]``, pieces cut at ``max_length - 2``,
    ``[SEP]``), ``|``, each word's first-piece index (0 for a word past the cut)."""
    sentences = [text.split() for text in texts]
    out = []
    for words in featurizer.pieces_of_words(sentences):
        row = featurizer.encode_words(words)
        out.append(
            " | ".join(
                [
                    " ".join(",".join(map(str, ids)) for ids in words),
                    " ".join(map(str, row["tokens"].tolist())),
                    " ".join(map(str, row["word_starts"].tolist())),
                ]
            )
        )
    return out


def _refused_texts(predictor, parser, texts: Sequence[str]) -> list[dict]:
    """The texts of more pieces than ``max_length`` allows: both sides must refuse each with the same
    reason (``TextRefusedError`` from the Python predictor and from the binary's ``ERROR:`` line); the
    disagreements."""
    from nlpkit.data.inputs import TextRefusedError

    bad = []
    for text in texts:
        try:
            python = f"parsed: {predictor.predict([text], beam_size=1)[0]}"
        except TextRefusedError as err:
            python = err.reason
        try:
            native = f"parsed: {parser.parse(text)}"
        except TextRefusedError as err:
            native = err.reason
        if python != native or python.startswith("parsed: "):
            bad.append({"text": text[:200], "python": python, "native": native})
    return bad


def _over_max_length(featurizer, texts: Sequence[str]) -> list[bool]:
    """Whether each text needs more pieces than a wordpiece featurizer's ``max_length`` keeps (the
    predictor refuses it); all false for ``featurizer=word``."""
    if not getattr(featurizer, "aligns_words", False):
        return [False] * len(texts)
    rows = featurizer.encode_batch([text.split() for text in texts]) if texts else []
    return [int(row["word_lengths"]) < len(text.split()) for row, text in zip(rows, texts)]


def export_native(run_dir: Path, cfg, out_dir: Path, quantize: bool = False) -> tuple[dict, dict]:
    """``Task.export_onnx`` of ``task=semantic_parse``: stage the model directory, run the binary on the
    test split (the validation split without one) and :func:`edge_texts`, and move it to
    ``out_dir/native`` only when every tree is the Python parser's (a text of more pieces than
    ``max_length`` keeps: refused by both with the same reason) and, for ``featurizer=wordpiece``, the
    binary's word pieces are the HF tokenizer's on the split, the edge cases, the vocabulary and every
    code point; otherwise remove any older one. Returns ``(report, {})``: the directory is written
    here, as one rename."""
    import nlpkit
    from nlpkit.export.parity import check_result, first_few
    from nlpkit.registry import get_task
    from nlpkit.tasks.semantic_parse.data import SemanticParseDataModule, read_top
    from nlpkit.training.checkpoint import best_checkpoint
    from nlpkit.utils.io import sha256_file

    if quantize:
        raise ExportError("quantize=true: the native RNNG parser has no int8 path; export without it")
    from nlpkit.data.featurizers import featurizer_name
    from nlpkit.tasks.semantic_parse.data import DEFAULT_FEATURIZER

    kind = featurizer_name(cfg.data, DEFAULT_FEATURIZER)
    if kind not in ("word", "wordpiece"):  # checked first: no binary, build or data read can change it
        raise ExportError(
            f"the native RNNG parser reads featurizer=word (word + char + casing embeddings, BiLSTM) or "
            f"featurizer=wordpiece (a BERT encoder); this run's featurizer={kind} has no Python-free path: "
            "serve it with nlpkit.load(run).predict"
        )
    binary = native_binary()  # before the slow part
    out_dir = Path(out_dir)
    for leftover in out_dir.glob(f".{NATIVE_DIR}.*"):  # a killed export's staging or swap folders
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
    started = time.perf_counter()
    task = get_task("semantic_parse")
    predictor = task.predictor(cfg, run_dir)
    features = predictor.features
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    # the folder first: what it cannot hold (another encoder, a tokenizer it cannot reproduce) is refused
    # before the slow part
    staged = stage(native_files(predictor.model, features, predictor.actions.names, {}), out_dir)
    timings["write_seconds"] = round(time.perf_counter() - tick, 3)
    try:
        split, path = next(
            ((s, cfg.data.get(f"{s}_path")) for s in ("test", "val") if cfg.data.get(f"{s}_path")),
            (None, None),
        )
        # the predictor's featurizer and actions: the run's vocabularies are not read a second time
        dm = SemanticParseDataModule(cfg.data, features, predictor.actions)
        gold = [] if path is None else read_top(path, predictor.model.max_open, dm.policy)
        texts = [" ".join(example.tokens) for example in gold]
        edge = edge_texts(features)
        too_long = _over_max_length(features, texts + edge)
        examples = [t for t, cut in zip(texts + edge, too_long) if not cut]
        refused = [t for t, cut in zip(texts + edge, too_long) if cut]

        tick = time.perf_counter()
        # the binary decodes greedily: the reference is the Python parser's greedy decoding, whatever the
        # run's model.beam_size (the metadata says which decoding the folder reproduces)
        want = predictor.predict(examples, beam_size=1)
        timings["python_seconds"] = round(time.perf_counter() - tick, 3)
        checkpoint = best_checkpoint(run_dir)
        metadata: dict[str, Any] = {
            "task": "semantic_parse",
            "format": FORMAT.split(" ", 1)[1],
            "featurizer": kind,
            "nlpkit_version": nlpkit.__version__,
            "torch_version": torch.__version__,
            "weights_file": str(Path(checkpoint).relative_to(run_dir)),
            "weights_sha256": sha256_file(checkpoint),
            "decoding": "greedy",
            "run_beam_size": predictor.model.beam_size,
        }
        tick = time.perf_counter()
        with NativeParser(staged, threads=1, binary=binary) as parser:
            got = parser.predict(examples)
            blank = []
            for text in ("", " \t "):
                with contextlib.suppress(ValueError):  # refused, as the Python predictor refuses it
                    blank.append({"text": text, "native": parser.parse(text)})
            refusals = _refused_texts(predictor, parser, refused)
        timings["native_seconds"] = round(time.perf_counter() - tick, 3)
        mismatches = [
            {"text": text, "python": w, "native": g} for text, w, g in zip(examples, want, got) if w != g
        ]
        for mismatch in first_few(mismatches):  # the binary runs one text at a time: is it batching?
            mismatch["python_alone"] = predictor.predict([mismatch["text"]], beam_size=1)[0]
        checks = {
            "trees": check_result(mismatches, len(examples), [1]),
            "blank_texts_refused": {"passed": not blank, "first_mismatches": first_few(blank)},
        }
        if kind == "wordpiece":
            checks["too_long_texts_refused"] = {
                "passed": not refusals,
                "examples": len(refused),
                "first_mismatches": first_few(refusals),
            }
            tick = time.perf_counter()
            checks["pieces"] = _piece_check(features, staged, binary, split, texts, edge)
            timings["pieces_seconds"] = round(time.perf_counter() - tick, 3)
        passed = all(check["passed"] for check in checks.values())
        identical = len(examples) - len(mismatches)
        split_fit = sum(not cut for cut in too_long[: len(texts)])
        metadata["parity"] = {
            "split": split,
            "split_trees": split_fit,
            "split_refused_too_long": len(texts) - split_fit,
            "edge_cases": len(edge),
            "identical_trees": identical,
            "of": len(examples),
            "passed": passed,
        }
        if kind == "wordpiece":
            metadata["parity"]["pieces"] = {
                k: v for k, v in checks["pieces"].items() if k != "first_mismatches"
            }
            metadata["parity"]["too_long_refused"] = len(refused) - len(refusals)
        native = out_dir / NATIVE_DIR
        if passed:
            (staged / METADATA).write_text(
                json.dumps(metadata, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            _swap_into_place(staged, native)
        elif native.exists():
            shutil.rmtree(native)  # never keep an artifact the current weights disagree with
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
    fitting = [example for example, cut in zip(gold, too_long) if not cut]
    exact = sum(tree == str(example.tree) for tree, example in zip(got, fitting))
    timings["export_seconds"] = round(time.perf_counter() - started, 3)
    report = {
        "task": "semantic_parse",
        "run_dir": str(run_dir),
        "passed": passed,
        "parity_data": {"split": split, "examples": len(texts), "edge_cases": len(edge)},
        "checks": checks,
        "metadata": metadata,
        "exporter": "native-libtorch",
        "native": {
            "dir": str(native),
            "binary": str(binary),
            "files": sorted(os.listdir(native)) if passed else [],
        },
        # a refused (too long) test tree counts as wrong, as the Python predictor cannot parse it either
        "metrics": {f"{split}_native": {"exact_match": exact / len(gold)}} if gold and passed else None,
        "directories_written": [NATIVE_DIR] if passed else [],
        "timings": timings,
    }
    return report, {}


def _piece_check(features, model_dir: Path, binary: Path, split, texts, edge) -> dict:
    """The binary's word pieces (``--pieces``) == the HF tokenizer's + the featurizer's alignment, per
    group of texts: the split, the edge cases, and :func:`piece_texts` (vocabulary, every code point)."""
    from nlpkit.export.parity import first_few

    groups = {str(split): texts, "edge_cases": edge, "vocabulary_and_code_points": piece_texts(features)}
    counts, bad = {}, []
    with NativeParser(model_dir, threads=1, binary=binary, pieces=True) as parser:
        for name, group in groups.items():
            group = [t for t in group if t.strip()]
            want, got = piece_lines(features, group), parser.predict(group)
            wrong = [
                {"group": name, "text": t[:200], "python": w[:400], "native": g[:400]}
                for t, w, g in zip(group, want, got)
                if w != g
            ]
            counts[name] = {"identical": len(group) - len(wrong), "of": len(group)}
            bad += wrong
    return {"passed": not bad, "groups": counts, "mismatches": len(bad), "first_mismatches": first_few(bad)}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nlpkit.tasks.semantic_parse.native build``: what ``make native`` runs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv != ["build"]:
        print("usage: python -m nlpkit.tasks.semantic_parse.native build", file=sys.stderr)
        return 2
    try:
        print(build_native(quiet=False))
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
