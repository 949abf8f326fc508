"""``OnnxPredictor(path).predict(["text", ...])``: an exported ``model.onnx`` with onnxruntime + numpy only.

The tokenizer lives in the graph, so raw strings go straight in. The output matches the PyTorch
predictor of the run's task:

* ``doc_cls``: ``{"label": name, "scores": {name: p}}``, or ``{"labels": [...], "scores": {...}}``
  for multi-label;
* ``tagging``: ``{"tokens": [...], "tags": [...], "spans": [{"type", "start", "end", "text"}]}``;
* ``intent_slot``: ``{"intent", "intent_scores": {name: p}, "tokens", "slots", "spans"}``;
* ``intent``: ``{"intent", "intent_scores": {name: p}}``.

An empty or whitespace-only text is refused (``EmptyTextError``) for every task: training refuses it.

A sub-task of a multi-task run is exported as a file of its own kind (``export/<sub-task>/model.onnx``),
so it is served like the single task.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import onnxruntime as ort

from nlpkit.data.inputs import (  # noqa: F401 - EmptyTextError, blank_text_indices: re-exported
    EMPTY_TEXT_MESSAGE,
    EmptyTextError,
    blank_text_indices,
    check_texts,
)
from nlpkit.data.tag_schemes import span_dicts  # pure Python, no torch
from nlpkit.errors import ArtifactError, MissingArtifactError
from nlpkit.utils.io import sha256_file


class OnnxPredictor:
    """Loads ``model.onnx`` (or ``model.int8.onnx``) written by ``python -m nlpkit.export``.

    The file is untrusted input: its metadata is checked against the graph before anything is
    served (see ``check_model``), and any problem is an ``ArtifactError`` naming the file and field.

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
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own exception types: not a model, corrupt file
            raise ArtifactError(f"{path}: onnxruntime cannot load it: {err}") from err
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata = meta
        fields = ModelFields(path, meta)
        if "labels" not in meta:
            raise ArtifactError(f"{path}: not an nlpkit export (no 'labels' metadata)")
        if fields.text("requires_onnxruntime_extensions", default="false") != "false":
            raise ArtifactError(f"{path}: needs onnxruntime-extensions, which OnnxPredictor does not load")
        self.task = fields.text("task")
        if self.task not in OUTPUTS:
            raise ArtifactError(
                f"{path}: metadata 'task' is {self.task!r}, not a task this predictor serves "
                f"({', '.join(OUTPUTS)})"
            )
        self.labels: list[str] = fields.names("labels")  # class names, tag names, or intent names
        has_intents = self.task in ("intent", "intent_slot")
        self.intents: list[str] = fields.names("intents") if has_intents else []
        self.multilabel: bool = self.task == "doc_cls" and fields.json("multilabel", bool, default=False)
        delimiter = fields.json("label_delimiter", str, default=None, nullable=True)
        if delimiter == "":
            raise ArtifactError(f"{path}: metadata 'label_delimiter' is empty")
        self.label_delimiter: str = delimiter or ","
        self.output_names = OUTPUTS[self.task]
        self.verified_files = fields.verify_hashes(find_run_dir(path))
        self.check_model()

    def check_model(self) -> None:
        """The graph has the task's input and outputs, and one probe batch agrees with the metadata:
        as many scores as label names, every emitted label / tag / intent among the names."""
        path = self.path
        inputs = {node.name: node.type for node in self.session.get_inputs()}
        if inputs != {"text": "tensor(string)"}:
            raise ArtifactError(
                f"{path}: graph inputs {inputs}: an nlpkit export takes one string input 'text'"
            )
        outputs = {node.name for node in self.session.get_outputs()}
        missing = [name for name in self.output_names if name not in outputs]
        if missing:
            raise ArtifactError(
                f"{path}: graph has no output {', '.join(map(repr, missing))}, which metadata 'task' "
                f"{self.task!r} needs ({', '.join(self.output_names)})"
            )
        try:
            probe = dict(zip(self.output_names, self.run(PROBE_TEXTS)))
        except Exception as err:  # onnxruntime's own exception types
            raise ArtifactError(f"{path}: the graph fails on a probe batch: {err}") from err
        if "scores" in probe:
            self._check_scores(probe["scores"], probe["label"], self.labels, "labels")
        if "intent_scores" in probe:
            self._check_scores(probe["intent_scores"], probe["intent"], self.intents, "intents")
        tags = probe.get("tags", probe.get("slots"))
        if tags is not None:
            unknown = sorted({str(tag) for tag in tags.ravel()} - set(self.labels) - {""})
            if unknown:
                raise ArtifactError(
                    f"{path}: metadata 'labels' does not name the tags the graph emits ({unknown[:3]} missing)"
                )

    def _check_scores(self, scores: np.ndarray, names_out: np.ndarray, names: list[str], field: str) -> None:
        path = self.path
        if scores.ndim != 2 or scores.shape[1] != len(names):
            raise ArtifactError(
                f"{path}: metadata {field!r} has {len(names)} names but the graph outputs "
                f"{scores.shape[-1] if scores.ndim else 0} scores per text"
            )
        for row, emitted in zip(scores, names_out):
            emitted = str(emitted)
            if self.multilabel and field == "labels":
                unknown = [n for n in emitted.split(self.label_delimiter) if n and n not in names]
                if unknown:
                    raise ArtifactError(
                        f"{path}: the graph emits label {unknown[0]!r}, which metadata {field!r} does not name"
                    )
            elif names[int(np.argmax(row))] != emitted:
                raise ArtifactError(
                    f"{path}: metadata {field!r} does not match the graph: the best score is at the position "
                    f"of {names[int(np.argmax(row))]!r}, the graph names it {emitted!r}"
                )

    def run(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Raw graph outputs, in ``self.output_names`` order (doc_cls: ``label [N]``, ``scores [N, L]``)."""
        return self.session.run(self.output_names, {"text": np.array(list(texts), dtype=object)})

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        """One prediction dict per text, in order; an empty or whitespace-only text is an
        ``EmptyTextError`` naming its position (as ``POST /predict`` answers 422)."""
        check_texts(texts)
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
        return [
            {"intent": str(name), "intent_scores": {n: float(p) for n, p in zip(self.intents, row)}}
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

#: what ``check_model`` runs once at load: texts with tokens, of different lengths
PROBE_TEXTS = ["wake me up at 7 am", "play some jazz by miles davis tomorrow", "a"]

SHA256 = re.compile(r"[0-9a-f]{64}")
#: metadata field holding a SHA-256 -> field naming the hashed file, relative to the run directory
HASHED_FILES = {
    "weights_sha256": "weights_file",
    "tokenizer_sha256": "tokenizer_file",
    "chars_sha256": "chars_file",
}


def find_run_dir(model: Path) -> Path | None:
    """The run directory an export was written into (``RUN/export/model.onnx`` or, for a multi-task
    sub-task, ``RUN/export/NAME/model.onnx``), or ``None`` for a model file kept elsewhere."""
    for export_dir in (model.parent, model.parent.parent):
        if export_dir.name == "export" and (export_dir.parent / "config.yaml").is_file():
            return export_dir.parent
    return None


class ModelFields:
    """Typed reads of an exported model's metadata; a missing or mistyped field is an ArtifactError
    naming the file and the field."""

    def __init__(self, path: Path, meta: dict[str, str]):
        self.path = path
        self.meta = meta

    def problem(self, field: str, what: str) -> ArtifactError:
        return ArtifactError(f"{self.path}: metadata {field!r} {what}")

    def text(self, field: str, default: str | None = None) -> str:
        if field not in self.meta:
            if default is None:
                raise self.problem(field, "is missing (not an nlpkit export, or a damaged one)")
            return default
        return self.meta[field]

    def json(self, field: str, kind: type, default: Any, nullable: bool = False) -> Any:
        if field not in self.meta:
            return default
        try:
            value = json.loads(self.meta[field])
        except json.JSONDecodeError:
            raise self.problem(field, f"is not JSON: {self.meta[field][:60]!r}") from None
        if value is None and nullable:
            return None
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self.problem(field, f"must be a JSON {kind.__name__}, got {self.meta[field][:60]!r}")
        return value

    def names(self, field: str) -> list[str]:
        """A non-empty JSON list of distinct, non-empty strings (label, tag or intent names)."""
        shown = self.text(field)[:60]
        try:
            value = json.loads(self.meta[field])
        except json.JSONDecodeError:
            raise self.problem(field, f"is not JSON: {shown!r}") from None
        if not isinstance(value, list) or not value or not all(isinstance(n, str) and n for n in value):
            raise self.problem(field, f"must be a JSON list of names, got {shown!r}")
        if len(set(value)) != len(value):
            raise self.problem(field, "names the same label twice")
        return value

    def verify_hashes(self, run_dir: Path | None) -> dict[str, str]:
        """Check every ``*_sha256`` field; where the export sits in its run directory and the hashed
        file is still there, the file must hash to it (else the run changed after the export, and the
        model would answer for another run). Returns ``{field: file}`` for the hashes verified."""
        verified = {}
        for field, file_field in HASHED_FILES.items():
            if field not in self.meta:
                continue
            digest = self.meta[field]
            if not SHA256.fullmatch(digest):
                raise self.problem(field, f"is not a SHA-256 hex digest: {digest[:70]!r}")
            if file_field not in self.meta:
                continue
            relative = PurePosixPath(self.meta[file_field])
            if relative.is_absolute() or ".." in relative.parts or not relative.parts:
                raise self.problem(
                    file_field, f"must be a path inside the run directory, got {str(relative)!r}"
                )
            if run_dir is None or not (run_dir / relative).is_file():
                continue  # a model file deployed on its own: nothing to compare with
            actual = sha256_file(run_dir / relative)
            if actual != digest:
                raise self.problem(
                    field,
                    f"does not match {run_dir / relative} (sha256 {actual[:12]}..., recorded "
                    f"{digest[:12]}...): the run changed after this export; re-export it "
                    f"(python -m nlpkit.export run_dir={run_dir})",
                )
            verified[field] = str(relative)
        return verified
