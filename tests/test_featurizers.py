"""The featurizer group: each registered featurizer round-trips through a run directory with identical
encodings; ``task=doc_cls featurizer=word`` trains, reloads and predicts the same; what is refused is
refused with a message naming the fix (``task=intent``, ``featurizer=subword`` under word tagging)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import nlpkit
from nlpkit.config import validate
from nlpkit.data.featurizers import (
    NgramConfig,
    NgramFeaturizer,
    SubwordConfig,
    SubwordFeaturizer,
    WordConfig,
    WordFeaturizer,
)
from nlpkit.data.inputs import EmptyTextError
from nlpkit.errors import ConfigError
from nlpkit.registry import FEATURIZERS, get_featurizer, register_featurizer
from tests.conftest import WORD_TINY, data_overrides

TRAIN_TEXTS = [
    "Play some JAZZ by Miles Davis",
    "wake me up at 7 am tomorrow",
    "what's the weather in Paris, today?",
    "remind me to call Mom",
    "play jazz",
]
#: unseen words, unseen characters, casing, punctuation, a literal "<pad>", the Turkish dotted I
TEXTS = [
    *TRAIN_TEXTS,
    "Ünïcode İstanbul ÉCOLE straße 😀",
    "<pad> <unk> a<pad>b McDonald iPhone 42",
    "x",
]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- the featurizers themselves
@pytest.mark.parametrize(
    ("cls", "config", "files", "batch_keys"),
    [
        (SubwordFeaturizer, SubwordConfig(), {"tokenizer.json"}, {"tokens", "lengths"}),
        (
            NgramFeaturizer,
            NgramConfig(min_ngram_freq=1),
            {"tokenizer.json", "ngrams.json"},
            {"tokens", "lengths"},
        ),
        (
            WordFeaturizer,
            WordConfig(max_word_length=5),
            {"tokenizer.json", "chars.json"},
            {"tokens", "lengths", "chars", "shapes"},
        ),
    ],
)
def test_each_featurizer_round_trips_through_a_run_directory(tmp_path, cls, config, files, batch_keys):
    featurizer = cls.train(iter(TRAIN_TEXTS), config)  # one pass: a generator is enough
    assert FEATURIZERS[cls.name] is cls and get_featurizer(cls.name) is cls
    featurizer.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == files == set(cls.files)
    loaded = cls.load(tmp_path)
    assert loaded.vocab == featurizer.vocab and loaded.vocab_size == featurizer.vocab_size
    assert (loaded.pad_id, loaded.unk_id) == (featurizer.pad_id, featurizer.unk_id) == (0, 1)
    assert loaded.sizes() == featurizer.sizes() and loaded.sizes(fresh=True)["vocab"] == featurizer.vocab
    assert set(loaded.sizes()) == set(cls.size_names)
    before, after = featurizer.encode_batch(TEXTS), loaded.encode_batch(TEXTS)
    assert all(same(a, b) for a, b in zip(before, after, strict=True))
    batch = loaded.collate(after)
    assert set(batch) == batch_keys
    assert batch["lengths"].tolist() == [len(item["tokens"]) for item in after]
    assert batch["tokens"].shape == (len(TEXTS), max(batch["lengths"]))
    assert same(batch, featurizer.collate(before))
    unk = loaded.encode("zebra")["tokens"].tolist()
    assert unk == [loaded.unk_id]  # a word never seen in training
    # a run directory written before featurizers had names: data.featurizer has only options, and the
    # task's default kind (doc_cls: subword; the word-level tasks: word) reads today's file names
    from omegaconf import OmegaConf

    from nlpkit.data.featurizers import load_featurizer

    old_data = OmegaConf.create({"featurizer": {"lowercase": True, "min_freq": 1}})
    again = load_featurizer(old_data, tmp_path, cls.name, per_token=cls.per_token)
    assert type(again) is cls and all(same(a, b) for a, b in zip(again.encode_batch(TEXTS), before))


def test_word_featurizer_keeps_one_position_per_token_with_its_characters_and_casing():
    featurizer = WordFeaturizer.train([["Play", "jazz", "NOW"], "play it"], WordConfig(max_word_length=3))
    tokens = ["PLAY", "Jazz,", "42", "zebra"]
    item = featurizer.encode(tokens)  # a token list is taken as it is: one position per token
    assert item["tokens"].tolist() == [
        featurizer.tokenizer.tokenizer.token_to_id("play"),
        featurizer.unk_id,  # "jazz," is not split: it is another word
        featurizer.unk_id,
        featurizer.unk_id,
    ]
    assert same(item, featurizer.encode("PLAY  Jazz,\t42 zebra"))  # a text: whitespace tokens
    assert item["chars"].shape == (4, 3)  # max_word_length characters per token
    assert item["chars"][0].tolist() == [
        featurizer.chars.index["P"],
        featurizer.chars.UNK_ID,  # case kept: "L" and "A" never seen, only "l" and "a"
        featurizer.chars.UNK_ID,
    ]
    shapes = featurizer.encode(["play", "PLAY", "Play", "42", "x2", ","])["shapes"].tolist()
    assert shapes == [1, 2, 3, 5, 6, 7]  # lower, upper, title, numeric, has_digit, punct
    assert featurizer.encode("   ")["tokens"].numel() == 0  # nothing to score: the predictors skip it


def test_subword_featurizer_refuses_token_lists_and_is_not_per_token():
    featurizer = SubwordFeaturizer.train(TRAIN_TEXTS, SubwordConfig())
    assert not SubwordFeaturizer.per_token and WordFeaturizer.per_token
    assert featurizer.tokenize("what's the weather?") == ["what", "'", "s", "the", "weather", "?"]
    with pytest.raises(TypeError, match="featurizer=subword encodes raw text, not token lists"):
        featurizer.encode(["play", "jazz"])


def test_featurizer_registry_is_a_decorator_with_clear_errors():
    @register_featurizer
    class Upper(SubwordFeaturizer):
        name = "test_upper"

    try:
        assert get_featurizer("test_upper") is Upper
        with pytest.raises(ValueError, match="featurizer name 'word' is taken by"):

            @register_featurizer
            class Other(WordFeaturizer):
                name = "word"

    finally:
        FEATURIZERS.pop("test_upper")
    with pytest.raises(ConfigError, match=r"unknown data.featurizer.name 'wrod'; did you mean 'word'\?"):
        get_featurizer("wrod")


# ---------------------------------------------------------------- the config group
@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        ([], "subword"),
        (["featurizer=word"], "word"),
        (["task=tagging"], "word"),
        (["task=intent_slot"], "word"),
        (["experiment=conll03"], "word"),
        (["model=pooled_bilstm"], "word"),  # the preset reads characters: it picks featurizer=word
    ],
)
def test_each_task_gets_its_default_featurizer_with_typed_options(overrides, kind):
    cfg = validate(nlpkit.compose(overrides))
    assert cfg.data.featurizer.name == kind
    options = {"subword": SubwordConfig, "word": WordConfig}[kind]
    assert set(cfg.data.featurizer) == set(options.__dataclass_fields__)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["task=intent"], "task=intent was removed; use task=doc_cls featurizer=word"),
        (["data=builtin_intent"], "data=builtin_intent was removed; use data=builtin featurizer=word"),
        (
            ["task=tagging", "featurizer=subword"],
            "data.featurizer.name='subword' (featurizer=subword) cannot featurize this task's data",
        ),
        (["task=intent_slot", "featurizer=subword"], "a word-level task needs one feature per dataset token"),
        (
            ["featurizer=word", "data.featurizer.max_length=3"],
            "unknown key data.featurizer.max_length; did you mean 'max_word_length'?",
        ),
        (["data.featurizer.name=wrod"], "unknown data.featurizer.name 'wrod'; did you mean 'word'?"),
        (["featurizer=word", "data.featurizer.min_freq=-1"], "data.featurizer.min_freq=-1 must be >= 0"),
        (
            ["model=pooled_bilstm", "featurizer=subword"],
            "model.embedding.components.char reads characters, which featurizer=subword does not make",
        ),
        (
            ["embedding=word_char_shape"],
            "model.embedding.components.char reads characters, which featurizer=subword does not make",
        ),
        (["data.unseen_labels=count"], "data.unseen_labels='count' is not a valid choice"),
    ],
)
def test_what_is_refused_names_the_fix(overrides, expected):
    with pytest.raises(ConfigError) as err:
        validate(nlpkit.compose(overrides))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_an_old_run_config_naming_task_intent_is_told_the_replacement():
    from nlpkit.registry import get_task

    with pytest.raises(ConfigError, match=r"task 'intent' was removed; use task=doc_cls featurizer=word"):
        get_task("intent")


# ---------------------------------------------------------------- doc_cls over word-level features
TRAIN = [
    "task=doc_cls",
    "featurizer=word",
    "model=pooled_bilstm",
    *WORD_TINY,
    "model.pooling.attention_dim=8",
    "model.decoder.hidden_dims=[8]",
    "logger=csv",
    "debug=fast",
    "trainer.limit_train_batches=8",
]


@pytest.fixture(scope="module")
def word_doc_run(tmp_path_factory, plain_data):
    """Trained enough (seconds) on the plain utterances to predict several intents."""
    run_dir = tmp_path_factory.mktemp("doc_cls_word") / "run"
    learn = ["trainer.max_epochs=2", "trainer.limit_train_batches=30", "optim.lr=0.03"]
    cfg = nlpkit.compose([*TRAIN, *learn, *data_overrides(plain_data, "data")], output_dir=str(run_dir))
    return cfg, nlpkit.train(cfg)


def test_doc_cls_over_word_features_trains_saves_and_reloads(word_doc_run):
    cfg, result = word_doc_run
    run_dir = Path(result["run_dir"])
    assert {"tokenizer.json", "chars.json", "labels.json"} <= {p.name for p in run_dir.iterdir()}
    model = result["model"]
    assert type(model.pooling).__name__ == "SelfAttentionPooling"  # token BiLSTM -> pooling -> MLP
    assert type(model.embedding).__name__ == "ConcatEmbedding"  # words + characters + casing
    test = [json.loads(line) for line in Path(validate(cfg).data.test_path).read_text().splitlines()]
    texts = [ex["text"] for ex in test]
    first = nlpkit.load(run_dir).predict(texts)
    again = nlpkit.load(run_dir).predict(texts[:30], batch_size=4)  # fresh load, other padding
    assert [p["label"] for p in again] == [p["label"] for p in first[:30]]
    for a, b in zip(again, first[:30]):
        assert all(abs(a["scores"][k] - b["scores"][k]) < 1e-5 for k in a["scores"])
    # the in-memory model after training gives what the reloaded run gives
    from nlpkit.tasks.doc_cls.predictor import DocClassificationPredictor

    reloaded = nlpkit.load(run_dir)
    trained = DocClassificationPredictor(model, reloaded.featurizer, reloaded.labels)
    assert torch.allclose(trained.scores(texts[:50]), reloaded.scores(texts[:50]), atol=1e-6)
    accuracy = sum(p["label"] == ex["intent"] for p, ex in zip(first, test)) / len(test)
    assert accuracy == pytest.approx(result["metrics"]["test/accuracy"], abs=1e-6)
    assert len({p["label"] for p in first}) >= 2  # it learned something beyond one constant answer
    with pytest.raises(EmptyTextError, match=r"texts\[0\] is empty"):  # one rule for every backend
        reloaded.predict(["", "play jazz"])
    assert reloaded.predict_any([" \t"]) == [{"label": None, "scores": {}}]  # as the ONNX graph answers


def test_every_trainable_parameter_gets_a_gradient(word_doc_run, small_data, tmp_path):
    cfg, _ = word_doc_run
    from nlpkit.registry import get_task

    dm, module = get_task("doc_cls").build(validate(cfg))
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"tokens", "lengths", "chars", "shapes", "labels"}
    module._step(batch, "train").backward()
    for name, param in module.model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_unseen_labels_scored_wrong_keeps_the_rows_and_counts_them(tmp_path, small_data):
    """``data.unseen_labels=scored_wrong`` (task=intent's semantics): a test label training never saw
    is a kept row, a wrong answer in ``accuracy``, and counted in ``test/unseen_labels``; the default
    (``bad_row``) stops at it, naming the file and line."""
    lines = (small_data / "test.jsonl").read_text().splitlines()[:40]
    rows = [json.loads(line) for line in lines]
    for row in rows[:3]:
        row["intent"] = "book_flight"  # never in training
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = [*data_overrides(small_data, "data"), f"data.test_path={tmp_path / 'test.jsonl'}"]
    cfg = nlpkit.compose(
        [
            *TRAIN,
            *data,
            "data.unseen_labels=scored_wrong",
            "trainer.limit_test_batches=1.0",
            "data.eval_batch_size=64",
        ],
        output_dir=str(tmp_path / "run"),
    )
    result = nlpkit.train(cfg)
    metrics = result["metrics"]
    assert metrics["test/unseen_labels"] == 3
    predicted = nlpkit.load(result["run_dir"]).predict([r["text"] for r in rows])
    right = sum(p["label"] == r["intent"] for p, r in zip(predicted, rows))
    assert metrics["test/accuracy"] == pytest.approx(right / len(rows), abs=1e-6)  # the 3 count as wrong
    from nlpkit.errors import DataError

    bad = nlpkit.compose([*TRAIN, *data], output_dir=str(tmp_path / "bad"))
    with pytest.raises(DataError, match=r"test.jsonl:1: unseen label: 'book_flight'"):
        nlpkit.train(bad)


def test_doc_cls_pools_only_after_a_per_token_representation(tmp_path, small_data):
    """``model.pooling`` reduces a seq2seq representation's states (and must itself be seq2vec); beside a
    seq2vec representation it is not built, as a multi-task doc_cls sub-task bringing its own encoder
    under a top-level joint_bilstm inherits one."""
    from nlpkit.registry import get_task

    token_bilstm = "nlpkit.modules.representation.token_bilstm.TokenBiLSTMRepresentation"
    with pytest.raises(ConfigError, match=r"^model.pooling: TokenBiLSTMRepresentation is a seq2seq encoder; "
                       r"task=doc_cls needs a seq2vec encoder here"):  # fmt: skip
        validate(nlpkit.compose([*TRAIN, f"model.pooling._target_={token_bilstm}"]))
    overrides = [*TRAIN, "representation=bilstm", "model.representation.hidden_dim=8",
                 "model.representation.attention_dim=8", *data_overrides(small_data, "data")]  # fmt: skip
    cfg = validate(nlpkit.compose(overrides, output_dir=str(tmp_path / "run")))
    _, module = get_task("doc_cls").build(cfg)
    assert module.model.pooling is None and "pooling" not in dict(module.model.named_children())
