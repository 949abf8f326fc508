"""``OnnxPredictor(path).predict(["text", ...])``: an exported ``model.onnx`` with onnxruntime + numpy only.

The tokenizer lives in the graph, so raw strings go straight in. The output matches
``nlpkit.inference.DocClassificationPredictor.predict``:
``[{"label": name, "scores": {name: p}}]``, or ``{"labels": [...], "scores": {...}}`` for multi-label.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort


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
            path = next((c for c in candidates if c.is_file()), candidates[0])
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: exported model not found (run python -m nlpkit.export run_dir=...)"
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
        self.task = meta.get("task")
        self.labels: list[str] = json.loads(meta["labels"])
        self.multilabel: bool = json.loads(meta.get("multilabel", "false"))
        self.label_delimiter: str = json.loads(meta.get("label_delimiter", "null")) or ","

    def run(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Raw graph outputs: ``label [N]`` strings and ``scores [N, L]``."""
        label, scores = self.session.run(["label", "scores"], {"text": np.array(list(texts), dtype=object)})
        return label, scores

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        if isinstance(texts, str):
            raise TypeError("predict() takes a list of texts, not one string")
        results: list[dict] = []
        for start in range(0, len(texts), batch_size):
            labels, scores = self.run(texts[start : start + batch_size])
            for label, row in zip(labels, scores):
                named = {name: float(p) for name, p in zip(self.labels, row)}
                if self.multilabel:
                    on = [name for name in str(label).split(self.label_delimiter) if name]
                    results.append({"labels": on, "scores": named})
                else:
                    results.append({"label": str(label), "scores": named})
        return results
