"""Joint intent-slot export: ``text [batch]`` -> ``intent`` (string ``[batch]``, "" for a text without
tokens), ``intent_scores`` (float ``[batch, n_intents]``, softmax; zeros for a text without tokens),
``tokens`` and ``slots`` (string ``[batch, max_tokens]``, "" at padding).

Two heads over the word-level run of :mod:`nlpkit.tasks.tagging.export`: the intent (document) head
and the slot (tag) head; the steps and the gate are :mod:`nlpkit.export.pipeline`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

from nlpkit.export.pipeline import ExportSpec
from nlpkit.tasks.tagging.export import intent_head, tag_head, tag_metadata, word_metrics, word_run, word_spec


def export_spec(run_dir: Path, cfg, subtask: str | None = None) -> ExportSpec:
    run = word_run(run_dir, cfg, subtask)
    intents, slots = intent_head(run), tag_head(run, "slots", "slot tag")
    return word_spec(
        run,
        [intents, slots],
        {"intents": json.dumps(intents.names, ensure_ascii=False), **tag_metadata(run, slots)},
        lambda rows, gold: word_metrics(rows, gold, slots.tags, True),
    )
