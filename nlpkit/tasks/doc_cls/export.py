"""Document classification export: ``text [batch]`` string -> ``label [batch]`` string, ``scores [batch, L]``.

Multi-label runs: ``scores`` are the per-label sigmoid probabilities and ``label`` holds the names of
the labels whose score reaches the model's threshold, in label order, joined by the run's
``data.label_delimiter`` ("" when none is on) — the same text the training data used for that set.
The threshold and delimiter are in the metadata, and ``OnnxPredictor`` splits the string back.

The front end is the run's featurizer's (``data.featurizer.name``): ``subword`` puts the HF tokenizer in
the graph; ``word`` (``task=doc_cls featurizer=word``) the whitespace tokens with word, character and
casing features, and a text without tokens then gets "" and zero scores (as the PyTorch predictor's
``predict_any`` answers it). The outputs are the same either way, so the file is served as any doc_cls
model.

What this task declares (:class:`~nlpkit.export.pipeline.ExportSpec`); the steps are the pipeline's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nlpkit.export.front_ends import front_end, read_front_end_spec
from nlpkit.export.heads import LabelHead
from nlpkit.export.parity import MIXED_BATCH
from nlpkit.export.pipeline import ExportSource, ExportSpec


def export_spec(run_dir: Path, cfg, subtask: str | None = None) -> ExportSpec:
    """The document classifier's export: one label head over the network's scores (``subtask``: a
    doc_cls sub-task of a multi-task run, from its own vocabularies)."""
    from nlpkit.data.featurizers import featurizer_name
    from nlpkit.tasks.doc_cls.data import DEFAULT_FEATURIZER, DocClassificationDataModule

    source = ExportSource.of(run_dir, cfg, subtask)
    kind = featurizer_name(source.data_cfg, DEFAULT_FEATURIZER)  # the front end: subword, word or wordpiece
    tokenizer = read_front_end_spec(kind, source.vocab_dir)  # refuses before any heavy work
    predictor = source.predictor(run_dir, cfg)
    front = front_end(kind, tokenizer, predictor.featurizer, source.vocab_dir)
    names = list(predictor.labels.names)
    multilabel = bool(predictor.labels.multilabel)
    delimiter = str(source.data_cfg.label_delimiter) if multilabel else None
    head = LabelHead(predictor.model.output, names, delimiter=delimiter)
    threshold = float(head.decoding.params["threshold"]) if head.multilabel else None

    dm = DocClassificationDataModule(source.data_cfg, predictor.featurizer, predictor.labels)
    dm.load()
    split = "test" if "test" in dm.splits else "val"
    examples = list(dm.splits[split].examples)

    def reference(texts: list[str]) -> list[dict]:
        scores, has_tokens = predictor.scores_with_presence(texts, batch_size=MIXED_BATCH)  # [N, L]
        return [
            {"label": _label_of(row, names, threshold, head.delimiter) if present else "", "scores": row}
            for row, present in zip(scores.numpy(), has_tokens)  # no tokens (featurizer=word): "", zeros
        ]

    def accuracy(rows: list[dict]) -> dict[str, float]:
        if not examples:
            return {"accuracy": float("nan")}
        hits = 0
        for example, row in zip(examples, rows):
            label = row["label"]
            predicted = set(label.split(head.delimiter)) - {""} if multilabel else {label}
            hits += predicted == set(example.labels)
        return {"accuracy": hits / len(examples)}

    return ExportSpec(
        task=source.task,
        model=predictor.model,
        front_end=front,
        heads=[head],
        metadata={
            **source.metadata,
            "labels": json.dumps(names, ensure_ascii=False),
            "multilabel": json.dumps(multilabel),
            "threshold": json.dumps(threshold),
            "label_delimiter": json.dumps(delimiter),
            "featurizer": kind,
        },
        doc=(
            "nlpkit document classifier. Input 'text': string [batch] of raw UTF-8. Outputs 'label': string "
            "[batch]; 'scores': float [batch, n_labels] (softmax, or per-label sigmoid for multi-label, where "
            "'label' joins the labels at or above the threshold with label_delimiter). " + front.description
        ),
        split=split,
        texts=[example.text for example in examples],
        reference=reference,
        metrics=accuracy,
        agreement="label",
        subtask=subtask,
    )


def _label_of(scores: np.ndarray, names: list[str], threshold: float | None, delimiter: str) -> str:
    """The PyTorch side's label text of one row of scores: argmax, or the names at/above threshold."""
    if threshold is None:
        return names[int(scores.argmax())]
    return delimiter.join(name for name, p in zip(names, scores) if p >= threshold)
