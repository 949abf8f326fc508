"""Intent-only data: one label per text (the classification readers), featurized like word tagging.

``task=intent`` reads the same files as ``task=doc_cls`` (``builtin``, ``tsv``, ``csv``, ``jsonl``,
``label_text``), but splits each text on whitespace and encodes the tokens with the word-level
features of the tagging stack (word ids, characters, casing). That is what lets intent-only data
share an embedding and BiLSTM with slot-tagging or joint intent-slot data in a multi-task run: every
sub-task then speaks the same token features and one word vocabulary.

A batch is an intent-slot batch whose slot tags are all ``O`` (unused by the intent model): ``tokens``,
``lengths``, ``chars``, ``shapes``, ``intents [B]`` (-100 for an intent unseen in training) and
``gold_intents``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from nlpkit.data.config import SplitsConfig, choices
from nlpkit.data.constraints import between, one_character
from nlpkit.data.readers import read_examples
from nlpkit.data.token_features import WordFeaturizerConfig
from nlpkit.tasks.intent_slot.data import IntentSentence, IntentSlotDataModule


@dataclass
class IntentDataConfig(SplitsConfig):
    """Where intent-labelled texts are and how they are read, featurized and batched.

    format: reader: ``builtin`` (generated), ``tsv``, ``csv``, ``jsonl``, ``label_text``.
    text_field/label_field: column or JSON field names (the label is the intent, kept verbatim).
    has_header/columns: delimited files without a header name their columns with ``columns``.
    delimiter: override the format's delimiter.
    unk_replace_prob: in training, replace each word seen once in train by ``<unk>`` with this probability.
    featurizer: the word-level token features (as ``task=tagging``), not the sub-word tokenizer of ``doc_cls``.
    """

    format: str = field(default="builtin", metadata=choices("builtin", "tsv", "csv", "jsonl", "label_text"))
    text_field: str = "text"
    label_field: str = "intent"
    has_header: bool = True
    columns: list[str] | None = None
    delimiter: str | None = field(default=None, metadata=one_character())
    unk_replace_prob: float = field(default=0.0, metadata=between(0, 1))
    featurizer: WordFeaturizerConfig = field(default_factory=WordFeaturizerConfig)


class IntentDataModule(IntentSlotDataModule):
    """``IntentSlotDataModule`` over text + label files: tokens are the whitespace-split text and
    every token's slot tag is ``O``. Vocabularies are built from train, or given to reuse a run's."""

    def read_split(self, path: str) -> list[IntentSentence]:
        cfg = self.config
        reader_cfg = SimpleNamespace(
            format=cfg.format,
            text_field=cfg.text_field,
            label_field=cfg.label_field,
            has_header=cfg.has_header,
            columns=cfg.columns,
            delimiter=cfg.delimiter,
            label_delimiter=None,  # one intent per text, kept verbatim
        )
        out = []
        for example in read_examples(path, reader_cfg, self.policy):
            tokens = tuple(example.text.split())
            out.append(IntentSentence(tokens, ("O",) * len(tokens), example.origin, example.labels[0]))
        return out


__all__ = ["IntentDataConfig", "IntentDataModule"]
