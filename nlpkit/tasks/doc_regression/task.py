"""Text regression (``task=doc_regression``): a real value per text, e.g. a rating or a count.

The model is document classification's (``DocClassifier``: embedding -> seq2vec encoder -> decoder)
with one output and a one-value output layer (``output=regression``: MSE). The run directory holds the
featurizer's files (``tokenizer.json``). ``python -m nlpkit.train task=doc_regression`` trains it on the
built-in utterances, predicting how many slot values each names (``num_slots``).
"""

from __future__ import annotations

from nlpkit.data.featurizers import load_featurizer
from nlpkit.registry import register_task
from nlpkit.tasks.base import Task
from nlpkit.tasks.doc_cls.model import build_doc_classifier
from nlpkit.tasks.doc_regression.data import DEFAULT_FEATURIZER, DocRegressionDataModule, RegressionDataConfig
from nlpkit.tasks.doc_regression.module import DocRegressionModule
from nlpkit.tasks.doc_regression.predictor import DocRegressionPredictor


@register_task
class DocRegressionTask(Task):
    name = "doc_regression"
    data_schema = RegressionDataConfig
    distributed_metrics = True  # torchmetrics reduces MSE, MAE and Pearson's sums across processes
    component_kinds = {"embedding": "embedding", "representation": "seq2vec", "decoder": "decoder", "output": "value_output"}  # fmt: skip
    target_metric = "mse"
    metric_names = ("mse", "mae", "pearson", "loss")
    minimized_metrics = frozenset({"mse", "mae", "loss"})
    head_labels = {}

    @classmethod
    def datamodule(cls, data_cfg, run_dir=None):
        if run_dir is None:
            return DocRegressionDataModule(data_cfg)
        return DocRegressionDataModule(data_cfg, load_featurizer(data_cfg, run_dir, DEFAULT_FEATURIZER))

    @classmethod
    def module(cls, cfg, datamodule, vocab):
        sizes = {**datamodule.featurizer.sizes(), "vocab": vocab}
        model = build_doc_classifier(cfg.model, num_labels=1, featurizer=datamodule.featurizer.name, **sizes)
        return DocRegressionModule(model, cfg.optim, cfg.task.monitor, cfg.task.monitor_mode)

    @classmethod
    def export_onnx(cls, run_dir, cfg, out_dir, quantize, exporter, subtask=None):
        if subtask is not None and cfg.task.get("tasks") is None:  # not a run made of sub-tasks
            return super().export_onnx(run_dir, cfg, out_dir, quantize, exporter, subtask)
        from nlpkit.export.pipeline import run_export  # onnx is imported only when exporting
        from nlpkit.tasks.doc_regression.export import export_spec

        return run_export(export_spec(run_dir, cfg, subtask), run_dir, quantize, exporter)

    @classmethod
    def save_vocabularies(cls, datamodule, run_dir):
        datamodule.featurizer.save(run_dir)

    @classmethod
    def make_predictor(cls, model, datamodule):
        return DocRegressionPredictor(model, datamodule.featurizer)
