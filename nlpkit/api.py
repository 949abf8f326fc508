"""Python API for notebooks: ``compose`` a config, ``train`` it, ``load`` a run and predict."""

from __future__ import annotations

import datetime as _dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from nlpkit.errors import ArtifactError


def compose(
    overrides: Sequence[str] = (), config_name: str = "train", output_dir: str | None = None
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with Hydra overrides, as the CLI would.

    ``paths.output_dir`` is set to ``output_dir`` or a fresh timestamped directory under ``paths.log_dir``.
    """
    from hydra.errors import HydraException

    from nlpkit.config import explain_compose_error

    try:
        cfg = _hydra_compose(list(overrides), config_name)
    except HydraException as err:  # an unknown key or choice: nlpkit's one line, with "did you mean"
        explained = explain_compose_error(
            err, list(overrides), lambda lines: _hydra_compose(lines, config_name)
        )
        if explained is None:
            raise
        raise explained from err
    with open_dict(cfg):
        if output_dir is not None:
            cfg.paths.output_dir = str(output_dir)
        elif not cfg.paths.get("output_dir"):
            stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
            cfg.paths.output_dir = str(Path(cfg.paths.log_dir) / "runs" / stamp)
    return cfg


def _hydra_compose(overrides: list[str], config_name: str) -> DictConfig:
    """Hydra's composition of ``conf/<config_name>.yaml`` with ``overrides`` (errors are Hydra's)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from nlpkit.config import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train from a composed config; see :func:`nlpkit.training.fit.train`."""
    from nlpkit.training.fit import train as _train

    return _train(cfg)


def load_run_config(run_dir: str | Path) -> DictConfig:
    """A run's ``config.yaml``. A run trained with ``imports=[...]`` (tasks or components of a user's
    own package) is refused unless those modules are already imported: the list in the file is never
    imported from here, since importing runs code (CLIs: pass the same ``imports=[...]``; notebooks:
    ``import`` the package first)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ArtifactError(f"{path}: not found; is {run_dir} an nlpkit run directory?")
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # noqa: BLE001 - YAML and OmegaConf errors alike: a damaged file
        raise ArtifactError(f"{path}: not a readable config ({type(err).__name__}: {err})") from err
    needed = cfg.get("imports") or []
    missing = [str(name) for name in needed if str(name) not in sys.modules]
    if missing:
        raise ArtifactError(
            f"{run_dir} was trained with code from {', '.join(missing)}: pass imports=[{','.join(missing)}] "
            "(or import it first in Python) if you trust it"
        )
    return cfg


def load(run_dir: str | Path):
    """Reload a trained run as a predictor with ``.predict(["text", ...])``."""
    from nlpkit.registry import get_task

    cfg = load_run_config(run_dir)
    return get_task(cfg.task.name).predictor(cfg, Path(run_dir))
