"""Document classification task glue: data module + ``DocClassifier`` + ``DocClassificationModule``."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from nlpkit.data.config import DocDataConfig
from nlpkit.data.doc_classification import DocClassificationDataModule
from nlpkit.data.featurizer import Featurizer
from nlpkit.data.labels import LabelVocab
from nlpkit.errors import ConfigError
from nlpkit.inference import DocClassificationPredictor
from nlpkit.models.doc_classifier import build_doc_classifier
from nlpkit.tasks.base import Task
from nlpkit.tasks.doc_classification import DocClassificationModule
from nlpkit.training.checkpoint import best_checkpoint, load_checkpoint, model_state
from nlpkit.utils.plots import save_confusion_matrix

TOKENIZER_FILE = "tokenizer.json"
LABELS_FILE = "labels.json"


class DocClassificationTask(Task):
    name = "doc_cls"
    data_schema = DocDataConfig

    @classmethod
    def _module(
        cls, cfg: DictConfig, dm: DocClassificationDataModule, vocab: list[str] | None
    ) -> DocClassificationModule:
        model = build_doc_classifier(
            cfg.model,
            vocab_size=dm.featurizer.vocab_size,
            pad_id=dm.featurizer.pad_id,
            num_labels=len(dm.labels),
            vocab=vocab,
        )
        if bool(getattr(model.output, "multilabel", False)) != dm.multilabel:
            raise ConfigError(
                "model.output and data disagree on multi-label: use output=multilabel with data.label_delimiter set, "
                "or output=softmax without it"
            )
        return DocClassificationModule(
            model, dm.labels.names, cfg.optim, cfg.task.monitor, cfg.task.monitor_mode
        )

    @classmethod
    def build(cls, cfg, run_dir=None):
        dm = DocClassificationDataModule(cfg.data)
        dm.load()
        return dm, cls._module(cfg, dm, dm.featurizer.vocab)

    @classmethod
    def save_vocabularies(cls, datamodule, run_dir):
        datamodule.featurizer.save(run_dir / TOKENIZER_FILE)
        datamodule.labels.save(run_dir / LABELS_FILE)

    @classmethod
    def _vocabularies(cls, run_dir: Path) -> tuple[Featurizer, LabelVocab]:
        return Featurizer.load(run_dir / TOKENIZER_FILE), LabelVocab.load(run_dir / LABELS_FILE)

    @classmethod
    def restore(cls, cfg, run_dir, data_cfg=None):
        featurizer, labels = cls._vocabularies(run_dir)
        dm = DocClassificationDataModule(data_cfg if data_cfg is not None else cfg.data, featurizer, labels)
        module = cls._module(cfg, dm, vocab=None)
        module.model.load_state_dict(model_state(load_checkpoint(best_checkpoint(run_dir))))
        module.eval()
        return dm, module

    @classmethod
    def predictor(cls, cfg, run_dir):
        featurizer, labels = cls._vocabularies(run_dir)
        dm = DocClassificationDataModule(cfg.data, featurizer, labels)
        model = cls._module(cfg, dm, vocab=None).model
        model.load_state_dict(model_state(load_checkpoint(best_checkpoint(run_dir))))
        return DocClassificationPredictor(model, featurizer, labels)

    @classmethod
    def extra_artifacts(cls, module, run_dir):
        if module.test_confusion is None:
            return {}
        path = run_dir / "confusion_matrix.png"
        save_confusion_matrix(module.test_confusion, module.label_names, path)
        return {"confusion_matrix": str(path)}
