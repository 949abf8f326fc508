"""DDP through the CLI with the user's default callbacks (progress bar, early stopping, checkpoints,
LR monitor): two CPU processes (gloo) must finish, and a SIGTERM must end every process in seconds.

Each run starts in its own session, so the test can see (and, after a hang, kill) the launching
process and the rank it started: a hang fails the test instead of blocking it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nlpkit.evaluate import evaluate
from nlpkit.training.distributed import SIGTERM_GRACE_SECONDS
from tests.conftest import JOINT_TINY, ROOT, TINY
from tests.step_log import read_steps

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process groups from /proc")

#: generous for a loaded 2-core machine (a run takes ~30 s there); a deadlocked run never ends
RUN_TIMEOUT_S = 240
#: the README promises a SIGTERM'd DDP run is gone within a few seconds
SIGTERM_DEADLINE_S = 10

DEFAULT_CALLBACKS = {"model_checkpoint", "early_stopping", "rich_progress_bar", "learning_rate_monitor"}
DOC_TINY = ["model=bilstm", "model.embedding.embed_dim=16", "model.decoder.hidden_dims=[8]", *TINY["bilstm"]]
# A few batches per split (`++`: these Trainer keys are not in conf/trainer), nothing else shrunk.
FEW_BATCHES = [
    "++trainer.limit_train_batches=4",
    "++trainer.limit_val_batches=2",
    "++trainer.limit_test_batches=2",
]


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended while we looked
        state, _ppid, group = stat.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def wait_until_gone(pgid: int, seconds: float) -> list[int]:
    """Poll until process group ``pgid`` has no live member or ``seconds`` pass; the members left."""
    deadline = time.monotonic() + seconds
    while (members := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return members


def start_training(args: list[str], builtin_dir: Path, log_path: Path) -> subprocess.Popen:
    """``python -m nlpkit.train trainer=ddp ...`` as a user starts it, in a session of its own."""
    env = dict(os.environ, HYDRA_FULL_ERROR="0", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "nlpkit.train", "trainer=ddp", f"paths.builtin_dir={builtin_dir}",
               "num_threads=1", *args]  # fmt: skip
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def end_group(proc: subprocess.Popen) -> None:
    """SIGKILL whatever is left of ``proc``'s process group (after a hang or a failed assertion)."""
    for pid in group_members(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def training(builtin_dir, tmp_path):
    """Starts DDP trainings (``training(args)`` -> (process, run dir, log)) and kills what outlives a test."""
    started: list[subprocess.Popen] = []

    def _start(args: list[str]) -> tuple[subprocess.Popen, Path, Path]:
        run_dir = tmp_path / f"run{len(started)}"
        log_path = tmp_path / f"run{len(started)}.log"
        proc = start_training([*args, f"hydra.run.dir={run_dir}"], builtin_dir, log_path)
        started.append(proc)
        return proc, run_dir, log_path

    yield _start
    for proc in started:
        end_group(proc)


def finish(proc: subprocess.Popen, run_dir: Path, log_path: Path) -> dict:
    """Wait for a DDP training (a hang fails the test); check it ran with the default callbacks on two
    processes, left no process behind, and return its ``metrics.json``."""
    try:
        returncode = proc.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        end_group(proc)
        pytest.fail(f"DDP training hung (no end after {RUN_TIMEOUT_S} s):\n{log_path.read_text()[-3000:]}")
    assert returncode == 0, log_path.read_text()[-3000:]
    assert not wait_until_gone(proc.pid, 30)  # the rank it started ends too (it may exit a little later)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert {name for name, node in config["callbacks"].items() if node} >= DEFAULT_CALLBACKS
    assert config["trainer"]["enable_progress_bar"] is True
    csv_header = next((run_dir / "csv").rglob("metrics.csv")).read_text().splitlines()[0]
    assert "lr-Adam" in csv_header.split(",")  # the LR monitor logged
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["world_size"], metrics["epochs"]) == (2, 2)
    assert metrics["global_steps"] == 8  # 2 epochs x 4 batches: each process took 4 of each epoch's
    return metrics


# Two epochs: before the fix the processes deadlocked at the end of the first. Full val/test splits,
# so the reduced figures can be compared with one process scoring the same splits.
TWO_EPOCHS = ["trainer.max_epochs=2", "++trainer.limit_train_batches=4", "++trainer.limit_val_batches=null",
              "++trainer.limit_test_batches=null"]  # fmt: skip


def test_ddp_doc_cls_with_default_callbacks_reports_metrics_over_all_the_data(training, tmp_path):
    """Before the fix rank 0's progress bar reduced the epoch loss while rank 1 gathered the metrics at
    the end of epoch 1, and both waited forever. The reported val/test metrics, computed on two
    disjoint halves and reduced, must equal one process scoring the whole split with the same checkpoint."""
    proc, run_dir, log_path = training(["task=doc_cls", *DOC_TINY, *TWO_EPOCHS])
    trained = finish(proc, run_dir, log_path)
    single = evaluate(run_dir, output=tmp_path / "eval.json")  # batches of 256 + 144, vs 200 per process
    for key in ("val/accuracy", "val/macro_f1", "test/accuracy", "test/macro_f1"):
        assert trained[key] == single[key], key  # counts are summed across processes: exact
    for key in ("val/loss", "test/loss"):
        # the mean over all examples (sums and counts gathered), up to float summation order
        assert trained[key] == pytest.approx(single[key], abs=1e-5), key
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_ddp_intent_slot_with_default_callbacks_sums_span_and_frame_counts(training, tmp_path):
    """The word-level scorers (span F1 per type, tokens, intents, frames) are plain counts: summed over
    the two processes' disjoint shards they must give exactly one process's figures."""
    proc, run_dir, log_path = training(["task=intent_slot", *JOINT_TINY, *TWO_EPOCHS])
    trained = finish(proc, run_dir, log_path)
    single = evaluate(run_dir, output=tmp_path / "eval.json")
    for stage in ("val", "test"):
        for metric in ("slot_f1", "slot_precision", "token_accuracy", "intent_accuracy", "frame_accuracy"):
            key = f"{stage}/{metric}"
            assert trained[key] == single[key], key
        for loss in ("loss", "intent_loss", "slot_loss"):
            key = f"{stage}/{loss}"
            assert trained[key] == pytest.approx(single[key], abs=1e-4), key
    assert 0.0 < trained["test/slot_f1"] < 1.0  # a partly trained model: the counts matter
    report = json.loads((run_dir / "span_report.json").read_text())
    assert report["test"]["overall"]["f1"] == pytest.approx(trained["test/slot_f1"])


def test_ddp_multitask_runs_the_same_sub_task_on_every_process_and_reduces_each(training, tmp_path):
    """Intent-only + slot-only sub-tasks (multitask=builtin) in a seeded random order: every process must
    draw the same sub-task at every step (or the gradient all-reduce pairs different heads, and the
    epoch-end reductions of one sub-task meet another's), each on batches of its own; each sub-task's
    reduced val/test figures must equal one process scoring the whole splits with the same checkpoint."""
    proc, run_dir, log_path = training(
        ["task=multitask", *JOINT_TINY, *TWO_EPOCHS, "task.schedule=proportional",
         "+callbacks.step_log._target_=tests.step_log.StepLog"]
    )  # fmt: skip
    trained = finish(proc, run_dir, log_path)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["trainer"]["strategy"] == "ddp_find_unused_parameters_true"  # each step trains one head
    ranks = [read_steps(run_dir, rank, "train") for rank in (0, 1)]
    schedule = [[(s["epoch"], s["step"], s["task"]) for s in steps] for steps in ranks]
    assert len(schedule[0]) == 8 and schedule[0] == schedule[1]
    assert {task for _, _, task in schedule[0]} == {"intents", "slots"}
    assert all(a["batch"] != b["batch"] for a, b in zip(*ranks))  # each process its own share
    for task in ("intents", "slots"):  # each test sentence scored once, by one of the processes
        sizes = [
            sum(r["size"] for r in read_steps(run_dir, rank, "test") if r["task"] == task) for rank in (0, 1)
        ]
        assert sizes == [500, 500], task
    single = evaluate(run_dir, output=tmp_path / "eval.json")
    for stage in ("val", "test"):
        for metric in ("intents/accuracy", "slots/span_f1", "slots/span_precision",
                       "slots/token_accuracy", "mean_target"):  # fmt: skip
            key = f"{stage}/{metric}"
            assert trained[key] == single[key], key
        for loss in ("intents/loss", "slots/loss"):
            key = f"{stage}/{loss}"
            assert trained[key] == pytest.approx(single[key], abs=1e-4), key
    assert 0.0 < trained["test/slots/span_f1"] < 1.0  # a partly trained model: the counts matter


def test_sigterm_to_a_ddp_run_ends_every_process_within_seconds(training):
    """SIGTERM to the launching process, as a scheduler or `kill` sends it, mid-training (after at least
    one epoch end): both processes must be gone within seconds, with status 1 and one clear error line.
    Before the fix Lightning's handler ran a broadcast inside the signal handler, which paired with an
    unrelated collective of the other rank: the run never ended."""
    proc, run_dir, log_path = training(
        ["task=intent_slot", *JOINT_TINY, "trainer.max_epochs=1000", "callbacks.early_stopping.patience=1000",
         *FEW_BATCHES]
    )  # fmt: skip
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (run_dir / "checkpoints" / "last.ckpt").exists():  # written after each epoch's validation
        assert proc.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, (
            f"no epoch ended in {RUN_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}"
        )
        time.sleep(0.2)
    assert len(group_members(proc.pid)) == 2  # the launcher (rank 0) and rank 1, training

    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    alive = wait_until_gone(proc.pid, SIGTERM_DEADLINE_S)
    ended_after = time.monotonic() - sent
    assert not alive, f"{len(alive)} processes still alive {SIGTERM_DEADLINE_S} s after SIGTERM"
    assert proc.wait(timeout=5) == 1
    output = log_path.read_text()
    assert "training stopped by SIGTERM after" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert not (run_dir / "metrics.json").exists()
    print(f"all DDP processes ended {ended_after:.1f} s after SIGTERM")


def test_sigterm_ends_a_ddp_run_whose_processes_wait_in_a_collective(training, tmp_path):
    """Rank 1 stops making progress, so rank 0 waits for it inside a collective, where no Python signal
    handler can run: before the fix a SIGTERM then did nothing (only SIGKILL ended the run). Now every
    process is gone within the grace period, with a non-zero status and one error line."""
    marker = tmp_path / "stalled"
    proc, run_dir, log_path = training(
        ["task=intent_slot", *JOINT_TINY, "trainer.max_epochs=1000", *FEW_BATCHES,
         "+callbacks.stall._target_=tests.kill_switch.StallAfterStep", "+callbacks.stall.step=6",
         "+callbacks.stall.rank=1", f"+callbacks.stall.marker={marker}"]
    )  # fmt: skip
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not marker.exists():
        assert proc.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, f"rank 1 never stalled:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.2)
    time.sleep(1)  # rank 0 is now waiting for rank 1 in the next step's collective

    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    limit = SIGTERM_GRACE_SECONDS + SIGTERM_DEADLINE_S
    alive = wait_until_gone(proc.pid, limit)
    assert not alive, f"{len(alive)} processes still alive {limit} s after SIGTERM"
    assert proc.wait(timeout=5) != 0
    output = log_path.read_text()
    assert f"had not stopped {SIGTERM_GRACE_SECONDS:g} s later and was ended" in output, output[-3000:]
    assert not (run_dir / "metrics.json").exists()
    print(f"all DDP processes ended {time.monotonic() - sent:.1f} s after SIGTERM")
