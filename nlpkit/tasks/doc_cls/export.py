"""Document classification export: ``text [batch]`` string -> ``label [batch]`` string, ``scores [batch, L]``.

Multi-label runs: ``scores`` are the per-label sigmoid probabilities and ``label`` holds the names of
the labels whose score reaches the model's threshold, in label order, joined by the run's
``data.label_delimiter`` ("" when none is on) — the same text the training data used for that set.
The threshold and delimiter are in the metadata, and ``OnnxPredictor`` splits the string back.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from nlpkit.errors import ExportError
from nlpkit.export import graph as G
from nlpkit.export.parity import (
    EDGE_CASES,
    MIXED_BATCH,
    SCORE_TOLERANCE,
    accept_model,
    first_few,
    gate_report,
    provenance_metadata,
)
from nlpkit.export.text_graph import (
    GraphBuilder,
    TokenizerSpec,
    all_characters,
    build_text_nodes,
    hf_front_end,
    lowercase_divergence,
    read_tokenizer_spec,
)


@dataclass
class Reference:
    """The PyTorch side the graph must agree with."""

    predictor: Any  # nlpkit.tasks.doc_cls.predictor.DocClassificationPredictor
    spec: TokenizerSpec
    multilabel: bool
    threshold: float | None
    delimiter: str | None


class _Scores:
    """Wraps a DocClassifier as ``(tokens, lengths) -> scores``; built lazily so torch is imported late."""

    @staticmethod
    def build(model):
        import torch

        class Scores(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, tokens, lengths):
                return self.inner.scores({"tokens": tokens, "lengths": lengths})

        return Scores(model).eval()


def export_network(model, vocab_size: int, exporter: str) -> onnx.ModelProto:
    import torch

    tokens = torch.tensor([[2, 3, 4, 5], [6, 7, 0, 0]], dtype=torch.long).clamp(max=vocab_size - 1)
    lengths = torch.tensor([4, 2], dtype=torch.long)
    return G.export_torch(
        _Scores.build(model),
        (tokens, lengths),
        ["tokens", "lengths"],
        ["scores"],
        {"tokens": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "scores": {0: "batch"}},
        exporter,
    )


def build_graph(network: onnx.ModelProto, ref: Reference, metadata: dict[str, str]) -> onnx.ModelProto:
    names = list(ref.predictor.labels.names)

    def pre(b: GraphBuilder) -> None:
        build_text_nodes(b, ref.spec, "text", G.MODEL_PREFIX + "tokens", G.MODEL_PREFIX + "lengths")

    def post(b: GraphBuilder) -> None:
        scores = b.op("Identity", [G.MODEL_PREFIX + "scores"], outputs=["scores"])
        if not ref.multilabel:
            best = b.op("ArgMax", [scores], "best", axis=1, keepdims=0)
            b.names_of(best, names, outputs=["label"])
            return
        on = b.op("GreaterOrEqual", [scores, b.const(np.float32(ref.threshold))], "on")  # [B, L]
        batch = b.op("Slice", [b.op("Shape", [scores]), b.const([0]), b.const([1])], "batch")
        empty = b.op("Expand", [b.const([""]), batch], "empty")  # [B] ""
        joined, started = empty, b.op("Expand", [b.const([False]), batch], "started")
        delimiter = b.const([ref.delimiter or ","])
        for index, name in enumerate(names):
            column = b.op("Slice", [on, b.const([index]), b.const([index + 1]), b.const([1])], "column")
            on_j = b.op("Reshape", [column, b.const([-1])], "on_j")  # [B]
            sep = b.op("Where", [b.op("And", [on_j, started]), delimiter, empty], "sep")
            piece = b.op("Where", [on_j, b.const([name]), empty], "piece")
            joined = b.op("StringConcat", [b.op("StringConcat", [joined, sep]), piece], "joined")
            started = b.op("Or", [started, on_j], "started")
        b.op("Identity", [joined], outputs=["label"])

    return G.assemble(
        network,
        [G.string_input("text")],
        [
            helper.make_tensor_value_info("label", TensorProto.STRING, ["batch"]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", len(names)]),
        ],
        pre,
        post,
        metadata,
        doc=(
            "nlpkit document classifier. Input 'text': string [batch] of raw UTF-8. Outputs 'label': string "
            "[batch]; 'scores': float [batch, n_labels] (softmax, or per-label sigmoid for multi-label, where "
            "'label' joins the labels at or above the threshold with label_delimiter). Tokenization runs "
            "in the graph: " + ref.spec.description
        ),
    )


# ---------------------------------------------------------------------------------- parity gate
@functools.lru_cache(maxsize=2)
def _hf_pieces_of_all_characters(normalizer_json: str, pre_tokenizer_json: str) -> list[str]:
    """HF normalize + pre-tokenize of every character (cached: it only depends on these two steps)."""
    tok = hf_front_end(normalizer_json, pre_tokenizer_json)
    text = all_characters()
    normalized = tok.normalizer.normalize_str(text) if tok.normalizer else text
    return [piece for piece, _ in tok.pre_tokenizer.pre_tokenize_str(normalized)]


def check_all_codepoints(debug_session, spec: TokenizerSpec, tokenizer_path: Path) -> dict:
    """Every Unicode scalar value in one string: graph pieces == HF normalize + pre-tokenize."""
    text = all_characters()
    expected = _hf_pieces_of_all_characters(spec.normalizer_json, spec.pre_tokenizer_json)
    divergent = lowercase_divergence(spec.normalizer_json, spec.pre_tokenizer_json) if spec.lowercase else {}
    table = str.maketrans(divergent)
    pieces = debug_session.run(["debug/pieces"], {"text": np.array([text], dtype=object)})[0][0]
    got = [p.translate(table) for p in pieces if p != " "]
    mismatch = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), None)
    if mismatch is None and len(expected) != len(got):
        mismatch = min(len(expected), len(got))
    result = {
        "passed": mismatch is None,
        "characters": len(text),
        "pieces": len(expected),
        "lowercase_compensated_characters": len(divergent),
    }
    if mismatch is not None:
        result["first_mismatch"] = {
            "index": mismatch,
            "hf": expected[mismatch : mismatch + 3],
            "onnx": got[mismatch : mismatch + 3],
        }
    return result


def check_token_ids(debug_session, featurizer, groups: dict[str, list[str]], batch_sizes) -> dict:
    mismatches: list[dict] = []
    counts = {}
    for group, texts in groups.items():
        counts[group] = len(texts)
        expected = featurizer.encode_batch(texts)
        sizes = batch_sizes if group != "vocabulary" else [max(1, len(texts))]
        for batch_size in sizes:
            runs = G.run_batched(debug_session, texts, batch_size, ["debug/tokens", "debug/lengths"])
            offset = 0
            for tokens, lengths in runs:
                for row in range(tokens.shape[0]):
                    want = expected[offset + row]
                    n = int(lengths[row])
                    got = tokens[row, :n].tolist()
                    padding_ok = bool(np.all(tokens[row, n:] == featurizer.pad_id))
                    if got != want or not padding_ok:
                        mismatches.append(
                            {
                                "group": group,
                                "batch_size": batch_size,
                                "text": texts[offset + row][:200],
                                "hf_ids": want[:40],
                                "onnx_ids": tokens[row].tolist()[:40],
                            }
                        )
                offset += tokens.shape[0]
    return {
        "passed": not mismatches,
        "examples": counts,
        "batch_sizes": list(batch_sizes),
        "mismatches": len(mismatches),
        "first_mismatches": first_few(mismatches),
    }


def _labels_from_scores(ref: Reference, scores: np.ndarray) -> list[str]:
    names = ref.predictor.labels.names
    if not ref.multilabel:
        return [names[int(i)] for i in scores.argmax(axis=1)]
    return [
        (ref.delimiter or ",").join(n for n, p in zip(names, row) if p >= ref.threshold) for row in scores
    ]


def check_predictions(session_, ref: Reference, texts: list[str], batch_sizes) -> tuple[dict, dict]:
    """ONNX labels == PyTorch labels, scores within SCORE_TOLERANCE, at each batch size."""
    torch_scores = ref.predictor.scores(texts, batch_size=MIXED_BATCH).numpy()
    torch_labels = _labels_from_scores(ref, torch_scores)
    label_mismatches, score_mismatches, max_diff = [], [], 0.0
    for batch_size in batch_sizes:
        runs = G.run_batched(session_, texts, batch_size, ["label", "scores"])
        labels = [str(x) for labels, _ in runs for x in labels]
        scores = np.concatenate([s for _, s in runs]) if runs else np.zeros_like(torch_scores)
        diff = np.abs(scores - torch_scores).max(axis=1) if len(texts) else np.zeros(0)
        max_diff = max(max_diff, float(diff.max()) if len(diff) else 0.0)
        for i, text in enumerate(texts):
            if labels[i] != torch_labels[i]:
                label_mismatches.append(
                    {
                        "batch_size": batch_size,
                        "text": text[:200],
                        "torch": torch_labels[i],
                        "onnx": labels[i],
                    }
                )
            if diff[i] > SCORE_TOLERANCE:
                score_mismatches.append(
                    {"batch_size": batch_size, "text": text[:200], "max_abs_diff": float(diff[i])}
                )
    labels_result = {
        "passed": not label_mismatches,
        "examples": len(texts),
        "batch_sizes": list(batch_sizes),
        "mismatches": len(label_mismatches),
        "first_mismatches": first_few(label_mismatches),
    }
    scores_result = {
        "passed": not score_mismatches,
        "max_abs_diff": max_diff,
        "tolerance": SCORE_TOLERANCE,
        "mismatches": len(score_mismatches),
        "first_mismatches": first_few(score_mismatches),
    }
    return labels_result, scores_result


def accuracy(session_, ref: Reference, examples) -> float:
    if not examples:
        return float("nan")
    runs = G.run_batched(session_, [ex.text for ex in examples], MIXED_BATCH, ["label"])
    labels = [str(x) for (batch,) in runs for x in batch]
    delimiter = ref.delimiter or ","
    hits = 0
    for ex, label in zip(examples, labels):
        predicted = set(label.split(delimiter)) - {""} if ref.multilabel else {label}
        hits += predicted == set(ex.labels)
    return hits / len(examples)


# ----------------------------------------------------------------------------------------- main
def export(
    run_dir: Path, cfg, out_dir: Path, quantize: bool, exporter: str, subtask: str | None = None
) -> tuple[dict, dict[str, bytes]]:
    """Build, check and return ``(report, {filename: bytes})``; files only when every check passed.
    ``subtask``: the sub-task of a ``task=multitask`` run to export (its model and vocabularies)."""
    from nlpkit.registry import get_task
    from nlpkit.tasks.doc_cls.data import DocClassificationDataModule
    from nlpkit.training.checkpoint import best_checkpoint

    started = time.perf_counter()
    run_task = get_task(str(cfg.task.name))
    if subtask is None:
        task, data_cfg, vocab_dir = str(cfg.task.name), cfg.data, run_dir
    else:  # the run's own (multi-)task says where the sub-task's config and vocabularies are
        task, data_cfg, vocab_dir = run_task.subtask_source(cfg, run_dir, subtask)
    tokenizer_path = Path(vocab_dir) / "tokenizer.json"
    spec = read_tokenizer_spec(tokenizer_path)  # refuses before any heavy work
    if subtask is None:
        predictor = run_task.predictor(cfg, run_dir)
    else:  # as nlpkit.load(run_dir) holds it: the shared modules + the sub-task's own heads
        predictor = run_task.predictor(cfg, run_dir).predictors[subtask]
    featurizer = predictor.featurizer
    if (featurizer.pad_id, featurizer.unk_id) != (spec.pad_id, spec.unk_id):
        raise ExportError("tokenizer.json and the loaded featurizer disagree on pad/unk ids")
    output = predictor.model.output
    multilabel = bool(predictor.labels.multilabel)
    ref = Reference(
        predictor=predictor,
        spec=spec,
        multilabel=multilabel,
        threshold=float(output.threshold) if multilabel else None,
        delimiter=str(data_cfg.label_delimiter) if multilabel else None,
    )
    checkpoint = best_checkpoint(run_dir)
    metadata = {
        "task": task,
        **({"subtask": subtask} if subtask is not None else {}),
        "labels": json.dumps(list(predictor.labels.names), ensure_ascii=False),
        "multilabel": json.dumps(multilabel),
        "threshold": json.dumps(ref.threshold),
        "label_delimiter": json.dumps(ref.delimiter),
        **provenance_metadata(run_dir, checkpoint, tokenizer_path),
        "tokenizer": spec.description,
        "max_length": json.dumps(spec.max_length),
        "outputs": json.dumps(
            {
                "label": "string [batch]: argmax label name"
                if not multilabel
                else "string [batch]: names with score >= threshold joined by label_delimiter ('' if none)",
                "scores": "float [batch, n_labels]: " + ("per-label sigmoid" if multilabel else "softmax"),
            }
        ),
    }

    network = export_network(predictor.model, featurizer.vocab_size, exporter)
    model = build_graph(network, ref, metadata)
    export_seconds = time.perf_counter() - started

    # Data the gate runs on: the run's test split (validation if it has none) + edge cases + vocabulary.
    dm = DocClassificationDataModule(data_cfg, featurizer, predictor.labels)
    dm.load()
    split = "test" if "test" in dm.splits else "val"
    examples = list(dm.splits[split].examples)
    texts = [ex.text for ex in examples]
    edge = list(EDGE_CASES)
    if spec.max_length is not None:
        words = [w for w in featurizer.vocab if w not in ("<pad>", "<unk>")] or ["word"]
        edge.append(" ".join(words[i % len(words)] for i in range(spec.max_length + 7)))
        edge.append(" ".join(["."] * (spec.max_length + 3)))

    debug = G.with_debug_outputs(
        _rename_for_debug(model),
        [
            ("debug/tokens", TensorProto.INT64),
            ("debug/lengths", TensorProto.INT64),
            ("debug/pieces", TensorProto.STRING),
        ],
    )
    checks_started = time.perf_counter()
    debug_session = G.session(debug)
    main_session = G.session(model)
    checks: dict[str, Any] = {}
    checks["tokenizer_all_codepoints"] = check_all_codepoints(debug_session, spec, tokenizer_path)
    checks["token_ids"] = check_token_ids(
        debug_session,
        featurizer,
        {split: texts, "edge_cases": edge, "vocabulary": [w for w in featurizer.vocab]},
        [1, MIXED_BATCH],
    )
    checks["labels"], checks["scores"] = check_predictions(main_session, ref, texts + edge, [1, MIXED_BATCH])
    report = gate_report(
        task=task,
        run_dir=run_dir,
        split=split,
        examples=len(texts),
        edge_cases=len(edge),
        checks=checks,
        metadata=metadata,
        exporter=exporter,
        model=model,
        export_seconds=export_seconds,
    )
    if subtask is not None:
        report["subtask"] = subtask
    files = accept_model(
        report,
        split,
        model,
        main_session,
        lambda session_: {"accuracy": accuracy(session_, ref, examples)},
        quantized=(
            (
                lambda: build_graph(
                    G.quantize_dynamic_int8(network),
                    ref,
                    {**metadata, "quantization": "onnxruntime dynamic int8 (weights)"},
                )
            )
            if quantize
            else None
        ),
        agreement=lambda fp32, int8: _label_agreement(fp32, int8, texts),
    )
    report["timings"]["checks_seconds"] = round(time.perf_counter() - checks_started, 3)
    report["timings"]["total_seconds"] = round(time.perf_counter() - started, 3)
    return report, files


def _rename_for_debug(model: onnx.ModelProto) -> onnx.ModelProto:
    """Identity nodes exposing the token ids, lengths and raw pieces under stable names."""
    debug = onnx.ModelProto()
    debug.CopyFrom(model)
    pieces = next(o for n in debug.graph.node if n.op_type == "Tokenizer" for o in n.output)
    for source, target in [
        (G.MODEL_PREFIX + "tokens", "debug/tokens"),
        (G.MODEL_PREFIX + "lengths", "debug/lengths"),
        (pieces, "debug/pieces"),
    ]:
        debug.graph.node.append(helper.make_node("Identity", [source], [target], name=target))
    return debug


def _label_agreement(fp32_session, int8_session, texts: list[str]) -> float | None:
    """Share of ``texts`` whose int8 label equals the fp32 label."""
    if not texts:
        return None
    fp32 = [str(x) for (b,) in G.run_batched(fp32_session, texts, MIXED_BATCH, ["label"]) for x in b]
    int8 = [str(x) for (b,) in G.run_batched(int8_session, texts, MIXED_BATCH, ["label"]) for x in b]
    return sum(a == b for a, b in zip(fp32, int8)) / len(texts)
