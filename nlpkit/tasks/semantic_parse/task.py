"""Semantic parsing on TOP (``task=semantic_parse``): ``SemanticParseDataModule`` + ``RNNGParser`` +
``SemanticParseModule``.

``python -m nlpkit.train experiment=top`` (``../shared/data/top_v1``), or any file in TOP's format by
``data.train_path=... data.val_path=... data.test_path=...``. The run directory holds the word
featurizer's files (``tokenizer.json``, ``chars.json``) and ``actions.json`` (SHIFT, REDUCE and the
non-terminal labels, in action-id order). ``python -m nlpkit.export`` writes no ONNX file: the decoder's
control flow depends on its own predictions, so the export is the C++/libtorch parser's model directory
(``export/native/``), parity-gated against this parser (``nlpkit.tasks.semantic_parse.native``).
"""

from __future__ import annotations

from pathlib import Path

from nlpkit.data.featurizers import load_featurizer
from nlpkit.registry import register_task
from nlpkit.tasks.base import Task
from nlpkit.tasks.semantic_parse.data import (
    ACTIONS_FILE,
    DEFAULT_FEATURIZER,
    ActionVocab,
    SemanticParseDataConfig,
    SemanticParseDataModule,
)
from nlpkit.tasks.semantic_parse.model import build_rnng_parser
from nlpkit.tasks.semantic_parse.module import SemanticParseModule
from nlpkit.tasks.semantic_parse.predictor import SemanticParsePredictor


@register_task
class SemanticParseTask(Task):
    name = "semantic_parse"
    data_schema = SemanticParseDataConfig
    target_metric = "exact_match"
    distributed_metrics = True  # TreeMetrics' counts are summed across processes by torchmetrics
    component_kinds = {"embedding": "embedding", "representation": "seq2seq"}
    metric_names = (
        "exact_match", "bracket_precision", "bracket_recall", "bracket_f1", "intent_accuracy", "well_formed",
        "loss",
    )  # fmt: skip
    head_labels = {}
    can_be_subtask = False  # its batches carry oracle actions a multi-task schedule knows nothing of

    @classmethod
    def datamodule(cls, data_cfg, run_dir=None):
        if run_dir is None:
            return SemanticParseDataModule(data_cfg)
        run_dir = Path(run_dir)
        return SemanticParseDataModule(
            data_cfg,
            load_featurizer(data_cfg, run_dir, DEFAULT_FEATURIZER, per_token=True, aligned=True),
            ActionVocab.load(run_dir / ACTIONS_FILE),
        )

    @classmethod
    def module(cls, cfg, datamodule, vocab):
        dm = datamodule
        model = build_rnng_parser(
            cfg.model,
            nt_kinds=dm.actions.nt_kinds,
            max_open=int(cfg.data.max_open),
            **{**dm.featurizer.sizes(), "vocab": vocab},
        )
        return SemanticParseModule(
            model, dm.actions.names, cfg.optim, cfg.task.monitor, cfg.task.monitor_mode
        )

    @classmethod
    def save_vocabularies(cls, datamodule, run_dir):
        datamodule.featurizer.save(run_dir)
        datamodule.actions.save(Path(run_dir) / ACTIONS_FILE)

    @classmethod
    def make_predictor(cls, model, datamodule):
        return SemanticParsePredictor(model, datamodule.featurizer, datamodule.actions)

    @classmethod
    def export_onnx(cls, run_dir, cfg, out_dir, quantize, exporter, subtask=None):
        if subtask is not None:
            return super().export_onnx(run_dir, cfg, out_dir, quantize, exporter, subtask)
        from nlpkit.tasks.semantic_parse.native import export_native

        return export_native(Path(run_dir), cfg, Path(out_dir), quantize)
