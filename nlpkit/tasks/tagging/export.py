"""Word tagging export: ``text [batch]`` -> ``tokens``, ``tags`` (string ``[batch, max_tokens]``, "" at padding).

Also the word-level part the tasks on the tagging stack share (:class:`WordRun`, :func:`word_spec`):
``intent_slot`` (``nlpkit.tasks.intent_slot.export``) declares its heads over the same run reading,
reference predictions and metrics. (``task=doc_cls featurizer=word`` is the doc_cls export with the
word front end: ``nlpkit.tasks.doc_cls.export``.)

One sub-task of a ``task=multitask`` run (``subtask=NAME``) is exported the same way as the single
task of its kind: its model (the shared modules + its own heads) and its vocabularies from
``tasks/<name>/``, checked on its own test split.

In the graph: the word front end (``featurizer kind 'word'``: whitespace tokens, word/character/casing
features; with ``featurizer=wordpiece`` each whitespace word WordPiece'd and its first piece located,
``WordPieceWordFrontEnd``), the network, the tag head's decoding (argmax or CRF Viterbi, as the output layer's
``onnx_decoding()`` says) and the label names; see :mod:`nlpkit.export.pipeline` for the steps and
the gate.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlpkit.data.featurizers import featurizer_name
from nlpkit.export.front_ends import FrontEnd, front_end, read_front_end_spec
from nlpkit.export.heads import LabelHead, TagHead
from nlpkit.export.parity import MIXED_BATCH
from nlpkit.export.pipeline import ExportSource, ExportSpec

#: what the word-level models are called in the graph's doc string
KIND_NAMES = {"tagging": "word tagger", "intent_slot": "joint intent-slot model"}


@dataclass
class WordRun:
    """A trained word-level run (or one sub-task of a multi-task run), read for export."""

    source: ExportSource  # its task ("tagging" or "intent_slot"), data config, vocabularies
    predictor: Any  # TaggingPredictor or IntentSlotPredictor (``features``: its WordFeaturizer)
    front: FrontEnd  # WordFrontEnd, or WordPieceWordFrontEnd (featurizer=wordpiece)


def word_run(run_dir: Path, cfg, subtask: str | None = None) -> WordRun:
    """The predictor and the word front end of ``run_dir`` (``subtask``: of a multi-task run)."""
    source = ExportSource.of(run_dir, cfg, subtask)
    # featurizer=word, or wordpiece: each word WordPiece'd and read at its first piece
    kind = "wordpiece_words" if featurizer_name(source.data_cfg, "word") == "wordpiece" else "word"
    tokenizer = read_front_end_spec(kind, source.vocab_dir)  # refuses before any heavy work
    predictor = source.predictor(run_dir, cfg)
    front = front_end(kind, tokenizer, predictor.features, source.vocab_dir)
    return WordRun(source, predictor, front)


def tag_head(run: WordRun, tags: str = "tags", noun: str = "tag") -> TagHead:
    return TagHead(run.predictor.model.output, list(run.predictor.labels.names), "emissions", tags, noun)


def intent_head(run: WordRun) -> LabelHead:
    return LabelHead(
        run.predictor.model.doc_output,
        list(run.predictor.intents.names),
        network="intent_scores",
        label="intent",
        scores="intent_scores",
        checks=("intent", "intent_scores"),
        noun="intent",
        names_field="intents",  # the metadata field intent_slot's export writes them to
    )


def tag_metadata(run: WordRun, head: TagHead) -> dict[str, str]:
    scheme = str(run.source.data_cfg.tag_scheme)
    return {
        "labels": json.dumps(head.names, ensure_ascii=False),
        "tag_scheme": "BIO" if scheme == "IOB1" else scheme,
        "decoding": head.decoding.kind,
    }


def word_metrics(rows: list[dict], sentences, tags: str | None, has_intent: bool) -> dict[str, float]:
    """The split's metrics from the graph's rows against the gold ``tags`` (the tags output's name;
    ``None``: no tags) and/or intents."""
    from nlpkit.metrics.spans import span_f1

    if not sentences:
        return {}
    metrics: dict[str, float] = {}
    if tags is not None:
        predicted = [row[tags] for row in rows]
        gold = [list(s.tags) for s in sentences]
        correct = sum(p == g for ps, gs in zip(predicted, gold) for p, g in zip(ps, gs))
        metrics["span_f1"] = span_f1(gold, predicted)
        metrics["token_accuracy"] = correct / max(1, sum(len(g) for g in gold))
    if has_intent:
        intent_hits = [(row["intent"] or None) == s.intent for row, s in zip(rows, sentences)]
        metrics["intent_accuracy"] = sum(intent_hits) / len(sentences)
        if tags is not None:
            metrics["frame_accuracy"] = sum(
                hit and p == g for hit, p, g in zip(intent_hits, predicted, gold)
            ) / len(sentences)
    return metrics


def word_spec(
    run: WordRun,
    heads: list,
    metadata: dict[str, str],
    metrics: Callable[[list[dict], list], dict[str, float]],
) -> ExportSpec:
    """The export of a word-level run with ``heads`` (in output order), the task's ``metadata`` and
    ``metrics(graph rows, gold sentences)``."""
    from nlpkit.registry import get_task

    source = run.source
    dm = get_task(source.task).datamodule(source.data_cfg, source.vocab_dir)
    dm.load()
    split = "test" if "test" in dm.splits else "val"
    sentences = list(dm.splits[split].sentences)

    def reference(texts: list[str]) -> list[dict]:
        predictions = run.predictor.predict_any(texts, batch_size=MIXED_BATCH)
        return [{k: v for head in heads for k, v in head.from_prediction(p).items()} for p in predictions]

    doc = (
        f"nlpkit {KIND_NAMES.get(source.task, source.task)}"
        + (f" (sub-task {source.subtask!r} of a multi-task run)" if source.subtask else "")
        + ". "
        + run.front.description
        + " Outputs: "
        + "; ".join(head.doc() for head in heads)
    )
    return ExportSpec(
        task=source.task,
        model=run.predictor.model,
        front_end=run.front,
        heads=heads,
        metadata={**source.metadata, **metadata},
        doc=doc,
        split=split,
        texts=[" ".join(s.tokens) for s in sentences],
        reference=reference,
        metrics=lambda rows: metrics(rows, sentences),
        subtask=source.subtask,
    )


def export_spec(run_dir: Path, cfg, subtask: str | None = None) -> ExportSpec:
    """The tagger's export: one tag head over the network's emissions."""
    run = word_run(run_dir, cfg, subtask)
    head = tag_head(run)
    return word_spec(
        run, [head], tag_metadata(run, head), lambda rows, gold: word_metrics(rows, gold, head.tags, False)
    )
