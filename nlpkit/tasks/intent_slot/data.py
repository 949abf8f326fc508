"""Joint intent-slot data: word-tagging data plus one intent label per sentence.

Reuses the tagging readers (tokens + BIO slots, validated and counted the same way) and adds the
intent: from ``intent_field`` of each JSONL record (``builtin``/``jsonl``), or from ``intents_file``
beside ``tokens_file``/``tags_file`` in each ``parallel`` split directory (``seq.in``/``seq.out``/
``label``, the slot-gated ATIS/SNIPS layout). Intent names are kept verbatim (``atis_flight#atis_airfare``
is one class). A gold intent not seen in training cannot be predicted: it is kept as a string, scored
as an error, and counted (a warning and ``{stage}/unseen_intents``), never a crash.

A batch is a tagging batch plus ``intents [B]`` (intent ids; -100 for an intent unseen in training,
which the loss ignores) and ``gold_intents``: the gold intent strings.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nlpkit.data.config import choices
from nlpkit.data.featurizers import TextFeaturizer
from nlpkit.data.labels import LabelVocab
from nlpkit.data.readers import BadRowPolicy, _decoded_lines
from nlpkit.errors import DataError
from nlpkit.tasks.tagging.data import (
    EncodedSentence,
    EncodedTagged,
    TaggingCollator,
    TaggingDataConfig,
    TaggingDataModule,
    warn_unseen,
)
from nlpkit.tasks.tagging.readers import TaggedSentence

log = logging.getLogger(__name__)

#: intent id of a gold intent unseen in training (ignored by the loss, always an error)
UNSEEN_INTENT = -100


@dataclass
class IntentSlotDataConfig(TaggingDataConfig):
    """``TaggingDataConfig`` plus where the intent is; ``conll`` has no place for one.

    intent_field: JSONL field holding the intent (``builtin``/``jsonl``).
    intents_file: file inside each ``parallel`` split directory, one intent a line.
    """

    format: str = field(default="builtin", metadata=choices("builtin", "jsonl", "parallel"))
    intent_field: str = "intent"
    intents_file: str = "label"


@dataclass(frozen=True)
class IntentSentence(TaggedSentence):
    intent: str = ""


@dataclass
class EncodedIntentSentence(EncodedSentence):
    intent_id: int = UNSEEN_INTENT
    intent: str = ""


class IntentSlotCollator(TaggingCollator):
    def __call__(self, items: list[EncodedIntentSentence]) -> dict:
        batch = super().__call__(items)
        batch["intents"] = torch.tensor([it.intent_id for it in items], dtype=torch.long)
        batch["gold_intents"] = [it.intent for it in items]
        return batch


def _line_number(origin: str) -> int:
    return int(origin.rsplit(":", 1)[1])


def read_intents(path: str | Path, data_cfg) -> dict[int, str]:
    """Line number -> intent for one split file (JSONL) or split directory (``parallel``).

    Lines that cannot be read give no entry; the sentence on that line is then reported as missing
    its intent (the tagging reader has already counted a line that is bad for its own reasons)."""
    quiet = BadRowPolicy("skip")  # undecodable lines are counted once, by the tagging reader
    intents: dict[int, str] = {}
    if str(data_cfg.format) == "parallel":
        directory = Path(path)
        label_path = directory / str(data_cfg.intents_file)
        if not label_path.is_file():
            raise DataError(
                f"{label_path}: file not found (data.format=parallel with task=intent_slot reads one "
                f"intent a line from data.intents_file={data_cfg.intents_file!r})"
            )
        lines = {n: text.strip() for n, text in _decoded_lines(label_path, quiet)}
        while lines and not lines[max(lines)]:
            del lines[max(lines)]
        token_path = directory / str(data_cfg.tokens_file)
        token_lines = token_path.read_bytes().splitlines() if token_path.is_file() else []
        while token_lines and not token_lines[-1].strip():
            token_lines.pop()
        if token_path.is_file() and len(lines) != len(token_lines):
            raise DataError(
                f"{label_path} has {len(lines)} lines but {token_path} has {len(token_lines)}: "
                "they must hold one sentence per line each"
            )
        return {n: text for n, text in lines.items() if text}
    field_name = str(data_cfg.intent_field)
    for number, line in _decoded_lines(Path(path), quiet):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        value = record.get(field_name) if isinstance(record, dict) else None
        if isinstance(value, str) and value.strip():
            intents[number] = value.strip()
    return intents


class IntentSlotDataModule(TaggingDataModule):
    """``TaggingDataModule`` whose sentences also carry an intent; ``intents`` is the intent vocabulary
    (built from train, or given to reuse a trained run's). ``unseen_intents`` counts gold intents of
    val/test that training never saw."""

    collator_class = IntentSlotCollator

    def __init__(
        self,
        config,
        featurizer: TextFeaturizer | None = None,
        labels: LabelVocab | None = None,
        intents: LabelVocab | None = None,
    ):
        super().__init__(config, featurizer, labels)
        self.intents = intents
        self.unseen_intents: dict[str, int] = {}

    def read_split(self, path: str) -> list[IntentSentence]:
        if str(self.config.format) not in ("builtin", "jsonl", "parallel"):
            raise DataError(
                f"data.format={self.config.format!r} has no intents; task=intent_slot reads builtin, jsonl or parallel"
            )
        sentences = super().read_split(path)
        intents = read_intents(path, self.config)
        where = (
            f"{self.config.intents_file!r} line"
            if str(self.config.format) == "parallel"
            else f"field {self.config.intent_field!r}"
        )
        out = []
        for sentence in sentences:
            intent = intents.get(_line_number(sentence.origin))
            if intent is None:
                self.policy.bad(sentence.origin, f"missing intent: no usable {where}")
                continue
            out.append(IntentSentence(sentence.tokens, sentence.tags, sentence.origin, intent))
        return out

    def _build_vocabularies(self, train: list[IntentSentence]) -> None:
        super()._build_vocabularies(train)
        if self.intents is None:
            self.intents = LabelVocab.build([s.intent] for s in train)

    def _report_unseen(self) -> None:
        super()._report_unseen()
        warn_unseen(self.unseen_intents, "gold intents not seen in training (always scored as errors)")

    def _encode(self, sentences: list[IntentSentence]) -> EncodedTagged:
        encoded = super()._encode(sentences)
        items = []
        for item, sentence in zip(encoded.items, sentences):
            intent_id = self.intents.index.get(sentence.intent, UNSEEN_INTENT)
            if intent_id == UNSEEN_INTENT:
                self.unseen_intents[sentence.intent] = self.unseen_intents.get(sentence.intent, 0) + 1
            items.append(EncodedIntentSentence(**vars(item), intent_id=intent_id, intent=sentence.intent))
        return EncodedTagged(items, sentences)


__all__ = [
    "IntentSlotDataConfig",
    "IntentSlotDataModule",
    "IntentSlotCollator",
    "read_intents",
]
