"""Sentence-pair and ranking export: two files, each behind its own parity gate.

* ``model.onnx``: two string inputs, ``text_a`` and ``text_b`` (``task=pair``) or ``query`` and
  ``document`` (``task=ranking``; the metadata's ``inputs`` names them), each run through the same
  featurizer front end (``subword`` or ``word``, the run's), then the two towers, the combination
  (``mlp`` or ``cosine``) and the head: classification -> ``label`` string ``[batch]`` + ``scores``
  float ``[batch, n_labels]``; regression and ranking -> ``score`` float ``[batch]``.
* ``embedding.onnx``: one string input ``text`` -> ``embedding`` float ``[batch, H]``: the second text's
  (document's) tower, the vector to index documents by. With ``model.shared_encoder=true`` (the default)
  both texts have this tower (metadata ``tower``: ``shared``); with separate encoders it is the second
  text's (``tower``: ``text_b`` / ``document``), and ``embedding_a.onnx`` holds the first text's
  (``text_a`` / ``query``): one file per tower.

What each declares is an :class:`~nlpkit.export.pipeline.ExportSpec`; the steps (front end, network,
decoding, gate, int8) are the pipeline's. The gate of ``model.onnx`` checks the front end's features
(once: both inputs are the same builder's), then labels/scores against the PyTorch predictor on the
test split's pairs and edge-case pairs at batch 1 and 64; that of an embedding file every vector
component within 1e-4 of :meth:`PairPredictor.embed`. Any gate failing, no file is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from nlpkit.export.front_ends import front_end, read_front_end_spec
from nlpkit.export.heads import LabelHead, ValueHead, VectorHead
from nlpkit.export.parity import INT8_SCORE_TOLERANCE, MIXED_BATCH
from nlpkit.export.pipeline import ExportSource, ExportSpec, run_export

#: the embedding file's int8 variant is skipped when the int8 gate's absolute tolerance is more than
#: this share of the vectors' RMS component: the gate could not tell a changed vector from a kept one
INT8_MAX_TOLERANCE_SHARE = 0.1


def _examples(task: str, dm) -> tuple[str, list[tuple[str, str]], Any]:
    """The split the gate runs on, its pairs, and what the metric needs (rows or query groups)."""
    split = "test" if "test" in dm.splits else "val"
    data = dm.splits[split]
    if task == "ranking":
        groups = data.groups
        return split, [(row.text_a, row.text_b) for group in groups for row in group], groups
    return split, [(row.text_a, row.text_b) for row in data.rows], data.rows


def _edge_pairs(edge: list[str]) -> list[tuple[str, str]]:
    """The front end's edge cases as pairs: each non-blank one with itself and with the next (blank
    texts are refused by every backend, so they have no prediction to compare)."""
    texts = [text for text in edge if text.strip()]
    return [(t, t) for t in texts] + [(t, texts[(i + 1) % len(texts)]) for i, t in enumerate(texts)]


def _metrics(task: str, regression: bool, truth: Any):
    """The split's metric from the graph's rows: accuracy, Pearson, or MAP (queries without a correct
    candidate excluded, as training's)."""

    def accuracy(rows: list[dict]) -> dict[str, float]:
        hits = sum(row["label"] == example.label for row, example in zip(rows, truth))
        return {"accuracy": hits / len(truth) if truth else float("nan")}

    def pearson(rows: list[dict]) -> dict[str, float]:
        if len(truth) < 2:
            return {"pearson": float("nan")}
        predicted = np.array([row["score"] for row in rows], dtype=np.float64)
        gold = np.array([float(example.label) for example in truth], dtype=np.float64)
        return {"pearson": float(np.corrcoef(predicted, gold)[0, 1])}

    def mean_ap(rows: list[dict]) -> dict[str, float]:
        import torch

        from nlpkit.tasks.ranking.metrics import query_ap_rr

        aps, start = [], 0
        for group in truth:
            scores = torch.tensor([row["score"] for row in rows[start : start + len(group)]])
            relevant = torch.tensor([float(r.label) > 0 for r in group])
            start += len(group)
            found = query_ap_rr(scores, relevant)
            if found is not None:
                aps.append(found[0])
        return {"map": sum(aps) / len(aps) if aps else float("nan")}

    if task == "ranking":
        return mean_ap
    return pearson if regression else accuracy


def pair_specs(
    run_dir: Path, cfg, subtask: str | None = None
) -> tuple[ExportSpec, dict[str, tuple[ExportSpec, dict[str, Any]]]]:
    """The spec of ``model.onnx``, and per embedding file (``embedding``, with separate encoders also
    ``embedding_a``) its spec and vector statistics. ``subtask``: a pair or ranking sub-task of a
    multi-task run (Figure 4's relevance task), from its own vocabularies and the shared modules."""
    from nlpkit.data.featurizers import featurizer_name
    from nlpkit.tasks.pair.data import DEFAULT_FEATURIZER, PairDataModule, RankingDataModule

    source = ExportSource.of(run_dir, cfg, subtask)
    task = source.task
    kind = featurizer_name(source.data_cfg, DEFAULT_FEATURIZER)  # the front end: subword, word or wordpiece
    tokenizer = read_front_end_spec(kind, source.vocab_dir)  # refuses before any heavy work
    predictor = source.predictor(run_dir, cfg)
    front = front_end(kind, tokenizer, predictor.featurizer, source.vocab_dir)
    model = predictor.model
    regression = getattr(predictor, "labels", None) is None  # a ranking predictor has no labels
    if task == "ranking":
        dm = RankingDataModule(source.data_cfg, predictor.featurizer)
    else:
        dm = PairDataModule(source.data_cfg, regression, predictor.featurizer, predictor.labels)
    dm.load()
    split, pairs, truth = _examples(task, dm)
    first, second = predictor.inputs
    inputs = {first: "_a", second: "_b"}
    texts = list(dict.fromkeys(text for pair in pairs for text in pair))  # each once, in order
    metadata = {**source.metadata, "featurizer": kind, "combine": model.combine}

    if regression:
        noun = "relevance score" if task == "ranking" else "score"
        head: Any = ValueHead(model.output, network="scores", output="score", noun=noun)
        outputs_doc = "Output 'score': float [batch], the pair's " + noun + "."
    else:
        names = list(predictor.labels.names)
        head = LabelHead(model.output, names)
        metadata["labels"] = json.dumps(names, ensure_ascii=False)
        outputs_doc = "Outputs 'label': string [batch]; 'scores': float [batch, n_labels] (softmax)."

    def reference(examples: list[tuple[str, str]]) -> list[dict]:
        return [head.from_prediction(p) for p in predictor.predict(examples, batch_size=MIXED_BATCH)]

    pair_spec = ExportSpec(
        task=task,
        model=model,
        front_end=front,
        heads=[head],
        metadata=metadata,
        doc=(
            f"nlpkit {'ranking' if task == 'ranking' else 'sentence-pair'} model. Inputs '{first}' and "
            f"'{second}': string [batch] of raw UTF-8; row i of both is one pair. {outputs_doc} "
            + front.description
        ),
        split=split,
        texts=pairs,
        reference=reference,
        metrics=_metrics(task, regression, truth),
        agreement=None if regression else "label",
        inputs=inputs,
        edge=_edge_pairs,
        feature_texts=texts,
        subtask=source.subtask,
    )

    shared = model.representation_b is None
    towers = {"embedding": (True, [b for _, b in pairs])}  # the second text's tower: documents
    if not shared:  # and the first text's, for queries
        towers["embedding_a"] = (False, [a for a, _ in pairs])
    embeddings = {
        stem: _embedding_spec(predictor, front, source, kind, split, second, texts, shared)
        for stem, (second, texts) in towers.items()
    }
    return pair_spec, embeddings


def _embedding_spec(
    predictor,
    front,
    source: ExportSource,
    kind: str,
    split: str,
    second: bool,
    texts: list[str],
    shared: bool,
) -> tuple[ExportSpec, dict[str, Any]]:
    """One tower's file: ``text`` -> ``embedding``, gated against ``predictor.embed``; and the split's
    vector statistics (what the int8 decision reads)."""
    tower = predictor.model.tower(second)
    name = predictor.inputs[1 if second else 0]
    texts = list(dict.fromkeys(texts))
    vectors = predictor.embed(texts, batch_size=MIXED_BATCH, second=second) if texts else np.zeros((0, 1))
    rms = float(np.sqrt(np.mean(np.square(vectors)))) if vectors.size else 0.0

    def reference(examples: list[str]) -> list[dict]:
        rows = predictor.embed(examples, batch_size=MIXED_BATCH, second=second)
        return [{"embedding": row} for row in rows]

    def norms(rows: list[dict]) -> dict[str, float]:
        values = [float(np.linalg.norm(row["embedding"])) for row in rows]
        return {"mean_norm": sum(values) / len(values) if values else float("nan")}

    which = "shared" if shared else name
    task = source.task
    spec = ExportSpec(
        task=task,
        model=tower,
        front_end=front,
        heads=[VectorHead(tower.output_dim)],
        metadata={
            **source.metadata,
            "featurizer": kind,
            "file_kind": "embedding",
            "tower": which,
            "embedding_dim": json.dumps(tower.output_dim),
        },
        doc=(
            f"nlpkit {task} tower: input 'text' string [batch] of raw UTF-8 -> 'embedding' float "
            f"[batch, {tower.output_dim}], the {which} tower's vector of each text. " + front.description
        ),
        split=split,
        texts=texts,
        reference=reference,
        metrics=norms,
        edge=lambda edge: [text for text in edge if text.strip()],  # blank texts are refused
        check_front_end=False,  # the same front end as model.onnx's, checked there
        subtask=source.subtask,
    )
    return spec, {"vector_rms": rms, "vectors": len(texts), "dim": tower.output_dim}


def export_pair(
    run_dir: Path, cfg, quantize: bool, exporter: str, subtask: str | None = None
) -> tuple[dict, dict[str, bytes]]:
    """Both files of a pair or ranking run: ``(report, files)``; the files only when both gates passed.
    The embedding file's report is ``report["embedding"]``; its checks are also in ``report["checks"]``
    as ``embedding/<name>``, so a failure names them."""
    pair_spec, embeddings = pair_specs(run_dir, cfg, subtask)
    report, files = run_export(pair_spec, run_dir, quantize, exporter)
    for stem, (spec, stats) in embeddings.items():
        entry, written = _export_embedding(spec, stats, stem, run_dir, quantize, exporter)
        report["checks"].update({f"{stem}/{k}": v for k, v in entry.pop("checks").items()})
        report["passed"] = report["passed"] and entry["passed"]
        report[stem] = entry
        files.update({name.replace("model", stem, 1): payload for name, payload in written.items()})
    return report, files


def _export_embedding(
    spec: ExportSpec, stats: dict[str, Any], stem: str, run_dir: Path, quantize: bool, exporter: str
) -> tuple[dict, dict[str, bytes]]:
    """One tower's file through the pipeline; int8 only where the int8 gate's absolute tolerance can
    see a change in these vectors (else skipped, with the reason in the report)."""
    rms = stats["vector_rms"]
    share = INT8_SCORE_TOLERANCE / rms if rms > 0 else float("inf")
    quantize_it = quantize and share <= INT8_MAX_TOLERANCE_SHARE
    report, files = run_export(spec, run_dir, quantize_it, exporter)
    report["vectors"] = stats
    if quantize and not quantize_it:
        report["quantized"] = {
            "file": None,
            "skipped": (
                f"the int8 gate's absolute tolerance {INT8_SCORE_TOLERANCE} is {share:.0%} of the vectors' "
                f"RMS component {rms:.4g} on the {spec.split} split (more than "
                f"{INT8_MAX_TOLERANCE_SHARE:.0%}): it could not tell a changed vector from a kept one, so "
                f"no {stem}.int8.onnx is written (model.onnx's int8 file is gated as usual)"
            ),
        }
    for name in ("model", "quantized"):
        entry = report.get(name)
        if isinstance(entry, dict) and entry.get("file"):
            entry["file"] = entry["file"].replace("model", stem, 1)
    return report, files
