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
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nlpkit.data.batching import pad_sequences
from nlpkit.data.constraints import at_least
from nlpkit.data.featurizers.base import Features, TextFeaturizer
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
    "lengths": [B]}``, padded with the checkpoint's ``[PAD]`` id."""

    name = "wordpiece"
    config_class = WordPieceConfig
    files = (TOKENIZER_FILE, PRETRAINED_FILE)
    per_token = False

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
        encodings = self.tokenizer.encode_batch([_text(item) for item in items], add_special_tokens=True)
        return [{"tokens": torch.tensor(enc.ids, dtype=torch.long)} for enc in encodings]

    def collate(self, items: Sequence[Features]) -> dict[str, torch.Tensor]:
        tokens, lengths = pad_sequences([item["tokens"] for item in items], self.pad_id)
        return {"tokens": tokens, "lengths": lengths}

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
        """The word-vocabulary sizes, and ``checkpoint``: the directory the transformer embedding
        loads its architecture and weights from (unless it names its own ``path``)."""
        return {**super().sizes(fresh), "checkpoint": self.checkpoint}


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
    raise TypeError("featurizer=wordpiece encodes raw text, not token lists: it re-splits text")
