"""Every bad value is one ``error: ...`` line naming the key, before nlpkit writes anything; what the
readers and metrics used to get wrong on real files (long fields, a byte-order mark, macro F1 > 1).

The commands run with the user's default configuration (no ``debug=fast``): the defects these tests
guard against hid behind test-only settings before.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import nlpkit
from nlpkit.errors import ConfigError
from tests.conftest import ROOT, run_module, write_lines

#: what Hydra itself writes into ``hydra.run.dir`` before nlpkit runs: its record of the invocation
HYDRA_OWN = {".hydra", "train.log"}

# (overrides, the start of the one error line). Each is a value the user can type; none may get past
# validation to write config.yaml, tokenizer.json or labels.json, or to end in a traceback.
BAD_VALUES = [
    (["trainer.max_epochs=abc"], "error: trainer.max_epochs='abc' must be an int or null"),
    (["trainer.max_epochs=-5"], "error: trainer.max_epochs=-5 must be >= 0 (or -1: no limit)"),
    (["trainer.devices=abc"], "error: trainer.devices='abc' must be a device count >= 1"),
    (["trainer.accumulate_grad_batches=0"], "error: trainer.accumulate_grad_batches=0 must be >= 1"),
    (["+trainer.limit_train_batches=1.5"], "error: trainer.limit_train_batches=1.5 must be a batch count"),
    (["trainer.enable_progress_bar=3"], "error: trainer.enable_progress_bar=3 must be true or false"),
    (["data.batch_size=0"], "error: data.batch_size=0 must be >= 1"),
    (["data.batch_size=-4"], "error: data.batch_size=-4 must be >= 1"),
    (["data.batch_size=many"], "error: data.batch_size: Value 'many' of type 'str' could not be converted"),
    (["data.featurizer.max_length=0"], "error: data.featurizer.max_length=0 must be >= 1"),
    (["optim.lr=0"], "error: optim.lr=0.0 must be > 0"),
    (
        ["data=csv", "data.train_path=TRAIN", "data.delimiter=ab"],
        "error: data.delimiter='ab' must be a single",
    ),
    (["task=tagging", "data.unk_replace_prob=2"], "error: data.unk_replace_prob=2.0 must be in [0, 1]"),
    (["data.trian_path=x"], "error: unknown key data.trian_path; did you mean 'train_path'? valid keys: "),
    (["model=bilstmm"], "error: unknown choice model=bilstmm; did you mean 'bilstm'? choose one of "),
]
# The CLI cases (a Python start-up each): one per kind of check; the notebook test runs every case.
CLI_CASES = [0, 6, 11, 13]


@pytest.fixture(scope="module")
def tiny_csv(tmp_path_factory) -> Path:
    return write_lines(tmp_path_factory.mktemp("csv") / "train.csv", ["text,label", "hello there,greet"])


def _overrides(overrides: list[str], tiny_csv: Path, builtin_dir: Path) -> list[str]:
    return [o.replace("TRAIN", str(tiny_csv)) for o in overrides] + [f"paths.builtin_dir={builtin_dir}"]


@pytest.mark.parametrize(("overrides", "expected"), [BAD_VALUES[i] for i in CLI_CASES])
def test_cli_bad_value_is_one_line_before_any_artifact(overrides, expected, tmp_path, tiny_csv, builtin_dir):
    run_dir = tmp_path / "run"
    args = [*_overrides(overrides, tiny_csv, builtin_dir), f"hydra.run.dir={run_dir}"]
    proc = run_module("nlpkit.train", args, check=False, timeout=180)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr
    written = {p.name for p in run_dir.iterdir()} if run_dir.exists() else set()
    assert written <= HYDRA_OWN, f"nlpkit wrote {sorted(written - HYDRA_OWN)} before the error"


@pytest.mark.parametrize(("overrides", "expected"), BAD_VALUES)
def test_notebook_bad_value_is_a_config_error_before_any_artifact(overrides, expected, tmp_path, tiny_csv,
                                                                  builtin_dir):  # fmt: skip
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        nlpkit.train(nlpkit.compose(_overrides(overrides, tiny_csv, builtin_dir), output_dir=str(run_dir)))
    message = str(err.value)
    assert f"error: {message}".startswith(expected) and "\n" not in message
    assert not run_dir.exists() or not any(run_dir.iterdir())


HELP_SCRIPT = """
import runpy, sys
for module in sys.argv[1:]:
    sys.argv = [module, "--help"]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
    print(f"@@ {module} exit {code}", flush=True)
"""


def test_every_cli_answers_help(tmp_path):
    """``python -m MODULE --help`` for every CLI (in one interpreter: ``runpy`` is what ``-m`` runs)."""
    modules = ["nlpkit.train", "nlpkit.evaluate", "nlpkit.predict", "nlpkit.export", "nlpkit.serve"]
    proc = subprocess.run([sys.executable, "-c", HELP_SCRIPT, *modules], capture_output=True, text=True,
                          cwd=ROOT, timeout=180)  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    sections = proc.stdout.split("@@ ")
    exits = dict(line.split(" exit ") for line in (s.splitlines()[0] for s in sections[1:]))
    assert exits == dict.fromkeys(modules, "0"), proc.stdout[-3000:] + proc.stderr[-3000:]
    texts = dict(zip(modules, sections))  # the help a module printed precedes its "@@" line
    assert "Configuration groups" in texts["nlpkit.train"]  # Hydra's own --help
    for module in ("nlpkit.evaluate", "nlpkit.predict", "nlpkit.export"):
        assert "run_dir=" in texts[module], texts[module]
    assert "run_dir=...  (required)" in texts["nlpkit.predict"] and "max_batch_size=" in texts["nlpkit.serve"]


# ---------------------------------------------------------------- files as users have them
INTENTS = ["alarm", "weather", "music", "timer", "news", "call", "email", "maps", "recipe", "joke"]
WORDS = ["please", "now", "today", "quickly", "for me", "again", "soon", "thanks", "later", "right away"]
LONG_FIELD = 200_000  # characters: over csv's default limit of 131,072 per field


def _rows(offset: int) -> list[str]:
    """Ten intents, each said with its own keyword: separable, so a model reaches 100 % accuracy."""
    return [f"{intent} {WORDS[(i + offset) % len(WORDS)]}\t{intent}" for intent in INTENTS for i in range(6)]


@pytest.fixture(scope="module")
def user_tsv_run(tmp_path_factory, builtin_dir) -> Path:
    """``python -m nlpkit.train data=tsv`` with the default model and trainer on files as a Windows
    editor saves them (a byte-order mark) with one document over csv's field size limit."""
    data = tmp_path_factory.mktemp("tsv")
    long_text = "alarm " + "x" * LONG_FIELD
    header = "\ufefftext\tlabel"
    write_lines(data / "train.tsv", [header, *_rows(0), *_rows(3), f"{long_text}\talarm"])
    write_lines(data / "dev.tsv", [header, *_rows(1)])
    write_lines(data / "test.tsv", [header, *_rows(2)])
    run_dir = data / "run"
    run_module("nlpkit.train", ["data=tsv", f"data.train_path={data / 'train.tsv'}",
                                f"data.val_path={data / 'dev.tsv'}", f"data.test_path={data / 'test.tsv'}",
                                f"paths.builtin_dir={builtin_dir}", f"hydra.run.dir={run_dir}"],
               timeout=600)  # fmt: skip
    return run_dir


def test_a_field_over_the_csv_limit_is_read(user_tsv_run):
    metrics = json.loads((user_tsv_run / "metrics.json").read_text())
    assert metrics["data/skipped_rows"] == 0


def test_a_byte_order_mark_is_not_part_of_the_header(user_tsv_run):
    config = (user_tsv_run / "config.yaml").read_text()
    assert "text_field: text" in config
    vocab = json.loads((user_tsv_run / "tokenizer.json").read_text())["model"]["vocab"]
    assert not any("\ufeff" in token for token in vocab)


def test_macro_f1_of_a_perfect_model_is_exactly_one(user_tsv_run):
    """torchmetrics' float32 macro average of ten perfect classes was 1.0000001192."""
    metrics = json.loads((user_tsv_run / "metrics.json").read_text())
    assert metrics["test/accuracy"] == 1.0, "the run must be perfect for this check to mean anything"
    assert metrics["test/macro_f1"] == 1.0 and metrics["val/macro_f1"] <= 1.0
