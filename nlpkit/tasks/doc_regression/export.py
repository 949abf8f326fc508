"""Text regression export: ``text [batch]`` string -> ``score [batch]`` float.

What this task declares (:class:`~nlpkit.export.pipeline.ExportSpec`): the front end of its featurizer,
one value head over the network's output, the PyTorch side's values, and the test split's MSE. The
steps (front end, network, decoding, parity gate, int8) are the pipeline's; the server shapes the
answer from the head (``{"score": value}``) with no code of this task's.
"""

from __future__ import annotations

from pathlib import Path

from nlpkit.export.front_ends import front_end, read_front_end_spec
from nlpkit.export.heads import ValueHead
from nlpkit.export.parity import MIXED_BATCH
from nlpkit.export.pipeline import ExportSource, ExportSpec


def export_spec(run_dir: Path, cfg, subtask: str | None = None) -> ExportSpec:
    from nlpkit.data.featurizers import featurizer_name
    from nlpkit.tasks.doc_regression.data import DEFAULT_FEATURIZER, DocRegressionDataModule

    source = ExportSource.of(run_dir, cfg, subtask)
    kind = featurizer_name(source.data_cfg, DEFAULT_FEATURIZER)  # the front end: subword, word or wordpiece
    tokenizer = read_front_end_spec(kind, source.vocab_dir)  # refuses before any heavy work
    predictor = source.predictor(run_dir, cfg)
    front = front_end(kind, tokenizer, predictor.featurizer, source.vocab_dir)
    head = ValueHead(predictor.model.output, network="scores", output="score")

    dm = DocRegressionDataModule(source.data_cfg, predictor.featurizer)
    dm.load()
    split = "test" if "test" in dm.splits else "val"
    dataset = dm.splits[split]

    def reference(texts: list[str]) -> list[dict]:
        values, present = predictor.values(texts, batch_size=MIXED_BATCH)
        return [{"score": float(v) if has_tokens else None} for v, has_tokens in zip(values, present)]

    def mse(rows: list[dict]) -> dict[str, float]:
        errors = [(row["score"] - float(t)) ** 2 for row, t in zip(rows, dataset.targets)]
        return {"mse": sum(errors) / len(errors) if errors else float("nan")}

    return ExportSpec(
        task=source.task,
        model=predictor.model,
        front_end=front,
        heads=[head],
        metadata={**source.metadata, "featurizer": kind},
        doc=(
            "nlpkit text regression. Input 'text': string [batch] of raw UTF-8. Output 'score': float "
            "[batch], the predicted value. " + front.description
        ),
        split=split,
        texts=[example.text for example in dataset.examples],
        reference=reference,
        metrics=mse,
        subtask=subtask,
    )
