"""Training at scale and through faults: resume after SIGKILL, DDP, bf16, launchers, streaming."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import nlpkit
from nlpkit.training.resume import newest_checkpoint
from conftest import FAST, TINY, run_module

TINY_MODEL = ["model.embedding.embed_dim=16", "model.decoder.hidden_dims=[8]", *TINY["bilstm"]]


def _metrics(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("train_seconds")  # wall time: the only value allowed to differ
    return metrics


# ----------------------------------------------------------------------------- resume after SIGKILL
def test_sigkilled_run_resumes_to_the_same_metrics_as_an_uninterrupted_run(tmp_path, builtin_dir):
    """Kill -9 twice, each time resuming with resume=auto: at step 8 (newest checkpoint: the periodic
    step.ckpt of step 6, mid-epoch 0), then the resumed run at step 11 (newest: last.ckpt of epoch 0's end).

    Tolerance: none, the metrics must be bit-identical. Everything that decides the computation is
    restored: weights, Adam moments, loop and early-stopping state, the epoch's batch order and position
    (seeded sampler + loader state), and the dropout RNG; on CPU with one thread each op is deterministic.
    """
    overrides = [f"paths.builtin_dir={builtin_dir}", *FAST, *TINY_MODEL, "num_threads=1", "optim.lr=0.01",
                 "trainer.max_epochs=3", "trainer.limit_train_batches=10", "trainer.limit_val_batches=3",
                 "callbacks.step_checkpoint.every_n_train_steps=3"]  # fmt: skip
    reference = nlpkit.train(nlpkit.compose(overrides, output_dir=str(tmp_path / "reference")))
    assert reference["metrics"]["global_steps"] == 30

    run_dir = tmp_path / "killed"
    kill = ["+callbacks.kill._target_=tests.kill_switch.KillAfterStep"]
    # step 8: newest checkpoint is step.ckpt of step 6 (mid-epoch 0); step 11: last.ckpt of epoch 0's end
    for kill_step, expected_source in ((8, "step.ckpt"), (11, "last.ckpt")):
        proc = run_module(
            "nlpkit.train",
            [
                *overrides,
                f"hydra.run.dir={run_dir}",
                "resume=auto",
                *kill,
                f"+callbacks.kill.step={kill_step}",
            ],
            check=False,
        )
        assert proc.returncode == -9, proc.stderr[-2000:]  # died by SIGKILL, no clean-up ran
        assert not (run_dir / "metrics.json").exists()
        newest = newest_checkpoint(run_dir)
        assert newest is not None and newest.name == expected_source

    resumed = nlpkit.train(nlpkit.compose([*overrides, "resume=auto"], output_dir=str(run_dir)))
    run = json.loads((run_dir / "run.json").read_text())
    assert Path(run["resumed_from"]).name == "last.ckpt"
    assert (
        resumed["metrics"]["val/accuracy"] > 0.2
    )  # it learned something (10 classes), so equality means something
    assert _metrics(run_dir) == _metrics(tmp_path / "reference")
