"""Putting one ONNX file together: featurizer nodes + exported network + decoding, and running it."""

from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from nlpkit.errors import ExportError
from nlpkit.export.text_graph import ML_OPSET, MS_OPSET, OPSET, GraphBuilder

MODEL_PREFIX = "model/"


def export_torch(
    module,
    example_inputs: tuple,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    exporter: str = "torchscript",
) -> onnx.ModelProto:
    """``torch.onnx.export`` with dynamic axes. ``torchscript`` exports in under a second; ``dynamo``
    (torch.export based, needs onnxscript) takes ~10 s per model on this CPU. Both give the same graph
    numerically (the parity gate checks the result either way)."""
    import torch

    module = module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims = {
                name: {axis: torch.export.Dim(label) for axis, label in axes.items()}
                for name, axes in dynamic_axes.items()
                if name in input_names
            }
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
            from nlpkit.export.lstm import native_bilstm

            buffer = io.BytesIO()
            with native_bilstm(module):  # BiLSTM layers as one native bidirectional LSTM node each
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


def quantize_dynamic_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxruntime dynamic quantization (int8 weights; LSTM, MatMul, Gemm) of the network part."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, src)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        return onnx.load(dst)


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


def session(model: onnx.ModelProto | bytes | str, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    payload = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    try:
        return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise ExportError(f"onnxruntime cannot load the exported graph: {err}") from err


def run_batched(sess, texts: Sequence[str], batch_size: int, outputs: list[str]) -> list[list[np.ndarray]]:
    """Outputs per batch (batch_size 1 gives one run per text)."""
    results = []
    for start in range(0, len(texts), batch_size):
        chunk = np.array(list(texts[start : start + batch_size]), dtype=object)
        results.append(sess.run(outputs, {"text": chunk}))
    return results


def string_input(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.STRING, ["batch"])
