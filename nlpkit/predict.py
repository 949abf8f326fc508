"""Batch prediction: ``python -m nlpkit.predict run_dir=DIR input=FILE output=FILE``.

Input (UTF-8; a leading byte-order mark is ignored): a file whose name ends in ``.jsonl`` holds one
JSON object per line with a string ``text`` field (``text_field=`` names another); any other file is
plain text, one text per line, taken verbatim (only the line ending is removed; an empty line is an
empty text). Every input line gives one output line, in order: JSONL with the text and the task's
prediction (for ``doc_cls``: the label and per-label scores).

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


def read_inputs(path: Path, text_field: str) -> list[str]:
    """Texts from a plain-text (one per line) or ``.jsonl`` file, with file:line errors. A UTF-8
    byte-order mark (as Windows editors write) is not part of the first text."""
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
            if not jsonl:
                texts.append(_nonblank(line, path, number))
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: invalid JSON: {err.msg}") from err
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                raise DataError(f"{path}:{number}: missing string field {text_field!r} (text_field=)")
            texts.append(_nonblank(record[text_field], path, number))
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
    texts = read_inputs(Path(input_path), text_field)
    predictor = load_predictor(run_dir, backend)
    predictions = predictor.predict(texts, batch_size=batch_size)
    with atomic_open(output_path) as handle:
        for text, prediction in zip(texts, predictions):
            # a task whose prediction is one value (semantic_parse: a tree string) has it under "prediction"
            fields = prediction if isinstance(prediction, dict) else {"prediction": prediction}
            handle.write(json.dumps({"text": text, **fields}, ensure_ascii=False) + "\n")
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
