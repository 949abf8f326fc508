"""Typed config schemas and validation: a misspelled key or bad value fails before training starts.

Sections without ``_target_`` (``task``, ``data``, ``optim``, ``paths``) have dataclass schemas
here; nodes with ``_target_`` (model components, trainer, callbacks, loggers) are checked against
the signature of the class they build. Every error names the valid keys or choices.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nlpkit.data.config import choices
from nlpkit.errors import ConfigError
from nlpkit.registry import resolve_target
from nlpkit.training.optim import OPTIMIZERS, SCHEDULERS

#: the project's config tree (``conf/`` beside the package)
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@dataclass
class TaskConfig:
    """Which task runs, and which validation metric selects the best checkpoint.

    name: task registry key (``doc_cls``).
    monitor: metric logged by the task that early stopping and checkpointing follow.
    monitor_mode: ``max`` or ``min``.
    """

    name: str = "doc_cls"
    monitor: str = "val/accuracy"
    monitor_mode: str = field(default="max", metadata=choices("max", "min"))


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule.

    name: ``adam``, ``adamw``, ``sgd`` or ``adadelta``.
    scheduler: ``none``, ``cosine`` or ``linear`` decay over all steps, or ``plateau`` on the monitor.
    warmup_steps: linear warmup before the schedule (0 = none).
    """

    name: str = field(default="adam", metadata=choices(*OPTIMIZERS))
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    momentum: float = 0.0
    scheduler: str = field(default="none", metadata=choices(*SCHEDULERS))
    warmup_steps: int = 0


@dataclass
class PathsConfig:
    """root_dir: project root; data_dir: external datasets (env ``NLPKIT_DATA_DIR``);
    builtin_dir: where the generated dataset is written; log_dir: parent of run directories;
    output_dir: this run's directory (set by Hydra, or by ``nlpkit.compose``)."""

    root_dir: str = "."
    data_dir: str = "."
    builtin_dir: str = ".cache/nlpkit/builtin"
    log_dir: str = "outputs"
    output_dir: str | None = None


SCHEMAS: dict[str, type] = {"task": TaskConfig, "optim": OptimConfig, "paths": PathsConfig}  # data: per task
TOP_LEVEL_KEYS = {
    "task", "data", "model", "optim", "trainer", "callbacks", "logger", "paths", "seed", "experiment_name",
    "optimized_metric", "run_test", "hydra", "tags", "num_threads", "resume", "overwrite",
}  # fmt: skip
RESERVED = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
# Passed by the framework at build time, so never required from the config.
INJECTED = {"vocab_size", "padding_idx", "unk_idx", "vocab", "input_dim", "output_dim", "num_labels"}


def _unknown_key(key: str, where: str, valid: list[str], target: str = "") -> ConfigError:
    """``unknown key data.trian_path; did you mean 'train_path'? valid keys: ...``"""
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    owner = f" for {target}" if target else ""
    return ConfigError(f"unknown key {where}.{key}{owner}{hint} valid keys: {', '.join(sorted(valid))}")


def _check_schema(node: DictConfig, schema: type, where: str) -> None:
    valid = {f.name: f for f in dataclasses.fields(schema)}
    for key in node:
        if key not in valid:
            raise _unknown_key(key, where, list(valid))
        spec = valid[key]
        value = node[key]
        allowed = spec.metadata.get("choices")
        if allowed and value not in allowed:
            raise ConfigError(
                f"{where}.{key}={value!r} is not a valid choice; choose one of {', '.join(allowed)}"
            )
        if dataclasses.is_dataclass(
            spec.default_factory if spec.default_factory is not dataclasses.MISSING else None
        ):
            if not isinstance(value, DictConfig):
                raise ConfigError(
                    f"{where}.{key} must be a mapping with keys {[f.name for f in dataclasses.fields(spec.default_factory)]}"
                )
            _check_schema(value, spec.default_factory, f"{where}.{key}")


def _check_targets(node: Any, where: str) -> None:
    if isinstance(node, DictConfig):
        target = node.get("_target_") if "_target_" in node else None
        if target:
            obj = resolve_target(str(target), where)
            signature = inspect.signature(obj)
            params = signature.parameters
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                valid = [n for n in params if n not in ("self",)]
                for key in node:
                    if key not in RESERVED and key not in params:
                        raise _unknown_key(key, where, [n for n in valid if n not in INJECTED], str(target))
        for key in node:
            if key != "hydra":
                _check_targets(node[key], f"{where}.{key}" if where else str(key))
    elif isinstance(node, ListConfig):
        for index, item in enumerate(node):
            _check_targets(item, f"{where}[{index}]")


def _check_trainer(node: DictConfig) -> None:
    """``trainer`` is passed to ``pytorch_lightning.Trainer`` as keyword arguments."""
    import pytorch_lightning as pl

    params = [
        n
        for n in inspect.signature(pl.Trainer).parameters
        if n not in ("self", "callbacks", "logger", "plugins")
    ]
    for key in node:
        if key not in params:
            raise _unknown_key(str(key), "trainer", params, "pytorch_lightning.Trainer")


def validate(cfg: DictConfig) -> DictConfig:
    """Check ``cfg`` and return a typed copy (values converted to the schema types).

    Raises ``ConfigError`` naming the valid keys or choices.
    """
    for key in cfg:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                f"unknown top-level key {key!r}; valid keys: {', '.join(sorted(TOP_LEVEL_KEYS))}"
            )
    for key in ("task", "data", "model", "optim", "trainer", "paths"):
        if key not in cfg:
            raise ConfigError(f"config has no {key!r} section (is conf/train.yaml's defaults list intact?)")
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot resolve config interpolation: {err}") from err
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra"))
    if missing:
        raise ConfigError(
            f"missing required value(s): {', '.join(missing)} (set them, e.g. {missing[0]}=...)"
        )
    typed = cfg.copy()
    with_flag = OmegaConf.is_struct(typed)
    OmegaConf.set_struct(typed, False)
    from nlpkit.tasks import get_task

    task_cls = get_task(str(cfg.task.name))
    schemas = dict(SCHEMAS, data=task_cls.data_schema, task=task_cls.task_schema or TaskConfig)
    for key, schema in schemas.items():
        _check_schema(cfg[key], schema, key)
        try:
            merged = OmegaConf.merge(OmegaConf.structured(schema), cfg[key])
        except OmegaConfBaseException as err:
            raise ConfigError(f"invalid value in {key}: {err.msg if hasattr(err, 'msg') else err}") from err
        typed[key] = merged
    for key in ("embedding", "representation", "decoder", "output"):
        if key not in cfg.model or "_target_" not in cfg.model[key]:
            raise ConfigError(
                f"model.{key} must be a component config with a _target_ (pick one with {key}=...)"
            )
    _check_targets(cfg, "")
    _check_trainer(cfg.trainer)
    resume = cfg.get("resume")
    if resume is not None and not isinstance(resume, str):
        raise ConfigError(
            f"resume={resume!r}: use null (fresh start), auto (newest checkpoint) or a .ckpt path"
        )
    overwrite = cfg.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise ConfigError(
            f"overwrite={overwrite!r}: use true (delete the run directory's files first) or false"
        )
    typed = task_cls.check_config(typed)
    OmegaConf.set_struct(typed, with_flag)
    return typed
