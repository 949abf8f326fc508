"""A run directory holds one run, and every reader answers with that run's model.

Through the user's entry points with the default config (callbacks, loggers, model preset): the
refusal to train into another run, ``overwrite=true``, the writer lock, the checkpoint ``run.json``
names, the resumed run's CSV history, stale export files, relative paths from any working directory,
and a tampered ``config.yaml`` that must not run code.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import nlpkit
from nlpkit.errors import ArtifactError, ConfigError
from nlpkit.registry import resolve_target
from tests.conftest import ROOT, data_overrides, run_module

# The user's default config, one epoch; the data is the first lines of the built-in splits (fast).
ONE_EPOCH = ["model=cnn", "trainer.max_epochs=1"]


def train_cli(run_dir: Path, small_data: Path, *overrides: str, check: bool = True):
    return run_module(
        "nlpkit.train",
        [*ONE_EPOCH, *data_overrides(small_data, "data"), f"hydra.run.dir={run_dir}", *overrides],
        check=check,
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, small_data) -> Path:
    """One finished CLI run (default callbacks and loggers)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    train_cli(run_dir, small_data)
    return run_dir


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    return copy


def test_training_into_a_finished_run_is_refused_and_overwrite_really_replaces_it(
    trained_run, tmp_path, small_data
):
    run_dir = copy_run(trained_run, tmp_path)  # a finished CLI run (model=cnn)
    before = {name: (run_dir / name).read_bytes() for name in ("metrics.json", "config.yaml", "run.json")}
    hydra_before = (run_dir / ".hydra" / "overrides.yaml").read_text()

    refused = train_cli(run_dir, small_data, check=False)
    said = refused.stdout + refused.stderr
    assert refused.returncode == 1
    assert "already holds a run" in said and "overwrite=true" in said and "Traceback" not in said
    assert {name: (run_dir / name).read_bytes() for name in before} == before, "nothing was touched"
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == hydra_before, "Hydra's record too"

    train_cli(run_dir, small_data, "model=bilstm", "overwrite=true")  # another architecture
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert "overwrite=true" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    trained = json.loads((run_dir / "metrics.json").read_text())
    out = tmp_path / "eval.json"
    run_module("nlpkit.evaluate", [f"run_dir={run_dir}", f"output={out}"])
    evaluated = json.loads(out.read_text())
    for key in ("val/accuracy", "test/accuracy", "test/macro_f1"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key


def test_a_second_writer_gets_a_clear_error_while_the_first_holds_the_run(tmp_path, small_data):
    run_dir = tmp_path / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from nlpkit.training.run_dir "
         "import run_lock\nwith run_lock(Path(sys.argv[1]), 'test holder'):\n print('held', flush=True); "
         "time.sleep(300)", str(run_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = train_cli(run_dir, small_data, check=False)
        assert refused.returncode == 1
        said = refused.stdout + refused.stderr
        assert f"is in use by another process (pid {holder.pid}, test holder)" in said
        assert not (run_dir / "config.yaml").exists() and not (run_dir / "checkpoints").exists()
        assert not (run_dir / ".hydra").exists(), "a refused job leaves no record"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    train_cli(run_dir, small_data)  # a killed holder leaves no stale lock
    assert (run_dir / "run.json").is_file()


def test_readers_load_the_checkpoint_run_json_names_and_nothing_else(trained_run, tmp_path):
    run_dir = copy_run(trained_run, tmp_path)
    record = json.loads((run_dir / "run.json").read_text())
    assert (
        record["best_checkpoint"] == "checkpoints/best.ckpt" and len(record["best_checkpoint_sha256"]) == 64
    )
    nlpkit.load(run_dir).predict(["play some jazz"])

    shutil.copy(run_dir / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "best.ckpt")
    with pytest.raises(ArtifactError, match="not the checkpoint this run recorded"):
        nlpkit.load(run_dir)
    proc = run_module("nlpkit.evaluate", [f"run_dir={run_dir}"], check=False)
    assert proc.returncode == 1 and "not the checkpoint this run recorded" in proc.stderr

    (run_dir / "run.json").write_text(json.dumps({**record, "best_checkpoint": "../../etc/passwd"}))
    with pytest.raises(ArtifactError, match="outside the run directory"):
        nlpkit.load(run_dir)
    (run_dir / "run.json").unlink()
    with pytest.raises(ArtifactError, match="did not finish"):
        nlpkit.load(run_dir)


def test_resume_keeps_the_csv_log_of_the_interrupted_part_and_drops_orphan_temporaries(
    trained_run, tmp_path, small_data
):
    run_dir = copy_run(trained_run, tmp_path)  # a finished one-epoch CLI run
    first_log = (run_dir / "csv" / "metrics.csv").read_text()
    orphan = run_dir / "checkpoints" / ".last.ckpt.x1y2.tmp"  # a checkpoint write killed before its rename
    orphan.write_bytes(b"partial")
    train_cli(run_dir, small_data, "resume=auto", "trainer.max_epochs=2")
    assert (run_dir / "csv" / "metrics.csv").read_text() == first_log, "the first part's history stays"
    resumed_log = (run_dir / "csv" / "resume-1" / "metrics.csv").read_text().splitlines()
    assert resumed_log[0].startswith("epoch,")
    epochs = {row.split(",")[0] for row in resumed_log[1:]}
    assert len(resumed_log) > 1 and "0" not in epochs, "the resumed part starts at epoch 1"
    assert not orphan.exists()
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 2


def test_the_readme_notebook_snippet_works_from_any_directory_with_relative_paths(tmp_path):
    """``nlpkit.train(nlpkit.compose([...]))`` with the default relative ``paths.*`` (the built-in data is
    generated under the working directory), then ``evaluate`` from another directory."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    snippet = (
        "import json, nlpkit; r = nlpkit.train(nlpkit.compose(['model=cnn', 'trainer.max_epochs=1'])); "
        "print(json.dumps({'run_dir': r['run_dir'], 'best': r['best_checkpoint']}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", snippet], cwd=work, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    run_dir = Path(result["run_dir"])
    assert run_dir.is_absolute() and run_dir.is_relative_to(work / "outputs" / "runs")
    assert (run_dir / "run.json").is_file() and Path(result["best"]).is_file()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    for key in ("train_path", "val_path", "test_path"):
        assert Path(config["data"][key]).is_absolute(), key
    assert all(Path(value).is_absolute() for key, value in config["paths"].items() if value)

    relative = os.path.relpath(run_dir, elsewhere)
    run_module("nlpkit.evaluate", [f"run_dir={relative}"], cwd=elsewhere)
    assert (run_dir / "eval" / "metrics.json").is_file()
    assert not (elsewhere / ".cache").exists(), "the run's own data was read, not regenerated here"


def test_evaluate_another_file_needs_only_that_files_format(trained_run, small_data, tmp_path):
    """A built-in (JSONL) run scored on a TSV file: the extension picks the reader, the training file
    is not read again, and the reading settings are the TSV's."""
    rows = [json.loads(line) for line in (small_data / "test.jsonl").read_text().splitlines()[:60]]
    other = tmp_path / "other.tsv"
    other.write_text("text\tlabel\n" + "".join(f"{r['text']}\t{r['intent']}\n" for r in rows))
    out = tmp_path / "eval.json"
    run_module("nlpkit.evaluate", [f"run_dir={trained_run}", f"data.test_path={other}", f"output={out}"])
    metrics = json.loads(out.read_text())
    assert "test/accuracy" in metrics and "val/accuracy" not in metrics, "only the given file is scored"
    same = tmp_path / "same.json"  # the same examples in the run's own format give the same accuracy
    subset = tmp_path / "subset.jsonl"
    subset.write_text(
        "".join(line + "\n" for line in (small_data / "test.jsonl").read_text().splitlines()[:60])
    )
    run_module("nlpkit.evaluate", [f"run_dir={trained_run}", f"data.test_path={subset}", f"output={same}"])
    assert metrics["test/accuracy"] == pytest.approx(json.loads(same.read_text())["test/accuracy"])


MALICIOUS_TARGETS = [
    "os.system",
    "builtins.exec",
    "torch.load",
    "pathlib.Path.write_text",
    "nlpkit.modules.embedding.word.torch.load",  # an nlpkit module's import, not an nlpkit component
    "pytorch_lightning.callbacks.os.system",
]


@pytest.mark.parametrize("target", MALICIOUS_TARGETS)
def test_only_nlpkit_components_and_lightning_callbacks_are_built_from_a_config(target):
    with pytest.raises(ConfigError, match="refused"):
        resolve_target(target, "model.representation")


def test_allowed_targets_resolve():
    from pytorch_lightning.callbacks import EarlyStopping

    from nlpkit.modules.representation import DocNNRepresentation

    assert resolve_target("nlpkit.modules.representation.DocNNRepresentation") is DocNNRepresentation
    assert resolve_target("pytorch_lightning.callbacks.EarlyStopping") is EarlyStopping


@pytest.mark.parametrize("entry", ["load", "evaluate", "predict", "export"])
def test_a_tampered_run_config_cannot_run_code(entry, trained_run, tmp_path):
    run_dir = copy_run(trained_run, tmp_path)
    marker = tmp_path / "pwned"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["model"]["representation"] = {"_target_": "os.system", "_args_": [f"touch {marker}"]}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    if entry == "load":
        with pytest.raises(ConfigError, match="refused"):
            nlpkit.load(run_dir)
    else:
        (tmp_path / "in.txt").write_text("play some jazz\n")
        args = {"evaluate": [], "predict": [f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'o.jsonl'}"],
                "export": []}[entry]  # fmt: skip
        proc = run_module(f"nlpkit.{entry}", [f"run_dir={run_dir}", *args], check=False)
        assert proc.returncode == 1, proc.stdout[-2000:]
        assert "model.representation._target_='os.system' refused" in proc.stderr
        assert "Traceback" not in proc.stderr
    time.sleep(0.1)
    assert not marker.exists()


def test_register_component_allows_a_notebook_component():
    from torch import nn

    @nlpkit.register_component
    class NotebookEncoder(nn.Module):
        pass

    assert resolve_target(f"{__name__}.{NotebookEncoder.__qualname__}") is NotebookEncoder


def test_a_callback_slot_takes_only_lightning_callbacks():
    from tests.kill_switch import KillAfterStep

    assert resolve_target("tests.kill_switch.KillAfterStep", "callbacks.kill") is KillAfterStep
    with pytest.raises(ConfigError, match="refused: not a Callback class"):
        resolve_target("os.system", "callbacks.kill")
    with pytest.raises(ConfigError, match="refused: not an nlpkit component"):
        resolve_target("tests.kill_switch.KillAfterStep", "model.representation")


def test_every_pytorch_predictor_refuses_blank_texts_like_the_onnx_model(trained_run):
    from nlpkit.data.inputs import EmptyTextError

    predictor = nlpkit.load(trained_run)
    for blank in ["", "   ", "\t\u3000"]:
        with pytest.raises(EmptyTextError, match=r"texts\[1\] is empty or only whitespace"):
            predictor.predict(["play some jazz", blank])
    with pytest.raises(TypeError, match="list of texts"):
        predictor.predict("play some jazz")
