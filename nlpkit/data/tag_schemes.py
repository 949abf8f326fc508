"""Tag schemes (BIO, IOB1, BIOES): validation, conversion, and spans computed exactly like conlleval
(scored by :mod:`nlpkit.metrics.spans`).

A tag is ``O`` or ``<prefix>-<type>`` with prefix ``B``/``I`` (BIO, IOB1) or ``B``/``I``/``E``/``S``
(BIOES). ``spans`` follows conlleval's ``startOfChunk``/``endOfChunk`` rules (the same rules as
seqeval's default mode), so it scores any tag sequence, including invalid model output such as an
``I-X`` after ``O`` (which starts a chunk). IOB1 input (CoNLL-2003's original scheme) is converted to
BIO on reading; conversion keeps conlleval's spans unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

SCHEMES = ("BIO", "IOB1", "BIOES")
#: the outside tag of every scheme: what a word no model scored (past a piece featurizer's cut) gets
OUTSIDE = "O"
PREFIXES = {"BIO": ("B", "I"), "IOB1": ("B", "I"), "BIOES": ("B", "I", "E", "S")}

Span = tuple[str, int, int]  # (type, first token, last token) inclusive, like seqeval


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER" -> ("B", "PER")``; ``"O" -> ("O", "")``; a tag without ``-`` is its own prefix."""
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    return (prefix, kind) if sep else (tag, "")


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, kind: str) -> bool:
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != kind


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, kind: str) -> bool:
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != kind


def spans(tags: Sequence[str]) -> list[Span]:
    """Chunks of one sentence as ``(type, start, end)`` (inclusive), conlleval's rules."""
    out: list[Span] = []
    prev_tag, prev_type, begin = "O", "", 0
    for index, tag in enumerate([*tags, "O"]):
        prefix, kind = split_tag(tag)
        if _end_of_chunk(prev_tag, prefix, prev_type, kind):
            out.append((prev_type, begin, index - 1))
        if _start_of_chunk(prev_tag, prefix, prev_type, kind):
            begin = index
        prev_tag, prev_type = prefix, kind
    return out


def span_dicts(tokens: Sequence[str], tags: Sequence[str]) -> list[dict]:
    """``spans(tags)`` as the predictors return them: ``{"type", "start", "end", "text"}``, end inclusive."""
    return [
        {"type": kind, "start": a, "end": b, "text": " ".join(tokens[a : b + 1])}
        for kind, a, b in spans(tags)
    ]


def check_tags(tags: Sequence[str], scheme: str) -> tuple[int, str] | None:
    """First problem in a gold sequence as ``(token index, message)``, or ``None`` when valid.

    BIO: ``I-X`` must follow ``B-X`` or ``I-X``. BIOES: additionally ``B-X``/``I-X`` must be followed by
    ``I-X``/``E-X`` and ``E-X`` must close one. IOB1 only checks the tag form (any ``I-X`` is valid).
    """
    allowed = PREFIXES[scheme]
    prev_prefix, prev_kind = "O", ""
    for index, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if prefix != "O" and (prefix not in allowed or not kind):
            return index, f"bad tag: {tag!r} is not O or {'/'.join(p + '-TYPE' for p in allowed)} ({scheme})"
        continuing = prev_prefix in ("B", "I") and prev_kind == kind
        if scheme == "BIO" and prefix == "I" and not continuing:
            return index, f"bad tag: {tag!r} does not continue a {kind} span (I- without B-, BIO)"
        if scheme == "BIOES":
            if prefix in ("I", "E") and not continuing:
                return index, f"bad tag: {tag!r} does not continue a {kind} span (BIOES)"
            if prev_prefix in ("B", "I") and not (prefix in ("I", "E") and prev_kind == kind):
                return index, f"bad tag: {tag!r} follows {prev_prefix}-{prev_kind}, which needs I-/E- (BIOES)"
        prev_prefix, prev_kind = prefix, kind
    if scheme == "BIOES" and prev_prefix in ("B", "I"):
        return len(tags) - 1, f"bad tag: the sentence ends inside a {prev_kind} span (BIOES needs E-)"
    return None


def iob1_to_bio(tags: Sequence[str]) -> list[str]:
    """Rewrite each ``I-X`` that starts a chunk (after ``O`` or another type) as ``B-X``."""
    out = []
    prev_prefix, prev_kind = "O", ""
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == "I" and (prev_prefix == "O" or prev_kind != kind):
            tag = f"B-{kind}"
        out.append(tag)
        prev_prefix, prev_kind = prefix, kind
    return out


def to_scheme(tags: Sequence[str], scheme: str) -> list[str]:
    """Normalise a valid sequence to the scheme the model uses: IOB1 becomes BIO, others stay."""
    return iob1_to_bio(tags) if scheme == "IOB1" else list(tags)


def allowed_transitions(
    labels: Sequence[str], scheme: str
) -> tuple[list[bool], list[list[bool]], list[bool]]:
    """Which tags may start a sentence, follow each tag, and end a sentence under ``scheme``.

    Returns ``(start[L], transition[L][L], end[L])``; ``transition[i][j]`` allows tag ``j`` after ``i``.
    Tags that are not in the scheme's form are left unconstrained.
    """

    def ok(prev: str, cur: str) -> bool:
        if cur == "<end>":
            return scheme != "BIOES" or split_tag(prev)[0] not in ("B", "I")
        prefix, kind = split_tag(cur)
        prev_prefix, prev_kind = split_tag(prev) if prev != "<start>" else ("O", "")
        continuing = prev_prefix in ("B", "I") and prev_kind == kind
        if scheme == "BIOES":
            if prev_prefix in ("B", "I") and not (prefix in ("I", "E") and prev_kind == kind):
                return False
            if prefix in ("I", "E"):
                return continuing
            return True
        if prefix == "I":
            return continuing
        return True

    start = [ok("<start>", label) for label in labels]
    transition = [[ok(a, b) for b in labels] for a in labels]
    end = [ok(label, "<end>") for label in labels]
    return start, transition, end
