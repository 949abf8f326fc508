"""The contract every task fulfils for ``train``, ``evaluate``, ``predict`` and ``load``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
from omegaconf import DictConfig


class Task:
    """A task builds its data module and LightningModule from a config, saves the vocabularies
    a run needs to be reloaded, and reloads a run directory into a predictor."""

    name: ClassVar[str]
    #: dataclass schema that validates the ``data`` config section for this task
    data_schema: ClassVar[type]

    @classmethod
    def build(
        cls, cfg: DictConfig, run_dir: Path | None = None
    ) -> tuple[pl.LightningDataModule, pl.LightningModule]:
        """Fresh training: read data, build vocabularies from train, build the model."""
        raise NotImplementedError

    @classmethod
    def save_vocabularies(cls, datamodule: pl.LightningDataModule, run_dir: Path) -> None:
        raise NotImplementedError

    @classmethod
    def restore(
        cls, cfg: DictConfig, run_dir: Path, data_cfg: DictConfig | None = None
    ) -> tuple[pl.LightningDataModule, pl.LightningModule]:
        """A trained run's vocabularies and weights, with a data module over ``data_cfg`` (default: the run's)."""
        raise NotImplementedError

    @classmethod
    def predictor(cls, cfg: DictConfig, run_dir: Path) -> Any:
        raise NotImplementedError

    @classmethod
    def extra_artifacts(cls, module: pl.LightningModule, run_dir: Path) -> dict[str, str]:
        """Write task-specific reports after testing (e.g. a confusion matrix); return name -> path."""
        return {}
