"""Readers for word-tagging data: CoNLL column files, parallel ``seq.in``/``seq.out`` files, JSONL.

Every reader returns ``TaggedSentence``s whose tags are already validated against the configured
scheme and normalised (IOB1 -> BIO). A bad sentence (token/tag count mismatch, a tag that breaks the
scheme such as ``I-`` without ``B-`` under BIO, an empty sentence, an empty or whitespace-containing
token) raises ``DataError("file:line: ...")`` or, with ``data.on_bad_row=skip``, is counted and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nlpkit.data.readers import BadRowPolicy, _decoded_lines, json_records
from nlpkit.data.tag_schemes import SCHEMES, check_tags, to_scheme
from nlpkit.errors import DataError

DOCSTART = "-DOCSTART-"


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence: tokens and one tag per token (in the model's scheme). ``origin`` is ``path:line``."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    origin: str


def _check_sentence(
    tokens: list[str], tags: list[str], scheme: str, origins: list[str], policy: BadRowPolicy
) -> TaggedSentence | None:
    """Validate one sentence; ``origins`` holds one ``path:line`` per token (or one for the whole)."""

    def where(index: int) -> str:
        return origins[min(index, len(origins) - 1)]

    if not tokens:
        policy.bad(origins[0], "empty sentence: no tokens")
        return None
    if len(tokens) != len(tags):
        policy.bad(origins[0], f"token/tag count mismatch: {len(tokens)} tokens, {len(tags)} tags")
        return None
    for index, token in enumerate(tokens):
        if not token or any(ch.isspace() for ch in token):
            policy.bad(where(index), f"bad token: {token!r} is empty or contains whitespace")
            return None
    problem = check_tags(tags, scheme)
    if problem is not None:
        index, message = problem
        policy.bad(where(index), f"{message} at token {index + 1} ({tokens[index]!r})")
        return None
    return TaggedSentence(tuple(tokens), tuple(to_scheme(tags, scheme)), origins[0])


def read_conll(
    path: str | Path,
    *,
    token_column: int,
    tag_column: int,
    delimiter: str | None,
    scheme: str,
    policy: BadRowPolicy,
) -> list[TaggedSentence]:
    """One token per line (columns split on ``delimiter``, default whitespace), a blank line between
    sentences. ``-DOCSTART-`` lines are dropped wherever they appear and end the current sentence."""
    path = Path(path)
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    origins: list[str] = []
    broken = False
    width: int | None = None
    previous = 0

    def flush() -> None:
        nonlocal tokens, tags, origins, broken
        if tokens and not broken:
            sentence = _check_sentence(tokens, tags, scheme, origins, policy)
            if sentence:
                sentences.append(sentence)
        tokens, tags, origins, broken = [], [], [], False

    for number, line in _decoded_lines(path, policy):
        if number != previous + 1:
            broken = True  # an undecodable line was skipped (and counted): drop its sentence too
        previous = number
        text = line.rstrip("\r\n")
        if not text.strip():
            flush()
            continue
        columns = text.split(delimiter) if delimiter else text.split()
        in_range = -len(columns) <= token_column < len(columns)
        if DOCSTART in (columns[0].strip(), columns[token_column].strip() if in_range else None):
            flush()
            continue
        origin = f"{path}:{number}"
        n = len(columns)
        usable = -n <= token_column < n and -n <= tag_column < n and token_column % n != tag_column % n
        if usable and width is None:
            width = n  # the first good token line sets the column count for the file
        if not usable or n != width:
            if not broken:
                policy.bad(
                    origin,
                    f"token/tag count mismatch: line has {n} column(s), expected {width or 'at least 2'} with the token in "
                    f"column {token_column} and the tag in column {tag_column} (data.token_column/tag_column)",
                )
            broken = True  # the rest of this sentence is dropped with it
            continue
        token, tag = columns[token_column].strip(), columns[tag_column].strip()
        tokens.append(token)
        tags.append(tag)
        origins.append(origin)
    flush()
    return sentences


def _lines(path: Path, policy: BadRowPolicy) -> dict[int, str]:
    lines = {number: line.rstrip("\r\n") for number, line in _decoded_lines(path, policy)}
    while lines and not lines[max(lines)].strip():  # trailing blank lines at end of file
        del lines[max(lines)]
    return lines


def read_parallel(
    path: str | Path, *, tokens_file: str, tags_file: str, scheme: str, policy: BadRowPolicy
) -> list[TaggedSentence]:
    """A directory holding ``tokens_file`` (space-separated tokens, one sentence a line) and
    ``tags_file`` (the tags, line by line), as in the slot-gated ATIS/SNIPS releases."""
    directory = Path(path)
    if not directory.is_dir():
        raise DataError(
            f"{directory}: not a directory (data.format=parallel reads {tokens_file} and {tags_file} in it)"
        )
    token_path, tag_path = directory / tokens_file, directory / tags_file
    token_lines, tag_lines = _lines(token_path, policy), _lines(tag_path, policy)
    if len(token_lines) != len(tag_lines):
        raise DataError(
            f"{token_path} has {len(token_lines)} lines but {tag_path} has {len(tag_lines)}: "
            "they must hold one sentence per line each"
        )
    sentences = []
    for number in sorted(token_lines):
        origin = f"{token_path}:{number}"
        if number not in tag_lines:
            policy.bad(origin, f"token/tag count mismatch: {tag_path}:{number} is not readable")
            continue
        sentence = _check_sentence(
            token_lines[number].split(), tag_lines[number].split(), scheme, [origin], policy
        )
        if sentence:
            sentences.append(sentence)
    return sentences


def read_tagging_jsonl(
    path: str | Path, *, tokens_field: str, tags_field: str, scheme: str, policy: BadRowPolicy
) -> list[TaggedSentence]:
    """One JSON object per line with a token list and a tag list (a string is split on whitespace)."""
    path = Path(path)
    sentences = []
    for origin, record in json_records(path, policy):
        missing = [name for name in (tokens_field, tags_field) if name not in record]
        if missing:
            policy.bad(origin, f"missing field: {missing[0]!r}; fields are {sorted(record)}")
            continue
        values = []
        for name in (tokens_field, tags_field):
            value = record[name]
            if isinstance(value, str):
                value = value.split()
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                policy.bad(origin, f"bad field: {name!r} must be a list of strings or a string")
                break
            values.append(value)
        else:
            sentence = _check_sentence(values[0], values[1], scheme, [origin], policy)
            if sentence:
                sentences.append(sentence)
    return sentences


def read_tagged(path: str | Path, data_cfg, policy: BadRowPolicy) -> list[TaggedSentence]:
    """Read one split with the reader ``data_cfg.format`` selects."""
    fmt = str(data_cfg.format)
    scheme = str(data_cfg.tag_scheme)
    if scheme not in SCHEMES:
        raise DataError(f"unknown data.tag_scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if fmt == "conll":
        return read_conll(
            path,
            token_column=int(data_cfg.token_column),
            tag_column=int(data_cfg.tag_column),
            delimiter=data_cfg.column_delimiter or None,
            scheme=scheme,
            policy=policy,
        )
    if fmt == "parallel":
        return read_parallel(
            path,
            tokens_file=str(data_cfg.tokens_file),
            tags_file=str(data_cfg.tags_file),
            scheme=scheme,
            policy=policy,
        )
    if fmt in ("jsonl", "builtin"):
        return read_tagging_jsonl(
            path,
            tokens_field=str(data_cfg.tokens_field),
            tags_field=str(data_cfg.tags_field),
            scheme=scheme,
            policy=policy,
        )
    raise DataError(f"unknown data.format {fmt!r} for tagging; choose one of conll, parallel, jsonl, builtin")
