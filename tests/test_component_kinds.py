"""Every component has a kind (``nlpkit.modules.base``), keeps the forward contract of that kind, and a
config that puts the wrong kind in a task's slot is one ``ConfigError`` naming what fits, raised by
validation before anything is built or trained."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from torch import nn

import nlpkit
from nlpkit import registry
from nlpkit.config import CONF_DIR, validate
from nlpkit.errors import ConfigError
from nlpkit.modules import (
    KINDS,
    Component,
    Seq2VecEncoder,
    TokenEmbedding,
    check_component_kinds,
    kind_of,
)
from nlpkit.modules import kinds as kinds_module
from nlpkit.modules.embedding.char_cnn import CharCNNEmbedding
from nlpkit.modules.embedding.concat import ConcatEmbedding
from nlpkit.modules.embedding.shape import ShapeEmbedding
from nlpkit.modules.embedding.transformer import TransformerEmbedding
from nlpkit.modules.embedding.word import WordEmbedding
from nlpkit.registry import TASKS, components

# The kind of every component nlpkit ships: a component that changes kind fails here, on purpose.
SHIPPED_KINDS = {
    "ComposedLabelDecoder": "decoder",
    "MLPDecoder": "decoder",
    "WordMLPDecoder": "decoder",
    "CharCNNEmbedding": "embedding",
    "ConcatEmbedding": "embedding",
    "ShapeEmbedding": "embedding",
    "WordEmbedding": "embedding",
    "TransformerEmbedding": "embedding",
    "Highway": "layer",
    "CRFOutput": "word_output",
    "WordSoftmaxOutput": "word_output",
    "MultiLabelOutput": "doc_output",
    "SoftmaxOutput": "doc_output",
    "RegressionOutput": "value_output",
    "BagOfEmbeddings": "seq2vec",
    "BiLSTMRepresentation": "seq2vec",
    "DocNNRepresentation": "seq2vec",
    "ClsPooling": "seq2vec",
    "LastPooling": "seq2vec",
    "MaxPooling": "seq2vec",
    "MeanPooling": "seq2vec",
    "SelfAttentionPooling": "seq2vec",
    "BiLSTM": "seq2seq",
    "BSeqCNNRepresentation": "seq2seq",
    "TokenBiLSTMRepresentation": "seq2seq",
    "PassThroughRepresentation": "seq2seq",
    "StackedLSTMLanguageEncoder": "seq2seq",
    "AdaptiveSoftmaxOutput": "lm_output",
}


def _shipped() -> dict[str, type]:
    return {name: cls for name, cls in components().items() if name.startswith("nlpkit.")}


def test_every_component_has_a_kind():
    found = {cls.__name__: kind_of(cls) for cls in components().values()}
    assert all(kind in KINDS for kind in found.values()), found
    assert {cls.__name__: kind_of(cls) for cls in _shipped().values()} == SHIPPED_KINDS
    for base in KINDS.values():
        assert inspect.isabstract(base) or base.kind in ("output", "layer"), base  # never built as is
    with pytest.raises(TypeError, match="abstract"):
        Seq2VecEncoder()


def test_tasks_declare_known_kinds_and_the_conf_tree_is_the_configs():
    import nlpkit.tasks  # noqa: F401 - registers them

    for name, task in TASKS.items():
        assert set(task.component_kinds.values()) <= set(KINDS), name
    assert TASKS["doc_cls"].component_kinds["representation"] == "seq2vec"
    assert TASKS["tagging"].component_kinds["representation"] == "seq2seq"
    assert TASKS["semantic_parse"].component_kinds == {"embedding": "embedding", "representation": "seq2seq"}
    assert TASKS["multitask"].component_kinds == {}  # each sub-task is checked with its own task's kinds
    assert Path(CONF_DIR) == kinds_module.CONF_DIR


# (overrides, the whole message): the wrong kind in a slot, and what to choose instead.
WRONG_KINDS = [
    (
        ["task=semantic_parse", "representation=bag"],
        "model.representation: BagOfEmbeddings is a seq2vec encoder; task=semantic_parse needs a "
        "seq2seq encoder here: choose representation=bseqcnn, lstm_lm, passthrough or token_bilstm",
    ),
    (
        ["task=doc_cls", "representation=token_bilstm"],
        "model.representation: TokenBiLSTMRepresentation is a seq2seq encoder; task=doc_cls needs a "
        "seq2vec encoder here: choose representation=bag, bilstm, cls, docnn or mean",
    ),
    (
        ["task=tagging", "representation=bag"],
        "model.representation: BagOfEmbeddings is a seq2vec encoder; task=tagging needs a seq2seq "
        "encoder here: choose representation=bseqcnn, lstm_lm, passthrough or token_bilstm",
    ),
    (
        ["task=tagging", "output=softmax"],
        "model.output: SoftmaxOutput is a document-level output layer; task=tagging needs a word-level "
        "output layer here: choose output=crf or word_softmax",
    ),
    (
        ["task=doc_cls", "output=crf"],
        "model.output: CRFOutput is a word-level output layer; task=doc_cls needs a document-level "
        "output layer here: choose output=multilabel or softmax",
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), WRONG_KINDS)
def test_a_wrong_kind_is_a_config_error_naming_the_choices_that_fit(overrides, expected, tmp_path):
    cfg = nlpkit.compose(
        [*overrides, f"paths.builtin_dir={tmp_path / 'data'}"], output_dir=str(tmp_path / "run")
    )
    with pytest.raises(ConfigError) as err:
        nlpkit.train(cfg)  # validation refuses it before any data is read or model built
    assert str(err.value) == expected
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


def test_slots_without_a_config_group_and_nested_components_name_the_classes():
    with pytest.raises(ConfigError) as err:
        validate(nlpkit.compose(["task=intent_slot", "~model.pooling"]))
    message = str(err.value)
    assert message.startswith(
        "model.pooling must be a component config with a _target_: task=intent_slot needs a seq2vec "
        "encoder here; use model=joint_bilstm, minilm_joint, pooled_bilstm or pooled_lstm_lm or set model.pooling._target_ to "
    )
    assert "pooling.SelfAttentionPooling" in message and "TokenBiLSTM" not in message

    bag = "nlpkit.modules.representation.bag.BagOfEmbeddings"
    with pytest.raises(ConfigError) as err:
        validate(nlpkit.compose(["task=tagging", f"model.embedding.components.char._target_={bag}"]))
    assert str(err.value).startswith(
        "model.embedding.components.char: BagOfEmbeddings is a seq2vec encoder; task=tagging needs a "
        "token embedding here: set model.embedding.components.char._target_ to "
    )
    assert "CharCNNEmbedding" in str(err.value)

    base = "nlpkit.modules.base.Seq2VecEncoder"
    with pytest.raises(ConfigError, match="Seq2VecEncoder is an abstract class; .*choose representation="):
        validate(nlpkit.compose([f"model.representation._target_={base}"]))


def test_each_sub_task_of_a_multi_task_run_is_checked_with_its_own_kinds():
    bag = "nlpkit.modules.representation.bag.BagOfEmbeddings"
    with pytest.raises(ConfigError) as err:
        validate(nlpkit.compose(["task=multitask", f"+task.tasks.slots.model.representation._target_={bag}"]))
    assert str(err.value) == (
        "task.tasks.slots.model.representation: BagOfEmbeddings is a seq2vec encoder; task=tagging needs a "
        "seq2seq encoder here: set task.tasks.slots.model.representation._target_ to "
        "nlpkit.modules.representation.bseqcnn.BSeqCNNRepresentation, "
        "nlpkit.modules.representation.lstm_lm.StackedLSTMLanguageEncoder, "
        "nlpkit.modules.representation.passthrough.PassThroughRepresentation or "
        "nlpkit.modules.representation.token_bilstm.TokenBiLSTMRepresentation"
    )


class PlainEncoder(nn.Module):
    """A user's encoder that subclasses no nlpkit base: its kind is unknown."""

    def __init__(self, input_dim: int):
        super().__init__()
        self.output_dim = input_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x.mean(1)


class KindlessEncoder(Component, PlainEncoder):
    """Subclasses nlpkit's root class, but none of the kinds: still unknown."""


@pytest.mark.parametrize("cls", [PlainEncoder, KindlessEncoder])
def test_a_registered_component_without_a_base_class_is_told_which_to_subclass(cls, monkeypatch):
    target = f"{cls.__module__}.{cls.__qualname__}"
    monkeypatch.setitem(registry._registered, target, cls)  # register_component, undone after the test
    cfg = nlpkit.compose(["representation=bag", "~model.representation.hidden_dim", "~model.representation.dropout",
                          f"model.representation._target_={target}"])  # fmt: skip
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert str(err.value) == (
        f"model.representation: {target} subclasses none of nlpkit's component base classes, so its kind "
        "is unknown; task=doc_cls needs a seq2vec encoder here: subclass nlpkit.modules.Seq2VecEncoder "
        "(forward(x [B, T, D], mask [B, T]) -> [B, output_dim])"
    )
    assert kind_of(cls) is None


# Every task's default model, and the model presets and encoders with the task they are for: all still
# validate. (Every group choice, experiments included, validates with some task: tests/test_config.py.)
DEFAULT_COMBINATIONS = [
    [],
    ["model=cnn"],
    ["representation=bag"],
    ["task=tagging"],
    ["task=tagging", "model=bilstm_tagger", "representation=bseqcnn"],
    ["task=intent_slot"],
    ["task=intent_slot", "output=word_softmax"],
    ["task=doc_cls", "featurizer=word", "model=pooled_bilstm"],  # token BiLSTM -> pooling -> MLP
    ["task=doc_cls", "featurizer=word", "embedding=word_char_shape"],
    ["task=multitask"],
]


@pytest.mark.parametrize("overrides", DEFAULT_COMBINATIONS, ids=" ".join)
def test_every_builtin_default_combination_validates(overrides):
    cfg = validate(nlpkit.compose(overrides))
    task = TASKS[str(cfg.task.name)]
    check_component_kinds(cfg.model, task.model_kinds(cfg.model), "model", task.name)  # what validate ran


# ------------------------------------------------------------------ the forward contract of each kind
B, T, D, L = 2, 5, 6, 3
SIZES = {"vocab_size": 20, "padding_idx": 0, "num_chars": 12, "num_shapes": 6, "input_dim": D,
         "output_dim": L, "num_labels": L, "dim": D, "constrained": False,
         "label_names": ["a", "b", "a#b"]}  # fmt: skip


def _build(cls: type) -> nn.Module:
    if cls is TransformerEmbedding:  # a tiny random BERT of SIZES' vocabulary, saved as a checkpoint
        import tempfile

        from transformers import BertConfig, BertModel

        directory = Path(tempfile.mkdtemp(prefix="tiny_bert_"))
        (directory / "tokenizer.json").write_text("{}")  # the embedding reads config + weights only
        config = BertConfig(vocab_size=SIZES["vocab_size"], hidden_size=8, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=8, max_position_embeddings=T)  # fmt: skip
        BertModel(config).save_pretrained(str(directory))
        return cls(SIZES["vocab_size"], checkpoint=str(directory))
    if cls is ConcatEmbedding:
        return cls(
            {
                "word": WordEmbedding(20, 4),
                "char": CharCNNEmbedding(12, 4, (1, 2), 3),
                "shape": ShapeEmbedding(6, 2),
            }
        )
    params = inspect.signature(cls).parameters
    sizes = {**SIZES, "num_labels": 1} if cls.kind == "value_output" else SIZES  # one value per document
    return cls(**{key: value for key, value in sizes.items() if key in params})


@pytest.mark.parametrize("name", sorted(SHIPPED_KINDS))
def test_a_tiny_forward_pass_keeps_the_contract_of_its_kind(name):
    cls = next(cls for cls in _shipped().values() if cls.__name__ == name)
    torch.manual_seed(0)
    module = _build(cls).eval()
    mask = torch.tensor([[True] * T, [True] * 3 + [False] * (T - 3)])
    x = torch.randn(B, T, D)
    kind = module.kind
    if kind == "embedding":
        inputs = {"tokens": torch.randint(1, 20, (B, T)), "lengths": torch.tensor([T, 3]), "chars": torch.randint(1, 12, (B, T, 4)),
                  "shapes": torch.randint(1, 6, (B, T))}  # fmt: skip
        out = module.embed(inputs)
        assert out.shape == (B, T, module.output_dim)
    elif kind in ("seq2seq", "seq2vec"):
        out = module(x, mask)
        assert module.input_dim == D
        assert out.shape == ((B, T, module.output_dim) if kind == "seq2seq" else (B, module.output_dim))
    elif kind in ("decoder", "layer"):
        assert module(x[:, 0]).shape == (B, module.output_dim) and module.input_dim == D
        assert module(x).shape == (B, T, module.output_dim)  # over the last axis only
    elif kind == "doc_output":
        logits = torch.randn(B, L)
        targets = torch.tensor([[1, 0, 1], [0, 1, 0]]) if module.multilabel else torch.tensor([0, 2])
        assert module.output_dim == module.num_labels == L and module.loss(logits, targets).dim() == 0
        assert module.scores(logits).shape == (B, L)
        assert module.predict(logits).shape == ((B, L) if module.multilabel else (B,))
    elif kind == "value_output":
        logits, targets = torch.randn(B, 1), torch.randn(B)
        assert module.output_dim == 1 and module.loss(logits, targets).dim() == 0
        assert module.predict(logits).shape == (B,)
    elif kind == "lm_output":
        states, targets = torch.randn(B * T, D), torch.randint(0, SIZES["vocab_size"], (B * T,))
        full = module.log_probs(states)  # [N, vocab]: a distribution per state
        assert full.shape == (B * T, SIZES["vocab_size"]) and module.input_dim == D
        assert torch.allclose(full.exp().sum(-1), torch.ones(B * T), atol=1e-5)
        picked = module.target_log_probs(states, targets)  # [N]: the targets' entries of it
        assert torch.allclose(picked, full.gather(1, targets.unsqueeze(1)).squeeze(1), atol=1e-5)
    else:
        assert kind == "word_output", kind
        emissions, tags = torch.randn(B, T, L), torch.randint(0, L, (B, T))
        assert module.output_dim == module.num_labels == L and module.loss(emissions, tags, mask).dim() == 0
        assert module.scores(emissions, mask).shape == (B, T, L)
        assert module.decode(emissions, mask).shape == (B, T)


def test_an_embedding_reads_the_inputs_it_declares():
    concat = ConcatEmbedding({"word": WordEmbedding(20, 4), "char": CharCNNEmbedding(12, 4, (1,), 3)})
    assert isinstance(concat, TokenEmbedding) and concat.input_keys == ("tokens", "chars")
    tokens, chars = torch.randint(1, 20, (B, T)), torch.randint(1, 12, (B, T, 4))
    assert concat.embed({"tokens": tokens, "chars": chars, "shapes": None}).shape == (B, T, 4 + 3)
    with pytest.raises(ValueError, match="ConcatEmbedding needs the 'chars' input"):
        concat.embed({"tokens": tokens, "chars": None})
