"""The RNNG parser without Python: the model directory the C++ binary reads, the binary, and its gate.

``python -m nlpkit.export run_dir=DIR`` on a ``task=semantic_parse`` run writes ``DIR/export/native/``
(:func:`export_native`) once ``native/build/nlpkit-rnng`` (``make native``) has parsed the test split and
the edge cases into exactly the Python parser's trees. Serve it with::

    native/build/nlpkit-rnng DIR/export/native [--threads N]   # a sentence a line in, a tree a line out
    python -m nlpkit.serve model=DIR                           # HTTP, through the binary's pipe

Why C++ against libtorch, not ONNX: the transition loop's control flow depends on its own predictions
(which action, hence which stack entries are read next), and libtorch runs the same kernels as the
Python model, so the trees are identical rather than close; the torch wheel already ships the headers
and libraries, so nothing new is installed.

The model directory (format ``nlpkit-rnng 1``, no pickle, read without third-party libraries):

- ``model.txt``, the manifest: one record a line, ``KEY VALUE ...`` separated by single spaces, ``#``
  comments, first line ``format nlpkit-rnng 1``, last line ``end`` (a truncated file is refused).
  Sizes and choices: ``max_open``, ``compose`` (``bilstm``/``sum``), ``encoder_layers``, one
  ``embedding KIND PREFIX`` per token-embedding part in concatenation order (``word``, ``char``,
  ``shape``; ``PREFIX`` its state-dict prefix), ``char_kernels K...``, ``char_activation``,
  ``highway_layers``; the actions in id order (``action NAME``); the featurizer: ``pad_id``,
  ``unk_id``, ``max_word_length``, ``chars CP...`` (code points of character ids 2...), ``space CP...``
  (what ``str.isspace`` holds), ``normalize CP CP...`` (each code point the word tokenizer's normalizer
  changes, and what it becomes), ``casing START END FLAGS`` (code point ranges and their
  ``str.isdigit/isalnum/isalpha/islower/isupper`` bits 1/2/4/8/16, what ``word_shape`` reads);
  ``words FILE COUNT CRC32``; ``blob FILE FLOATS CRC32``; ``tensor NAME OFFSET DIM...`` per state-dict
  entry (``OFFSET`` in floats into the blob).
- ``weights.bin``: every tensor of the parser's ``state_dict``, raw little-endian float32, back to back.
- ``words.txt``: the word vocabulary, one entry a line, in id order.
- ``metadata.json``: provenance and the parity result (not read by the binary).

The directory is built in a temporary folder beside its destination and renamed into place.
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

FORMAT = "format nlpkit-rnng 1"
MANIFEST, BLOB, WORDS = "model.txt", "weights.bin", "words.txt"
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


def native_files(
    model, featurizer, action_names: Sequence[str], metadata: dict[str, Any]
) -> dict[str, bytes]:
    """The model directory's files (``model.txt`` last) for an ``RNNGParser`` and its ``WordFeaturizer``."""
    from nlpkit.data.featurizers.word import WordFeaturizer
    from nlpkit.modules.representation.token_bilstm import TokenBiLSTMRepresentation

    if not isinstance(featurizer, WordFeaturizer):
        raise ExportError(f"the native parser reads featurizer=word, not {type(featurizer).__name__}")
    if not isinstance(model.representation, TokenBiLSTMRepresentation):
        raise ExportError(
            f"the native parser encodes tokens with representation=token_bilstm, not "
            f"{type(model.representation).__name__}"
        )
    lines = [FORMAT, f"# nlpkit RNNG parser for the nlpkit-rnng binary; see {__name__}"]
    lines += [
        f"max_open {model.max_open}",
        f"compose {'bilstm' if hasattr(model.compose, 'lstm') else 'sum'}",
        f"encoder_layers {len(model.representation.encoder.forward_layers)}",
    ]
    for kind, prefix, module in _embedding_parts(model):
        lines.append(f"embedding {kind} {prefix}")
        if kind == "char":
            highway = module.highway
            lines += [
                f"char_kernels {' '.join(map(str, module.kernel_sizes))}",
                f"char_activation {'tanh' if module.activation is torch.tanh else 'relu'}",
                f"highway_layers {len(highway.transforms) if hasattr(highway, 'transforms') else 0}",
            ]
    lines += [f"action {name}" for name in action_names]

    vocab = featurizer.words.vocab
    words = sorted(vocab, key=vocab.get)
    if [vocab[w] for w in words] != list(range(len(words))):
        raise ExportError("the word vocabulary's ids are not 0..n-1: no native export")
    if any("\n" in w for w in words):
        raise ExportError("a vocabulary entry contains a newline: no native export")
    words_bytes = "".join(w + "\n" for w in words).encode("utf-8")
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
        WORDS: words_bytes,
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
    """Texts beyond the split: the export gate's edge cases (punctuation, non-ASCII, unknown words, one
    token, words past ``max_word_length``, a long sentence) and every vocabulary word as is, UPPER and
    Title, and every known character, 200 tokens a text."""
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


def export_native(run_dir: Path, cfg, out_dir: Path, quantize: bool = False) -> tuple[dict, dict]:
    """``Task.export_onnx`` of ``task=semantic_parse``: stage the model directory, run the binary on the
    test split (the validation split without one) and :func:`edge_texts`, and move it to
    ``out_dir/native`` only when every tree is the Python parser's; otherwise remove any older one.
    Returns ``(report, {})``: the directory is written here, as one rename."""
    import nlpkit
    from nlpkit.export.parity import check_result, first_few
    from nlpkit.registry import get_task
    from nlpkit.tasks.semantic_parse.data import read_top
    from nlpkit.training.checkpoint import best_checkpoint
    from nlpkit.utils.io import sha256_file

    if quantize:
        raise ExportError("quantize=true: the native RNNG parser has no int8 path; export without it")
    from nlpkit.data.featurizers import featurizer_name
    from nlpkit.tasks.semantic_parse.data import DEFAULT_FEATURIZER

    kind = featurizer_name(cfg.data, DEFAULT_FEATURIZER)
    if kind != "word":  # checked first: no binary, build or data read can change this answer
        raise ExportError(
            f"the native RNNG parser reads featurizer=word (word + char + casing embeddings); this run's "
            f"featurizer={kind} (a pretrained transformer) has no Python-free path yet: serve it with "
            "nlpkit.load(run).predict"
        )
    binary = native_binary()  # before the slow part
    out_dir = Path(out_dir)
    for leftover in out_dir.glob(f".{NATIVE_DIR}.*"):  # a killed export's staging or swap folders
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
    started = time.perf_counter()
    task = get_task("semantic_parse")
    predictor = task.predictor(cfg, run_dir)
    split, path = next(
        ((s, cfg.data.get(f"{s}_path")) for s in ("test", "val") if cfg.data.get(f"{s}_path")), (None, None)
    )
    dm = task.datamodule(cfg.data, run_dir)
    gold = [] if path is None else read_top(path, predictor.model.max_open, dm.policy)
    texts = [" ".join(example.tokens) for example in gold]
    edge = edge_texts(predictor.features)
    examples = texts + edge
    timings: dict[str, float] = {}

    tick = time.perf_counter()
    # the binary decodes greedily: the reference is the Python parser's greedy decoding, whatever the
    # run's model.beam_size (the metadata says which decoding the folder reproduces)
    want = predictor.predict(examples, beam_size=1)
    timings["python_seconds"] = round(time.perf_counter() - tick, 3)
    checkpoint = best_checkpoint(run_dir)
    metadata: dict[str, Any] = {
        "task": "semantic_parse",
        "format": FORMAT.split(" ", 1)[1],
        "nlpkit_version": nlpkit.__version__,
        "torch_version": torch.__version__,
        "weights_file": str(Path(checkpoint).relative_to(run_dir)),
        "weights_sha256": sha256_file(checkpoint),
        "decoding": "greedy",
        "run_beam_size": predictor.model.beam_size,
    }
    staged = stage(native_files(predictor.model, predictor.features, predictor.actions.names, {}), out_dir)
    try:
        tick = time.perf_counter()
        with NativeParser(staged, threads=1, binary=binary) as parser:
            got = parser.predict(examples)
            blank = []
            for text in ("", " \t "):
                with contextlib.suppress(ValueError):  # refused, as the Python predictor refuses it
                    blank.append({"text": text, "native": parser.parse(text)})
        timings["native_seconds"] = round(time.perf_counter() - tick, 3)
        mismatches = [
            {"text": text, "python": w, "native": g} for text, w, g in zip(examples, want, got) if w != g
        ]
        checks = {
            "trees": check_result(mismatches, len(examples), [1]),
            "blank_texts_refused": {"passed": not blank, "first_mismatches": first_few(blank)},
        }
        passed = all(check["passed"] for check in checks.values())
        identical = len(examples) - len(mismatches)
        metadata["parity"] = {
            "split": split,
            "split_trees": len(texts),
            "edge_cases": len(edge),
            "identical_trees": identical,
            "of": len(examples),
            "passed": passed,
        }
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
    exact = sum(tree == str(example.tree) for tree, example in zip(got, gold))
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
        "metrics": {f"{split}_native": {"exact_match": exact / len(gold)}} if gold and passed else None,
        "directories_written": [NATIVE_DIR] if passed else [],
        "timings": timings,
    }
    return report, {}


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
