"""Putting one ONNX file together: featurizer nodes + exported network + decoding, and running it."""

from __future__ import annotations

import contextlib
import inspect
import io
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from nlpkit.errors import ExportError
from nlpkit.export.text_graph import ML_OPSET, MS_OPSET, OPSET, GraphBuilder

MODEL_PREFIX = "model/"


def dynamic_axes(rank: int, is_input: bool, suffix: str = "") -> dict[int, str]:
    """Which axes of a network value vary: every input axis (``batch``, ``time``, ``characters``);
    every output axis but the last (the labels), except a rank-1 output (one value per text: a
    value head's ``[B]``), whose one axis is the batch. ``suffix`` names the non-batch axes of one
    group of inputs apart from another's (two texts of a pair: ``time_a``, ``time_b``)."""
    labels = ("batch", "time", "characters", "axis3", "axis4")
    return {
        axis: labels[axis] + (suffix if axis else "")
        for axis in range(rank if is_input or rank == 1 else rank - 1)
    }


@contextlib.contextmanager
def component_export_forwards(model) -> Iterator[int]:
    """While active, every component of ``model`` with a ``forward_for_export`` hook
    (``nlpkit.modules.exportable``) runs that instead of ``forward``, after its optional
    ``prepare_export()`` (undone by ``finish_export()`` on exit); yields how many were switched.
    Models (``Exportable``) keep theirs: only the root's ``forward_for_export`` is traced, explicitly."""
    from nlpkit.modules.exportable import Exportable

    switched = [
        m
        for m in model.modules()
        if callable(getattr(m, "forward_for_export", None)) and not isinstance(m, Exportable)
    ]
    for module in switched:
        module.forward = module.forward_for_export
        if callable(getattr(module, "prepare_export", None)):
            module.prepare_export()  # constants it computes from its parameters, outside the trace
    try:
        yield len(switched)
    finally:
        for module in switched:
            del module.forward  # back to the class's forward
            if callable(getattr(module, "finish_export", None)):
                module.finish_export()


def export_torch(
    module,
    example_inputs: tuple,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    exporter: str = "torchscript",
) -> onnx.ModelProto:
    """``torch.onnx.export`` with dynamic axes. ``torchscript`` exports in under a second and traces the
    components' ``forward_for_export`` hooks (the BiLSTM as native LSTM nodes: its hook's
    ``autograd.Function.symbolic`` is a TorchScript-exporter feature); ``dynamo`` (torch.export based,
    needs onnxscript) takes ~10 s per model on this CPU and exports the components as written. Both
    give the same graph numerically (the parity gate checks the result either way)."""
    import torch

    module = module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims = tuple(  # positional, in the inputs' order
                {axis: torch.export.Dim(label) for axis, label in dynamic_axes.get(name, {}).items()}
                for name in input_names
            )
            parameters = inspect.signature(module.forward).parameters.values()
            if any(p.kind is p.VAR_POSITIONAL for p in parameters):  # forward(*inputs): one argument
                dims = (dims,)
            program = torch.onnx.export(
                module,
                example_inputs,
                None,
                dynamo=True,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dims,
                opset_version=OPSET,
                verbose=False,
            )
            model = program.model_proto
        elif exporter == "torchscript":
            buffer = io.BytesIO()
            with component_export_forwards(module):
                torch.onnx.export(
                    module,
                    example_inputs,
                    buffer,
                    dynamo=False,
                    input_names=input_names,
                    output_names=output_names,
                    dynamic_axes=dynamic_axes,
                    opset_version=OPSET,
                )
            model = onnx.load_from_string(buffer.getvalue())
        else:
            raise ExportError(f"unknown exporter {exporter!r}; choose torchscript or dynamo")
    return model


def fold_constants(network: onnx.ModelProto) -> onnx.ModelProto:
    """The network with onnxruntime's *basic* offline optimizations applied: constant folding,
    redundant-node elimination and semantics-preserving fusions, all in standard ONNX ops, so the saved
    file stays servable by any onnxruntime binding. The torchscript exporter leaves the LSTM's gate
    reordering as ``Split``/``Concat`` nodes over its weights; folded, the LSTM reads its weights from
    initializers, which is what lets ``quantize_dynamic_int8`` quantize it at all, and onnxruntime has
    fewer nodes to run. Raises ``ExportError`` if the result used an operator domain the input did not."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "network.onnx", Path(tmp) / "folded.onnx"
        onnx.save(network, src)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(dst)
        try:
            ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ExportError(f"onnxruntime cannot load the exported network: {err}") from err
        folded = onnx.load(dst)
    domains = {node.domain or "" for node in network.graph.node}
    added = {node.domain or "" for node in folded.graph.node} - domains
    if added:
        raise ExportError(f"constant folding introduced operators of domain(s) {sorted(added)}")
    return folded


# What dynamic int8 quantization converts. Not Conv: the char-CNN's convolutions are tiny (a few
# characters x ~25 filters), and as ConvInteger + DynamicQuantizeLinear they cost more than in fp32.
QUANTIZED_OPS = ("LSTM", "MatMul", "Gemm")


def quantize_dynamic_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxruntime dynamic quantization (int8 weights) of the network part's ``QUANTIZED_OPS``. Run on
    a folded network (``fold_constants``): an op whose weights are computed, not initializers, stays
    fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, src)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=list(QUANTIZED_OPS))
        return onnx.load(dst)


def quantized_ops(model: onnx.ModelProto) -> dict[str, int]:
    """How many nodes of each quantized operator type a graph holds (``DynamicQuantizeLSTM``,
    ``MatMulInteger``, ...): what the export report records for an int8 file."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in (
            "DynamicQuantizeLSTM",
            "MatMulInteger",
            "ConvInteger",
            "DynamicQuantizeMatMul",
            "QGemm",
        ):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def assemble(
    network: onnx.ModelProto,
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    build_pre: Callable[[GraphBuilder], None],
    build_post: Callable[[GraphBuilder], None],
    metadata: dict[str, str],
    doc: str,
) -> onnx.ModelProto:
    """One graph: ``build_pre`` writes the network's (prefixed) inputs, the network's nodes follow,
    then ``build_post`` reads its (prefixed) outputs and writes the graph outputs."""
    network = onnx.compose.add_prefix(network, MODEL_PREFIX)
    builder = GraphBuilder("nlpkit/")
    build_pre(builder)
    pre_nodes, pre_init = list(builder.nodes), list(builder.initializers)
    builder.nodes, builder.initializers = [], []
    build_post(builder)
    graph = helper.make_graph(
        pre_nodes + list(network.graph.node) + builder.nodes,
        "nlpkit",
        inputs,
        outputs,
        initializer=pre_init + list(network.graph.initializer) + builder.initializers,
        value_info=list(network.graph.value_info),
    )
    versions = {"": OPSET, "ai.onnx.ml": ML_OPSET, "com.microsoft": MS_OPSET}
    if any(node.domain == CONTRIB for node in pre_nodes + builder.nodes):
        versions[CONTRIB] = 1  # onnxruntime-extensions' ops (the wordpiece front end)
    for opset in network.opset_import:
        versions[opset.domain] = max(versions.get(opset.domain, 0), opset.version)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, version) for domain, version in versions.items()],
        producer_name="nlpkit",
        doc_string=doc,
    )
    model.ir_version = max(network.ir_version, 9)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"the assembled ONNX graph is invalid: {err}") from err
    return model


def with_debug_outputs(model: onnx.ModelProto, names: Sequence[tuple[str, int]]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs the given intermediate values (same nodes, same weights)."""
    debug = onnx.ModelProto()
    debug.CopyFrom(model)
    for name, elem_type in names:
        debug.graph.output.append(helper.make_tensor_value_info(name, elem_type, None))
    return debug


CONTRIB = "ai.onnx.contrib"  # onnxruntime-extensions' operator domain


def register_extensions(options) -> None:
    """Register onnxruntime-extensions' operators (``WordpieceTokenizer``, ``StringJoin``) with
    ``options``; ``ExportError`` naming the extra when the package is missing."""
    try:
        import onnxruntime_extensions
    except ImportError as err:
        raise ExportError(
            "this graph uses onnxruntime-extensions operators; install them: pip install 'nlpkit[pretrained]'"
        ) from err
    options.register_custom_ops_library(onnxruntime_extensions.get_library_path())


def session(model: onnx.ModelProto | bytes | str, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    payload = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    if isinstance(model, onnx.ModelProto) and any(node.domain == CONTRIB for node in model.graph.node):
        register_extensions(options)
    try:
        return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise ExportError(f"onnxruntime cannot load the exported graph: {err}") from err


def run_batched(
    sess, texts: Sequence, batch_size: int, outputs: list[str], inputs: Sequence[str] = ("text",)
) -> list[list[np.ndarray]]:
    """Outputs per batch (batch_size 1 gives one run per text). With several string ``inputs``, each
    item of ``texts`` is a tuple holding one text per input, in their order."""
    results = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        if len(inputs) == 1:
            feed = {inputs[0]: np.array(chunk, dtype=object)}
        else:
            feed = {
                name: np.array([item[i] for item in chunk], dtype=object) for i, name in enumerate(inputs)
            }
        results.append(sess.run(outputs, feed))
    return results


def string_input(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.STRING, ["batch"])
