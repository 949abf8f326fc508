"""One-file ONNX export of a trained run: tokenizer, network and decoding in one graph.

``python -m nlpkit.export run_dir=DIR [quantize=true] [exporter=torchscript|dynamo]`` or
``nlpkit.export.export_run(DIR)`` writes ``DIR/export/model.onnx`` (and ``model.int8.onnx`` with
``quantize``) only after a parity gate against the PyTorch predictor and the Python featurizer
passed, and ``DIR/export/export_report.json`` either way. Each task's ``Task.export_onnx`` hook fills
in an :class:`ExportSpec` (its ``export.py``: outputs, metadata, reference predictions, test texts,
metrics) and hands it to :func:`run_export`, the steps every export shares, in order:

1. the featurizer's front-end graph (``spec.front_end``, picked by the featurizer kind:
   ``nlpkit.export.front_ends``);
2. the network, exported with ``torch.onnx`` from the model's own ``input_example()`` and
   ``forward_for_export`` (``nlpkit.modules.exportable``);
3. the decoding graph of each head, from its output layer's ``onnx_decoding()`` (``nlpkit.export.heads``),
   assembled with 1. and 2. into one graph; each head's ``serving()`` entry goes into the ``heads``
   metadata, checked against the graph as the server will read it (``nlpkit.serving.heads``);
4. the parity gate: the front end's checks, then every head's outputs against the PyTorch predictor at
   batch 1 and a mixed batch of 64, on the test split and the edge cases;
5. only when every check passed: the file, its metrics on the split, and with ``quantize`` the int8
   file with its metric deltas.

A spec may read several string inputs (``spec.inputs``: ``task=pair``'s ``text_a`` and ``text_b``): the
same front end is built once per input, writing the network inputs with that input's suffix
(``model/tokens_a``, ``model/tokens_b``), the examples are tuples of texts, and the front end's checks
run on a graph of the front end alone (the same builder over one input ``text``).

A ``task=multitask`` run is exported one sub-task at a time (``task=NAME``, ``export_run(DIR,
task=NAME)``): that sub-task's model as a standalone file of its kind, in ``DIR/export/NAME/``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from nlpkit.errors import ExportError
from nlpkit.export import graph as G
from nlpkit.export.front_ends import FrontEnd, FrontEndValues, timer
from nlpkit.export.parity import (
    INT8_SCORE_TOLERANCE,
    MIXED_BATCH,
    accept_model,
    gate_report,
    int8_check_result,
    provenance_metadata,
)
from nlpkit.export.text_graph import GraphBuilder, opset_imports
from nlpkit.registry import get_task
from nlpkit.training.run_dir import remove_temporaries, run_lock
from nlpkit.utils.io import write_bytes, write_json

log = logging.getLogger("nlpkit.export")

EXPORT_DIR = "export"
REPORT_FILE = "export_report.json"


# nlpkit.export.heads.LabelHead | TagHead | ValueHead: network, outputs, value_infos, check_network,
# build, describe, doc, serving, from_prediction, rows, new_checks, compare
Head = Any


@dataclass
class ExportSpec:
    """What one task's export declares; :func:`run_export` does the rest.

    ``model`` is an ``Exportable`` with its weights loaded; rows (``reference``'s and the graph's) are
    dicts keyed by the graph's output names, one per example. An example is a text, or with several
    ``inputs`` a tuple of texts in their order.
    """

    task: str  # the metadata's and the report's "task"
    model: Any  # nlpkit.modules.exportable.Exportable, eval mode
    front_end: FrontEnd
    heads: list[Head]  # in graph output order
    metadata: dict[str, str]  # the task's metadata ("task", "labels", ...), before provenance
    doc: str  # the graph's doc string
    split: str  # the split the gate and the metrics run on
    texts: list  # that split's examples (texts; tuples of texts with several inputs)
    reference: Callable[[list], list[dict]]  # the PyTorch predictor's rows for any examples
    metrics: Callable[[list[dict]], dict[str, float]]  # the split's metrics from the graph's rows
    agreement: str | None = None  # an output whose int8-vs-fp32 agreement the report records
    subtask: str | None = None  # the sub-task's name in a multi-task run
    #: graph string input -> the suffix of the network inputs its front end writes (one input: "")
    inputs: dict[str, str] = field(default_factory=lambda: {"text": ""})
    #: the front end's edge-case texts -> the examples the prediction checks add (default: as they are)
    edge: Callable[[list[str]], list] | None = None
    #: the texts the front end's checks run on (default: ``texts``, which must then be texts)
    feature_texts: list[str] | None = None
    #: run the front end's checks (false: a second file over a front end another spec's gate checked)
    check_front_end: bool = True

    @property
    def outputs(self) -> list[str]:
        return [name for head in self.heads for name in head.outputs]


@dataclass
class ExportSource:
    """What is exported: a trained run, or one sub-task of a multi-task run (``subtask``)."""

    task: str  # the task of its kind (a sub-task: its own kind, e.g. "intent")
    data_cfg: Any  # its data section
    vocab_dir: Path  # where its vocabularies are (a sub-task: tasks/<name>/)
    subtask: str | None

    @classmethod
    def of(cls, run_dir: Path, cfg, subtask: str | None = None) -> ExportSource:
        if subtask is None:
            return cls(str(cfg.task.name), cfg.data, Path(run_dir), None)
        # the run's own (multi-)task says where the sub-task's config and vocabularies are
        task, data_cfg, vocab_dir = get_task(str(cfg.task.name)).subtask_source(cfg, run_dir, subtask)
        return cls(task, data_cfg, Path(vocab_dir), subtask)

    def predictor(self, run_dir: Path, cfg):
        """The PyTorch predictor (a sub-task's as ``nlpkit.load(run_dir)`` holds it: the shared modules +
        its own heads)."""
        predictor = get_task(str(cfg.task.name)).predictor(cfg, run_dir)
        return predictor if self.subtask is None else predictor.predictors[self.subtask]

    @property
    def metadata(self) -> dict[str, str]:
        """The metadata's first keys: ``task`` (and ``subtask``)."""
        return {"task": self.task, **({"subtask": self.subtask} if self.subtask is not None else {})}


def export_network(model, exporter: str) -> onnx.ModelProto:
    """The network alone: ``model.forward_for_export`` traced on ``model.input_example()``, every input
    axis dynamic, every output axis but the last (the labels); constant-folded (``G.fold_constants``)."""
    import torch

    class Network(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner.forward_for_export(*inputs)

    example = model.input_example()
    with torch.no_grad():
        outputs = model.forward_for_export(*example.values())
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    names = list(model.export_outputs)
    if len(outputs) != len(names):
        raise ExportError(
            f"{type(model).__name__}.forward_for_export returned {len(outputs)} tensors for export_outputs {names}"
        )
    suffix = getattr(model, "export_axis_suffix", lambda name: "")
    axes = {name: G.dynamic_axes(value.dim(), True, suffix(name)) for name, value in example.items()}
    axes.update({name: G.dynamic_axes(value.dim(), False) for name, value in zip(names, outputs)})
    network = G.export_torch(Network(model), tuple(example.values()), list(example), names, axes, exporter)
    return G.fold_constants(network)


def network_reads(network: onnx.ModelProto) -> set[str]:
    """The inputs the exported network kept."""
    return {value.name for value in network.graph.input}


def network_shapes(network: onnx.ModelProto) -> dict[str, list | None]:
    """The network's outputs and their declared shapes (sizes, axis names; ``None``: not declared)."""
    shapes: dict[str, list | None] = {}
    for value in network.graph.output:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim]
        shapes[value.name] = dims if tensor.HasField("shape") else None
    return shapes


def check_heads(network: onnx.ModelProto, spec: ExportSpec) -> None:
    """Every head reads a network output that exists, of the shape it decodes."""
    shapes = network_shapes(network)
    for head in spec.heads:
        if head.network not in shapes:
            raise ExportError(
                f"refused: a {type(head).__name__} reads network output {head.network!r}; "
                f"{type(spec.model).__name__}.export_outputs are {sorted(shapes)}"
            )
        head.check_network(shapes[head.network])


def heads_metadata(spec: ExportSpec) -> str:
    """The ``heads`` metadata entry: each head's ``serving()`` description, in output order."""
    return json.dumps([head.serving() for head in spec.heads], ensure_ascii=False)


def check_servable(session, metadata: dict[str, str]) -> None:
    """The file's metadata, read as ``nlpkit.serving`` will: its heads parse, their names fields are
    there, and every output they read exists with the type their kind needs. A head whose ``serving()``
    disagrees with its ``value_infos()`` is a bug here, not a file the server refuses later."""
    from pathlib import PurePath

    from nlpkit.errors import ArtifactError
    from nlpkit.serving.heads import check_graph_outputs, read_heads
    from nlpkit.serving.onnx_predictor import ModelFields

    try:
        heads, source = read_heads(ModelFields(PurePath("model.onnx"), metadata), metadata["task"])
    except ArtifactError as err:
        raise ExportError(f"the export's serving description is invalid: {err}") from err
    graph = {node.name: (node.type, len(node.shape or ())) for node in session.get_outputs()}
    problem = check_graph_outputs(heads, graph, source)
    if problem is not None:
        raise ExportError(f"the export's serving description does not fit its graph: {problem}")


def input_reads(spec: ExportSpec, reads: set[str]) -> dict[str, set[str]]:
    """Graph input -> the front-end features the network reads of it (``tokens_a`` -> ``tokens`` of the
    input with suffix ``_a``); a network input no graph input feeds is refused."""
    if list(spec.inputs.values()) == [""]:
        return {name: set(reads) for name in spec.inputs}
    own = {
        name: {read[: -len(suffix)] for read in reads if read.endswith(suffix)}
        for name, suffix in spec.inputs.items()
    }
    fed = {read + spec.inputs[name] for name, features in own.items() for read in features}
    if reads - fed:
        raise ExportError(
            f"refused: the network reads {sorted(reads - fed)}, which no graph input feeds "
            f"(inputs and their suffixes: {spec.inputs})"
        )
    return own


def build_graph(network: onnx.ModelProto, spec: ExportSpec, metadata: dict[str, str]) -> onnx.ModelProto:
    """Front end (once per string input) -> network -> each head's decoding, as one checked graph."""
    check_heads(network, spec)
    reads = input_reads(spec, network_reads(network))
    values: dict[str, FrontEndValues] = {}

    def pre(b: GraphBuilder) -> None:
        for name, suffix in spec.inputs.items():
            values[name] = spec.front_end.build(b, name, reads[name], suffix)

    def post(b: GraphBuilder) -> None:
        # one input: its tokens, mask and count; several: none (the heads decode one value per example)
        front = next(iter(values.values())) if len(values) == 1 else FrontEndValues()
        for head in spec.heads:
            head.build(b, front)

    inputs = [G.string_input(name) for name in spec.inputs]
    outputs = [info for head in spec.heads for info in head.value_infos()]
    return G.assemble(network, inputs, outputs, pre, post, metadata, spec.doc)


def front_end_model(front: FrontEnd, reads: set[str]) -> onnx.ModelProto:
    """The front end alone over one input ``text``, writing ``model/<feature>`` for ``reads``: what the
    front end's checks run on when the exported graph has several inputs (each built the same way)."""
    b = GraphBuilder("nlpkit/")
    front.build(b, "text", reads)
    outputs = [
        helper.make_tensor_value_info(G.MODEL_PREFIX + name, TensorProto.INT64, None)
        for name in sorted(reads)
    ]
    graph = helper.make_graph(
        b.nodes, "nlpkit_front_end", [G.string_input("text")], outputs, initializer=b.initializers
    )
    model = helper.make_model(graph, opset_imports=opset_imports(), producer_name="nlpkit")
    model.ir_version = 9
    return model


def shown(example: Any) -> Any:
    """An example as a report records it: a text (or each text of a tuple) cut at 200 characters."""
    return example[:200] if isinstance(example, str) else [text[:200] for text in example]


def graph_rows(session, spec: ExportSpec, texts: Sequence[str], batch_size: int) -> list[dict]:
    """The graph's outputs for ``texts``, ``batch_size`` at a time, as one row per text."""
    rows: list[dict] = []
    for values in G.run_batched(session, texts, batch_size, spec.outputs, list(spec.inputs)):
        named = dict(zip(spec.outputs, values))
        per_head = [head.rows(named) for head in spec.heads]
        rows.extend({k: v for parts in zipped for k, v in parts.items()} for zipped in zip(*per_head))
    return rows


def check_predictions(session, spec: ExportSpec, texts: list[str], batch_sizes: list[int]) -> dict[str, dict]:
    """Every head's outputs == the PyTorch predictor's, at each batch size (names exactly, scores within
    ``SCORE_TOLERANCE``)."""
    reference = spec.reference(texts)
    checks = {
        name: check for head in spec.heads for name, check in head.new_checks(len(texts), batch_sizes).items()
    }
    for batch_size in batch_sizes:
        for text, want, have in zip(texts, reference, graph_rows(session, spec, texts, batch_size)):
            record = {"batch_size": batch_size, "text": shown(text)}
            for head in spec.heads:
                head.compare(want, have, record, checks)
    return {name: check.result() for name, check in checks.items()}


def int8_checks(spec: ExportSpec) -> Callable[[Any, Any], dict[str, dict]]:
    """The int8 gate's checks: every head's own comparison, the int8 rows against the fp32 rows on the
    parity split, with score checks at ``INT8_SCORE_TOLERANCE``."""

    def run(fp32_session, int8_session) -> dict[str, dict]:
        if not spec.texts:
            return {}
        fp32, int8 = (graph_rows(s, spec, spec.texts, MIXED_BATCH) for s in (fp32_session, int8_session))
        checks = {
            name: check
            for head in spec.heads
            for name, check in head.new_checks(len(spec.texts), [MIXED_BATCH]).items()
        }
        for check in checks.values():
            if check.tolerance is not None:
                check.tolerance = INT8_SCORE_TOLERANCE
        for text, want, have in zip(spec.texts, fp32, int8):
            record = {"batch_size": MIXED_BATCH, "text": shown(text)}
            for head in spec.heads:
                head.compare(want, have, record, checks)
        return {name: int8_check_result(check, len(spec.texts)) for name, check in checks.items()}

    return run


def _agreement(output: str, spec: ExportSpec) -> Callable[[Any, Any], float | None]:
    def agreement(fp32_session, int8_session) -> float | None:
        """Share of the split's texts whose int8 ``output`` equals the fp32 one."""
        if not spec.texts:
            return None
        fp32, int8 = (graph_rows(s, spec, spec.texts, MIXED_BATCH) for s in (fp32_session, int8_session))
        return sum(a[output] == b[output] for a, b in zip(fp32, int8)) / len(spec.texts)

    return agreement


def run_export(
    spec: ExportSpec, run_dir: Path, quantize: bool, exporter: str
) -> tuple[dict, dict[str, bytes]]:
    """Build and check the graph of ``spec``: ``(report, {file name: bytes})``, the files only when
    every check passed."""
    from nlpkit.training.checkpoint import best_checkpoint

    started = time.perf_counter()
    front = spec.front_end
    outputs = {k: v for head in spec.heads for k, v in head.describe(front.counts_tokens).items()}
    metadata = {
        **spec.metadata,
        **provenance_metadata(run_dir, best_checkpoint(run_dir), front.tokenizer_path),
        **front.metadata(run_dir),
        "inputs": json.dumps(list(spec.inputs)),
        "outputs": json.dumps(outputs),
        "heads": heads_metadata(spec),
    }
    network = export_network(spec.model, exporter)
    model = build_graph(network, spec, metadata)
    export_seconds = time.perf_counter() - started

    edge = front.edge_cases()
    edge_examples = spec.edge(edge) if spec.edge is not None else edge
    checks_started = time.perf_counter()
    seconds: dict[str, float] = {}
    timed = timer(seconds)
    reads = input_reads(spec, network_reads(network))
    feature_texts = spec.feature_texts if spec.feature_texts is not None else spec.texts
    if not spec.check_front_end:
        checks = {}
    elif list(spec.inputs) == ["text"]:
        checks = front.checks(model, reads["text"], spec.split, feature_texts, edge, timed)
    else:  # every input's front end is the same builder's: checked once, alone
        features = set().union(*reads.values())
        checks = front.checks(
            front_end_model(front, features), features, spec.split, feature_texts, edge, timed
        )
    session = G.session(model)
    check_servable(session, metadata)
    examples = spec.texts + edge_examples
    checks.update(timed("predictions", lambda: check_predictions(session, spec, examples, [1, MIXED_BATCH])))
    report = gate_report(
        task=spec.task,
        run_dir=run_dir,
        split=spec.split,
        examples=len(spec.texts),
        edge_cases=len(edge_examples),
        checks=checks,
        metadata=metadata,
        exporter=exporter,
        model=model,
        export_seconds=export_seconds,
    )
    report["timings"]["checks"] = seconds
    if spec.subtask is not None:
        report["subtask"] = spec.subtask

    def quantized() -> onnx.ModelProto:
        int8 = {**metadata, "quantization": "onnxruntime dynamic int8 (weights)"}
        return build_graph(G.quantize_dynamic_int8(network), spec, int8)

    files = timed(
        "metrics" + ("_and_quantize" if quantize else ""),
        lambda: accept_model(
            report,
            spec.split,
            model,
            session,
            lambda s: spec.metrics(graph_rows(s, spec, spec.texts, MIXED_BATCH)),
            quantized=quantized if quantize else None,
            agreement=_agreement(spec.agreement, spec) if spec.agreement else None,
            int8_checks=int8_checks(spec),
        ),
    )
    report["timings"]["checks_seconds"] = round(time.perf_counter() - checks_started, 3)
    report["timings"]["total_seconds"] = round(time.perf_counter() - started, 3)
    return report, files


def _remove_stale(out_dir: Path, keep: set[str]) -> list[Path]:
    """Delete what an earlier export left that this one did not write: a ``model.int8.onnx`` beside a
    new fp32-only ``model.onnx``, a model whose re-export failed its gate, temporary files of a killed
    write. The export folder then holds exactly the latest export's files."""
    stale = [p for p in out_dir.glob("*.onnx") if p.name not in keep] if out_dir.is_dir() else []
    for path in stale:
        path.unlink()
        log.info("removed %s: not part of this export", path)
    return stale + remove_temporaries(out_dir)


def export_run(
    run_dir: str | Path,
    quantize: bool = False,
    exporter: str = "torchscript",
    out_dir: str | Path | None = None,
    task: str | None = None,
) -> dict[str, Any]:
    """Export ``run_dir``; returns the report. Raises :class:`ExportError` when the config is refused
    or the parity gate fails (the report is still written; no model file is).

    ``task``: for a ``task=multitask`` run (and only there), the sub-task to export; its files go to
    ``run_dir/export/<task>/`` unless ``out_dir`` is given."""
    from nlpkit.api import load_run_config

    run_dir = Path(run_dir).resolve()  # provenance paths are relative to the absolute run directory
    cfg = load_run_config(run_dir)
    task_cls = get_task(str(cfg.task.name))
    default = run_dir / EXPORT_DIR if task is None else run_dir / EXPORT_DIR / task
    out_dir = Path(out_dir) if out_dir is not None else default
    with run_lock(run_dir, "export"):
        report, files = task_cls.export_onnx(run_dir, cfg, out_dir, quantize, exporter, subtask=task)
        written = files if report["passed"] else {}
        for name, payload in written.items():
            write_bytes(out_dir / name, payload)  # temp file + rename: never a half-written model
        # a task that writes a whole folder itself (task=semantic_parse's native/) names it in the report
        report["files_written"] = sorted(written) + list(report.pop("directories_written", []))
        report["files_removed"] = [path.name for path in _remove_stale(out_dir, keep=set(written))]
        write_json(out_dir / REPORT_FILE, report)
    if not report["passed"]:
        failed = [name for name, check in report["checks"].items() if not check["passed"]]
        examples = [
            example
            for name in failed
            for example in report["checks"][name].get("first_mismatches", [report["checks"][name]])[:2]
        ]
        raise ExportError(
            f"parity gate failed ({', '.join(failed)}); no model written. First differences: {examples}. "
            f"Full report: {out_dir / REPORT_FILE}"
        )
    return report


__all__ = [
    "ExportError",
    "ExportSource",
    "ExportSpec",
    "export_network",
    "export_run",
    "front_end_model",
    "run_export",
]
