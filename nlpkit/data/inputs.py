"""What every predictor accepts: a list of texts, none of them empty or only whitespace.

One rule for every task and backend (PyTorch predictors, the exported ONNX model, ``nlpkit.serve``,
``nlpkit.predict``): training refuses blank texts, so no model has learnt an answer for one. Pure
Python (no torch): the torch-free serving path uses it too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from nlpkit.errors import DataError

EMPTY_TEXT_MESSAGE = (
    "empty or only whitespace: there is nothing to predict on (training rejects such texts too)"
)


class EmptyTextError(DataError, ValueError):
    """A text to predict on is empty or only whitespace: no model was trained on such input."""


class TextRefusedError(DataError, ValueError):
    """A non-blank text this model cannot take (e.g. more word pieces than its featurizer's
    ``max_length``): the caller's input, not a model failure (``POST /predict`` answers 422).
    ``index`` is the text's position in the call's list."""

    def __init__(self, index: int, reason: str):
        super().__init__(f"texts[{index}]: {reason}")
        self.index = index
        self.reason = reason


def blank_text_indices(texts: Sequence[str]) -> list[int]:
    """Positions of the texts with nothing but whitespace (``str.split()`` finds no token in them)."""
    return [index for index, text in enumerate(texts) if not text.strip()]


def check_texts(texts: Sequence[str]) -> None:
    """``TypeError`` for one string instead of a list; ``EmptyTextError`` naming the first blank text."""
    if isinstance(texts, str):
        raise TypeError("predict() takes a list of texts, not one string")
    blank = blank_text_indices(texts)
    if blank:
        raise EmptyTextError(f"texts[{blank[0]}] is {EMPTY_TEXT_MESSAGE}")


def check_pairs(pairs: Sequence) -> list[tuple[str, str]]:
    """``TypeError`` unless ``pairs`` is a list of two-text pairs; ``EmptyTextError`` naming the first
    blank text (``pairs[i][j]``). What the pair and ranking predictors take, on every backend."""
    if isinstance(pairs, str) or not isinstance(pairs, Sequence):
        raise TypeError("predict() takes a list of (text_a, text_b) pairs")
    out = []
    for i, pair in enumerate(pairs):
        if (
            isinstance(pair, str)
            or not isinstance(pair, Sequence)
            or len(pair) != 2
            or not all(isinstance(t, str) for t in pair)
        ):
            raise TypeError(f"pairs[{i}] must be two texts (text_a, text_b), got {pair!r}")
        for j, text in enumerate(pair):
            if not text.strip():
                raise EmptyTextError(f"pairs[{i}][{j}] is {EMPTY_TEXT_MESSAGE}")
        out.append((pair[0], pair[1]))
    return out


def length_sorted_chunks(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Item indices in chunks of at most ``batch_size``, shortest first (stable): what every batch
    path (the predictors, ``OnnxPredictor``, the server's micro-batches) runs, so a batch pads to
    lengths close to its own instead of the longest text of a random mix. Callers place each result
    back by index, so the order they return is the input order."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
