"""Typed config schemas and validation: a misspelled key or bad value fails before training starts.

Sections without ``_target_`` (``task``, ``data``, ``optim``, ``paths``) have dataclass schemas
here; nodes with ``_target_`` (model components, trainer, callbacks, loggers) are checked against
the signature of the class they build. Every error names the valid keys or choices.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nlpkit.data.constraints import above, at_least, between, choices
from nlpkit.errors import ConfigError
from nlpkit.modules.kinds import check_component_kinds
from nlpkit.registry import REMOVED_TASKS, get_task, resolve_target
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
    warmup_ratio: linear warmup over this share of all training steps (the larger of the two wins).
    encoder_lr: learning rate of the pretrained components' parameters (a transformer embedding, the
        modules ``transfer`` copied); ``lr`` is then the rest's (the head's). null: ``lr`` for everything.
    """

    name: str = field(default="adam", metadata=choices(*OPTIMIZERS))
    lr: float = field(default=1e-3, metadata=above(0))
    weight_decay: float = field(default=0.0, metadata=at_least(0))
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = field(default=1e-8, metadata=above(0))
    momentum: float = field(default=0.0, metadata=at_least(0))
    scheduler: str = field(default="none", metadata=choices(*SCHEDULERS))
    warmup_steps: int = field(default=0, metadata=at_least(0))
    warmup_ratio: float = field(default=0.0, metadata=between(0, 1, high_open=True))
    encoder_lr: float | None = field(default=None, metadata=above(0))


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
    "optimized_metric", "run_test", "hydra", "tags", "num_threads", "resume", "overwrite", "imports",
    "transfer",
}  # fmt: skip
RESERVED = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
# Passed by the framework at build time, so never required from the config.
INJECTED = {
    "vocab_size", "padding_idx", "unk_idx", "vocab", "input_dim", "output_dim", "num_labels", "allowed_transitions",
}  # fmt: skip


def _unknown_key(key: str, where: str, valid: list[str], target: str = "") -> ConfigError:
    """``unknown key data.trian_path; did you mean 'train_path'? valid keys: ...``"""
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    owner = f" for {target}" if target else ""
    name = f"{where}.{key}" if where else key
    return ConfigError(f"unknown key {name}{owner}{hint} valid keys: {', '.join(sorted(valid))}")


def _chosen_schema(spec: dataclasses.Field, value: Any, where: str) -> type | None:
    """The nested schema of a field whose schema depends on its value (``metadata={"schema_of": f}``,
    e.g. ``data.featurizer``: the options of the featurizer its ``name`` picks), or ``None``."""
    choose = spec.metadata.get("schema_of")
    if choose is None:
        return None
    if value is not None and not isinstance(value, DictConfig):
        raise ConfigError(f"{where} must be a mapping (e.g. {where}.name=...), got {value!r}")
    return choose(value)


def check_schema(node: DictConfig, schema: type, where: str) -> None:
    """Every key of ``node`` is a field of the dataclass ``schema`` and every choice valid (nested too)."""
    valid = {f.name: f for f in dataclasses.fields(schema)}
    for key in node:
        if key not in valid:
            raise _unknown_key(key, where, list(valid))
        spec = valid[key]
        if OmegaConf.is_missing(node, key):
            continue  # reported by validate's missing-value check
        value = node[key]
        chosen = _chosen_schema(spec, value, f"{where}.{key}")
        if chosen is not None:
            if value is not None:
                check_schema(value, chosen, f"{where}.{key}")
            continue
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
            check_schema(value, spec.default_factory, f"{where}.{key}")


def _check_values(node: DictConfig, schema: type, where: str) -> None:
    """Apply each field's ``check`` (``nlpkit.data.constraints``) to the typed values of ``node``."""
    for spec in dataclasses.fields(schema):
        if spec.name not in node or OmegaConf.is_missing(node, spec.name):
            continue
        value = node[spec.name]
        check = spec.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{where}.{spec.name}={value!r} {problem}")
        if isinstance(value, DictConfig) and dataclasses.is_dataclass(
            spec.default_factory if spec.default_factory is not dataclasses.MISSING else None
        ):
            _check_values(value, spec.default_factory, f"{where}.{spec.name}")


def typed_section(node: DictConfig, schema: type, where: str) -> DictConfig:
    """``node`` checked against ``schema`` (keys, choices, types, limits), converted to its types."""
    check_schema(node, schema, where)
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), node)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        reason = str(getattr(err, "msg", err)).splitlines()[0]
        raise ConfigError(
            f"{where}.{key}: {reason}" if key else f"invalid value in {where}: {reason}"
        ) from err
    _check_values(typed, schema, where)
    for spec in dataclasses.fields(schema):  # value-chosen nested schemas: typed and filled in too
        chosen = _chosen_schema(spec, node.get(spec.name), f"{where}.{spec.name}")
        if chosen is not None:
            typed[spec.name] = typed_section(
                node.get(spec.name) or OmegaConf.create({}), chosen, f"{where}.{spec.name}"
            )
    return typed


def check_target_keys(node: Any, where: str) -> None:
    """Every ``_target_`` in ``node`` is allowed (``nlpkit.registry``) and every key beside it is a
    parameter of the class it names (nested nodes too)."""
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
                check_target_keys(node[key], f"{where}.{key}" if where else str(key))
    elif isinstance(node, ListConfig):
        for index, item in enumerate(node):
            check_target_keys(item, f"{where}[{index}]")


#: Trainer arguments nlpkit passes itself (``nlpkit.train``), so never taken from ``trainer``
TRAINER_INJECTED = ("self", "callbacks", "logger", "plugins", "default_root_dir")
#: Trainer counts and their lowest value; ``-1`` where Lightning reads it as "no limit" / "all"
TRAINER_MINIMUMS: dict[str, tuple[int, bool]] = {
    "max_epochs": (0, True), "min_epochs": (0, False), "max_steps": (0, True), "min_steps": (0, False),
    "num_sanity_val_steps": (0, True), "log_every_n_steps": (0, False), "accumulate_grad_batches": (1, False),
    "check_val_every_n_epoch": (1, False), "num_nodes": (1, False), "reload_dataloaders_every_n_epochs": (0, False),
    "fast_dev_run": (0, False),
}  # fmt: skip
#: Trainer arguments that are a batch count (int >= 0) or a fraction of the batches (float in [0, 1])
TRAINER_FRACTIONS = ("limit_train_batches", "limit_val_batches", "limit_test_batches",
                     "limit_predict_batches", "overfit_batches")  # fmt: skip
DEVICES_STRING = re.compile(r"auto|-1|\d+(\s*,\s*\d+)*\s*,?")


def _matches(value: Any, annotation: Any) -> bool:
    """Whether a plain config value (from YAML or the command line) fits a type annotation."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence):
        return isinstance(value, list) and all(_matches(item, args[0]) for item in value) if args else True
    if origin is dict:
        return isinstance(value, dict) and all(_matches(item, args[1]) for item in value.values())
    return isinstance(annotation, type) and isinstance(value, annotation)


def _describe(annotation: Any) -> str:
    """``int or null``, ``one of 64, 32, ...``: what a config value for ``annotation`` may be."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        literals = [
            v for arg in args if typing.get_origin(arg) is typing.Literal for v in typing.get_args(arg)
        ]
        shown = [_describe(arg) for arg in args if typing.get_origin(arg) is not typing.Literal]
        if literals:
            shown.insert(0, _describe(typing.Literal[tuple(literals)]))
        return " or ".join(dict.fromkeys(s for s in shown if s))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence):
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if annotation in (bool, int, float, str):
        return {bool: "true or false", int: "an int", float: "a number", str: "a string"}[annotation]
    return ""  # a class (Accelerator, timedelta): not something a config value can be


def _trainer_value_problem(key: str, value: Any) -> str | None:
    """What is wrong with a well-typed Trainer value, or ``None``."""
    if key in TRAINER_MINIMUMS and isinstance(value, int) and not isinstance(value, bool):
        minimum, unlimited = TRAINER_MINIMUMS[key]
        if value < minimum and not (unlimited and value == -1):
            return f"must be >= {minimum}" + (" (or -1: no limit)" if unlimited else "")
    is_count = isinstance(value, int) and not isinstance(value, bool)
    if key in TRAINER_FRACTIONS and (
        (is_count and value < 0) or (isinstance(value, float) and not 0 <= value <= 1)
    ):
        return "must be a batch count (int >= 0) or a fraction of the batches in [0, 1]"
    if key == "val_check_interval" and (
        (is_count and value < 1) or (isinstance(value, float) and not 0 < value <= 1)
    ):
        return "must be a batch count (int >= 1) or a fraction of an epoch in (0, 1]"
    if key == "gradient_clip_val" and isinstance(value, (int, float)) and value < 0:
        return "must be >= 0 (or null: no clipping)"
    if key == "devices":
        if isinstance(value, int) and value < 1 and value != -1:
            return "must be a device count >= 1, -1 (all), a list of device indices or 'auto'"
        if isinstance(value, list) and (not value or any(index < 0 for index in value)):
            return "a list of devices must hold device indices >= 0"
        if isinstance(value, str) and not DEVICES_STRING.fullmatch(value.strip()):
            return "must be a device count >= 1, -1 (all), a list of device indices or 'auto'"
    return None


def _check_trainer_keys(node: DictConfig) -> None:
    import pytorch_lightning as pl

    params = [n for n in inspect.signature(pl.Trainer).parameters if n not in TRAINER_INJECTED]
    for key in node:
        if key not in params:
            raise _unknown_key(str(key), "trainer", params, "pytorch_lightning.Trainer")


def _check_trainer(node: DictConfig) -> None:
    """``trainer`` is passed to ``pytorch_lightning.Trainer`` as keyword arguments: each key must be one
    of its parameters, each value of the parameter's annotated type, each count in range."""
    import pytorch_lightning as pl

    _check_trainer_keys(node)
    hints = typing.get_type_hints(pl.Trainer.__init__)
    for key, value in OmegaConf.to_container(node, resolve=True).items():
        annotation = hints.get(key, Any)
        if not _matches(value, annotation):
            raise ConfigError(
                f"trainer.{key}={value!r} must be {_describe(annotation)} (pytorch_lightning.Trainer's {key})"
            )
        problem = _trainer_value_problem(key, value)
        if problem:
            raise ConfigError(f"trainer.{key}={value!r} {problem}")


def validate(cfg: DictConfig) -> DictConfig:
    """Check ``cfg`` and return a typed copy (values converted to the schema types).

    Raises ``ConfigError`` naming the valid keys or choices.
    """
    for key in cfg:
        if key not in TOP_LEVEL_KEYS:
            raise _unknown_key(str(key), "", sorted(TOP_LEVEL_KEYS - {"hydra"}))
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
    task_cls = get_task(str(cfg.task.name))
    schemas = dict(SCHEMAS, data=task_cls.data_schema, task=task_cls.task_schema or TaskConfig)
    for key, schema in schemas.items():
        typed[key] = typed_section(cfg[key], schema, key)
    check_component_kinds(cfg.model, task_cls.model_kinds(cfg.model), "model", task_cls.name, CONF_DIR)
    check_target_keys(cfg, "")
    _check_trainer(cfg.trainer)
    resume = cfg.get("resume")
    if resume is not None and not isinstance(resume, str):
        raise ConfigError(
            f"resume={resume!r}: use null (fresh start), auto (newest checkpoint) or a .ckpt path"
        )
    imports = cfg.get("imports")
    if imports is not None and (
        not isinstance(imports, ListConfig) or not all(isinstance(name, str) for name in imports)
    ):
        raise ConfigError(
            f"imports must be a list of module names, e.g. imports=[mylab.encoders]; got {imports!r}"
        )
    overwrite = cfg.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise ConfigError(
            f"overwrite={overwrite!r}: use true (delete the run directory's files first) or false"
        )
    _check_transfer(cfg.get("transfer"))
    typed = task_cls.check_config(typed)
    OmegaConf.set_struct(typed, with_flag)
    return typed


def _check_transfer(transfer: Any) -> None:
    """``transfer: {run_dir: null | DIR, modules: {this model's module: the source's}, required}``;
    ``required`` (set by a config built on pre-training) refuses a missing ``run_dir``."""
    if transfer is None:
        return
    if not isinstance(transfer, DictConfig) or set(transfer) - {"run_dir", "modules", "required"}:
        raise ConfigError(
            f"transfer must be {{run_dir: DIR, modules: {{embedding: embedding}}}}; got {transfer!r}"
        )
    run_dir, modules = transfer.get("run_dir"), transfer.get("modules")
    if run_dir is None and transfer.get("required"):
        raise ConfigError(
            "this config starts from a pre-trained run (transfer.required=true) but transfer.run_dir is "
            "not set: pass transfer.run_dir=RUN_DIR (e.g. experiment=sst2_lm_pretrain's run)"
        )
    if run_dir is not None and not isinstance(run_dir, str):
        raise ConfigError(f"transfer.run_dir={run_dir!r}: a run directory, or null for no transfer")
    if run_dir is not None and not (
        isinstance(modules, DictConfig)
        and len(modules) > 0
        and all(isinstance(k, str) and isinstance(v, str) for k, v in modules.items())
    ):
        raise ConfigError(
            f"transfer.modules={modules!r}: map this model's modules to the source's, e.g. "
            "{embedding: embedding, representation: representation}"
        )


def _check_keys(cfg: DictConfig) -> None:
    """The key checks of ``validate`` alone (no values resolved, converted or required)."""
    for key in cfg:
        if key not in TOP_LEVEL_KEYS:
            raise _unknown_key(str(key), "", sorted(TOP_LEVEL_KEYS - {"hydra"}))
    task_cls = get_task(str(cfg.task.name))
    schemas = dict(SCHEMAS, data=task_cls.data_schema, task=task_cls.task_schema or TaskConfig)
    for key, schema in schemas.items():
        if isinstance(cfg.get(key), DictConfig):
            check_schema(cfg[key], schema, key)
    check_target_keys(cfg, "")
    if isinstance(cfg.get("trainer"), DictConfig):
        _check_trainer_keys(cfg.trainer)


#: config-group choices nlpkit no longer has -> what replaces them (``task=intent`` ...)
REMOVED_CHOICES: dict[tuple[str, str], str] = {
    **{("task", name): replacement for name, replacement in REMOVED_TASKS.items()},
    ("data", "builtin_intent"): "data=builtin featurizer=word (with task=doc_cls)",
}


def _override_key(line: str) -> str:
    """``data.trian_path`` of the override ``data.trian_path=x`` (``+``/``++``/``~`` prefixes dropped)."""
    return line.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def explain_compose_error(
    err: Exception, overrides: Sequence[str], compose: Callable[[list[str]], DictConfig]
) -> ConfigError | None:
    """nlpkit's one-line message for Hydra's composition errors that the README promises, or ``None``.

    ``model=bilstmm`` (a config group has no such choice) names the choices; ``data.trian_path=x`` (an
    override of a key the config does not have; Hydra says "not in struct") is composed again with the
    key added (``compose``: overrides -> config) and checked like a key misspelled in a config file:
    ``unknown key data.trian_path; did you mean 'train_path'? valid keys: ...``. A valid key the
    composed config just does not set (``trainer.limit_train_batches``) gets the ``+key=value`` hint.
    """
    from hydra.errors import ConfigCompositionException, MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and err.options is not None:
        group, _, choice = str(err.missing_cfg_file).rpartition("/")
        if not group:
            return None
        if (group, choice) in REMOVED_CHOICES:
            return ConfigError(f"{group}={choice} was removed; use {REMOVED_CHOICES[group, choice]}")
        close = difflib.get_close_matches(choice, list(err.options), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        return ConfigError(f"unknown choice {group}={choice}{hint} choose one of {', '.join(err.options)}")
    lines = list(overrides)
    first: tuple[str, str] | None = None  # (key, override) of the first key the config lacks
    for _ in lines:
        cause = err.__cause__
        if not isinstance(err, ConfigCompositionException) or not isinstance(
            cause, (ConfigAttributeError, ConfigKeyError)
        ):
            return None
        missing = str(cause.full_key or "")
        index = next(
            (i for i, line in enumerate(lines) if f"{_override_key(line)}.".startswith(f"{missing}.")), None
        )
        if index is None or lines[index].startswith(("+", "~")):
            return None
        first = first or (missing, lines[index])
        lines[index] = "+" + lines[index]
        try:
            cfg = compose(lines)
            break
        except Exception as again:  # a second such key: add it too, report the first
            err = again
    else:
        return None
    key, override = first
    try:
        _check_keys(cfg)
        validate(cfg.copy())
    except ConfigError as problem:
        if key.rpartition(".")[2] in str(problem):
            return problem
    return ConfigError(
        f"{key} is not set by the composed config; to add it, use +{override} "
        "(the + adds a key the config files do not have)"
    )
