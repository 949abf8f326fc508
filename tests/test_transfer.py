"""Pre-train, then initialise (``transfer.run_dir``; nlpkit/training/transfer.py): a language model's
embedding and LSTM become a classifier's (issue 13), with the LM's extra training text
(``data.extra_train_paths``) in its vocabulary. Everything through ``nlpkit.compose`` + ``nlpkit.train``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from torch import nn

import nlpkit
from nlpkit.api import load_run_config
from nlpkit.errors import ConfigError, DataError
from nlpkit.modules.embedding.word import WordEmbedding
from nlpkit.modules.representation.lstm_lm import StackedLSTMLanguageEncoder
from nlpkit.registry import get_task
from nlpkit.tasks.lm.data import read_column_lines
from nlpkit.training.checkpoint import best_checkpoint, load_checkpoint, model_state
from nlpkit.training.transfer import initialize_from_run
from tests.conftest import write_lines

DIM = 12
QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=csv"]
SIZES = [f"model.embedding.embed_dim={DIM}", f"model.representation.hidden_dim={DIM}"]
WORDS = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "log", "and", "then", "slept"]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    """A tiny LM over plain text plus a classifier-style TSV's ``sentence`` column (its only source of
    the word "zebrafish")."""
    root = tmp_path_factory.mktemp("transfer_lm")
    rng = random.Random(0)
    for split, size in (("train", 60), ("valid", 10), ("test", 10)):
        write_lines(root / f"{split}.txt", [" ".join(rng.choices(WORDS, k=6)) for _ in range(size)])
    write_lines(root / "task.tsv", ["sentence\tlabel", "the zebrafish sat\t1", "a dog ran\t0"])
    cfg = nlpkit.compose(
        [
            "task=lm",
            "data.format=text",
            *(
                f"data.{k}_path={root}/{s}.txt"
                for k, s in (("train", "train"), ("val", "valid"), ("test", "test"))
            ),
            f"data.extra_train_paths=[{root}/task.tsv]",
            "data.extra_train_field=sentence",
            *SIZES,
            *QUIET,
            "trainer.max_epochs=1",
            "data.batch_size=4",
            "data.bptt=5",
        ],  # fmt: skip
        output_dir=str(root / "run"),
    )
    nlpkit.train(cfg)
    return root / "run"


def _source(run_dir: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    cfg = load_run_config(run_dir)
    vocab = list(get_task("lm").datamodule(cfg.data, run_dir).featurizer.vocab)
    return model_state(load_checkpoint(best_checkpoint(run_dir))), vocab


def test_the_lm_vocabulary_has_the_extra_training_texts_words(lm_run):
    _, vocab = _source(lm_run)
    assert "zebrafish" in vocab and "label" not in vocab and "1" not in vocab  # the column, not the row


class Tiny(nn.Module):
    def __init__(self, vocab_size: int, hidden: int = DIM):
        super().__init__()
        self.embedding = WordEmbedding(vocab_size, DIM)
        self.representation = StackedLSTMLanguageEncoder(DIM, hidden, num_layers=2)
        self.decoder = nn.Linear(hidden, 2)


def test_transfer_copies_the_lstm_exactly_and_embedding_rows_by_word(lm_run):
    """Another vocabulary order and a word the LM never saw: each known word gets the LM's row for it,
    the unknown word keeps its random row, the LSTM is copied tensor for tensor, the decoder untouched."""
    source, source_vocab = _source(lm_run)
    vocab = source_vocab[:2] + list(reversed(source_vocab[2:])) + ["never-seen"]
    torch.manual_seed(0)
    model = Tiny(len(vocab))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = initialize_from_run(
        model, vocab, lm_run, {"embedding": "embedding", "representation": "representation"}
    )
    table = model.embedding.embedding.weight
    for row, word in enumerate(vocab[:-1]):
        assert torch.equal(table[row], source["embedding.embedding.weight"][source_vocab.index(word)]), word
    assert torch.equal(table[-1], before["embedding.embedding.weight"][-1])
    lstm = [k for k in source if k.startswith("representation.")]
    assert lstm and all(torch.equal(model.state_dict()[k], source[k]) for k in lstm)
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before if k.startswith("decoder."))
    assert report["vocab_rows"]["embedding.embedding.weight"] == {
        "found": len(vocab) - 1,
        "words": len(vocab),
    }
    assert report["tensors"] == 1 + len(lstm)


def test_a_size_mismatch_names_the_tensor_and_both_shapes(lm_run):
    _, source_vocab = _source(lm_run)
    with pytest.raises(ConfigError, match=r"'representation\..*' is \(32, 12\) here but .* is \(48, 12\)"):
        initialize_from_run(
            Tiny(len(source_vocab), hidden=8), source_vocab, lm_run, {"representation": "representation"}
        )
    with pytest.raises(ConfigError, match="has no 'decoder"):
        initialize_from_run(Tiny(len(source_vocab)), source_vocab, lm_run, {"decoder": "decoder"})


def test_a_classifier_trains_from_the_language_model(lm_run, tmp_path, builtin_dir):
    """``task=doc_cls model=pooled_lstm_lm transfer.run_dir=LM``: the classifier's run records the
    copy in transfer.json, before its own training moved the weights."""
    cfg = nlpkit.compose(
        [
            f"paths.builtin_dir={builtin_dir}",
            "task=doc_cls",
            "model=pooled_lstm_lm",
            *SIZES,
            *QUIET,
            "model.pooling.attention_dim=8",
            "model.decoder.hidden_dims=[8]",
            "debug=fast",
            f"transfer.run_dir={lm_run}",
            "optim.encoder_lr=1e-4",
        ],  # fmt: skip
        output_dir=str(tmp_path / "cls"),
    )
    result = nlpkit.train(cfg)
    # optim.encoder_lr trains what was transferred (embedding + LSTM) at its rate, the rest at optim.lr
    from nlpkit.training.optim import parameter_groups

    head, encoder = parameter_groups(result["model"], cfg.optim)
    model = result["model"]
    copied = {id(p) for part in (model.embedding, model.representation) for p in part.parameters()}
    assert encoder["lr"] == 1e-4 and {id(p) for p in encoder["params"]} == copied
    assert head["lr"] == cfg.optim.lr and not copied & {id(p) for p in head["params"]}
    record = json.loads((tmp_path / "cls" / "transfer.json").read_text())
    rows = record["vocab_rows"]["embedding.embedding.weight"]
    assert record["run_dir"] == str(lm_run.resolve()) and record["tensors"] > 1
    assert 0 < rows["found"] < rows["words"]  # the built-in utterances share some words with the LM's text
    assert nlpkit.load(tmp_path / "cls").predict(["the cat sat"])[0]["label"]


def test_a_config_built_on_pre_training_refuses_to_start_without_it():
    """experiment=sst2_glue_lm sets transfer.required: no run_dir is an error, not random init."""
    with pytest.raises(ConfigError, match="transfer.run_dir is not set"):
        nlpkit.train(nlpkit.compose(["experiment=sst2_glue_lm"]))
    with pytest.raises(ConfigError, match="transfer.modules"):
        nlpkit.train(nlpkit.compose(["transfer.run_dir=/x", "transfer.modules=null"]))


def test_an_extra_table_without_the_column_names_the_file(tmp_path):
    path = write_lines(tmp_path / "t.tsv", ["text\tlabel", "a b\t1"])
    assert read_column_lines(str(path), "text") == [["a", "b"]]
    with pytest.raises(DataError, match=rf"{path}:1: no column 'sentence'"):
        read_column_lines(str(path), "sentence")
    short = write_lines(tmp_path / "s.tsv", ["label\ttext", "1\ta b", "0"])
    with pytest.raises(DataError, match=rf"{short}:3: 1 fields"):
        read_column_lines(str(short), "text")
