"""Training a run from a validated config: ``train(cfg)``, the plain function behind ``nlpkit.train(cfg)``
and ``python -m nlpkit.train`` (whose Hydra wrapper is ``nlpkit.train.main``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar
from pytorch_lightning.utilities.exceptions import SIGTERMException

from nlpkit.config import validate
from nlpkit.errors import ConfigError, NlpkitError
from nlpkit.registry import get_task, import_modules, instantiate
from nlpkit.tasks.base import Task
from nlpkit.training.checkpoint import AtomicCheckpointIO
from nlpkit.training.distributed import stop_all_processes_on_sigterm
from nlpkit.training.module import TaskModule
from nlpkit.training.resume import ResumeState, resume_checkpoint
from nlpkit.training.run_dir import absolute_paths, prepare_run_dir, run_lock
from nlpkit.training.transfer import initialize_from_run, mark_pretrained
from nlpkit.utils.io import sha256_file, write_json, write_text
from nlpkit.version import __version__

log = logging.getLogger("nlpkit.train")


def resolve_run_dir(cfg: DictConfig) -> Path:
    """Hydra's output dir when running under Hydra (so ``hydra.run.dir`` is honoured), else
    ``paths.output_dir``; always absolute, so nothing depends on the working directory later."""
    if HydraConfig.initialized():
        run_dir = Path(HydraConfig.get().runtime.output_dir)
    elif cfg.paths.output_dir:
        run_dir = Path(cfg.paths.output_dir)
    else:
        raise ConfigError(
            "paths.output_dir is not set (nlpkit.compose sets it; or pass paths.output_dir=DIR)"
        )
    run_dir = Path(os.path.abspath(run_dir))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write_probe.{os.getpid()}"  # one per process: DDP ranks probe at once
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as err:
        raise NlpkitError(f"run directory {run_dir} is not writable: {err.strerror or err}") from err
    return run_dir


def _callbacks(cfg: DictConfig, run_dir: Path) -> list[pl.Callback]:
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None:
            continue
        kwargs: dict[str, Any] = {}
        target = str(node.get("_target_", ""))
        if target.endswith("ModelCheckpoint"):
            kwargs["dirpath"] = str(run_dir / "checkpoints")
        callback = instantiate(node, f"callbacks.{name}", **kwargs)
        if not isinstance(callback, pl.Callback):
            raise ConfigError(f"callbacks.{name} does not build a Lightning Callback")
        if isinstance(callback, ProgressBar) and not cfg.trainer.get("enable_progress_bar", True):
            continue  # trainer.enable_progress_bar=false wins over the configured bar
        callbacks.append(callback)
    return callbacks


def _loggers(cfg: DictConfig, run_dir: Path, resuming: bool) -> list:
    """The configured loggers. A resumed run's CSV log goes to ``csv/resume-N/``: Lightning's CSV
    writer deletes a ``metrics.csv`` it finds, and the interrupted part's history must stay."""
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is None:
            continue
        kwargs: dict[str, Any] = {"save_dir": str(run_dir)}
        if resuming and str(node.get("_target_", "")).endswith("CSVLogger"):
            folder = run_dir / str(node.get("name") or "")
            part = 1 + sum(1 for p in folder.glob("resume-*") if p.is_dir())
            kwargs["version"] = f"resume-{part}"
        loggers.append(instantiate(node, f"logger.{name}", **kwargs))
    return loggers


def _write_hydra_record(run_dir: Path, composed: DictConfig) -> None:
    """Hydra's job record (``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``), written once this
    job holds the run directory (``hydra.output_subdir`` is null in ``conf/hydra/default.yaml``)."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    record = run_dir / ".hydra"
    write_text(record / "config.yaml", OmegaConf.to_yaml(composed))
    write_text(record / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})))
    write_text(record / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.overrides.task))


def _flat_metrics(results: list[dict[str, float]]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for result in results:
        flat.update({k: float(v) for k, v in result.items()})
    return flat


@contextlib.contextmanager
def _sigterm_ends_the_run(trainer: pl.Trainer, run_dir: Path) -> Iterator[None]:
    """A SIGTERM during ``fit``/``validate``/``test`` ends the run with one error line and status 1.

    Under DDP a process may instead see a collective fail (a peer stopped first): after a SIGTERM
    that is the same stop, not a crash."""
    try:
        yield
    except Exception as err:
        if not trainer.received_sigterm:
            raise
        raise NlpkitError(_stopped_by_sigterm(trainer, run_dir)) from err
    except SIGTERMException as err:  # a SystemExit with code 0: left alone, a killed job would "succeed"
        raise NlpkitError(_stopped_by_sigterm(trainer, run_dir)) from err


def _stopped_by_sigterm(trainer: pl.Trainer, run_dir: Path) -> str:
    return (
        f"training stopped by SIGTERM after {trainer.global_step} steps; no metrics.json written. "
        f"Continue with resume=auto (checkpoints so far are in {run_dir / 'checkpoints'})"
    )


def _fit_and_record(
    cfg: DictConfig,
    task: type[Task],
    trainer: pl.Trainer,
    checkpoint: ModelCheckpoint | None,
    run_dir: Path,
    ckpt_path: str | None,
) -> tuple[dict[str, float], str | None, pl.LightningDataModule, TaskModule]:
    """Fit, validate and test the selected checkpoint, and write the run's records (rank 0).

    ``run.json`` is written last: its presence means the run finished, and it names the checkpoint
    every reader loads."""
    if ckpt_path:
        # The vocabularies the checkpoint was trained with, not rebuilt ones.
        datamodule, module = task.rebuild(cfg, run_dir)
    else:
        datamodule, module = task.build(cfg, run_dir)
    transfer = cfg.get("transfer") or {}
    transferred = None
    if not ckpt_path and transfer.get("run_dir"):  # a resumed run's checkpoint has the weights already
        vocab = getattr(getattr(datamodule, "featurizer", None), "vocab", None)
        transferred = initialize_from_run(module.model, vocab, transfer.run_dir, dict(transfer.modules))
    if transfer.get("run_dir"):  # fresh or resumed alike, so the optimizer's groups are the same
        mark_pretrained(module.model, list(transfer.modules))
    if trainer.is_global_zero:
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        task.save_vocabularies(datamodule, run_dir)
        if transferred is not None:
            write_json(run_dir / "transfer.json", transferred)

    started = time.perf_counter()
    with _sigterm_ends_the_run(trainer, run_dir):
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    train_seconds = time.perf_counter() - started

    best = checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None
    if trainer.received_sigterm or trainer.interrupted:
        raise NlpkitError(
            f"training stopped early by a signal/interrupt after {trainer.global_step} steps; "
            f"no metrics.json written (checkpoints so far are in {run_dir / 'checkpoints'})"
        )
    with _sigterm_ends_the_run(trainer, run_dir):
        metrics = _flat_metrics(
            trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)
        )
        if cfg.get("run_test", True) and "test" in datamodule.splits:
            metrics.update(
                _flat_metrics(trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False))
            )
        if trainer.is_global_zero:
            task.extra_artifacts(module, run_dir)
    metrics["train_seconds"] = round(train_seconds, 3)
    metrics["epochs"] = int(trainer.current_epoch)
    metrics["global_steps"] = int(trainer.global_step)
    metrics["data/skipped_rows"] = int(datamodule.policy.total_skipped)
    if trainer.world_size > 1:
        metrics["world_size"] = int(trainer.world_size)
    if trainer.is_global_zero:
        write_json(run_dir / "metrics.json", metrics)
        write_json(
            run_dir / "run.json",
            {
                "task": cfg.task.name,
                "nlpkit_version": __version__,
                "best_checkpoint": str(Path(best).resolve().relative_to(run_dir.resolve())) if best else None,
                # readers check it: the checkpoint they load is the one this run selected
                "best_checkpoint_sha256": sha256_file(Path(best)) if best else None,
                "resumed_from": ckpt_path,
            },
        )
    return metrics, best, datamodule, module


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, select the best checkpoint on the validation metric, test it, write the run directory.

    Returns ``{"run_dir", "metrics", "best_checkpoint", "optimized_metric", "model"}``; ``model`` is the
    plain ``nn.Module`` holding the selected (best) weights (``trainer.validate(ckpt_path=best)`` loaded them).
    """
    composed = cfg
    import_modules(cfg.get("imports"))
    cfg = absolute_paths(validate(cfg))
    run_dir = resolve_run_dir(cfg)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    task = get_task(cfg.task.name)
    ckpt_path = resume_checkpoint(cfg.get("resume"), run_dir)

    callbacks = [*_callbacks(cfg, run_dir), ResumeState()]
    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    # Built before anything is written: under DDP, trainer.is_global_zero picks the one writer.
    trainer = pl.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        callbacks=callbacks,
        logger=_loggers(cfg, run_dir, resuming=ckpt_path is not None) or False,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
    )
    stop_all_processes_on_sigterm(trainer)
    if trainer.world_size > 1:
        task.check_distributed(cfg, trainer.world_size)
    with contextlib.ExitStack() as writing:
        if trainer.is_global_zero:  # the one writer; DDP's other processes start inside fit()
            writing.enter_context(run_lock(run_dir, "training"))
            prepare_run_dir(run_dir, cfg.get("resume"), bool(cfg.get("overwrite")))
            _write_hydra_record(run_dir, composed)
        metrics, best, datamodule, module = _fit_and_record(
            cfg, task, trainer, checkpoint, run_dir, ckpt_path
        )
    if datamodule.policy.total_skipped:
        log.warning("data: %s", datamodule.policy.report())
    target = cfg.get("optimized_metric") or cfg.task.monitor
    value = metrics.get(target, math.nan)
    log.info("run directory: %s", run_dir)
    log.info(
        "%s", "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if k.startswith(("val/", "test/")))
    )
    return {
        "run_dir": str(run_dir),
        "metrics": metrics,
        "best_checkpoint": best,
        "optimized_metric": value,
        "model": module.model.eval(),
    }
