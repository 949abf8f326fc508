"""Word tagging task glue: ``TaggingDataModule`` + ``WordTagger`` + ``TaggingModule``.

``python -m nlpkit.train task=tagging data=conll data.train_path=...``; the run directory holds
``tokenizer.json`` (word ids), ``chars.json``, ``labels.json`` (tags) and, after testing,
``span_report.json`` (per-type precision/recall/F1).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from nlpkit.data.featurizer import Featurizer
from nlpkit.data.labels import LabelVocab
from nlpkit.data.tagging import TaggingDataConfig, TaggingDataModule, TaggingFeatures
from nlpkit.data.token_features import NUM_SHAPES, CharVocab
from nlpkit.models.word_tagger import build_word_tagger
from nlpkit.tagging_inference import TaggingPredictor
from nlpkit.tasks.base import Task
from nlpkit.tasks.word_tagging import TaggingModule
from nlpkit.training.checkpoint import best_checkpoint, load_checkpoint, model_state
from nlpkit.utils.io import write_json

TOKENIZER_FILE = "tokenizer.json"
CHARS_FILE = "chars.json"
LABELS_FILE = "labels.json"
REPORT_FILE = "span_report.json"


class TaggingTask(Task):
    name = "tagging"
    data_schema = TaggingDataConfig

    @classmethod
    def _module(cls, cfg: DictConfig, dm: TaggingDataModule, vocab: list[str] | None) -> TaggingModule:
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
    def build(cls, cfg, run_dir=None):
        dm = TaggingDataModule(cfg.data)
        dm.load()
        return dm, cls._module(cfg, dm, dm.featurizer.vocab)

    @classmethod
    def save_vocabularies(cls, datamodule, run_dir):
        datamodule.featurizer.save(run_dir / TOKENIZER_FILE)
        datamodule.chars.save(run_dir / CHARS_FILE)
        datamodule.labels.save(run_dir / LABELS_FILE)

    @classmethod
    def _vocabularies(cls, run_dir: Path) -> tuple[Featurizer, CharVocab, LabelVocab]:
        return (
            Featurizer.load(run_dir / TOKENIZER_FILE),
            CharVocab.load(run_dir / CHARS_FILE),
            LabelVocab.load(run_dir / LABELS_FILE),
        )

    @classmethod
    def restore(cls, cfg, run_dir, data_cfg=None):
        featurizer, chars, labels = cls._vocabularies(Path(run_dir))
        dm = TaggingDataModule(data_cfg if data_cfg is not None else cfg.data, featurizer, chars, labels)
        module = cls._module(cfg, dm, vocab=None)
        module.model.load_state_dict(model_state(load_checkpoint(best_checkpoint(run_dir))))
        module.eval()
        return dm, module

    @classmethod
    def predictor(cls, cfg, run_dir):
        featurizer, chars, labels = cls._vocabularies(Path(run_dir))
        dm = TaggingDataModule(cfg.data, featurizer, chars, labels)
        model = cls._module(cfg, dm, vocab=None).model
        model.load_state_dict(model_state(load_checkpoint(best_checkpoint(run_dir))))
        return TaggingPredictor(model, TaggingFeatures(featurizer, chars), labels)

    @classmethod
    def extra_artifacts(cls, module, run_dir):
        if module.test_report is None:
            return {}
        path = Path(run_dir) / REPORT_FILE
        write_json(path, {"test": module.test_report, "val": module.val_report})
        return {"span_report": str(path)}
