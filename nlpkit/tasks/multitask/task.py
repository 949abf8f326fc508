"""Multi-task glue (PyText §3.3; AllenNLP's ``MultiTaskModel``): a backbone of shared modules and one
head per sub-task, each sub-task with its own data module, featurizer, metrics and loss weight.

``python -m nlpkit.train task=multitask`` (built-in intent-only + slot-only sub-tasks),
``task=multitask multitask=builtin_doc model=bilstm`` (two document classifiers) or
``experiment=atis_snips``. A sub-task may be any registered task (``nlpkit.registry.TASKS``, a user's
own included) that declares the metrics it logs (``Task.metric_names``); it is built by its own task
class from a config of its own: ``task.tasks.<name>.data`` (that task's data schema), the top-level
``model`` with ``task.tasks.<name>.model`` merged over it (a component given with another
``_target_`` replaces the top-level one), and ``optim``. Then, for each name in ``task.shared``, the
first sub-task's module is put into every other sub-task's model (one ``nn.Module`` object, so its
parameters are trained by every task and stored once per checkpoint storage).

Sharing rules, checked with a ``ConfigError``: every sub-task must have the shared module, of the same
class and shapes; a shared ``embedding`` makes the run build one featurizer over every sub-task's
training data (``nlpkit.tasks.multitask.data.SharedFeaturizerData``: same featurizer kind, same
``data.featurizer`` settings); a shared head the task sized from a label set (``Task.head_labels``:
``output``/``decoder`` of ``doc_cls`` and ``tagging``, ``doc_output``/``doc_decoder`` of the intent
tasks) needs the same labels.

Under ``trainer=ddp`` each step trains one sub-task's head, so the other heads get no gradient: the DDP
strategy is made to find unused parameters (``ddp`` -> ``ddp_find_unused_parameters_true``).

The run directory holds ``tasks/<name>/`` with each sub-task's vocabularies (and reports);
``nlpkit.load(run_dir)`` gives a ``MultiTaskPredictor``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from nlpkit.config import check_schema, check_target_keys, typed_section
from nlpkit.data.config import choices
from nlpkit.data.constraints import above, at_least
from nlpkit.data.inputs import check_texts
from nlpkit.errors import ConfigError, ExportError
from nlpkit.modules.kinds import check_component_kinds
from nlpkit.registry import TASKS, get_task, register_task
from nlpkit.tasks.base import Task
from nlpkit.tasks.multitask.data import SCHEDULES, MultiTaskDataModule
from nlpkit.tasks.multitask.module import MEAN_TARGET, MultiTaskModule
from nlpkit.training.checkpoint import best_checkpoint, load_checkpoint, model_state

TASKS_DIR = "tasks"
#: DDP strategies, and the one that tolerates parameters without a gradient (the other sub-tasks' heads)
FIND_UNUSED = "_find_unused_parameters_true"


def subtask_class(kind: Any, where: str) -> type[Task]:
    """The registered task ``kind`` of a sub-task, if it can be one (``ConfigError`` naming ``where``)."""
    possible = sorted(name for name, cls in TASKS.items() if cls.can_be_subtask and cls.metric_names)
    try:
        task_cls = get_task(str(kind))
    except ConfigError as err:
        raise ConfigError(
            f"{where}={kind!r} is not a registered task; a sub-task is one of {', '.join(possible)} (or a "
            "task of your own package: @nlpkit.register_task, imports=[...])"
        ) from err
    if not task_cls.can_be_subtask:
        raise ConfigError(
            f"{where}={kind!r} cannot be a multi-task sub-task: a multi-task run does not nest; "
            f"choose one of {', '.join(possible)}"
        )
    if not task_cls.metric_names:
        raise ConfigError(
            f"{where}={kind!r} cannot be a multi-task sub-task: {task_cls.__qualname__} declares no "
            "metric_names (the validation metrics it logs, without val/), which its metric and monitor "
            "are checked against"
        )
    return task_cls


def _check_metric(metric: str, task_cls: type[Task], where: str) -> None:
    names = task_cls.metric_names
    if metric not in names:
        close = difflib.get_close_matches(metric, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"{where}={metric!r} is not a metric of task {task_cls.name}{hint or ';'} choose one of {', '.join(names)}"
        )


def merged_model(base: DictConfig, overrides: DictConfig | None) -> DictConfig:
    """The top-level ``model`` with a sub-task's ``model`` overrides merged over it. A component given
    with another ``_target_`` than the top-level one replaces it (its keys are another class's), so a
    ``doc_cls`` sub-task can bring its own encoder beside word-level ones."""
    overrides = overrides or OmegaConf.create({})
    replaced = {
        key: node
        for key, node in overrides.items()
        if isinstance(node, DictConfig)
        and node.get("_target_")
        and isinstance(base.get(key), DictConfig)
        and base[key].get("_target_") != node.get("_target_")
    }
    model = OmegaConf.merge(base, {key: node for key, node in overrides.items() if key not in replaced})
    for key, node in replaced.items():
        model[key] = node
    return model


@dataclass
class MultiTaskConfig:
    """The ``task`` section of ``task=multitask``.

    monitor: ``val/mean_target`` (mean of every sub-task's ``metric``) or one sub-task's metric, e.g.
        ``val/atis/slot_f1``; early stopping and checkpoint selection follow it.
    schedule: ``round_robin``, ``proportional`` or ``temperature`` (see ``nlpkit.tasks.multitask.data``).
    temperature: for ``schedule=temperature``: task probability ~ batches ** (1 / temperature).
    shared: model parts shared by every sub-task (``embedding``, ``representation``, ...).
    tasks: sub-task name -> ``{task, data, model, loss_weight, metric}`` (``SubTaskConfig``).
    """

    name: str = "multitask"
    monitor: str = f"val/{MEAN_TARGET}"
    monitor_mode: str = field(default="max", metadata=choices("max", "min"))
    schedule: str = field(default="round_robin", metadata=choices(*SCHEDULES))
    temperature: float = field(default=2.0, metadata=above(0))
    shared: list[str] = field(default_factory=lambda: ["embedding", "representation"])
    tasks: dict[str, Any] = field(default_factory=dict)


@dataclass
class SubTaskConfig:
    """One sub-task: ``task`` (a registered task: ``doc_cls``, ``intent_slot``, ``tagging``, a user's
    own), its ``data`` section (that task's data schema), ``model`` overrides merged over the top-level
    model, ``loss_weight``, and ``metric``: its target metric without ``val/`` (one of the task's
    ``metric_names``; default: its ``target_metric``, e.g. ``span_f1``)."""

    task: str = ""
    data: Any = None
    model: Any = None
    loss_weight: float = 1.0
    metric: str | None = None


@dataclass
class MultiTaskDataConfig:
    """Top-level ``data`` of ``task=multitask``: a value set here applies to every sub-task's data
    (``data.batch_size=16``); ``null`` keeps each sub-task's own value."""

    batch_size: int | None = field(default=None, metadata=at_least(1))
    eval_batch_size: int | None = field(default=None, metadata=at_least(1))
    bucket_pool_batches: int | None = field(default=None, metadata=at_least(0))
    num_workers: int | None = field(default=None, metadata=at_least(0))
    on_bad_row: str | None = None


def _check_subtask(cfg: DictConfig, name: str, node: Any, defaults: dict) -> DictConfig:
    """One validated, completed sub-task config: typed data, full model, weight and metric."""
    where = f"task.tasks.{name}"
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", str(name)):
        raise ConfigError(
            f"{where}: a sub-task name may use letters, digits, '_' and '-' only "
            "(it names metrics, val/<name>/..., and the run's tasks/<name>/ directory)"
        )
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{where} must be a mapping with keys task, data, model, loss_weight, metric")
    check_schema(node, SubTaskConfig, where)
    kind = node.get("task")
    task_cls = subtask_class(kind, f"{where}.task")
    if not isinstance(node.get("data"), DictConfig):
        raise ConfigError(f"{where}.data is missing: give the sub-task's data section (e.g. its train_path)")
    data = typed_section(OmegaConf.merge(node.data, defaults), task_cls.data_schema, f"{where}.data")
    if data.get("streaming"):
        raise ConfigError(
            f"{where}.data.streaming=true: a streamed training file batches itself and cannot join a "
            "multi-task schedule; load it (streaming=false)"
        )
    overrides = node.get("model")
    if overrides is not None and not isinstance(overrides, DictConfig):
        raise ConfigError(f"{where}.model must be a mapping of overrides of the top-level model")
    model = merged_model(cfg.model, overrides)
    check_component_kinds(model, task_cls.model_kinds(model), f"{where}.model", kind)
    check_target_keys(model, f"{where}.model")
    try:
        weight = float(node.get("loss_weight", 1.0))
    except ValueError as err:
        raise ConfigError(f"{where}.loss_weight={node.loss_weight!r} is not a number") from err
    if weight < 0:
        raise ConfigError(f"{where}.loss_weight={weight} must be >= 0")
    metric = str(node.get("metric") or task_cls.target_metric)
    _check_metric(metric, task_cls, f"{where}.metric")
    return OmegaConf.create(
        {"task": kind, "data": data, "model": model, "loss_weight": weight, "metric": metric}
    )


class MultiTaskPredictor:
    """Every sub-task's predictor. ``predict(texts, task="atis")`` gives that sub-task's predictions;
    without ``task``, each text gets ``{sub-task name: its prediction}``."""

    def __init__(self, predictors: dict[str, Any]):
        self.predictors = predictors

    @property
    def tasks(self) -> list[str]:
        return list(self.predictors)

    def predict(self, texts: Sequence[str], batch_size: int = 64, task: str | None = None) -> list[dict]:
        check_texts(texts)  # a list, no blank text: the same rule as the ONNX model and the server
        if task is not None:
            if task not in self.predictors:
                raise KeyError(f"no sub-task {task!r} in this run; its sub-tasks: {', '.join(self.tasks)}")
            return self.predictors[task].predict(texts, batch_size=batch_size)
        per_task = {name: p.predict(texts, batch_size=batch_size) for name, p in self.predictors.items()}
        return [{name: per_task[name][i] for name in per_task} for i in range(len(texts))]


def minimized_targets(cfg: DictConfig) -> dict[str, str]:
    """Sub-task name -> its ``metric`` where that metric is lower-is-better (a perplexity, an MSE):
    such runs have no ``mean_target`` (a mean of an accuracy and a perplexity means nothing)."""
    return {
        name: str(node.metric)
        for name, node in cfg.task.tasks.items()
        if str(node.metric) in get_task(str(node.task)).minimized_metrics
    }


@register_task
class MultiTaskTask(Task):
    name = "multitask"
    data_schema = MultiTaskDataConfig
    task_schema = MultiTaskConfig
    target_metric = MEAN_TARGET
    can_be_subtask = False  # sub-tasks are single tasks: a multi-task run does not nest

    @classmethod
    def check_config(cls, cfg: DictConfig) -> DictConfig:
        tasks = cfg.task.tasks
        if not tasks:
            raise ConfigError(
                "task=multitask needs sub-tasks in task.tasks (name -> {task, data, model, loss_weight, "
                "metric}); pick a set with multitask=builtin or multitask=atis_snips"
            )
        defaults = {k: v for k, v in cfg.data.items() if v is not None}
        cfg.task.tasks = {name: _check_subtask(cfg, name, node, defaults) for name, node in tasks.items()}
        for part in cfg.task.shared:
            for name, node in cfg.task.tasks.items():
                parts = [k for k, v in node.model.items() if isinstance(v, DictConfig) and v.get("_target_")]
                if part not in parts:
                    raise ConfigError(
                        f"task.shared: {part!r} is not a shareable module: task.tasks.{name}.model has no "
                        f"component {part!r}; its components: {', '.join(parts)}"
                    )
        cls._find_unused_parameters(cfg)
        monitor = str(cfg.task.monitor)
        stage, _, rest = monitor.partition("/")
        task_name = rest.split("/")[0] if "/" in rest else None
        if stage != "val" or (rest != MEAN_TARGET and task_name not in cfg.task.tasks):
            raise ConfigError(
                f"task.monitor={monitor!r}: use val/{MEAN_TARGET} or val/<sub-task>/<metric> with a sub-task "
                f"of task.tasks ({', '.join(cfg.task.tasks)})"
            )
        if rest != MEAN_TARGET:
            kind = get_task(str(cfg.task.tasks[task_name].task))
            _check_metric(rest.split("/", 1)[1], kind, "task.monitor metric")
        elif minimized := minimized_targets(cfg):
            name, metric = next(iter(minimized.items()))
            maximized = [n for n in cfg.task.tasks if n not in minimized]
            example = (
                f"val/{maximized[0]}/{cfg.task.tasks[maximized[0]].metric}"
                if maximized
                else f"val/{name}/{metric}"
            )
            raise ConfigError(
                f"task.monitor=val/{MEAN_TARGET} averages the sub-tasks' metrics, but task.tasks.{name}.metric="
                f"{metric} is lower-is-better: select on one sub-task's metric instead, e.g. task.monitor={example}"
                + ("" if maximized else " task.monitor_mode=min")
            )
        return cfg

    @staticmethod
    def _find_unused_parameters(cfg: DictConfig) -> None:
        """Each step trains one sub-task: the other heads get no gradient, which plain DDP refuses."""
        strategy = cfg.trainer.get("strategy")
        if not isinstance(strategy, str) or not strategy.startswith("ddp"):
            return
        if strategy.endswith("_find_unused_parameters_false"):
            raise ConfigError(
                f"trainer.strategy={strategy}: task=multitask trains one sub-task's head per step, so DDP "
                f"must find the unused parameters of the others: use trainer.strategy={strategy.rsplit('_find', 1)[0]}"
            )
        if not strategy.endswith(FIND_UNUSED):
            cfg.trainer.strategy = strategy + FIND_UNUSED

    @classmethod
    def check_distributed(cls, cfg: DictConfig, world_size: int) -> None:
        """Every sub-task's metrics must be reduced across the processes."""
        for name, node in cfg.task.tasks.items():
            kind = get_task(str(node.task))
            if not kind.distributed_metrics:
                supported = ", ".join(sorted(n for n, t in TASKS.items() if t.distributed_metrics))
                raise ConfigError(
                    f"task.tasks.{name}.task={kind.name} scores on one process only; its metrics are not "
                    f"reduced across the {world_size} DDP processes (sub-tasks under trainer=ddp: {supported})"
                )

    # ------------------------------------------------------------------ building
    @classmethod
    def subtask_config(cls, cfg: DictConfig, name: str) -> DictConfig:
        """The config sub-task ``name`` is built from, shaped like a single-task config."""
        node = cfg.task.tasks[name]
        return OmegaConf.create(
            {
                "task": {"name": node.task, "monitor": f"val/{node.metric}", "monitor_mode": "max"},
                "data": node.data,
                "model": node.model,
                "optim": cfg.optim,
            }
        )

    @classmethod
    def multitask_datamodule(cls, cfg: DictConfig, run_dir: Path | None = None) -> MultiTaskDataModule:
        """Each sub-task's data module; with ``run_dir``, reusing that run's vocabularies."""
        datamodules = {}
        for name, node in cfg.task.tasks.items():
            vocab_dir = Path(run_dir) / TASKS_DIR / name if run_dir is not None else None
            datamodules[name] = get_task(str(node.task)).datamodule(node.data, vocab_dir)
        return MultiTaskDataModule(
            datamodules,
            {name: node.task for name, node in cfg.task.tasks.items()},
            schedule=str(cfg.task.schedule),
            temperature=float(cfg.task.temperature),
            share_vocabulary="embedding" in cfg.task.shared,
            seed=int(cfg.get("seed", 0)),
        )

    @classmethod
    def datamodule(cls, data_cfg, run_dir=None):
        raise ConfigError(
            "task=multitask builds its data modules from the whole config (multitask_datamodule)"
        )

    @classmethod
    def multitask_module(
        cls, cfg: DictConfig, datamodule: MultiTaskDataModule, fresh: bool
    ) -> MultiTaskModule:
        subtasks = {}
        for name, node in cfg.task.tasks.items():
            dm = datamodule.datamodules[name]
            vocab = _vocab(dm) if fresh else None  # pretrained vectors need it (fresh training only)
            subtasks[name] = get_task(str(node.task)).module(cls.subtask_config(cfg, name), dm, vocab)
        share_modules(subtasks, list(cfg.task.shared), datamodule)
        return MultiTaskModule(
            subtasks,
            {name: node.task for name, node in cfg.task.tasks.items()},
            {name: node.loss_weight for name, node in cfg.task.tasks.items()},
            {name: node.metric for name, node in cfg.task.tasks.items()},
            cfg.optim,
            str(cfg.task.monitor),
            str(cfg.task.monitor_mode),
            mean_target=not minimized_targets(cfg),
        )

    @classmethod
    def build(cls, cfg, run_dir=None):
        dm = cls.multitask_datamodule(cfg)
        dm.load()
        return dm, cls.multitask_module(cfg, dm, fresh=True)

    @classmethod
    def rebuild(cls, cfg, run_dir):
        dm = cls.multitask_datamodule(cfg, run_dir)
        dm.load()
        return dm, cls.multitask_module(cfg, dm, fresh=True)

    @classmethod
    def restore(cls, cfg, run_dir, data_cfg=None):
        run_dir = Path(run_dir)
        dm = cls.multitask_datamodule(cfg, run_dir)
        module = cls.multitask_module(cfg, dm, fresh=False)
        module.model.load_state_dict(model_state(load_checkpoint(best_checkpoint(run_dir))))
        module.eval()
        return dm, module

    @classmethod
    def export_onnx(cls, run_dir, cfg, out_dir, quantize, exporter, subtask=None):
        """One sub-task at a time (``task=NAME``): a standalone file of that sub-task's kind."""
        subtasks = list(cfg.task.tasks)
        if subtask is None or subtask not in subtasks:
            problem = "is a multi-task run" if subtask is None else f"has no sub-task {subtask!r}"
            raise ExportError(
                f"{run_dir} {problem}: export one sub-task at a time with task=NAME "
                f"(its sub-tasks: {', '.join(subtasks)})"
            )
        kind = get_task(str(cfg.task.tasks[subtask].task))
        return kind.export_onnx(run_dir, cfg, out_dir, quantize, exporter, subtask=subtask)

    @classmethod
    def subtask_source(cls, cfg: DictConfig, run_dir: Path, name: str) -> tuple[str, DictConfig, Path]:
        """``(task name, data config, vocabulary directory)`` of sub-task ``name`` of a trained run."""
        node = cfg.task.tasks[name]
        return str(node.task), node.data, Path(run_dir) / TASKS_DIR / name

    @classmethod
    def save_vocabularies(cls, datamodule, run_dir):
        for name, dm in datamodule.datamodules.items():
            directory = Path(run_dir) / TASKS_DIR / name
            directory.mkdir(parents=True, exist_ok=True)
            get_task(datamodule.kinds[name]).save_vocabularies(dm, directory)

    @classmethod
    def predictor_for(cls, cfg, model, datamodule):
        return MultiTaskPredictor(
            {
                name: get_task(str(node.task)).make_predictor(model[name], datamodule.datamodules[name])
                for name, node in cfg.task.tasks.items()
            }
        )

    @classmethod
    def extra_artifacts(cls, module, run_dir):
        written = {}
        for name, sub in module.subtasks.items():
            found = get_task(module.kinds[name]).extra_artifacts(sub, Path(run_dir) / TASKS_DIR / name)
            written.update({f"{name}/{key}": path for key, path in found.items()})
        return written


def _vocab(datamodule: Any) -> list[str] | None:
    """The word vocabulary (tokens in id order) of a data module's featurizer, if it has one."""
    return getattr(getattr(datamodule, "featurizer", None), "vocab", None)


def share_modules(subtasks: dict[str, Any], shared: list[str], datamodule: MultiTaskDataModule) -> None:
    """Put the first sub-task's module of each ``shared`` name into every other sub-task's model."""
    kinds = datamodule.kinds
    names = list(subtasks)
    first = names[0]
    for part in shared:
        for name in names:
            if not isinstance(getattr(subtasks[name].model, part, None), nn.Module):
                parts = [n for n, _ in subtasks[name].model.named_children()]
                raise ConfigError(
                    f"task.shared has {part!r} but sub-task {name!r} has no such module (its model has "
                    f"{', '.join(parts)}); share only modules every sub-task has"
                )
        ours = getattr(subtasks[first].model, part)
        first_labels = get_task(kinds[first]).head_labels.get(part)
        for name in names[1:]:
            their_labels = get_task(kinds[name]).head_labels.get(part)
            if first_labels or their_labels:  # a head sized for a label set: one label set
                mine = getattr(
                    getattr(datamodule.datamodules[first], first_labels or "", None), "names", None
                )
                theirs = getattr(
                    getattr(datamodule.datamodules[name], their_labels or "", None), "names", None
                )
                if mine is None or mine != theirs:
                    raise ConfigError(
                        f"task.shared has {part!r}, but sub-tasks {first!r} and {name!r} have different "
                        f"labels for it ({_labels(mine)} vs {_labels(theirs)}): a shared head needs one label set"
                    )
            if part == "embedding" and _vocab(datamodule.datamodules[first]) != _vocab(
                datamodule.datamodules[name]
            ):
                raise ConfigError(
                    f"task.shared has 'embedding', but sub-tasks {first!r} and {name!r} have different word vocabularies"
                )
            replaced = getattr(subtasks[name].model, part)
            mine_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
            their_shapes = {k: tuple(v.shape) for k, v in replaced.state_dict().items()}
            if type(ours) is not type(replaced) or mine_shapes != their_shapes:
                differing = sorted(
                    k
                    for k in mine_shapes.keys() | their_shapes.keys()
                    if mine_shapes.get(k) != their_shapes.get(k)
                )
                raise ConfigError(
                    f"task.shared has {part!r}, but sub-task {name!r}'s {part} is not the same module as "
                    f"{first!r}'s ({type(replaced).__name__} vs {type(ours).__name__}; differing: "
                    f"{', '.join(differing[:3]) or 'class'}): give them the same model config"
                )
            setattr(subtasks[name].model, part, ours)


def _labels(names: list[str] | None) -> str:
    if names is None:
        return "none"
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    return f"{len(names)}: {shown}"
