"""Word tagging task glue: ``TaggingDataModule`` + ``WordTagger`` + ``TaggingModule``.

``python -m nlpkit.train task=tagging data=conll data.train_path=...``; the run directory holds
``tokenizer.json`` (word ids), ``chars.json``, ``labels.json`` (tags) and, after testing,
``span_report.json`` (per-type precision/recall/F1).
"""

from __future__ import annotations

from pathlib import Path

from nlpkit.data.featurizers import load_featurizer
from nlpkit.data.labels import LabelVocab
from nlpkit.registry import register_task
from nlpkit.tasks.base import Task
from nlpkit.tasks.tagging.data import (
    DEFAULT_FEATURIZER,
    LABELS_FILE,
    REPORT_FILE,
    TaggingDataConfig,
    TaggingDataModule,
)
from nlpkit.tasks.tagging.model import build_word_tagger
from nlpkit.tasks.tagging.module import TaggingModule
from nlpkit.tasks.tagging.predictor import TaggingPredictor
from nlpkit.utils.io import write_json


@register_task
class TaggingTask(Task):
    """Word tagging; also the base of the other word-level task (``intent_slot``), which shares its
    featurizer (``featurizer=word``: ``tokenizer.json``, ``chars.json``) and run-directory layout."""

    name = "tagging"
    data_schema = TaggingDataConfig
    target_metric = "span_f1"
    distributed_metrics = True  # nlpkit.metrics: torchmetrics sums the span/frame counts across processes
    metric_names = ("span_f1", "span_precision", "span_recall", "token_accuracy", "loss")
    head_labels = {"decoder": "labels", "output": "labels"}
    datamodule_class = TaggingDataModule
    component_kinds = {"embedding": "embedding", "representation": "seq2seq", "decoder": "decoder", "output": "word_output"}  # fmt: skip
    #: the label vocabularies a run directory holds, in the data module's argument order
    label_files: tuple[str, ...] = (LABELS_FILE,)

    @classmethod
    def datamodule(cls, data_cfg, run_dir=None):
        if run_dir is None:
            return cls.datamodule_class(data_cfg)
        run_dir = Path(run_dir)
        return cls.datamodule_class(
            data_cfg,
            load_featurizer(data_cfg, run_dir, DEFAULT_FEATURIZER, per_token=True, aligned=True),
            *(LabelVocab.load(run_dir / name) for name in cls.label_files),
        )

    @staticmethod
    def encoder_sizes(datamodule, vocab) -> dict:
        """What every word-level model builder needs from the data: the featurizer's sizes
        (``vocab_size``, ``padding_idx``, ``num_chars`` ...; see ``build_token_encoder``)."""
        return {**datamodule.featurizer.sizes(), "vocab": vocab}

    @classmethod
    def module(cls, cfg, datamodule, vocab):
        dm = datamodule
        model = build_word_tagger(
            cfg.model,
            label_names=dm.labels.names,
            tag_scheme=str(cfg.data.tag_scheme),
            **cls.encoder_sizes(dm, vocab),
        )
        return TaggingModule(model, dm.labels.names, cfg.optim, cfg.task.monitor, cfg.task.monitor_mode)

    @classmethod
    def export_onnx(cls, run_dir, cfg, out_dir, quantize, exporter, subtask=None):
        """The export pipeline over ``export_spec``: this task and the ones built on it, also as a
        sub-task of a multi-task run (``subtask``, passed by the multi-task task)."""
        if subtask is not None and cfg.task.get("tasks") is None:  # not a run made of sub-tasks
            return super().export_onnx(run_dir, cfg, out_dir, quantize, exporter, subtask)
        from nlpkit.export.pipeline import run_export  # onnx is imported only when exporting

        return run_export(cls.export_spec(run_dir, cfg, subtask), run_dir, quantize, exporter)

    @classmethod
    def export_spec(cls, run_dir, cfg, subtask=None):
        """What this task's ONNX file holds (``nlpkit.export.pipeline.ExportSpec``): its export.py."""
        from nlpkit.tasks.tagging.export import export_spec

        return export_spec(run_dir, cfg, subtask)

    @classmethod
    def save_vocabularies(cls, datamodule, run_dir):
        datamodule.featurizer.save(run_dir)
        datamodule.labels.save(run_dir / LABELS_FILE)

    @classmethod
    def make_predictor(cls, model, datamodule):
        return TaggingPredictor(model, datamodule.featurizer, datamodule.labels)

    @classmethod
    def extra_artifacts(cls, module, run_dir):
        if module.test_report is None:
            return {}
        path = Path(run_dir) / REPORT_FILE
        write_json(path, {"test": module.test_report, "val": module.val_report})
        return {"span_report": str(path)}
