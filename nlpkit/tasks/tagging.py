"""Word tagging task glue: ``TaggingDataModule`` + ``WordTagger`` + ``TaggingModule``.

``python -m nlpkit.train task=tagging data=conll data.train_path=...``; the run directory holds
``tokenizer.json`` (word ids), ``chars.json``, ``labels.json`` (tags) and, after testing,
``span_report.json`` (per-type precision/recall/F1).
"""

from __future__ import annotations

from pathlib import Path

from nlpkit.data.featurizer import Featurizer
from nlpkit.data.labels import LabelVocab
from nlpkit.data.tagging import TaggingDataConfig, TaggingDataModule, TaggingFeatures
from nlpkit.data.token_features import NUM_SHAPES, CharVocab
from nlpkit.models.word_tagger import build_word_tagger
from nlpkit.tagging_inference import TaggingPredictor
from nlpkit.tasks.base import Task
from nlpkit.tasks.word_tagging import TaggingModule
from nlpkit.utils.io import write_json

TOKENIZER_FILE = "tokenizer.json"
CHARS_FILE = "chars.json"
LABELS_FILE = "labels.json"
REPORT_FILE = "span_report.json"


class TaggingTask(Task):
    name = "tagging"
    data_schema = TaggingDataConfig
    target_metric = "span_f1"

    @classmethod
    def datamodule(cls, data_cfg, run_dir=None):
        if run_dir is None:
            return TaggingDataModule(data_cfg)
        run_dir = Path(run_dir)
        return TaggingDataModule(
            data_cfg,
            Featurizer.load(run_dir / TOKENIZER_FILE),
            CharVocab.load(run_dir / CHARS_FILE),
            LabelVocab.load(run_dir / LABELS_FILE),
        )

    @classmethod
    def module(cls, cfg, datamodule, vocab):
        dm = datamodule
        model = build_word_tagger(
            cfg.model,
            vocab_size=dm.featurizer.vocab_size,
            pad_id=dm.featurizer.pad_id,
            num_chars=len(dm.chars),
            num_shapes=NUM_SHAPES,
            label_names=dm.labels.names,
            tag_scheme=str(cfg.data.tag_scheme),
            vocab=vocab,
        )
        return TaggingModule(model, dm.labels.names, cfg.optim, cfg.task.monitor, cfg.task.monitor_mode)

    @classmethod
    def save_vocabularies(cls, datamodule, run_dir):
        datamodule.featurizer.save(run_dir / TOKENIZER_FILE)
        datamodule.chars.save(run_dir / CHARS_FILE)
        datamodule.labels.save(run_dir / LABELS_FILE)

    @classmethod
    def make_predictor(cls, model, datamodule):
        return TaggingPredictor(
            model, TaggingFeatures(datamodule.featurizer, datamodule.chars), datamodule.labels
        )

    @classmethod
    def extra_artifacts(cls, module, run_dir):
        if module.test_report is None:
            return {}
        path = Path(run_dir) / REPORT_FILE
        write_json(path, {"test": module.test_report, "val": module.val_report})
        return {"span_report": str(path)}
