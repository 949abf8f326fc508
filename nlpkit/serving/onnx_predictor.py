"""``OnnxPredictor(path).predict(["text", ...])``: an exported ``model.onnx`` with onnxruntime + numpy only.

The tokenizer lives in the graph, so raw strings go straight in. The output matches the PyTorch
predictor of the run's task:

* ``doc_cls``: ``{"label": name, "scores": {name: p}}``, or ``{"labels": [...], "scores": {...}}``
  for multi-label;
* ``tagging``: ``{"tokens": [...], "tags": [...], "spans": [{"type", "start", "end", "text"}]}``;
* ``intent_slot``: ``{"intent", "intent_scores": {name: p}, "tokens", "slots", "spans"}`` (``intent``
  ``None`` and no scores for a text without tokens);
* ``intent``: ``{"intent", "intent_scores": {name: p}}`` (the same ``None`` / no scores without tokens).

A sub-task of a multi-task run is exported as a file of its own kind (``export/<sub-task>/model.onnx``),
so it is served like the single task.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from nlpkit.data.tag_schemes import span_dicts  # pure Python, no torch
from nlpkit.errors import MissingArtifactError


class OnnxPredictor:
    """Loads ``model.onnx`` (or ``model.int8.onnx``) written by ``python -m nlpkit.export``.

    Args:
        path: the ``.onnx`` file, or a run's ``export`` directory / run directory holding one.
        threads: onnxruntime intra-op threads (``None``: onnxruntime's default).
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        path = Path(path)
        if path.is_dir():
            candidates = [path / "model.onnx", path / "export" / "model.onnx"]
            subtasks = sorted(path.glob("*/model.onnx")) + sorted(path.glob("export/*/model.onnx"))
            found = next((c for c in candidates if c.is_file()), None)
            if found is None and subtasks:  # a multi-task run: one file per exported sub-task
                raise MissingArtifactError(
                    f"{path}: no model.onnx of its own; a multi-task run's sub-task exports are "
                    f"{', '.join(str(s) for s in subtasks)}: pass one of them"
                )
            path = found or candidates[0]
        if not path.is_file():
            raise MissingArtifactError(
                f"{path}: exported model not found (run python -m nlpkit.export run_dir=...; "
                "a multi-task run: ... task=SUBTASK)"
            )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if "labels" not in meta:
            raise ValueError(f"{path}: not an nlpkit export (no 'labels' metadata)")
        if meta.get("requires_onnxruntime_extensions", "false") != "false":
            raise ValueError(f"{path}: needs onnxruntime-extensions, which OnnxPredictor does not load")
        self.metadata = dict(meta)
        self.task = meta.get("task", "doc_cls")
        if self.task not in OUTPUTS:
            raise ValueError(
                f"{path}: task {self.task!r} is not one this predictor serves ({', '.join(OUTPUTS)})"
            )
        self.labels: list[str] = json.loads(meta["labels"])  # class names, tag names, or intent names
        self.intents: list[str] = json.loads(meta.get("intents", "[]"))
        self.multilabel: bool = json.loads(meta.get("multilabel", "false"))
        self.label_delimiter: str = json.loads(meta.get("label_delimiter", "null")) or ","
        self.output_names = OUTPUTS[self.task]

    def run(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Raw graph outputs, in ``self.output_names`` order (doc_cls: ``label [N]``, ``scores [N, L]``)."""
        return self.session.run(self.output_names, {"text": np.array(list(texts), dtype=object)})

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        if isinstance(texts, str):
            raise TypeError("predict() takes a list of texts, not one string")
        results: list[dict] = []
        shape = getattr(self, f"_{self.task}")
        for start in range(0, len(texts), batch_size):
            results.extend(shape(*self.run(texts[start : start + batch_size])))
        return results

    # One method per task: raw outputs of one batch -> one dict per text.
    def _doc_cls(self, labels: np.ndarray, scores: np.ndarray) -> list[dict]:
        out = []
        for label, row in zip(labels, scores):
            named = {name: float(p) for name, p in zip(self.labels, row)}
            if self.multilabel:
                out.append(
                    {"labels": [n for n in str(label).split(self.label_delimiter) if n], "scores": named}
                )
            else:
                out.append({"label": str(label), "scores": named})
        return out

    def _tagging(self, tokens: np.ndarray, tags: np.ndarray) -> list[dict]:
        out = []
        for token_row, tag_row in zip(tokens, tags):
            words = [str(t) for t in token_row if t != ""]
            names = [str(t) for t in tag_row[: len(words)]]
            out.append({"tokens": words, "tags": names, "spans": span_dicts(words, names)})
        return out

    def _intent(self, intent: np.ndarray, intent_scores: np.ndarray) -> list[dict]:
        """The graph's intent is '' exactly for a text without tokens: then ``None`` and no scores."""
        return [
            {"intent": str(name), "intent_scores": {n: float(p) for n, p in zip(self.intents, row)}}
            if name != ""
            else {"intent": None, "intent_scores": {}}
            for name, row in zip(intent, intent_scores)
        ]

    def _intent_slot(
        self, intent: np.ndarray, intent_scores: np.ndarray, tokens: np.ndarray, slots: np.ndarray
    ) -> list[dict]:
        return [
            {**intents, "tokens": tagged["tokens"], "slots": tagged["tags"], "spans": tagged["spans"]}
            for intents, tagged in zip(self._intent(intent, intent_scores), self._tagging(tokens, slots))
        ]


#: graph outputs each task's export writes, in the order the shaping methods take them
OUTPUTS = {
    "doc_cls": ["label", "scores"],
    "tagging": ["tokens", "tags"],
    "intent_slot": ["intent", "intent_scores", "tokens", "slots"],
    "intent": ["intent", "intent_scores"],
}
