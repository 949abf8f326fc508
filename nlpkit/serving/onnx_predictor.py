"""``OnnxPredictor(path).predict(["text", ...])``: an exported ``model.onnx`` with onnxruntime + numpy only.

The tokenizer lives in the graph, so raw strings go straight in. Each prediction is shaped by the
file's heads (its ``heads`` metadata, :mod:`nlpkit.serving.heads`), their keys merged in head order,
which gives what the PyTorch predictor of the run's task returns:

* a ``label`` head: ``{"label": name, "scores": {name: p}}`` (the intent head of ``intent_slot``:
  ``{"intent", "intent_scores"}``); ``multilabel``: ``{"labels": [...], "scores": {...}}``;
* a ``tags`` head: ``{"tokens": [...], "tags": [...], "spans": [{"type", "start", "end", "text"}]}``
  (``intent_slot``'s: ``"slots"``), so ``intent_slot`` is ``{"intent", "intent_scores", "tokens",
  "slots", "spans"}``;
* a ``value`` head: ``{"score": float}`` (one number per text, key as the export named it);
* a ``vector`` head: ``{"embedding": [float, ...]}`` (``embed(texts)``: the vectors as one array).

A file's string inputs are named by its ``inputs`` metadata (``["text"]`` when absent): a pair or
ranking model (``["text_a", "text_b"]``, ``["query", "document"]``) takes ``predict([(a, b), ...])``.

No task name is looked up here: a file whose export declares its heads is served as it is. Files
exported before the ``heads`` entry are read through ``heads.legacy_heads``.

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
    check_pairs,
    check_texts,
    length_sorted_chunks,
)
from nlpkit.errors import ArtifactError, MissingArtifactError
from nlpkit.serving.heads import HEADS_FIELD, ServedHead, check_graph_outputs, read_heads
from nlpkit.utils.io import sha256_file

#: the metadata entry ``requires_onnxruntime_extensions: "true"`` as protobuf writes it (key, then the
#: value field: tag 0x12, length 4)
EXTENSIONS_ENTRY = b"requires_onnxruntime_extensions\x12\x04true"


def _declares_extensions(path: Path) -> bool:
    """Whether the file's metadata may say it needs onnxruntime-extensions: the entry, found in the raw
    bytes (the metadata follows the graph; no protobuf parse needed). The metadata itself is checked once
    the session is open; registering the library for a file that needs none changes nothing."""
    import mmap

    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.rfind(EXTENSIONS_ENTRY) != -1


def _register_extensions(options, path: Path) -> None:
    """Register onnxruntime-extensions' operators (the wordpiece front end's ``WordpieceTokenizer``,
    ``StringJoin``), or ``ArtifactError`` naming the package to install."""
    try:
        import onnxruntime_extensions
    except ImportError as err:
        raise ArtifactError(
            f"{path}: the graph needs onnxruntime-extensions operators (its tokenizer); install them: "
            "pip install onnxruntime-extensions==0.15.2 (or 'nlpkit[pretrained]')"
        ) from err
    options.register_custom_ops_library(onnxruntime_extensions.get_library_path())


class OnnxPredictor:
    """Loads ``model.onnx`` (or ``model.int8.onnx``) written by ``python -m nlpkit.export``.

    The file is untrusted input: its metadata is checked against the graph before anything is
    served (see ``check_model``), and any problem is an ``ArtifactError`` naming the file and field.

    Args:
        path: the ``.onnx`` file, or a run's ``export`` directory / run directory holding one.
        threads: onnxruntime intra-op threads for a call on one text (a single request); ``None``: 1.
        batch_threads: intra-op threads for a call on several texts; ``None``: ``threads`` when that
            is given (one session for everything, as before), else onnxruntime's count (one per
            physical core) with its threads' spin-waiting off, in a second session made at the
            first such call. ``threads=2`` alone gives one spinning two-thread session (the
            fastest on an idle machine, the slowest on a busy one). Measured on the ATIS
            BiLSTM-CRF file, 2 cores, length-sorted batch-64 calls, sentences/s relative to one
            thread (README, Serving latency, 2026-12-04): idle, two non-spinning threads 1.05x
            and two spinning ones 1.24x; both cores busy with other jobs, 1.00x and 0.75x; one
            other job, 0.83x and 0.68x. One text: two non-spinning threads 1.55x slower than one,
            two spinning ones no faster (0.98x), so a single text keeps one thread.
    """

    def __init__(self, path: str | Path, threads: int | None = None, batch_threads: int | None = None):
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
        self.path = path
        self.threads = threads or 1
        #: threads of the session for calls on several texts (0: onnxruntime's count, no spinning)
        self.batch_threads = batch_threads if batch_threads is not None else (threads or 0)
        self.session = self._session(self.threads, spin=True)
        self._batch_session = self.session if self.batch_threads == self.threads else None
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata = meta
        fields = ModelFields(path, meta)
        if "labels" not in meta and HEADS_FIELD not in meta:
            raise ArtifactError(f"{path}: not an nlpkit export (no 'heads' or 'labels' metadata)")
        requires = fields.text("requires_onnxruntime_extensions", default="false")
        if requires not in ("false", "true"):
            raise fields.problem("requires_onnxruntime_extensions", f"is {requires!r}, not true or false")
        self.task = fields.text("task")
        #: the graph's string inputs, in order: ``["text"]``, or a pair's two (``["text_a", "text_b"]``)
        self.inputs: list[str] = fields.input_names()
        self.heads, self.heads_source = read_heads(fields, self.task)
        # what /metadata shows: checked like every names field, whether a head reads it or not
        self.labels: list[str] = fields.names("labels") if "labels" in meta else []
        self.intents: list[str] = fields.names("intents") if "intents" in meta else []
        self.multilabel: bool = any(head.kind == "multilabel" for head in self.heads)
        declared = fields.json("multilabel", bool, default=None)
        if declared is not None and declared != self.multilabel:
            raise fields.problem(
                "multilabel",
                f"is {json.dumps(declared)} but {self.heads_source} has {'a' if self.multilabel else 'no'} multilabel head",
            )
        if fields.json("label_delimiter", str, default=None, nullable=True) == "":
            raise fields.problem("label_delimiter", "is empty")
        #: every graph output a head reads, each once, in head order
        self.output_names = list(
            dict.fromkeys(name for head in self.heads for name in head.output_of.values())
        )
        self.meta_fields = fields
        self.verified_files = fields.verify_hashes(find_run_dir(path))
        self.check_model()

    def _session(self, threads: int, spin: bool) -> ort.InferenceSession:
        """An onnxruntime session of the file: ``threads`` intra-op threads (0: onnxruntime's count),
        ``spin=False``: idle pool threads sleep instead of spin-waiting (on a busy machine two
        spinning threads ran batch-64 calls at 0.74x the sentences/s of non-spinning ones; on an
        idle one at 1.18x)."""
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if _declares_extensions(self.path):
            _register_extensions(options, self.path)
        try:
            return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own exception types: not a model, corrupt file
            raise ArtifactError(f"{self.path}: onnxruntime cannot load it: {err}") from err

    @property
    def batch_session(self) -> ort.InferenceSession:
        """The session for calls on several texts (``batch_threads``), made at the first such call."""
        if self._batch_session is None:
            self._batch_session = self._session(self.batch_threads, spin=False)
        return self._batch_session

    def check_model(self) -> None:
        """The graph has the string inputs its metadata names and every output the heads read (with the
        type and rank of their kind), and one probe batch agrees with the metadata: a row per text in
        every output, as many scores as names, every emitted label / tag among the names."""
        path = self.path
        inputs = {node.name: node.type for node in self.session.get_inputs()}
        if inputs != {name: "tensor(string)" for name in self.inputs}:
            raise ArtifactError(
                f"{path}: graph inputs {inputs}: its metadata 'inputs' names the string inputs {self.inputs}"
            )
        graph = {node.name: (node.type, len(node.shape or ())) for node in self.session.get_outputs()}
        problem = check_graph_outputs(self.heads, graph, self.heads_source)
        if problem is not None:
            raise ArtifactError(f"{path}: {problem}")
        try:
            probe = dict(zip(self.output_names, self.run(self.probe, self.session)))
        except Exception as err:  # onnxruntime's own exception types
            raise ArtifactError(f"{path}: the graph fails on a probe batch: {err}") from err
        for name, value in probe.items():
            if value.shape[:1] != (len(PROBE_TEXTS),):
                raise ArtifactError(
                    f"{path}: graph output {name!r} has shape {list(value.shape)} for a batch of "
                    f"{len(PROBE_TEXTS)} texts: not one row per text"
                )
        for head in self.heads:
            head.check(self._values(head, probe), self.meta_fields.problem)

    @staticmethod
    def _values(head: ServedHead, named: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A head's graph outputs by role."""
        return {role: named[name] for role, name in head.output_of.items()}

    @property
    def takes_pairs(self) -> bool:
        """Whether each example is two texts (a pair or ranking model) rather than one."""
        return len(self.inputs) == 2

    @property
    def probe(self) -> list:
        """``PROBE_TEXTS``, or as pairs for a two-input file (each with another text)."""
        if not self.takes_pairs:
            return list(PROBE_TEXTS)
        return list(zip(PROBE_TEXTS, PROBE_TEXTS[1:] + PROBE_TEXTS[:1]))

    def run(self, examples: Sequence, session: ort.InferenceSession | None = None) -> list[np.ndarray]:
        """Raw graph outputs, in ``self.output_names`` order (doc_cls: ``label [N]``, ``scores [N, L]``);
        ``examples``: texts, or for a two-input file ``(a, b)`` pairs; run on ``session``, else on
        ``self.session`` for one example and ``self.batch_session`` for several."""
        if not self.takes_pairs:
            feed = {self.inputs[0]: np.array(list(examples), dtype=object)}
        else:
            feed = {
                name: np.array([example[i] for example in examples], dtype=object)
                for i, name in enumerate(self.inputs)
            }
        if session is None:
            session = self.session if len(examples) == 1 else self.batch_session
        return session.run(self.output_names, feed)

    def predict(self, texts: Sequence, batch_size: int = 64) -> list[dict]:
        """One prediction dict per text (a pair model: per ``(a, b)`` pair), in order; an empty or
        whitespace-only text is an ``EmptyTextError`` naming its position (as ``POST /predict``
        answers 422); a pair model given anything but pairs of texts, a ``TypeError``."""
        if self.takes_pairs:
            texts = check_pairs(texts)
            lengths = [len(a) + len(b) for a, b in texts]
        else:
            check_texts(texts)
            lengths = [len(text) for text in texts]
        results: list[dict] = [{}] * len(texts)
        for chunk in length_sorted_chunks(lengths, batch_size):  # shortest first
            shaped = self.shape(dict(zip(self.output_names, self.run([texts[i] for i in chunk]))))
            for i, result in zip(chunk, shaped):
                results[i] = result
        return results

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """The vector of every text ``[N, H]`` float32, in order, from a file with one ``vector`` head
        (``embedding.onnx``): what ``PairPredictor.embed`` gives."""
        heads = [head for head in self.heads if head.kind == "vector"]
        if len(heads) != 1 or self.takes_pairs:
            raise ArtifactError(
                f"{self.path}: embed() needs an embedding file (one text input, one vector head); this "
                f"file's heads are {[head.kind for head in self.heads]}: use predict()"
            )
        check_texts(texts)
        name = heads[0].output_of["vector"]
        index = self.output_names.index(name)
        out: np.ndarray | None = None
        for chunk in length_sorted_chunks([len(text) for text in texts], batch_size):
            vectors = self.run([texts[i] for i in chunk])[index]  # [len(chunk), H]
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[chunk] = vectors
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def shape(self, named: dict[str, np.ndarray]) -> list[dict]:
        """One batch's graph outputs (name -> array) -> one dict per text: each head's keys, merged in
        head order."""
        parts = [head.shape(self._values(head, named)) for head in self.heads]
        if len(parts) == 1:
            return parts[0]
        return [{key: value for part in row for key, value in part.items()} for row in zip(*parts)]


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

    def input_names(self) -> list[str]:
        """The ``inputs`` field: one or two distinct string input names (``["text"]`` when absent)."""
        value = self.json("inputs", list, default=["text"])
        if (
            not 1 <= len(value) <= 2
            or not all(isinstance(n, str) and n for n in value)
            or len(set(value)) != len(value)
        ):
            raise self.problem(
                "inputs", f"must name one or two distinct string inputs, got {self.meta['inputs'][:60]!r}"
            )
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
