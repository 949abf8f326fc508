"""The command lines as a user types them: train (single and multirun sweeps), evaluate, predict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import run_module

TINY_CLI = [
    "debug=fast",
    "logger=csv",
    "model.embedding.embed_dim=16",
    "model.decoder.hidden_dims=[8]",
]
ONE_BATCH = ["trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]
BILSTM_TINY = ["model.representation.hidden_dim=16", "model.representation.attention_dim=8"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, builtin_dir) -> Path:
    """One real ``python -m nlpkit.train`` run; ``hydra.run.dir`` decides where it goes."""
    run_dir = tmp_path_factory.mktemp("cli") / "my_run"
    # every val/test batch, so that evaluate (which scores whole splits) must give the same numbers
    run_module("nlpkit.train", ["task=doc_cls", "model=bilstm", *TINY_CLI, *BILSTM_TINY,
                                "trainer.limit_val_batches=1.0", "trainer.limit_test_batches=1.0",
                                f"paths.builtin_dir={builtin_dir}", f"hydra.run.dir={run_dir}"])  # fmt: skip
    return run_dir


def test_train_cli_honours_hydra_run_dir(cli_run):
    metrics = json.loads((cli_run / "metrics.json").read_text())
    assert {"test/accuracy", "test/macro_f1", "val/accuracy", "val/macro_f1", "train_seconds"} <= set(metrics)
    assert (cli_run / ".hydra" / "config.yaml").is_file() and (cli_run / "config.yaml").is_file()


def test_evaluate_cli_recomputes_the_same_metrics(cli_run, tmp_path):
    out = tmp_path / "eval.json"
    run_module("nlpkit.evaluate", [f"run_dir={cli_run}", f"output={out}"])
    trained = json.loads((cli_run / "metrics.json").read_text())
    evaluated = json.loads(out.read_text())
    for key in ("val/accuracy", "test/accuracy", "test/macro_f1"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key


def test_evaluate_cli_on_other_data(cli_run, builtin_dir, tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text(
        "".join(line + "\n" for line in (builtin_dir / "valid.jsonl").read_text().splitlines()[:40])
    )
    out = tmp_path / "eval.json"
    run_module("nlpkit.evaluate", [f"run_dir={cli_run}", f"data.test_path={other}", f"output={out}"])
    assert 0.0 <= json.loads(out.read_text())["test/accuracy"] <= 1.0


def test_predict_cli_plain_text_and_jsonl(cli_run, tmp_path):
    """One output line per input line; both files start with the U+FEFF that Windows editors save,
    which is not part of the first text."""
    texts = ["wake me up at 7 am", "set an alarm", "play some jazz"]
    (tmp_path / "in.txt").write_text("\ufeff" + "\n".join(texts) + "\n", encoding="utf-8")
    run_module(
        "nlpkit.predict",
        [f"run_dir={cli_run}", f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'out.jsonl'}"],
    )
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == texts, "one output line per input line, in order"
    labels = json.loads((cli_run / "labels.json").read_text())["labels"]
    assert all(r["label"] in labels and set(r["scores"]) == set(labels) for r in rows)
    jsonl = "".join(json.dumps({"text": t}) + "\n" for t in texts[1:])
    (tmp_path / "in.jsonl").write_text("\ufeff" + jsonl, encoding="utf-8")
    run_module(
        "nlpkit.predict",
        [f"run_dir={cli_run}", f"input={tmp_path / 'in.jsonl'}", f"output={tmp_path / 'o2.jsonl'}"],
    )
    jsonl_rows = [json.loads(line) for line in (tmp_path / "o2.jsonl").read_text().splitlines()]
    assert [r["text"] for r in jsonl_rows] == texts[1:]
    assert [r["label"] for r in jsonl_rows] == [r["label"] for r in rows[1:]]


@pytest.mark.parametrize("name", ["in.txt", "in.jsonl"])
def test_predict_cli_refuses_a_blank_text_naming_its_line(cli_run, tmp_path, name):
    """Every backend refuses blank texts (training does too); the CLI names the file and line."""
    texts = ["wake me up at 7 am", "   ", "play some jazz"]
    lines = texts if name == "in.txt" else [json.dumps({"text": t}) for t in texts]
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    proc = run_module(
        "nlpkit.predict", [f"run_dir={cli_run}", f"input={tmp_path / name}", f"output={out}"], check=False
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{tmp_path / name}:2: the text is empty or only whitespace" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run_dir=/no/such/run", "input=x", "output=y"], "input file not found"),
        (["run_dir=/no/such/run"], "missing required argument(s): input=..., output=..."),
        (["rundir=x"], "unknown argument 'rundir'"),
    ],
)
def test_predict_cli_errors_are_one_clear_line(args, message):
    proc = run_module("nlpkit.predict", args, check=False)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_multirun_sweep_one_dir_per_job_and_a_failing_job_does_not_abort(tmp_path, builtin_dir):
    """Two models x two batch sizes, one dir per job; data.batch_size=0 fails validation, the other
    jobs still run and the sweep exits 0."""
    sweep_dir = tmp_path / "sweep"
    run_module("nlpkit.train", ["-m", "model=bilstm,cnn", "data.batch_size=0,16", *TINY_CLI,
                                *ONE_BATCH, f"paths.builtin_dir={builtin_dir}", f"hydra.sweep.dir={sweep_dir}"])  # fmt: skip
    jobs = {job.name: job for job in sweep_dir.iterdir() if job.is_dir()}
    assert sorted(jobs) == ["0", "1", "2", "3"]  # Hydra's job order: model outer, batch size inner
    for name in ("0", "2"):
        assert (jobs[name] / "error.txt").is_file() and not (jobs[name] / "metrics.json").exists()
    for name, model in (("1", "bilstm"), ("3", "cnn")):
        assert (jobs[name] / "metrics.json").is_file()
        assert f"model={model}" in (jobs[name] / ".hydra" / "overrides.yaml").read_text()


def test_optuna_sweep_optimises_the_returned_metric(tmp_path, builtin_dir):
    sweep_dir = tmp_path / "optuna"
    proc = run_module("nlpkit.train", ["hparams_search=optuna", "hydra.sweeper.n_trials=2", *TINY_CLI, *BILSTM_TINY,
                                       f"paths.builtin_dir={builtin_dir}", f"hydra.sweep.dir={sweep_dir}"])  # fmt: skip
    results = sweep_dir / "optimization_results.yaml"
    assert results.is_file(), proc.stdout[-2000:]
    text = results.read_text()
    assert "best_value" in text and "optim.lr" in text
    values = [
        json.loads((job / "metrics.json").read_text())["val/accuracy"]
        for job in sweep_dir.iterdir()
        if job.is_dir()
    ]
    assert len(values) == 2 and all(not math.isnan(v) for v in values)
