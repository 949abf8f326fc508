"""Document classification task glue: data module + ``DocClassifier`` + ``DocClassificationModule``.

The run directory holds the featurizer's files (``tokenizer.json``; plus ``chars.json`` with
``featurizer=word``) and ``labels.json``.
"""

from __future__ import annotations

from pathlib import Path

from nlpkit.data.config import DocDataConfig
from nlpkit.data.featurizers import featurizer_class, load_featurizer
from nlpkit.data.labels import LabelVocab
from nlpkit.errors import ConfigError
from nlpkit.registry import register_task
from nlpkit.tasks.base import Task
from nlpkit.tasks.doc_cls.data import DEFAULT_FEATURIZER, DocClassificationDataModule
from nlpkit.tasks.doc_cls.model import build_doc_classifier, check_embedding_inputs, pools
from nlpkit.tasks.doc_cls.module import DocClassificationModule
from nlpkit.tasks.doc_cls.predictor import DocClassificationPredictor
from nlpkit.utils.plots import save_confusion_matrix

LABELS_FILE = "labels.json"


@register_task
class DocClassificationTask(Task):
    name = "doc_cls"
    data_schema = DocDataConfig
    distributed_metrics = True  # torchmetrics compute() gathers every process's counts
    component_kinds = {"embedding": "embedding", "representation": "seq2vec", "decoder": "decoder", "output": "doc_output"}  # fmt: skip
    # label_accuracy: multi-label runs only (DocClassificationModule)
    metric_names = ("accuracy", "macro_f1", "label_accuracy", "loss")
    head_labels = {"decoder": "labels", "output": "labels"}

    @classmethod
    def model_kinds(cls, model_cfg):
        """A sequence-to-vector ``representation``, or a per-token one followed by ``model.pooling``
        (sequence-to-vector) that reduces its states (``model=pooled_bilstm``); see ``model.pools``."""
        if not pools(model_cfg):
            return dict(cls.component_kinds)
        return {**cls.component_kinds, "representation": "seq2seq", "pooling": "seq2vec"}

    @classmethod
    def check_config(cls, cfg):
        """The embedding reads only inputs the featurizer makes (no character CNN under ``subword``)."""
        featurizer = featurizer_class(cfg.data, DEFAULT_FEATURIZER)
        check_embedding_inputs(cfg.model, featurizer.size_names, featurizer.name)
        return cfg

    @classmethod
    def datamodule(cls, data_cfg, run_dir=None):
        if run_dir is None:
            return DocClassificationDataModule(data_cfg)
        featurizer = load_featurizer(data_cfg, run_dir, DEFAULT_FEATURIZER)
        return DocClassificationDataModule(data_cfg, featurizer, LabelVocab.load(Path(run_dir) / LABELS_FILE))

    @classmethod
    def module(cls, cfg, datamodule, vocab):
        dm = datamodule
        model = build_doc_classifier(
            cfg.model,
            num_labels=len(dm.labels),
            featurizer=dm.featurizer.name,
            label_names=dm.labels.names,
            **{**dm.featurizer.sizes(), "vocab": vocab},
        )
        if bool(getattr(model.output, "multilabel", False)) != dm.multilabel:
            raise ConfigError(
                "model.output and data disagree on multi-label: use output=multilabel with data.label_delimiter set, "
                "or output=softmax without it"
            )
        return DocClassificationModule(
            model,
            dm.labels.names,
            cfg.optim,
            cfg.task.monitor,
            cfg.task.monitor_mode,
            score_unseen=dm.score_unseen,
        )

    @classmethod
    def export_onnx(cls, run_dir, cfg, out_dir, quantize, exporter, subtask=None):
        """The export pipeline over ``nlpkit.tasks.doc_cls.export``'s spec, also for a sub-task of a
        multi-task run (``subtask``, passed by the multi-task task)."""
        if subtask is not None and cfg.task.get("tasks") is None:  # not a run made of sub-tasks
            return super().export_onnx(run_dir, cfg, out_dir, quantize, exporter, subtask)
        from nlpkit.export.pipeline import run_export  # onnx is imported only when exporting
        from nlpkit.tasks.doc_cls.export import export_spec

        return run_export(export_spec(run_dir, cfg, subtask), run_dir, quantize, exporter)

    @classmethod
    def save_vocabularies(cls, datamodule, run_dir):
        datamodule.featurizer.save(run_dir)
        datamodule.labels.save(run_dir / LABELS_FILE)

    @classmethod
    def make_predictor(cls, model, datamodule):
        return DocClassificationPredictor(model, datamodule.featurizer, datamodule.labels)

    @classmethod
    def extra_artifacts(cls, module, run_dir):
        if module.test_confusion is None:
            return {}
        path = run_dir / "confusion_matrix.png"
        save_confusion_matrix(module.test_confusion, module.label_names, path)
        return {"confusion_matrix": str(path)}
