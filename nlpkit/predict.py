"""Batch prediction: ``python -m nlpkit.predict run_dir=DIR input=FILE output=FILE``.

Input (UTF-8; a leading byte-order mark is ignored): a file whose name ends in ``.jsonl`` holds one
JSON object per line with a string ``text`` field (``text_field=`` names another); any other file is
plain text, one text per line, taken verbatim (only the line ending is removed; an empty line is an
empty text). Every input line gives one output line, in order: JSONL with the text and the task's
prediction (for ``doc_cls``: the label and per-label scores).

A pair or ranking run (``task=pair``, ``task=ranking``; its exported file has two string inputs) reads
pairs: a plain-text line is ``a<TAB>b`` (exactly one tab, else an error naming file:line), a JSONL
object has the two inputs' fields (``text_a``/``text_b``, or ``query``/``document``); each output line
holds both texts under those names and the prediction.

``backend=onnx`` serves ``DIR/export/model.onnx`` (written by ``python -m nlpkit.export``) with
onnxruntime + numpy only; torch is never imported on that path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from nlpkit.cli import parse_args, run_cli
from nlpkit.data.inputs import EMPTY_TEXT_MESSAGE
from nlpkit.errors import ConfigError, DataError
from nlpkit.registry import import_modules
from nlpkit.utils.io import atomic_open

log = logging.getLogger("nlpkit.predict")
#: the UTF-8 byte-order mark, decoded
BOM = "\ufeff"


def read_inputs(path: Path, text_field: str, pair_fields: Sequence[str] | None = None) -> list:
    """Texts from a plain-text (one per line) or ``.jsonl`` file, with file:line errors. A UTF-8
    byte-order mark (as Windows editors write) is not part of the first text. With ``pair_fields`` (a
    pair model's two input names), ``(a, b)`` pairs: ``a<TAB>b`` lines, or JSONL objects with both
    fields."""
    if not path.is_file():
        raise DataError(f"{path}: input file not found")
    texts = []
    jsonl = path.suffix == ".jsonl"
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{number}: invalid UTF-8 at column {err.start + 1}") from err
            if number == 1:
                line = line.removeprefix(BOM)
            if not jsonl and pair_fields:
                parts = line.split("\t")
                if len(parts) != 2:
                    a, b = pair_fields
                    raise DataError(
                        f"{path}:{number}: a pair is two texts separated by one tab ({a}<TAB>{b}); "
                        f"this line has {len(parts) - 1} tabs"
                    )
                texts.append(tuple(_nonblank(part, path, number) for part in parts))
                continue
            if not jsonl:
                texts.append(_nonblank(line, path, number))
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: invalid JSON: {err.msg}") from err
            fields = list(pair_fields) if pair_fields else [text_field]
            for field in fields:
                if not isinstance(record, dict) or not isinstance(record.get(field), str):
                    which = "a pair's" if pair_fields else "(text_field=)"
                    raise DataError(f"{path}:{number}: missing string field {field!r} {which}")
            values = tuple(_nonblank(record[field], path, number) for field in fields)
            texts.append(values if pair_fields else values[0])
    return texts


def _nonblank(text: str, path: Path, number: int) -> str:
    """Every backend refuses a blank text (``nlpkit.data.inputs``); here it is named by file:line."""
    if not text.strip():
        raise DataError(f"{path}:{number}: the text is {EMPTY_TEXT_MESSAGE}")
    return text


def load_predictor(run_dir: str | Path, backend: str = "torch"):
    """The run's PyTorch predictor, or (``backend=onnx``) its exported ONNX model."""
    if backend == "onnx":
        from nlpkit.serving.onnx_predictor import OnnxPredictor

        return OnnxPredictor(Path(run_dir))
    if backend == "torch":
        from nlpkit.api import load

        return load(run_dir)
    raise ConfigError(f"backend={backend!r}: choose torch or onnx")


def predict_file(
    run_dir: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    text_field: str = "text",
    batch_size: int = 64,
    backend: str = "torch",
) -> int:
    if not Path(input_path).is_file():  # before loading the model: the cheaper mistake is named first
        raise DataError(f"{input_path}: input file not found")
    predictor = load_predictor(run_dir, backend)  # which says whether lines hold texts or pairs
    names = list(getattr(predictor, "inputs", None) or ["text"])  # a pair model: its two inputs
    pair_fields = names if len(names) == 2 else None
    texts = read_inputs(Path(input_path), text_field, pair_fields)
    predictions = predictor.predict(texts, batch_size=batch_size)
    with atomic_open(output_path) as handle:
        for text, prediction in zip(texts, predictions):
            given = dict(zip(pair_fields, text)) if pair_fields else {"text": text}
            # a task whose prediction is one value (semantic_parse: a tree string) has it under "prediction"
            fields = prediction if isinstance(prediction, dict) else {"prediction": prediction}
            handle.write(json.dumps({**given, **fields}, ensure_ascii=False) + "\n")
    log.info("wrote %d predictions to %s", len(predictions), output_path)
    return len(predictions)


def main(argv: Sequence[str]) -> None:
    defaults = {
        "run_dir": "???",
        "input": "???",
        "output": "???",
        "text_field": "text",
        "batch_size": 64,
        "backend": "torch",
        "imports": [],
    }
    args = parse_args(argv, defaults, doc=__doc__ or "")
    import_modules(args.imports)
    predict_file(
        args.run_dir, args.input, args.output, args.text_field, int(args.batch_size), str(args.backend)
    )


if __name__ == "__main__":
    run_cli(main)
