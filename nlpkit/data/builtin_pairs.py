"""Generated sentence-pair and ranking data over the built-in utterances (``task=pair``, ``task=ranking``).

Derived from the built-in splits (``nlpkit.data.builtin``), so pairs never mix splits:

* ``pairs_{split}.jsonl``: ``text_a``, ``text_b``, ``label`` (``same``/``different``: the two utterances
  ask for the same intent) and ``score`` (a similarity in [0, 3]: 2 for the same intent, plus the
  Jaccard overlap of the slot types both name), half the pairs of the same intent.
* ``ranking_{split}.jsonl``: one row per (query, candidate): ``qid``, ``query``, ``candidate``, ``label``
  (1: the candidate asks for the query's intent). Each query has 1-2 positives among 5-6 candidates;
  one query in ten has none (the ranking metrics exclude those, as WikiQA's evaluation does).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from nlpkit.data.builtin import SPLITS, ensure_builtin
from nlpkit.utils.io import atomic_open

PAIRS_VERSION = 1
PAIR_SIZES = {"train": 3000, "valid": 500, "test": 1000}
RANKING_QUERIES = {"train": 800, "valid": 150, "test": 300}
NO_POSITIVE = 0.1  # share of ranking queries without a correct candidate
NEGATIVES = 4


def _slot_types(row: dict) -> set[str]:
    return {tag[2:] for tag in row["slots"] if tag.startswith("B-")}


def _score(a: dict, b: dict) -> float:
    sa, sb = _slot_types(a), _slot_types(b)
    overlap = len(sa & sb) / len(sa | sb) if sa | sb else 0.0
    return round(2.0 * (a["intent"] == b["intent"]) + overlap, 4)


def _by_intent(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["intent"], []).append(row)
    return groups


def _other(rows: list[dict], intent: str, rng: random.Random) -> dict:
    """A row of another intent than ``intent``."""
    while True:
        row = rng.choice(rows)
        if row["intent"] != intent:
            return row


def _pairs(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    groups = _by_intent(rows)
    out = []
    for _ in range(n):
        a = rng.choice(rows)
        b = rng.choice(groups[a["intent"]]) if rng.random() < 0.5 else _other(rows, a["intent"], rng)
        label = "same" if a["intent"] == b["intent"] else "different"
        out.append({"text_a": a["text"], "text_b": b["text"], "label": label, "score": _score(a, b)})
    return out


def _ranking(rows: list[dict], n: int, split: str, rng: random.Random) -> list[dict]:
    groups = _by_intent(rows)
    out = []
    for q in range(n):
        query = rng.choice(rows)
        same = [r for r in groups[query["intent"]] if r["text"] != query["text"]]
        positives = (
            []
            if rng.random() < NO_POSITIVE or not same
            else rng.sample(same, min(len(same), rng.choice((1, 2))))
        )
        negatives = [_other(rows, query["intent"], rng) for _ in range(NEGATIVES)]
        candidates = [(r, 1) for r in positives] + [(r, 0) for r in negatives]
        rng.shuffle(candidates)
        for row, label in candidates:
            out.append(
                {"qid": f"{split}-q{q}", "query": query["text"], "candidate": row["text"], "label": label}
            )
    return out


def ensure_builtin_pairs(directory: str | Path, seed: int = 13) -> Path:
    """Generate the pair and ranking files into ``directory`` (beside the built-in utterances, made
    first) unless this exact version is already there."""
    directory = ensure_builtin(directory, seed)
    marker = directory / "PAIRS_VERSION"
    expected = f"nlpkit-builtin-pairs v{PAIRS_VERSION} seed={seed}\n"
    names = [f"{kind}_{split}.jsonl" for kind in ("pairs", "ranking") for split in SPLITS]
    if marker.is_file() and marker.read_text() == expected and all((directory / n).is_file() for n in names):
        return directory
    for split in SPLITS:
        rows = [json.loads(line) for line in (directory / f"{split}.jsonl").read_text().splitlines()]
        rng = random.Random(f"nlpkit-builtin-pairs:{seed}:{split}")
        for kind, made in (
            ("pairs", _pairs(rows, PAIR_SIZES[split], rng)),
            ("ranking", _ranking(rows, RANKING_QUERIES[split], split, rng)),
        ):
            with atomic_open(directory / f"{kind}_{split}.jsonl") as handle:
                handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in made)
    with atomic_open(marker) as handle:
        handle.write(expected)
    return directory
