"""The contract every task fulfils for ``train``, ``evaluate``, ``predict`` and ``load``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
from omegaconf import DictConfig

from nlpkit.errors import ConfigError, ExportError
from nlpkit.registry import TASKS
from nlpkit.training.checkpoint import best_checkpoint, load_checkpoint, model_state
from nlpkit.training.module import TaskModule


class Task:
    """A task builds its data module and LightningModule from a config, saves the vocabularies a
    run needs to be reloaded, and reloads a run directory into a predictor.

    Subclasses implement ``datamodule``, ``module``, ``save_vocabularies`` and ``make_predictor``;
    ``build``, ``restore`` and ``predictor`` are the same for every task.
    """

    name: ClassVar[str]
    #: dataclass schema that validates the ``data`` config section for this task
    data_schema: ClassVar[type]
    #: whether the task's metrics are reduced across DDP processes (multi-process training allowed)
    distributed_metrics: ClassVar[bool] = False
    #: dataclass schema of the ``task`` section, when the task has more keys than ``TaskConfig``
    task_schema: ClassVar[type | None] = None
    #: the validation metric (without ``val/``) that ranks this task's checkpoints by default
    target_metric: ClassVar[str] = "accuracy"
    #: model slot -> kind of component it needs (``nlpkit.modules.base``), checked by ``validate``
    component_kinds: ClassVar[dict[str, str]] = {}
    #: every validation metric the task logs (without ``val/``): what a multi-task sub-task's ``metric``
    #: and a ``val/<sub-task>/<metric>`` monitor are checked against (empty: the task cannot be a sub-task)
    metric_names: ClassVar[tuple[str, ...]] = ()
    #: those of ``metric_names`` where lower is better (a multi-task run cannot average them with
    #: accuracies into ``mean_target``)
    minimized_metrics: ClassVar[frozenset[str]] = frozenset({"loss"})
    #: model part -> the data module attribute holding the label vocabulary that part is sized for
    #: (``{"output": "labels"}``): a multi-task run shares such a head only between sub-tasks whose
    #: labels are the same, in the same order
    head_labels: ClassVar[dict[str, str]] = {}
    #: whether the task can be one sub-task of a ``task=multitask`` run (a task made of sub-tasks cannot)
    can_be_subtask: ClassVar[bool] = True

    @classmethod
    def check_distributed(cls, cfg: DictConfig, world_size: int) -> None:
        """Refuse a multi-process (DDP) run whose metrics would be one process's share of the data."""
        if not cls.distributed_metrics:
            supported = ", ".join(f"task={name}" for name, task in TASKS.items() if task.distributed_metrics)
            raise ConfigError(
                f"task={cls.name} scores on one process only; its metrics are not reduced across the "
                f"{world_size} DDP processes (trainer=ddp supports {supported})"
            )

    @classmethod
    def model_kinds(cls, model_cfg: DictConfig) -> dict[str, str]:
        """The slots and kinds ``model_cfg`` must have (default: ``component_kinds``); a task whose model
        has optional slots (doc_cls' ``pooling``) says here what a given model config needs."""
        return dict(cls.component_kinds)

    @classmethod
    def check_config(cls, cfg: DictConfig) -> DictConfig:
        """Task-specific validation after the generic checks (``nlpkit.config.validate``); may return
        a completed copy. A task made of sub-tasks validates each of them here."""
        return cfg

    @classmethod
    def datamodule(cls, data_cfg: DictConfig, run_dir: Path | None = None) -> pl.LightningDataModule:
        """A data module over ``data_cfg``; with ``run_dir``, reusing that run's vocabularies."""
        raise NotImplementedError

    @classmethod
    def module(
        cls, cfg: DictConfig, datamodule: pl.LightningDataModule, vocab: list[str] | None
    ) -> TaskModule:
        """The LightningModule sized from the data module's vocabularies. ``vocab`` (tokens in id order)
        is passed for fresh training only, where pretrained embeddings may need it."""
        raise NotImplementedError

    @classmethod
    def save_vocabularies(cls, datamodule: pl.LightningDataModule, run_dir: Path) -> None:
        raise NotImplementedError

    @classmethod
    def make_predictor(cls, model: Any, datamodule: pl.LightningDataModule) -> Any:
        """Raw strings in, predictions out, from a model with loaded weights."""
        raise NotImplementedError

    @classmethod
    def extra_artifacts(cls, module: TaskModule, run_dir: Path) -> dict[str, str]:
        """Write task-specific reports after testing (e.g. a confusion matrix); return name -> path."""
        return {}

    @classmethod
    def export_onnx(
        cls,
        run_dir: Path,
        cfg: DictConfig,
        out_dir: Path,
        quantize: bool,
        exporter: str,
        subtask: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        """Build the one-file ONNX model of a trained run and run its parity gate:
        ``(report, {file name: bytes})``, files only when every check passed. ``subtask`` names a
        sub-task of a multi-task run (only a task made of sub-tasks takes one)."""
        if subtask is not None:
            raise ExportError(
                f"task={subtask!r} picks a sub-task of a multi-task run, but {run_dir} is a task={cls.name} "
                "run: export it without task="
            )
        raise ExportError(f"ONNX export is not available for task {cls.name!r} yet")

    @classmethod
    def build(cls, cfg: DictConfig, run_dir: Path | None = None) -> tuple[pl.LightningDataModule, TaskModule]:
        """Fresh training: read data, build vocabularies from train, build the model."""
        dm = cls.datamodule(cfg.data)
        dm.load()
        return dm, cls.module(cfg, dm, dm.featurizer.vocab)

    @classmethod
    def rebuild(cls, cfg: DictConfig, run_dir: Path) -> tuple[pl.LightningDataModule, TaskModule]:
        """Resuming: the run's vocabularies (not rebuilt ones), data read, a model whose weights the
        checkpoint will bring."""
        dm = cls.datamodule(cfg.data, run_dir)
        dm.load()
        return dm, cls.module(cfg, dm, dm.featurizer.vocab)

    @classmethod
    def restore(
        cls, cfg: DictConfig, run_dir: Path, data_cfg: DictConfig | None = None
    ) -> tuple[pl.LightningDataModule, TaskModule]:
        """A trained run's vocabularies and best weights, with a data module over ``data_cfg``
        (default: the run's own data config). Nothing is read from the data files yet."""
        run_dir = Path(run_dir)
        dm = cls.datamodule(data_cfg if data_cfg is not None else cfg.data, run_dir)
        module = cls.module(cfg, dm, vocab=None)
        module.model.load_state_dict(model_state(load_checkpoint(best_checkpoint(run_dir))))
        module.eval()
        return dm, module

    @classmethod
    def predictor_for(cls, cfg: DictConfig, model: Any, datamodule: pl.LightningDataModule) -> Any:
        """The predictor over ``model`` (e.g. the one ``nlpkit.train`` returns) and the data module's
        vocabularies; a task made of sub-tasks builds one per sub-task."""
        return cls.make_predictor(model, datamodule)

    @classmethod
    def predictor(cls, cfg: DictConfig, run_dir: Path) -> Any:
        dm, module = cls.restore(cfg, run_dir)
        return cls.predictor_for(cfg, module.model, dm)
