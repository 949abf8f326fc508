"""The word-level HF ``tokenizers`` tokenizer both featurizers build on (``nlpkit.data.featurizers``):
``featurizer=subword`` uses it as it is, ``featurizer=word`` as its word vocabulary.

The same ``tokenizer.json`` is used for training, evaluation, prediction and ONNX export, so a
model never sees a tokenization its serving path does not reproduce.

The pipeline is deliberately limited to what a standard ONNX graph (onnxruntime's built-in
``StringNormalizer``, ``com.microsoft.Tokenizer`` and ``ai.onnx.ml.LabelEncoder``) reproduces exactly,
so ``python -m nlpkit.export`` can put the tokenizer inside ``model.onnx``:

- no NFC normalization (no ONNX op composes Unicode): text is used as given;
- ``İ`` (U+0130) is replaced by ``i`` before lowercasing: HF lowercases it to ``i`` + U+0307,
  onnxruntime to ``i``;
- the ``<pad>``/``<unk>`` entries live in the vocabulary only, not as "added tokens": HF would
  otherwise cut a literal ``<pad>`` out of raw text before normalizing, which no ONNX op does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer

from nlpkit.errors import ArtifactError
from nlpkit.utils.io import write_text

PAD = "<pad>"
UNK = "<unk>"
#: HF ``Lowercase`` maps U+0130 to two characters (``i`` + U+0307); everything that must export maps it to ``i``.
DOTTED_CAPITAL_I = "\u0130"


class Featurizer:
    """Thin owner of a ``tokenizers.Tokenizer`` with nlpkit's pad/unk conventions."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.pad_id = self._special_id(PAD)
        self.unk_id = self._special_id(UNK)

    def _special_id(self, token: str) -> int:
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise ArtifactError(f"tokenizer has no {token!r} entry: not an nlpkit tokenizer")
        return token_id

    @classmethod
    def train(cls, texts: Iterable[str], config) -> Featurizer:
        """Train on ``texts`` with ``config`` (``nlpkit.data.featurizers.subword.SubwordConfig``)."""
        tokenizer = Tokenizer(WordLevel(unk_token=UNK))
        steps = []
        if config.lowercase:
            steps = [normalizers.Replace(DOTTED_CAPITAL_I, "i"), normalizers.Lowercase()]
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = (
            pre_tokenizers.Whitespace() if config.split_punctuation else pre_tokenizers.WhitespaceSplit()
        )
        trainer = WordLevelTrainer(
            vocab_size=config.max_vocab,
            min_frequency=config.min_freq,
            special_tokens=[PAD, UNK],
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        tokenizer.enable_truncation(max_length=config.max_length)
        return cls(_without_added_tokens(tokenizer))

    @classmethod
    def load(cls, path: str | Path) -> Featurizer:
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"{path}: tokenizer file not found")
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as err:  # tokenizers raises a bare Exception on malformed JSON
            raise ArtifactError(f"{path}: not a readable tokenizer file ({err})") from err

    def save(self, path: str | Path) -> None:
        write_text(path, self.tokenizer.to_str(pretty=True))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def vocab(self) -> list[str]:
        """Tokens in id order."""
        by_id = sorted(self.tokenizer.get_vocab().items(), key=lambda item: item[1])
        return [token for token, _ in by_id]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text (batch-encoded in Rust). An empty encoding becomes ``[<unk>]``."""
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [enc.ids or [self.unk_id] for enc in encodings]

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=False).tokens


def _without_added_tokens(tokenizer: Tokenizer) -> Tokenizer:
    """The same tokenizer with ``<pad>``/``<unk>`` kept in the vocabulary but not as added tokens.

    The trainer registers its special tokens as added tokens, which HF matches in the raw text
    before normalization (``"a<pad>b"`` becomes ``a``, ``<pad>``, ``b``). nlpkit never inserts them
    into text, and an ONNX graph cannot reproduce that matching, so they are plain vocabulary entries.
    """
    spec = json.loads(tokenizer.to_str())
    spec["added_tokens"] = []
    return Tokenizer.from_str(json.dumps(spec))
