"""Intent-only export: ``text [batch]`` -> ``intent`` (string ``[batch]``, "" for a text without tokens)
and ``intent_scores`` (float ``[batch, n_intents]``, softmax; zeros for a text without tokens).

One intent (document) head over the word-level run of :mod:`nlpkit.tasks.tagging.export`; the steps
and the gate are :mod:`nlpkit.export.pipeline`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

from nlpkit.export.pipeline import ExportSpec
from nlpkit.tasks.tagging.export import intent_head, word_metrics, word_run, word_spec


def export_spec(run_dir: Path, cfg, subtask: str | None = None) -> ExportSpec:
    run = word_run(run_dir, cfg, subtask)
    head = intent_head(run)
    intents = json.dumps(head.names, ensure_ascii=False)
    return word_spec(
        run,
        [head],
        {"intents": intents, "labels": intents},  # intent only: the labels it outputs are the intents
        lambda rows, gold: word_metrics(rows, gold, None, True),
    )
