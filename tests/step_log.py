"""A Lightning callback that records which sub-task each training step of a multi-task run trained on,
with a fingerprint of the batch, and the size of each test batch, one JSONL file per DDP rank
(``steps.rank<R>.jsonl`` in the run dir).

Injected from the command line as ``+callbacks.step_log._target_=tests.step_log.StepLog``: the DDP test
reads both ranks' files to check that every process ran the same sub-task at every step, each on
batches of its own, and that the processes' test batches add up to each test split once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytorch_lightning as pl


class StepLog(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        tokens = batch["batch"]["tokens"]  # [B, T]
        self._write(
            trainer,
            {
                "stage": "train",
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                "task": batch["task"],
                "batch": hashlib.sha1(
                    tokens.numpy().tobytes() + str(tuple(tokens.shape)).encode()
                ).hexdigest(),
            },
        )

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._write(trainer, {"stage": "test", "task": batch["task"], "size": len(batch["batch"]["lengths"])})

    @staticmethod
    def _write(trainer, record: dict) -> None:
        path = Path(trainer.default_root_dir) / f"steps.rank{trainer.global_rank}.jsonl"
        with path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def read_steps(run_dir: Path, rank: int, stage: str) -> list[dict]:
    """Rank ``rank``'s records of ``stage`` (``train`` or ``test``), in order."""
    path = Path(run_dir) / f"steps.rank{rank}.jsonl"
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["stage"] == stage]
