"""Re-compute a trained run's metrics: ``python -m nlpkit.evaluate run_dir=DIR [data.test_path=FILE ...]``.

``data.*`` overrides the run's own data config (e.g. another test file in the same format); the
run's tokenizer and label vocabulary are reused. On a multi-task run, ``task.tasks.NAME.data.*``
overrides one sub-task's data (``data.*`` applies to every sub-task). Writes ``DIR/eval/metrics.json``
(or ``output=``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import OmegaConf

from nlpkit.api import load_run_config
from nlpkit.cli import parse_args, run_cli
from nlpkit.config import validate
from nlpkit.errors import ConfigError
from nlpkit.tasks import get_task
from nlpkit.utils.io import write_json

log = logging.getLogger("nlpkit.evaluate")


def evaluate(
    run_dir: str | Path,
    data_overrides: dict | None = None,
    output: str | Path | None = None,
    subtask_data_overrides: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """Evaluate the run's best checkpoint on its val and test splits; return and write flat metrics.

    ``subtask_data_overrides`` (multi-task runs): ``{sub-task name: data overrides}``.
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if data_overrides:
        cfg.data = OmegaConf.merge(cfg.data, data_overrides)
    for name, overrides in (subtask_data_overrides or {}).items():
        if str(cfg.task.name) != "multitask":
            raise ConfigError(
                f"task.tasks.{name}.data.* applies to multi-task runs; {run_dir} is task={cfg.task.name}: "
                "use data.* instead"
            )
        if name not in cfg.task.tasks:
            raise ConfigError(
                f"{run_dir} has no sub-task {name!r}; its sub-tasks are: {', '.join(cfg.task.tasks)}"
            )
        cfg.task.tasks[name].data = OmegaConf.merge(cfg.task.tasks[name].get("data") or {}, overrides)
    cfg = validate(cfg)
    task = get_task(cfg.task.name)
    datamodule, module = task.restore(cfg, run_dir)
    datamodule.load()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    metrics: dict[str, Any] = {}
    for split, run in (("val", trainer.validate), ("test", trainer.test)):
        if split in datamodule.splits:
            for result in run(module, datamodule=datamodule, verbose=False):
                metrics.update({k: float(v) for k, v in result.items()})
    metrics["data/skipped_rows"] = int(datamodule.policy.total_skipped)
    output = Path(output) if output else run_dir / "eval" / "metrics.json"
    write_json(output, metrics)
    log.info(
        "wrote %s: %s", output, "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if "/" in k)
    )
    return metrics


def main(argv: Sequence[str]) -> None:
    args = parse_args(
        argv,
        {"run_dir": "???", "output": None, "data": {}, "task": {}},
        allow_prefixes=("data", "task"),
        doc=__doc__ or "",
    )
    task = OmegaConf.to_container(args.task)
    subtasks = task.pop("tasks", {}) or {}
    bad = [f"task.{key}" for key in task] + [
        f"task.tasks.{name}.{key}"
        for name, section in subtasks.items()
        for key in (section or {})
        if key != "data"
    ]
    if bad or any(not isinstance(section, dict) for section in subtasks.values()):
        raise ConfigError(
            f"unknown argument {(bad or ['task.tasks'])[0]!r}: only a sub-task's data can be overridden, "
            "as task.tasks.NAME.data.KEY=VALUE"
        )
    evaluate(
        args.run_dir,
        OmegaConf.to_container(args.data) or None,
        args.output,
        {name: section["data"] for name, section in subtasks.items()} or None,
    )


if __name__ == "__main__":
    run_cli(main)
