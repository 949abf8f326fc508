"""Re-compute a trained run's metrics: ``python -m nlpkit.evaluate run_dir=DIR [data.test_path=FILE ...]``.

Without data overrides, the run's own validation and test splits are scored. ``data.test_path=FILE``
(and/or ``data.val_path=FILE``) scores exactly those files instead — the training file is not read —
with the format settings given beside them (``data.format=tsv data.label_field=label`` …); a file
whose extension names a format of the task (``.tsv``, ``.csv``, ``.jsonl``) is read in that format
unless ``data.format`` says otherwise. The run's tokenizer and label vocabulary are reused. On a
multi-task run, ``task.tasks.NAME.data.*`` overrides one sub-task's data (``data.*`` applies to every
sub-task). Writes ``DIR/eval/metrics.json`` (or ``output=``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict

from nlpkit.api import load_run_config
from nlpkit.cli import parse_args, run_cli
from nlpkit.config import validate
from nlpkit.errors import ConfigError
from nlpkit.registry import get_task, import_modules
from nlpkit.training.run_dir import absolute_paths
from nlpkit.utils.io import write_json

log = logging.getLogger("nlpkit.evaluate")


#: a data section's keys that locate the split files
SPLIT_KEYS = ("train_path", "val_path", "test_path")
#: the file extension a format's files have, where it is not the format's own name
FORMAT_SUFFIX = {"builtin": "jsonl", "label_text": "txt"}
#: a data section's keys that say how a file is read; they follow ``data.format`` when it changes
READING_KEYS = ("text_field", "label_field", "has_header", "columns", "delimiter", "label_delimiter")


def evaluation_data(data: DictConfig, overrides: dict, schema: type | None) -> DictConfig:
    """The run's ``data`` section with ``overrides`` applied for scoring other files.

    When a split file is given, only the given split files are read (the others are set to null: the
    training file's format no longer matters). A file in another format takes that format's reading
    defaults, then the overrides; its extension picks the format when ``data.format`` is not given.
    """
    overrides = dict(overrides)
    given = [key for key in SPLIT_KEYS if overrides.get(key)]
    if not given:
        return OmegaConf.merge(data, overrides)
    formats = _format_choices(schema)
    if "format" not in overrides:
        suffixes = {Path(str(overrides[key])).suffix.lstrip(".").lower() for key in given}
        current = str(data.get("format"))
        suffix = suffixes.pop() if len(suffixes) == 1 else ""
        if suffix in formats and suffix != FORMAT_SUFFIX.get(current, current):
            log.info(
                "data: reading %s as format=%s (its extension)",
                ", ".join(overrides[k] for k in given),
                suffix,
            )
            overrides["format"] = suffix
    data = data.copy()
    with open_dict(data):
        for key in SPLIT_KEYS:
            data[key] = None
        if overrides.get("format", data.get("format")) != data.get("format") and schema is not None:
            defaults = schema()
            for key in READING_KEYS:
                if key in data and hasattr(defaults, key):
                    data[key] = getattr(defaults, key)
    return OmegaConf.merge(data, overrides)


def _format_choices(schema: type | None) -> tuple[str, ...]:
    if schema is None or not dataclasses.is_dataclass(schema):
        return ()
    spec = {f.name: f for f in dataclasses.fields(schema)}.get("format")
    return tuple(spec.metadata.get("choices", ())) if spec is not None else ()


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
    task = get_task(str(cfg.task.name))
    if data_overrides:
        cfg.data = evaluation_data(cfg.data, data_overrides, task.data_schema)
    for name, overrides in (subtask_data_overrides or {}).items():
        if cfg.task.get("tasks") is None:  # not a run made of sub-tasks
            raise ConfigError(
                f"task.tasks.{name}.data.* applies to multi-task runs; {run_dir} is task={cfg.task.name}: "
                "use data.* instead"
            )
        if name not in cfg.task.tasks:
            raise ConfigError(
                f"{run_dir} has no sub-task {name!r}; its sub-tasks are: {', '.join(cfg.task.tasks)}"
            )
        subtask = cfg.task.tasks[name]
        subtask.data = evaluation_data(
            subtask.get("data") or OmegaConf.create({}), overrides, get_task(str(subtask.task)).data_schema
        )
    cfg = absolute_paths(validate(cfg))
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
        {"run_dir": "???", "output": None, "imports": [], "data": {}, "task": {}},
        allow_prefixes=("data", "task"),
        doc=__doc__ or "",
    )
    import_modules(args.imports)
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
