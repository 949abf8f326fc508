"""Joint intent-slot task glue (PyText Figure 3): ``IntentSlotDataModule`` + ``IntentSlotModel`` +
``IntentSlotModule``.

``python -m nlpkit.train task=intent_slot`` (built-in data) or ``experiment=atis``/``experiment=snips``.
The run directory holds the tagging vocabularies (``tokenizer.json``, ``chars.json``, ``labels.json``
for slot tags), ``intents.json`` and, after testing, ``span_report.json``.
"""

from __future__ import annotations

from pathlib import Path

from nlpkit.registry import register_task
from nlpkit.tasks.intent_slot.data import IntentSlotDataConfig, IntentSlotDataModule
from nlpkit.tasks.intent_slot.model import build_intent_slot_model
from nlpkit.tasks.intent_slot.module import IntentSlotModule
from nlpkit.tasks.intent_slot.predictor import IntentSlotPredictor
from nlpkit.tasks.tagging.task import LABELS_FILE, TaggingTask

INTENTS_FILE = "intents.json"


@register_task
class IntentSlotTask(TaggingTask):
    name = "intent_slot"
    data_schema = IntentSlotDataConfig
    target_metric = "frame_accuracy"
    metric_names = (
        "frame_accuracy", "intent_accuracy", "slot_f1", "slot_precision", "slot_recall", "token_accuracy",
        "unseen_intents", "loss", "intent_loss", "slot_loss",
    )  # fmt: skip
    head_labels = {**TaggingTask.head_labels, "doc_decoder": "intents", "doc_output": "intents"}

    datamodule_class = IntentSlotDataModule
    component_kinds = {**TaggingTask.component_kinds, "pooling": "seq2vec", "doc_decoder": "decoder", "doc_output": "doc_output"}  # fmt: skip
    label_files = (LABELS_FILE, INTENTS_FILE)

    @classmethod
    def module(cls, cfg, datamodule, vocab):
        dm = datamodule
        model = build_intent_slot_model(
            cfg.model,
            label_names=dm.labels.names,
            intent_names=dm.intents.names,
            tag_scheme=str(cfg.data.tag_scheme),
            **cls.encoder_sizes(dm, vocab),
        )
        return IntentSlotModule(
            model,
            dm.labels.names,
            dm.intents.names,
            cfg.optim,
            cfg.task.monitor,
            cfg.task.monitor_mode,
            intent_weight=float(cfg.model.get("intent_weight", 1.0)),
            slot_weight=float(cfg.model.get("slot_weight", 1.0)),
        )

    @classmethod
    def export_spec(cls, run_dir, cfg, subtask=None):
        from nlpkit.tasks.intent_slot.export import export_spec

        return export_spec(run_dir, cfg, subtask)

    @classmethod
    def save_vocabularies(cls, datamodule, run_dir):
        super().save_vocabularies(datamodule, run_dir)
        datamodule.intents.save(Path(run_dir) / INTENTS_FILE)

    @classmethod
    def make_predictor(cls, model, datamodule):
        return IntentSlotPredictor(
            model,
            datamodule.featurizer,
            datamodule.labels,
            datamodule.intents,
        )
