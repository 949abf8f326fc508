"""Decoding as ONNX ops: what an output layer's ``onnx_decoding()`` description (``Decoding``, see
:mod:`nlpkit.modules.exportable`) becomes in the graph. One recipe per decoding *kind*, never per
output-layer class: :data:`LABEL_DECODINGS` for a document-level head (scores ``[B, L]`` -> label names
``[B]``: argmax, or threshold + join for multi-label), :data:`TAG_DECODINGS` for a word-level head
(emissions ``[B, T, L]`` -> tag ids ``[B, T]``: per-token argmax, or linear-chain CRF Viterbi with two
``Scan`` loops: max-plus forward, arg-max in the backtrace). :func:`decoding_of` reads a layer's
description and refuses an unknown kind.

The Viterbi computes what ``nlpkit.modules.output.crf.CRFOutput.decode`` computes (same sums, same
first-index tie breaking of ``max``/``ArgMax``, padding carried through by keeping the score and the
tag), so the graph's tags equal the PyTorch tags; the parity gate checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from onnx import TensorProto, helper

from nlpkit.errors import ExportError
from nlpkit.export.text_graph import GraphBuilder


def build_argmax_tags(b: GraphBuilder, emissions: str, mask: str) -> str:
    """``emissions [B, T, L]`` -> tag ids ``[B, T]`` (0 at padding)."""
    best = b.op("ArgMax", [emissions], "tag_argmax", axis=2, keepdims=0)
    return b.op("Where", [mask, best, b.const(np.int64(0))], "tag_ids")


def _forward_body(trans_to_from: str) -> object:
    """One Viterbi step: ``(score [B, L], e_t [B, L], keep_t [B, 1]) -> (score', score [B, L])``.

    Only the max over the ``[L_to, B, L_from]`` candidates, reduced over the contiguous last axis: no
    arg-max here, the backtrace recovers it from the scan's second output (each step's incoming score),
    which costs ``[B, L]`` a step instead of ``[B, L, L]``. Padding steps keep the score."""
    s = GraphBuilder("viterbi_fwd/")
    # [L_to, 1, L_from] + [B, L_from] -> [L_to, B, L_from]: trans[from, to] + score[from]
    candidates = s.op("Add", [trans_to_from, "score_in"], "candidates")
    best = s.op("ReduceMax", [candidates, s.const([2])], "best", keepdims=0)  # [L_to, B]
    reached = s.op("Add", [s.op("Transpose", [best], "best_bt", perm=[1, 0]), "e_t"], "reached")  # [B, L]
    s.op("Where", ["keep_t", reached, "score_in"], outputs=["score_out"])
    s.op("Identity", ["score_in"], outputs=["score_before"])  # a body input cannot be a body output
    return helper.make_graph(
        s.nodes,
        "viterbi_forward",
        [
            helper.make_tensor_value_info("score_in", TensorProto.FLOAT, ["batch", "labels"]),
            helper.make_tensor_value_info("e_t", TensorProto.FLOAT, ["batch", "labels"]),
            helper.make_tensor_value_info("keep_t", TensorProto.BOOL, ["batch", 1]),
        ],
        [
            helper.make_tensor_value_info("score_out", TensorProto.FLOAT, ["batch", "labels"]),
            helper.make_tensor_value_info("score_before", TensorProto.FLOAT, ["batch", "labels"]),
        ],
        initializer=s.initializers,
    )


def _backward_body(trans_to_from: str) -> object:
    """One backtrace step: ``(tag [B, 1], score_t [B, L], keep_t [B, 1]) -> (previous tag, tag)``.

    The previous tag is the first arg-max of ``score_t[from] + trans[from, tag]``: the very sums the
    forward step maximised, so it is the tag the forward max came from (first index on ties, as
    ``CRFOutput.decode``). A padding step keeps the tag."""
    s = GraphBuilder("viterbi_bwd/")
    column = s.op("Gather", [trans_to_from, "tag_in"], "column", axis=0)  # [B, 1, 1, L_from]: trans[:, tag]
    column = s.op("Squeeze", [column, s.const([2])], "column_b")  # [B, 1, L_from]
    candidates = s.op(
        "Add", [s.op("Unsqueeze", ["score_t", s.const([1])]), column], "candidates"
    )  # [B, 1, L]
    previous = s.op("ArgMax", [candidates], "previous", axis=2, keepdims=0)  # [B, 1]
    s.op("Where", ["keep_t", previous, "tag_in"], outputs=["tag_out"])
    s.op("Identity", ["tag_in"], outputs=["tag_here"])
    return helper.make_graph(
        s.nodes,
        "viterbi_backward",
        [
            helper.make_tensor_value_info("tag_in", TensorProto.INT64, ["batch", 1]),
            helper.make_tensor_value_info("score_t", TensorProto.FLOAT, ["batch", "labels"]),
            helper.make_tensor_value_info("keep_t", TensorProto.BOOL, ["batch", 1]),
        ],
        [
            helper.make_tensor_value_info("tag_out", TensorProto.INT64, ["batch", 1]),
            helper.make_tensor_value_info("tag_here", TensorProto.INT64, ["batch", 1]),
        ],
        initializer=s.initializers,
    )


def build_viterbi_tags(
    b: GraphBuilder,
    emissions: str,
    mask: str,
    start: np.ndarray,
    transitions: np.ndarray,
    end: np.ndarray,
) -> str:
    """``emissions [B, T, L]``, ``mask [B, T]`` (a prefix per row) -> best tag ids ``[B, T]`` (0 at padding).

    ``start [L]``, ``transitions [L, L]`` (from, to) and ``end [L]`` are the CRF's potentials with any
    scheme constraints already added. One padding step is appended so the loops run at least once.
    """
    num_tags = len(start)
    start_c = b.const(start.astype(np.float32), "crf_start")
    # [L_to, 1, L_from]: the layout both loop bodies read contiguously
    trans_c = b.const(
        np.ascontiguousarray(transitions.T).astype(np.float32).reshape(num_tags, 1, num_tags),
        "crf_transitions",
    )
    end_c = b.const(end.astype(np.float32), "crf_end")
    shape = b.op("Shape", [emissions], "em_shape")
    pad_shape = b.op(
        "Concat",
        [
            b.op("Slice", [shape, b.const([0]), b.const([1])]),
            b.const([1]),
            b.op("Slice", [shape, b.const([2]), b.const([3])]),
        ],
        "pad_shape",
        axis=0,
    )
    pad_step = b.op(
        "ConstantOfShape",
        [pad_shape],
        "pad_step",
        value=helper.make_tensor("z", TensorProto.FLOAT, [1], [0.0]),
    )
    padded = b.op("Concat", [emissions, pad_step], "em_padded", axis=1)  # [B, T + 1, L]
    mask_pad = b.op("Expand", [b.const([[False]]), b.op("Slice", [pad_shape, b.const([0]), b.const([2])])])
    mask_padded = b.op("Concat", [mask, mask_pad], "mask_padded", axis=1)  # [B, T + 1]

    first = b.op("Squeeze", [b.op("Slice", [padded, b.const([0]), b.const([1]), b.const([1])]), b.const([1])])
    score0 = b.op("Add", [start_c, first], "score0")  # [B, L]
    end_of_time = b.const([np.iinfo(np.int64).max])
    rest = b.op("Slice", [padded, b.const([1]), end_of_time, b.const([1])], "em_rest")  # [B, T, L]
    keep = b.op(
        "Unsqueeze", [b.op("Slice", [mask_padded, b.const([1]), end_of_time, b.const([1])]), b.const([2])]
    )  # [B, T, 1]
    final_score, incoming = b.nodes_out(
        "Scan",
        [score0, rest, keep],
        2,
        "viterbi_forward",
        body=_forward_body(trans_c),
        num_scan_inputs=2,
        scan_input_axes=[1, 1],
        scan_output_axes=[1],
    )  # final_score [B, L]; incoming [B, T, L]: the score each step started from
    last = b.op("ArgMax", [b.op("Add", [final_score, end_c])], "last_tag", axis=1, keepdims=1)  # [B, 1]
    first_tag, later = b.nodes_out(
        "Scan",
        [last, incoming, keep],
        2,
        "viterbi_backward",
        body=_backward_body(trans_c),
        num_scan_inputs=2,
        scan_input_axes=[1, 1],
        scan_input_directions=[1, 1],
        scan_output_axes=[1],
        scan_output_directions=[1],
    )  # first_tag [B, 1]: position 0; later [B, T, 1]: positions 1 .. T (stored in order)
    later = b.op("Squeeze", [later, b.const([2])], "later")  # [B, T]
    path = b.op("Concat", [first_tag, later], "path", axis=1)  # [B, T + 1]
    steps = b.op("Slice", [b.op("Shape", [mask]), b.const([1]), b.const([2])], "steps")
    path = b.op("Slice", [path, b.const([0]), steps, b.const([1])], "path_t")  # [B, T]: padded step dropped
    return b.op("Where", [mask, path, b.const(np.int64(0))], "tag_ids")


# ---------------------------------------------------------------------------------- label heads
def build_argmax_label(b: GraphBuilder, scores: str, names: list[str], out: str, **_: Any) -> str:
    """``scores [B, L]`` -> the best label's name ``[B]`` (first index on ties, like ``argmax``)."""
    best = b.op("ArgMax", [scores], "best", axis=1, keepdims=0)
    return b.names_of(best, names, outputs=[out])


def build_threshold_labels(
    b: GraphBuilder, scores: str, names: list[str], out: str, threshold: float, delimiter: str, **_: Any
) -> str:
    """``scores [B, L]`` -> the names of the labels at or above ``threshold``, in label order, joined by
    ``delimiter`` (``""`` when none is on) ``[B]``."""
    on = b.op("GreaterOrEqual", [scores, b.const(np.float32(threshold))], "on")  # [B, L]
    batch = b.op("Slice", [b.op("Shape", [scores]), b.const([0]), b.const([1])], "batch")
    empty = b.op("Expand", [b.const([""]), batch], "empty")  # [B] ""
    joined, started = empty, b.op("Expand", [b.const([False]), batch], "started")
    separator = b.const([delimiter])
    for index, name in enumerate(names):
        column = b.op("Slice", [on, b.const([index]), b.const([index + 1]), b.const([1])], "column")
        on_j = b.op("Reshape", [column, b.const([-1])], "on_j")  # [B]
        sep = b.op("Where", [b.op("And", [on_j, started]), separator, empty], "sep")
        piece = b.op("Where", [on_j, b.const([name]), empty], "piece")
        joined = b.op("StringConcat", [b.op("StringConcat", [joined, sep]), piece], "joined")
        started = b.op("Or", [started, on_j], "started")
    return b.op("Identity", [joined], outputs=[out])


#: decoding kind -> ``(builder, scores [B, L], label names, output name, **params) -> names [B]``
LABEL_DECODINGS: dict[str, Callable[..., str]] = {
    "argmax": build_argmax_label,
    "threshold": build_threshold_labels,
}
#: decoding kind -> ``(builder, emissions [B, T, L], mask [B, T], **params) -> tag ids [B, T]``
TAG_DECODINGS: dict[str, Callable[..., str]] = {
    "argmax": build_argmax_tags,
    "crf_viterbi": build_viterbi_tags,
}


def decoding_of(layer, recipes: Mapping[str, Callable[..., str]], role: str):
    """``layer.onnx_decoding()``, checked against the recipes a head of this ``role`` has; anything
    else is refused before any export work."""
    name = type(layer).__name__
    hook = getattr(layer, "onnx_decoding", None)
    if hook is None:
        raise ExportError(
            f"refused: no ONNX decoding for the {role} {name}: it defines no onnx_decoding() "
            "(see nlpkit.modules.exportable)"
        )
    decoding = hook()
    if decoding.kind not in recipes:
        raise ExportError(
            f"refused: no ONNX decoding for the {role} {name}: its onnx_decoding() kind {decoding.kind!r} "
            f"is not one a {role} exports with ({', '.join(recipes)})"
        )
    return decoding
