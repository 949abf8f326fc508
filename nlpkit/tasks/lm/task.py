"""Word-level language modelling (``task=lm``): a stacked LSTM predicting the next word.

Mikolov et al. 2010 / Zaremba et al. 2014 (PyText's ``LMLSTM``): word embedding -> stacked LSTM with
dropout between layers -> full or adaptive softmax (``output=adaptive_softmax``; tied embeddings with
the full one). Plain text files by overrides (``data.train_path=... data.val_path=...``); truncated
BPTT over one stream (``data.mode=stream``) or one line at a time (``data.mode=sentence``). Metrics:
perplexity over each whole split and tokens/s. The run directory holds the word featurizer's files
(``tokenizer.json``: the vocabulary with ``<unk>`` and ``<eos>``).
"""

from __future__ import annotations

from nlpkit.data.featurizers import load_featurizer
from nlpkit.registry import register_task
from nlpkit.tasks.base import Task
from nlpkit.tasks.lm.data import DEFAULT_FEATURIZER, LMDataConfig, LMDataModule, eos_id
from nlpkit.tasks.lm.model import build_language_model
from nlpkit.tasks.lm.module import LMModule
from nlpkit.tasks.lm.predictor import LMPredictor


@register_task
class LMTask(Task):
    name = "lm"
    data_schema = LMDataConfig
    distributed_metrics = True  # perplexity's two sums reduce across processes; stream rows are sharded
    component_kinds = {"embedding": "embedding", "representation": "seq2seq", "output": "lm_output"}
    target_metric = "perplexity"
    metric_names = ("perplexity", "tokens_per_second", "loss")
    minimized_metrics = frozenset({"perplexity", "loss"})
    head_labels = {}

    @classmethod
    def datamodule(cls, data_cfg, run_dir=None):
        if run_dir is None:
            return LMDataModule(data_cfg)
        return LMDataModule(data_cfg, load_featurizer(data_cfg, run_dir, DEFAULT_FEATURIZER, per_token=True))

    @classmethod
    def module(cls, cfg, datamodule, vocab):
        featurizer = datamodule.featurizer
        sizes = {**featurizer.sizes(), "vocab": vocab}
        model = build_language_model(cfg.model, eos_id=eos_id(featurizer), **sizes)
        stateful = str(cfg.data.mode) == "stream"
        return LMModule(model, cfg.optim, stateful, cfg.task.monitor, cfg.task.monitor_mode)

    @classmethod
    def export_onnx(cls, run_dir, cfg, out_dir, quantize, exporter, subtask=None):
        if subtask is not None and cfg.task.get("tasks") is None:
            return super().export_onnx(run_dir, cfg, out_dir, quantize, exporter, subtask)
        from nlpkit.export.pipeline import run_export  # onnx is imported only when exporting
        from nlpkit.tasks.lm.export import export_spec

        return run_export(export_spec(run_dir, cfg, subtask), run_dir, quantize, exporter)

    @classmethod
    def save_vocabularies(cls, datamodule, run_dir):
        datamodule.featurizer.save(run_dir)

    @classmethod
    def make_predictor(cls, model, datamodule):
        return LMPredictor(model, datamodule.featurizer)
