"""The real conf/ tree composes for every choice; bad keys and choices fail early, naming what is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import open_dict

import nlpkit
from nlpkit.config import CONF_DIR, validate
from nlpkit.errors import ConfigError
from nlpkit.tasks import TASKS
from tests.conftest import run_module

CONF = Path(CONF_DIR)
# Snapshot of the shipped choices: a config that silently vanishes fails here.
EXPECTED_GROUPS = {
    "task": {"doc_cls", "tagging", "intent_slot", "multitask", "semantic_parse"},
    "model": {
        "bilstm",
        "cnn",
        "bilstm_tagger",
        "bilstm_crf_tagger",
        "joint_bilstm",
        "pooled_bilstm",
        "rnng",
        "fasttext",
    },
    "featurizer": {"subword", "ngram", "word"},
    "embedding": {"word", "char_cnn", "shape", "word_char_shape"},
    "representation": {"bilstm", "docnn", "bag", "token_bilstm", "bseqcnn"},
    "decoder": {"mlp", "word_mlp"},
    "output": {"softmax", "multilabel", "crf", "word_softmax"},
    "data": {
        "builtin",
        "tsv",
        "csv",
        "jsonl",
        "label_text",
        "sst2",
        "builtin_tagging",
        "conll",
        "parallel",
        "builtin_intent_slot",
        "parallel_intent_slot",
        "multitask",
        "top",
    },  # fmt: skip
    "optim": {"adam", "adamw", "sgd"},
    "trainer": {"default", "ddp"},
    "callbacks": {"default", "none"},
    "logger": {"default", "csv"},
    "experiment": {
        "sst2",
        "conll03",
        "atis_slots",
        "atis",
        "snips",
        "atis_snips",
        "top",
        "sst2_glue_fasttext",
    },
    "multitask": {"builtin", "atis_snips"},
    "hparams_search": {"optuna"},
    "debug": {"fast"},
}


def choices(group: str) -> set[str]:
    return {p.stem for p in (CONF / group).glob("*.yaml")}


@pytest.mark.parametrize("group", sorted(EXPECTED_GROUPS))
def test_shipped_choices_are_all_there(group):
    assert EXPECTED_GROUPS[group] <= choices(group)


#: multi-task choices with a language-model sub-task -> their classifier (what a run must monitor)
LM_MULTITASKS = {"builtin_lm": "intents", "sst2_lm": "sst2"}


def _all_group_choices():
    for group in sorted(EXPECTED_GROUPS):
        for choice in sorted(choices(group)):
            yield group, choice


@pytest.mark.parametrize(("group", "choice"), list(_all_group_choices()))
def test_every_choice_composes_and_validates(make_cfg, group, choice):
    overrides = [f"{group}={choice}"]
    if group in ("data",) and choice in ("tsv", "csv", "jsonl", "label_text"):
        overrides.append("data.train_path=somewhere")
    if (
        group == "experiment" and choice == "sst2_glue_lm"
    ):  # starts from a pre-trained run (transfer.required)
        overrides.append("transfer.run_dir=somewhere")
    if group == "multitask" and choice in LM_MULTITASKS:  # mean_target is refused over a perplexity
        overrides.append(f"task.monitor=val/{LM_MULTITASKS[choice]}/accuracy")
    if group == "hparams_search":
        pytest.skip("a sweeper config only composes in multirun mode (exercised in test_cli.py)")
    # A choice may belong to one task (a tagging data config, say): it must validate with at least one.
    errors = []
    for task in sorted(TASKS) if group != "task" else [choice]:
        try:
            typed = validate(make_cfg(f"task={task}", *overrides, tiny=False))
        except ConfigError as err:
            errors.append(f"task={task}: {err}")
            continue
        assert typed.task.name == task
        return
    pytest.fail(f"{group}={choice} validates with no task:\n" + "\n".join(errors))


def test_unknown_choice_names_the_available_ones():
    with pytest.raises(ConfigError) as err:
        nlpkit.compose(["model=bilstmm"])
    assert str(err.value).startswith("unknown choice model=bilstmm; did you mean 'bilstm'? choose one of")
    assert "cnn" in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.trian_path=x"], "unknown key data.trian_path; did you mean 'train_path'? valid keys: "),
        (["task=tagging", "data.tag_schem=BIO"], "unknown key data.tag_schem; did you mean 'tag_scheme'?"),
        (
            ["data.featurizer.max_lenght=3"],
            "unknown key data.featurizer.max_lenght; did you mean 'max_length'?",
        ),
        (
            ["trainer.max_epoch=3"],
            "unknown key trainer.max_epoch for pytorch_lightning.Trainer; did you mean",
        ),
        (["data.trian_path=x", "data.val_pth=y"], "unknown key data.trian_path;"),  # the first one
        (["trainer.limit_train_batches=1"], "use +trainer.limit_train_batches=1"),  # valid, just not set
    ],
)
def test_misspelled_override_is_nlpkits_one_line_without_plus(overrides, expected):
    """The notebook API answers a key the config lacks like the README says, not with Hydra's
    "not in struct" block; a valid Trainer argument the config does not set gets the + hint."""
    with pytest.raises(ConfigError) as err:
        nlpkit.compose(overrides)
    assert expected in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("data", "trian_path", "x", "did you mean 'train_path'?"),
        ("data.featurizer", "lowercse", True, "did you mean 'lowercase'?"),
        ("optim", "learning_rate", 0.1, "valid keys: betas, encoder_lr, eps, lr,"),
        ("task", "monitr", "x", "did you mean 'monitor'?"),
        ("model.representation", "hiden_dim", 3, "did you mean 'hidden_dim'?"),
        ("trainer", "max_epoch", 3, "did you mean 'max_epochs'?"),
        ("callbacks.early_stopping", "patiense", 3, "did you mean 'patience'?"),
    ],
)
def test_misspelled_key_in_a_config_file_names_the_valid_keys(section, key, value, expected):
    cfg = nlpkit.compose([])
    node = cfg
    for part in section.split("."):
        node = node[part]
    with open_dict(cfg):
        node[key] = value
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert key in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.on_bad_row=maybe", "error, skip"),
        ("data.format=xml", "builtin, tsv, csv, jsonl, label_text"),
        ("optim.name=rmsprop", "adam, adamw, sgd, adadelta"),
        ("data.batch_size=many", "batch_size"),
        ("task.name=translation", "doc_cls"),
        ("task.monitor_mode=up", "max, min"),
    ],
)
def test_bad_values_fail_naming_valid_choices(override, expected):
    with pytest.raises(ConfigError) as err:
        validate(nlpkit.compose([override]))
    assert expected in str(err.value)


def test_missing_required_path_is_a_config_error():
    with pytest.raises(ConfigError, match="train_path"):
        validate(nlpkit.compose(["data=tsv"]))


def test_data_dir_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("NLPKIT_DATA_DIR", "/data/elsewhere")
    cfg = nlpkit.compose(["experiment=sst2"])
    assert validate(cfg).data.train_path == "/data/elsewhere/sst2_sentence/stsa.binary.train"


def test_cli_reports_a_config_error_without_a_traceback(tmp_path):
    proc = run_module("nlpkit.train", ["data.on_bad_row=maybe", f"hydra.run.dir={tmp_path}"], check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "error, skip" in output
    assert "Traceback" not in output


def test_bilstm_preset_is_paper_figure_1():
    """The preset's values survive composition (a later group must not reset them)."""
    cfg = validate(nlpkit.compose(["model=bilstm"]))
    rep, dec = cfg.model.representation, cfg.model.decoder
    assert (cfg.model.embedding.embed_dim, rep.hidden_dim, rep.num_layers) == (200, 200, 2)
    assert (rep.pooling, rep.attention_dim, rep.dropout) == ("self_attention", 128, 0.4)
    assert list(dec.hidden_dims) == [128] and dec.dropout == 0.4
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adam", 1e-3, 1e-5)
    assert cfg.trainer.gradient_clip_val == 5.0
    assert cfg.callbacks.early_stopping is not None
