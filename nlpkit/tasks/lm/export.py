"""Language-model export: ``text [batch]`` string -> ``tokens``, ``token_log_probs [batch, max_tokens]``
and ``log_prob [batch]``.

Sentence semantics: each text is scored on its own from a zero state with ``<eos>`` as the first
input; ``log_prob`` adds the ``<eos>`` after the last word. The word featurizer's front end (whitespace
split, vocabulary lookup) is in the graph; the pipeline runs the parity gate against ``LMPredictor``.
"""

from __future__ import annotations

import math
from pathlib import Path

from nlpkit.export.front_ends import TOKENIZER_FILE, front_end
from nlpkit.export.heads import TokenValueHead, ValueHead
from nlpkit.export.parity import MIXED_BATCH
from nlpkit.export.pipeline import ExportSource, ExportSpec
from nlpkit.export.text_graph import read_tokenizer_spec


def export_spec(run_dir: Path, cfg, subtask: str | None = None) -> ExportSpec:
    from nlpkit.data.featurizers import featurizer_name
    from nlpkit.tasks.lm.data import DEFAULT_FEATURIZER, LMDataModule

    source = ExportSource.of(run_dir, cfg, subtask)
    tokenizer = read_tokenizer_spec(source.vocab_dir / TOKENIZER_FILE)  # refuses before any heavy work
    kind = featurizer_name(source.data_cfg, DEFAULT_FEATURIZER)
    predictor = source.predictor(run_dir, cfg)
    front = front_end(kind, tokenizer, predictor.featurizer, source.vocab_dir)
    heads = [
        TokenValueHead(network="token_log_probs", output="token_log_probs", noun="log-probability"),
        ValueHead(
            network="sentence_log_prob",
            output="log_prob",
            noun="log-probability (words + <eos>)",
            relative=True,
        ),
    ]
    dm = LMDataModule(source.data_cfg, predictor.featurizer)
    split = "test" if source.data_cfg.test_path else "val"
    lines = dm.read_split(str(source.data_cfg.get(f"{split}_path")))
    texts = [" ".join(tokens) for tokens in lines if tokens]

    def reference(batch: list[str]) -> list[dict]:
        rows = []
        for text, (words, sentence) in zip(batch, predictor.scores(batch, batch_size=MIXED_BATCH)):
            tokens = text.split()
            rows.append({"tokens": tokens, "token_log_probs": words, "log_prob": sentence if tokens else 0.0})
        return rows

    def perplexity(rows: list[dict]) -> dict[str, float]:
        total = sum(row["log_prob"] for row in rows)
        count = sum(len(row["tokens"]) + 1 for row in rows)
        return {"sentence_perplexity": math.exp(-total / count) if count else float("nan")}

    return ExportSpec(
        task=source.task,
        model=predictor.model,
        front_end=front,
        heads=heads,
        metadata={**source.metadata, "featurizer": kind},
        doc=(
            "nlpkit language model. Input 'text': string [batch] of raw UTF-8. Outputs 'tokens' string "
            "[batch, max_tokens], 'token_log_probs' float [batch, max_tokens] (natural log of each word's "
            "probability given the words before it, 0 at padding) and 'log_prob' float [batch] (the "
            "sentence: its words and the <eos> after them), each text scored alone from a zero state. "
            + front.description
        ),
        split=split,
        texts=texts,
        reference=reference,
        metrics=perplexity,
        subtask=subtask,
    )
