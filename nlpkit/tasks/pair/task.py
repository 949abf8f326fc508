"""Sentence pairs (``task=pair``): two texts -> a label (``output=softmax``: cross-entropy, accuracy/F1)
or a score (``output=regression``: MSE, Pearson/Spearman).

Two towers over one shared embedding (``nlpkit/tasks/pair/model.py``); the tower encoder is any
sequence-to-vector component (``representation=bag|docnn|bilstm``), shared by both texts or one each
(``model.shared_encoder``), combined as ``[a, b, |a-b|, a*b]`` -> MLP or as a cosine
(``model.combine``). The run directory holds the featurizer's files and, for classification,
``labels.json``. ``python -m nlpkit.train task=pair`` trains it on generated pairs of the built-in
utterances (do the two ask for the same intent?).
"""

from __future__ import annotations

from pathlib import Path

from nlpkit.data.featurizers import featurizer_class, load_featurizer
from nlpkit.data.labels import LabelVocab
from nlpkit.errors import ConfigError
from nlpkit.modules.kinds import kind_of
from nlpkit.registry import register_task, resolve_target
from nlpkit.tasks.base import Task
from nlpkit.tasks.doc_cls.model import check_embedding_inputs
from nlpkit.tasks.pair.data import DEFAULT_FEATURIZER, PairDataConfig, PairDataModule
from nlpkit.tasks.pair.model import build_pair_model
from nlpkit.tasks.pair.module import PairModule
from nlpkit.tasks.pair.predictor import PairPredictor

LABELS_FILE = "labels.json"
CLASS_MONITORS = ("val/accuracy", "val/f1")


def output_kind(model_cfg) -> str | None:
    """The kind of ``model.output`` (``doc_output`` / ``value_output``), ``None`` when it has none."""
    node = model_cfg.get("output")
    if node is None or not node.get("_target_"):
        return None
    return kind_of(resolve_target(str(node._target_), "model.output"))


class TwoTowerTask(Task):
    """What ``task=pair`` and ``task=ranking`` share: the two-tower model (no decoder under
    ``model.combine=cosine``), an embedding fed only what the featurizer makes, and the two-file export
    (``model.onnx`` for pairs, ``embedding.onnx`` per tower)."""

    component_kinds = {"embedding": "embedding", "representation": "seq2vec", "decoder": "decoder"}

    @classmethod
    def model_kinds(cls, model_cfg):
        kinds = dict(cls.component_kinds)
        if str(model_cfg.get("combine", "mlp")) == "cosine":
            kinds.pop("decoder")
        return kinds

    @classmethod
    def check_config(cls, cfg):
        featurizer = featurizer_class(cfg.data, DEFAULT_FEATURIZER)
        check_embedding_inputs(cfg.model, featurizer.size_names, featurizer.name)
        return cfg

    @classmethod
    def export_onnx(cls, run_dir, cfg, out_dir, quantize, exporter, subtask=None):
        """``model.onnx`` (two string inputs) and ``embedding.onnx`` (one tower), each behind its own
        parity gate (``nlpkit.tasks.pair.export``); also for a sub-task of a multi-task run."""
        if subtask is not None and cfg.task.get("tasks") is None:  # not a run made of sub-tasks
            return super().export_onnx(run_dir, cfg, out_dir, quantize, exporter, subtask)
        from nlpkit.tasks.pair.export import export_pair  # onnx is imported only when exporting

        return export_pair(run_dir, cfg, quantize, exporter, subtask)


@register_task
class PairTask(TwoTowerTask):
    name = "pair"
    data_schema = PairDataConfig
    distributed_metrics = True  # torchmetrics reduces accuracy/F1 counts and Pearson/Spearman states
    component_kinds = {**TwoTowerTask.component_kinds, "output": "doc_output"}
    target_metric = "accuracy"
    metric_names = ("accuracy", "f1", "pearson", "spearman", "mse", "loss")
    minimized_metrics = frozenset({"mse", "loss"})

    @classmethod
    def model_kinds(cls, model_cfg):
        """A class label (``output=softmax``) or a score (``output=regression``); no decoder under
        ``model.combine=cosine``."""
        kinds = super().model_kinds(model_cfg)
        if output_kind(model_cfg) == "value_output":
            kinds["output"] = "value_output"
        return kinds

    @classmethod
    def check_config(cls, cfg):
        """The label type follows the output layer (``data.label_type=auto``); a stated one must agree;
        a score's run must not follow a class metric (``task.monitor=val/pearson``);
        the embedding reads only inputs the featurizer makes."""
        super().check_config(cfg)
        wanted = "score" if output_kind(cfg.model) == "value_output" else "class"
        stated = str(cfg.data.label_type)
        if stated == "auto":
            cfg.data.label_type = wanted
        elif stated != wanted:
            fix = "output=regression" if stated == "score" else "output=softmax"
            raise ConfigError(f"data.label_type={stated} needs a fitting output layer: choose {fix}")
        if wanted == "score" and str(cfg.task.monitor) in CLASS_MONITORS:  # conf/task/pair.yaml's default
            raise ConfigError(
                f"task.monitor={cfg.task.monitor} is a class metric, not logged for a score "
                "(output=regression): set task.monitor=val/pearson (or val/spearman, val/mse with monitor_mode=min)"
            )
        return cfg

    @classmethod
    def datamodule(cls, data_cfg, run_dir=None):
        kind = str(data_cfg.label_type)
        if kind == "auto":  # a config that did not go through validation: the run says which
            kind = "class" if run_dir is not None and (Path(run_dir) / LABELS_FILE).is_file() else "score"
        regression = kind == "score"
        if run_dir is None:
            return PairDataModule(data_cfg, regression)
        labels = None if regression else LabelVocab.load(Path(run_dir) / LABELS_FILE)
        return PairDataModule(
            data_cfg, regression, load_featurizer(data_cfg, run_dir, DEFAULT_FEATURIZER), labels
        )

    @classmethod
    def module(cls, cfg, datamodule, vocab):
        sizes = {**datamodule.featurizer.sizes(), "vocab": vocab}
        regression = datamodule.regression
        num_labels = 1 if regression else len(datamodule.labels)
        model = build_pair_model(
            cfg.model,
            num_outputs=num_labels,
            with_output=True,
            featurizer=datamodule.featurizer.name,
            **sizes,
        )
        return PairModule(model, cfg.optim, regression, num_labels, cfg.task.monitor, cfg.task.monitor_mode)

    @classmethod
    def save_vocabularies(cls, datamodule, run_dir):
        datamodule.featurizer.save(run_dir)
        if not datamodule.regression:
            datamodule.labels.save(Path(run_dir) / LABELS_FILE)

    @classmethod
    def make_predictor(cls, model, datamodule):
        return PairPredictor(
            model, datamodule.featurizer, None if datamodule.regression else datamodule.labels
        )
