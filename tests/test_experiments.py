"""Every ``conf/experiment/*.yaml`` trains for real, on the real data, for a few optimizer steps.

The experiments are found by globbing ``conf/experiment/``, so a new one is covered without editing
this file. Each runs with its own config; the only overrides are ones that shrink the run (see
``SHRINK``) and the directories. Most run in-process through the notebook API (``nlpkit.compose`` +
``nlpkit.train``: torch and Lightning are imported once); ``CLI_EXPERIMENT`` runs as a user runs it,
``python -m nlpkit.train experiment=...`` in a subprocess from the project root, with the data
directory left to the config's default (``${paths.root_dir}/../shared/data``).

The data: ``tests.conftest.SHARED_DATA`` is ``$NLPKIT_DATA_DIR``, else ``shared/data`` beside the
checkout (found from this file's path, so any worktree or clone whose parent holds ``shared/`` works,
from any working directory). Without it the training tests are skipped, naming the directory.

Whole files are read, the biggest included (CoNLL-2003's 219,552 lines, SST-2's 6,920 sentences, SNIPS'
13,084): no reader has an option to read less (``data.streaming`` is doc_cls-only and still reads every
line), and reading them fits the budget: ~5 s of CPU for CoNLL-2003, ~2.5 s for SNIPS, ~1 s for SST-2.
Measured (OMP_NUM_THREADS=1, the 2 cores shared with other jobs): the file costs ~61 s of CPU (user +
sys, the CLI subprocess included), i.e. ~60 s on one free core. About 12 s of it is building the CRF
output of the ATIS/SNIPS models (120 and 72 tags): ``hydra.utils.instantiate`` turns the injected
``allowed_transitions`` (~15,000 booleans for ATIS) into an OmegaConf node, ~4 s for one CRF that
builds in milliseconds when constructed directly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import nlpkit
from tests.conftest import ROOT, SHARED_DATA, run_module

EXPERIMENTS = sorted(path.stem for path in (ROOT / "conf" / "experiment").glob("*.yaml"))
CLI_EXPERIMENT = "sst2"  # the README's first real-data command; the cheapest one to start twice

# Overrides that shrink a run and nothing else:
# - debug=fast: one epoch of 3 training batches, 2 validation and 2 test batches, no progress bar;
# - data.eval_batch_size=64: the experiments evaluate in batches of 512, so 2 batches would score
#   every ATIS/SNIPS validation and test sentence three times (validation during fit, validation of
#   the selected checkpoint, test), a CRF forward pass over 120 tags each: most of the run's time.
#   With 64, 2 batches score 128 sentences; the model and its training are the experiment's own.
#   For atis_snips the top-level data section applies to both sub-tasks.
SHRINK = ["debug=fast", "data.eval_batch_size=64"]
TRAIN_BATCHES = 3  # debug=fast's trainer.limit_train_batches: the optimizer steps each run takes

# What each task writes to metrics.json for its test split (nlpkit/tasks/*: the keys they log).
TEST_METRICS = {
    "doc_cls": ["accuracy", "macro_f1"],
    "intent_slot": ["intent_accuracy", "slot_f1", "frame_accuracy"],
    "tagging": ["span_f1", "span_precision", "span_recall", "token_accuracy"],
    "pair": ["accuracy", "f1"],  # a score (data.label_type=score): PAIR_SCORE_METRICS
    "ranking": ["map", "mrr"],
    "lm": ["perplexity"],
    "semantic_parse": ["exact_match", "bracket_f1", "intent_accuracy", "well_formed"],
}
PAIR_SCORE_METRICS = ["pearson", "spearman"]
CORRELATIONS = {"pearson", "spearman"}  # in [-1, 1]; every other promised metric is in [0, 1]

needs_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"the benchmark data directory {SHARED_DATA} is absent (set NLPKIT_DATA_DIR to train the experiments)",
)


def _promised_test_metrics(config: dict) -> list[str]:
    """The ``test/...`` keys the run's task promises; a multi-task run's are per sub-task
    (``test/<name>/<metric>``) plus ``test/mean_target``."""
    task = config["task"]
    if task["name"] == "multitask":
        from nlpkit.registry import TASKS  # the tasks registered themselves when nlpkit was imported

        # no mean_target where a sub-task's target is lower-is-better (a perplexity)
        averaged = all(
            sub["metric"] not in TASKS[sub["task"]].minimized_metrics for sub in task["tasks"].values()
        )
        keys = ["test/mean_target"] if averaged else []
        for name, sub in task["tasks"].items():
            assert sub["task"] in TEST_METRICS, (
                f"sub-task {name}: add task={sub['task']}'s metrics to TEST_METRICS"
            )
            keys += [f"test/{name}/{metric}" for metric in TEST_METRICS[sub["task"]]]
        return keys
    assert task["name"] in TEST_METRICS, f"add task={task['name']}'s test metrics to TEST_METRICS"
    if task["name"] == "pair" and config["data"]["label_type"] == "score":
        return [f"test/{metric}" for metric in PAIR_SCORE_METRICS]
    return [f"test/{metric}" for metric in TEST_METRICS[task["name"]]]


def _data_paths(config: dict) -> list[str]:
    """Every train/val/test path of the run's data section(s)."""
    sections = [config["data"]]
    if config["task"]["name"] == "multitask":
        sections = [sub["data"] for sub in config["task"]["tasks"].values()]
    return [section[f"{split}_path"] for section in sections for split in ("train", "val", "test")]


def _check_run(run_dir: Path, experiment: str) -> dict[str, float]:
    """The run wrote its checkpoint, config.yaml and metrics.json, with the promised test metrics as
    finite numbers; returns the metrics."""
    for name in ("config.yaml", "metrics.json", "run.json"):
        assert (run_dir / name).is_file(), f"{experiment}: {name} not written"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["best_checkpoint"], f"{experiment}: no checkpoint was selected"
    assert (run_dir / record["best_checkpoint"]).is_file(), record["best_checkpoint"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()

    config = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    assert config["experiment_name"] == experiment
    # The experiment's own data, from the shared directory (resolved in config.yaml).
    for path in _data_paths(config):
        assert Path(path).resolve().is_relative_to(SHARED_DATA.resolve()), path

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_steps"] == TRAIN_BATCHES, metrics["global_steps"]
    missing = [key for key in _promised_test_metrics(config) if key not in metrics]
    assert not missing, f"{experiment}: metrics.json lacks {missing}; it has {sorted(metrics)}"
    for key in _promised_test_metrics(config):
        value = metrics[key]
        assert isinstance(value, (int, float)) and math.isfinite(value), f"{key}={value!r}"
        if key.endswith("perplexity"):  # >= 1; at most the vocabulary size after 3 steps (~33k)
            assert 1.0 <= value <= 1e5, f"{key}={value!r}"
        else:
            low = -1.0 if key.rsplit("/", 1)[-1] in CORRELATIONS else 0.0
            assert low <= value <= 1.0, f"{key}={value!r}"
    assert all(math.isfinite(v) for k, v in metrics.items() if k.endswith("loss")), metrics
    return metrics


def test_the_experiments_are_found():
    assert len(EXPERIMENTS) >= 6, EXPERIMENTS
    assert CLI_EXPERIMENT in EXPERIMENTS, f"CLI_EXPERIMENT={CLI_EXPERIMENT!r} is not in conf/experiment/"


# An experiment that starts from another's run (transfer.run_dir): the pre-training one, trained once.
PRETRAINED_BY = {"sst2_glue_lm": "sst2_lm_pretrain"}


def _train_experiment(experiment: str, run_dir: Path, *overrides: str) -> None:
    cfg = nlpkit.compose(
        [
            f"experiment={experiment}",
            *SHRINK,
            f"paths.data_dir={SHARED_DATA}",
            f"paths.log_dir={run_dir.parent}",
            *overrides,
        ],  # fmt: skip
        output_dir=str(run_dir),
    )
    result = nlpkit.train(cfg)
    assert Path(result["run_dir"]) == run_dir
    assert _check_run(run_dir, experiment) == pytest.approx(result["metrics"])


@pytest.fixture(scope="module")
def pretrained_runs(tmp_path_factory) -> dict[str, Path]:
    """Each pre-training experiment's run, trained (and checked) on first use."""
    runs: dict[str, Path] = {}

    def get(experiment: str) -> Path:
        if experiment not in runs:
            runs[experiment] = tmp_path_factory.mktemp(experiment) / "run"
            _train_experiment(experiment, runs[experiment])
        return runs[experiment]

    return get


@needs_data
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_trains(experiment, tmp_path, pretrained_runs):
    run_dir = tmp_path / "run"
    if experiment == CLI_EXPERIMENT:
        # As a user runs it: from the project root, paths.data_dir left to its default.
        run_module("nlpkit.train", [f"experiment={experiment}", *SHRINK, f"hydra.run.dir={run_dir}"])
        _check_run(run_dir, experiment)
        return
    if experiment in PRETRAINED_BY.values():
        pretrained_runs(experiment)
        return
    extra = (
        [f"transfer.run_dir={pretrained_runs(PRETRAINED_BY[experiment])}"]
        if experiment in PRETRAINED_BY
        else []
    )
    _train_experiment(experiment, run_dir, *extra)
    if extra:  # the run really started from the pre-trained one
        record = json.loads((run_dir / "transfer.json").read_text())
        rows = record["vocab_rows"]["embedding.embedding.weight"]
        assert rows["found"] > 0.9 * rows["words"], rows  # the LM read the task's own training text
