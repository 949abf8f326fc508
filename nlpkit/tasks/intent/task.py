"""Intent-only task glue: ``IntentDataModule`` + ``IntentModel`` + ``IntentModule``.

``python -m nlpkit.train task=intent`` trains intent detection on text + label files (any
classification reader) with the word-level features of the tagging stack, so an intent-only dataset
can join a multi-task run beside slot-tagging data (``task=multitask``). The run directory holds
``tokenizer.json``, ``chars.json``, ``labels.json`` (the unused slot vocabulary, ``O``) and
``intents.json``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nlpkit.data.inputs import check_texts
from nlpkit.data.labels import LabelVocab
from nlpkit.registry import register_task
from nlpkit.tasks.intent.data import IntentDataConfig, IntentDataModule
from nlpkit.tasks.intent.model import IntentModel, build_intent_model
from nlpkit.tasks.intent.module import IntentModule
from nlpkit.tasks.intent_slot.task import IntentSlotTask
from nlpkit.tasks.tagging.data import TaggingFeatures


class IntentPredictor:
    """``predict(["text ..."]) -> [{"intent", "intent_scores"}]``; text is split on whitespace.

    An empty text gets ``intent=None`` and no scores."""

    def __init__(self, model: IntentModel, features: TaggingFeatures, intents: LabelVocab):
        self.model = model.eval()
        self.features = features
        self.intents = intents

    @torch.no_grad()
    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        check_texts(texts)  # a list, no blank text: the same rule as the ONNX model and the server
        return self.predict_any(texts, batch_size)

    def predict_any(self, texts: Sequence[str], batch_size: int = 64) -> list[dict]:
        """``predict`` without the blank-text check: the model's answer to any text, which the exported
        graph reproduces for blank ones too (the export's parity gate compares the two)."""
        sentences = [text.split() for text in texts]
        results: list[dict] = [{"intent": None, "intent_scores": {}} for _ in sentences]
        for chunk, batch in self.features.batches(sentences, batch_size):
            probabilities = self.model.decode(batch)  # [B, I]
            for row, i in enumerate(chunk):
                results[i] = {
                    "intent": self.intents.names[int(probabilities[row].argmax())],
                    "intent_scores": dict(zip(self.intents.names, probabilities[row].tolist())),
                }
        return results


@register_task
class IntentTask(IntentSlotTask):
    """Saves and reloads the same vocabularies as ``intent_slot`` (its slot vocabulary is just ``O``)."""

    name = "intent"
    data_schema = IntentDataConfig
    target_metric = "intent_accuracy"
    metric_names = ("intent_accuracy", "unseen_intents", "loss")
    head_labels = {"doc_decoder": "intents", "doc_output": "intents"}  # no word head is built

    datamodule_class = IntentDataModule
    component_kinds = {"embedding": "embedding", "representation": "seq2seq", "pooling": "seq2vec", "doc_decoder": "decoder", "doc_output": "doc_output"}  # fmt: skip

    @classmethod
    def module(cls, cfg, datamodule, vocab):
        dm = datamodule
        model = build_intent_model(cfg.model, intent_names=dm.intents.names, **cls.encoder_sizes(dm, vocab))
        return IntentModule(model, dm.intents.names, cfg.optim, cfg.task.monitor, cfg.task.monitor_mode)

    @classmethod
    def export_spec(cls, run_dir, cfg, subtask=None):
        from nlpkit.tasks.intent.export import export_spec

        return export_spec(run_dir, cfg, subtask)

    @classmethod
    def make_predictor(cls, model, datamodule):
        return IntentPredictor(
            model, TaggingFeatures(datamodule.featurizer, datamodule.chars), datamodule.intents
        )

    @classmethod
    def extra_artifacts(cls, module, run_dir):
        return {}
