"""``featurizer=wordpiece``: a pretrained encoder's own WordPiece tokenizer (its ``tokenizer.json``).

Nothing is trained: the vocabulary, normalization (BERT: clean text, CJK spacing, accent stripping,
lowercasing) and ``[CLS] ... [SEP]`` template are the checkpoint's, read with HF ``tokenizers`` from
``path`` (a HF checkpoint directory; ``null``: the built-in MiniLM package, see
:mod:`nlpkit.utils.pretrained`). Encodings are truncated to ``max_length`` pieces, the two special
tokens included, as HF truncates them. The run directory keeps the tokenizer (``tokenizer.json``) and
where the checkpoint is (``pretrained.json``), which the transformer embedding is built from.

Added tokens (``[CLS]``, ``[PAD]``, ...) stay vocabulary entries but are not matched in raw text: a
text holding the characters ``[SEP]`` is tokenized as those characters (``[``, ``sep``, ``]``), never
as the separator, so user text cannot inject structure and the ONNX graph reproduces every encoding.

Word-level tasks (``tagging``, ``intent_slot``) give it a dataset's token list instead of a text: each
word is WordPiece'd on its own (HF's pre-tokenized input: normalized and pre-tokenized per word, so no
piece crosses a word boundary), a word that yields no piece at all (only characters the normalizer
removes) becomes one ``[UNK]``, and ``word_starts`` says where each word's FIRST piece is: the model
reads a word's state there (first-piece alignment, as BERT's NER recipe). Truncation is by pieces, as
for texts: a word whose first piece falls past ``max_length - 2`` is not seen by the model;
``word_lengths`` counts the words that are, and every predictor answers the others with the outside
tag ``O`` (training ignores their tags; the data module warns with the counts; they are scored as
predicted ``O``). No word is ever dropped from an answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nlpkit.data.batching import pad_sequences
from nlpkit.data.constraints import at_least
from nlpkit.data.featurizers.base import Features, TextFeaturizer
from nlpkit.data.inputs import length_sorted_chunks
from nlpkit.errors import ArtifactError, ConfigError
from nlpkit.registry import register_featurizer
from nlpkit.utils.io import write_json, write_text
from nlpkit.utils.pretrained import checkpoint_dir

TOKENIZER_FILE = "tokenizer.json"
PRETRAINED_FILE = "pretrained.json"


@dataclass
class WordPieceConfig:
    """``data.featurizer`` of ``featurizer=wordpiece``.

    path: a HF checkpoint directory holding ``tokenizer.json`` (and the weights the transformer
        embedding loads); null: the built-in all-MiniLM-L6-v2 package (``nlpkit[pretrained]``).
    max_length: keep at most this many pieces per text, ``[CLS]`` and ``[SEP]`` included.
    """

    name: str = "wordpiece"
    path: str | None = None
    max_length: int = field(default=128, metadata=at_least(3))  # [CLS], one piece, [SEP]


@register_featurizer
class WordPieceFeaturizer(TextFeaturizer):
    """``encode(text) -> {"tokens": [n]}`` (``[CLS] pieces [SEP]``); ``collate -> {"tokens": [B, T],
    "lengths": [B]}``, padded with the checkpoint's ``[PAD]`` id.

    ``encode(word list) -> {"tokens": [n], "word_starts": [W], "word_lengths": []}``: the pieces of the
    words, each word's first-piece index into ``tokens`` (0, the ``[CLS]``, for a word past the cut)
    and how many words are not cut; ``collate`` pads ``word_starts [B, W]`` with 0 and stacks
    ``word_lengths [B]`` (see the module docstring).
    """

    name = "wordpiece"
    config_class = WordPieceConfig
    files = (TOKENIZER_FILE, PRETRAINED_FILE)
    aligns_words = True  # word lists: pieces + each word's first piece (``word_starts``)
    size_names = (*TextFeaturizer.size_names, "word_pieces")

    def __init__(self, tokenizer: Any, checkpoint: str | Path, pad_token: str = "[PAD]"):
        self.tokenizer = tokenizer  # tokenizers.Tokenizer
        self.checkpoint = str(checkpoint)
        self.unk_token = str((json.loads(tokenizer.to_str()).get("model") or {}).get("unk_token") or "[UNK]")
        self.pad_token = pad_token
        ids = [tokenizer.token_to_id(t) for t in (self.pad_token, self.unk_token)]
        if None in ids:
            raise ArtifactError(
                f"{self.checkpoint}: the tokenizer has no {self.pad_token!r}/{self.unk_token!r} entry"
            )
        self._pad_id, self._unk_id = int(ids[0]), int(ids[1])
        self._words_tokenizer: Any = None  # the same tokenizer without truncation (word lists)

    @classmethod
    def train(cls, inputs: Iterable[str | Sequence[str]], config: WordPieceConfig) -> WordPieceFeaturizer:
        """The checkpoint's tokenizer, as is (the training texts are not needed)."""
        directory = checkpoint_dir(config.path, "data.featurizer.path")
        tokenizer, pad_token = _prepared(directory / TOKENIZER_FILE, config.max_length)
        return cls(tokenizer, directory.resolve(), pad_token)

    @classmethod
    def load(cls, directory: str | Path) -> WordPieceFeaturizer:
        from tokenizers import Tokenizer

        directory = Path(directory)
        path, info = directory / TOKENIZER_FILE, directory / PRETRAINED_FILE
        for file in (path, info):
            if not file.is_file():
                raise ArtifactError(f"{file}: wordpiece featurizer file not found")
        try:
            tokenizer = Tokenizer.from_file(str(path))
            saved = json.loads(info.read_text(encoding="utf-8"))
            checkpoint, pad_token = saved["checkpoint"], saved["pad_token"]
        except Exception as err:  # tokenizers raises a bare Exception on malformed JSON
            raise ArtifactError(f"{directory}: unreadable wordpiece featurizer files ({err})") from err
        return cls(tokenizer, checkpoint, pad_token)

    def save(self, directory: str | Path) -> None:
        write_text(Path(directory) / TOKENIZER_FILE, self.tokenizer.to_str(pretty=True))
        write_json(
            Path(directory) / PRETRAINED_FILE, {"checkpoint": self.checkpoint, "pad_token": self.pad_token}
        )

    def encode(self, item: str | Sequence[str]) -> Features:
        return self.encode_batch([item])[0]

    def encode_batch(self, items: Sequence[str | Sequence[str]]) -> list[Features]:
        if items and all(not isinstance(item, str) for item in items):
            return [self.encode_words(words) for words in self.pieces_of_words(items)]
        encodings = self.tokenizer.encode_batch([_text(item) for item in items], add_special_tokens=True)
        return [{"tokens": torch.tensor(enc.ids, dtype=torch.long)} for enc in encodings]

    def pieces_of_words(self, sentences: Sequence[Sequence[str]]) -> list[list[list[int]]]:
        """The piece ids of each word of each sentence (no truncation, no specials; ``[UNK]`` for a
        word without pieces)."""
        if self._words_tokenizer is None:
            from tokenizers import Tokenizer

            self._words_tokenizer = Tokenizer.from_str(self.tokenizer.to_str())
            self._words_tokenizer.no_truncation()
        words = [list(map(str, sentence)) for sentence in sentences]
        encodings = self._words_tokenizer.encode_batch(words, is_pretokenized=True, add_special_tokens=False)
        out = []
        for sentence, enc in zip(words, encodings):
            pieces: list[list[int]] = [[] for _ in sentence]
            for piece, word in zip(enc.ids, enc.word_ids):
                pieces[word].append(piece)
            out.append([ids or [self.unk_id] for ids in pieces])
        return out

    def encode_words(self, pieces: Sequence[Sequence[int]]) -> Features:
        """One sentence's features from its words' pieces (``pieces_of_words``): ``[CLS]``, the pieces
        cut at ``max_length - 2``, ``[SEP]``; each word's first-piece index; the words not cut."""
        limit = self.max_length - 2 if self.max_length is not None else None
        flat, starts = [], []
        for ids in pieces:
            starts.append(1 + len(flat))
            flat.extend(ids)
        kept = sum(limit is None or start <= limit for start in starts)
        cls_id, sep_id = (self.tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]"))
        tokens = [cls_id, *(flat if limit is None else flat[:limit]), sep_id]
        return {
            "tokens": torch.tensor(tokens, dtype=torch.long),  # [n]
            "word_starts": torch.tensor(
                [s if i < kept else 0 for i, s in enumerate(starts)], dtype=torch.long
            ),
            "word_lengths": torch.tensor(kept, dtype=torch.long),  # []
        }

    def collate(self, items: Sequence[Features]) -> dict[str, torch.Tensor]:
        tokens, lengths = pad_sequences([item["tokens"] for item in items], self.pad_id)
        batch = {"tokens": tokens, "lengths": lengths}
        if items and "word_starts" in items[0]:
            batch["word_starts"], _ = pad_sequences([item["word_starts"] for item in items], 0)  # [B, W]
            batch["word_lengths"] = torch.stack([item["word_lengths"] for item in items])  # [B]
        return batch

    def batches(
        self, sentences: Sequence[Sequence[str]], batch_size: int
    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """``(indices, batch)`` over the non-empty ``sentences`` (word lists), as
        ``WordFeaturizer.batches`` (shortest first, ``batch_size`` at a time)."""
        present = [i for i, words in enumerate(sentences) if len(words)]
        for chunk in length_sorted_chunks([len(sentences[i]) for i in present], batch_size):
            rows = [present[j] for j in chunk]
            yield rows, self.collate(self.encode_batch([list(sentences[i]) for i in rows]))

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=True).tokens

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def pad_id(self) -> int:
        return self._pad_id

    @property
    def unk_id(self) -> int:
        return self._unk_id

    @property
    def vocab(self) -> list[str]:
        by_id = sorted(self.tokenizer.get_vocab().items(), key=lambda item: item[1])
        return [token for token, _ in by_id]

    @property
    def max_length(self) -> int | None:
        truncation = self.tokenizer.truncation
        return int(truncation["max_length"]) if truncation else None

    def sizes(self, fresh: bool = False) -> dict[str, Any]:
        """The word-vocabulary sizes, ``checkpoint``: the directory the transformer embedding loads its
        architecture and weights from (unless it names its own ``path``), and ``word_pieces``: a
        word-level model reads word states at ``word_starts`` (``TokenEncoderModel``)."""
        return {**super().sizes(fresh), "checkpoint": self.checkpoint, "word_pieces": True}


def _prepared(path: Path, max_length: int) -> tuple[Any, str]:
    """The checkpoint's tokenizer without fixed padding (nlpkit pads per batch), truncated at
    ``max_length``, its added tokens kept as plain vocabulary entries (see the module docstring); and
    its padding token."""
    from tokenizers import Tokenizer

    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not a readable tokenizer file ({err})") from err
    if (spec.get("model") or {}).get("type") != "WordPiece":
        raise ConfigError(
            f"{path}: featurizer=wordpiece reads a WordPiece tokenizer; this one's model is "
            f"{(spec.get('model') or {}).get('type')!r}"
        )
    pad_token = str((spec.get("padding") or {}).get("pad_token") or "[PAD]")
    spec["added_tokens"] = []
    spec["padding"] = None
    tokenizer = Tokenizer.from_str(json.dumps(spec))
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer, pad_token


def _text(item: str | Sequence[str]) -> str:
    if isinstance(item, str):
        return item
    raise TypeError("featurizer=wordpiece encodes a batch of texts or a batch of word lists, not a mix")
