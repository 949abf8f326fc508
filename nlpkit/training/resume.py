"""Resuming a killed run: find its newest checkpoint, and carry the RNG state across the restart.

Lightning's own checkpoint already holds the model, optimizer, LR scheduler, loop progress (epoch and
batch within it), early-stopping and checkpoint-callback state, and the training loader's position
(``ResumableDataLoader``). What it does not hold is the global RNG state that dropout draws from; the
``RngState`` callback saves it, so a resumed run draws the same dropout masks an uninterrupted one would.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from nlpkit.errors import ConfigError

log = logging.getLogger(__name__)

#: ``checkpoints/best.ckpt`` is a snapshot of an earlier moment, never further along than ``last.ckpt``.
_NOT_RESUMABLE = {"best.ckpt"}


def newest_checkpoint(run_dir: str | Path) -> Path | None:
    """The most recently written training checkpoint of ``run_dir`` (``last.ckpt`` or the periodic
    ``step.ckpt``), or ``None`` when the run has none yet. Temporary files of an interrupted atomic
    write end in ``.tmp`` and are never picked."""
    folder = Path(run_dir) / "checkpoints"
    candidates = [p for p in folder.glob("*.ckpt") if p.is_file() and p.name not in _NOT_RESUMABLE]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns, default=None)


def resume_checkpoint(resume: str | None, run_dir: Path) -> str | None:
    """What ``trainer.fit(ckpt_path=...)`` gets for the ``resume`` setting.

    ``null``: start fresh. ``auto``: the run directory's newest checkpoint, or a fresh start when there
    is none yet (so a job script can always pass ``resume=auto``). Anything else: a checkpoint path.
    """
    if resume is None:
        return None  # a directory holding another run was refused or cleared (run_dir.prepare_run_dir)
    if resume == "auto":
        found = newest_checkpoint(run_dir)
        if found is None:
            log.info("resume=auto: no checkpoint in %s yet; starting fresh", run_dir / "checkpoints")
            return None
        log.info("resume=auto: resuming from %s", found)
        return str(found)
    path = Path(resume)
    if not path.is_file():
        raise ConfigError(f"resume={resume!r}: no such checkpoint file (use resume=auto or a .ckpt path)")
    return str(path)


def _collator_generators(loader: Any) -> list[torch.Generator]:
    """The own random generators of the training collators (one per sub-task of a multi-task run)."""
    sub_loaders = getattr(loader, "loaders", None)
    loaders = list(sub_loaders.values()) if isinstance(sub_loaders, Mapping) else [loader]
    generators = []
    for each in loaders:
        collate = getattr(each, "collate_fn", None)
        collate = getattr(collate, "collate", collate)  # a multi-task loader's TaskTagged wraps it
        generator = getattr(collate, "generator", None)
        if isinstance(generator, torch.Generator):
            generators.append(generator)
    return generators


class ResumeState(pl.Callback):
    """Saves what Lightning's checkpoint lacks for an exact resume, and restores it.

    - the torch and Python RNG states (dropout masks), and the state of each training collator's own
      ``generator`` (tagging's word-to-unk replacement; one per sub-task of a multi-task run);
    - the training loader's position in its epoch (a multi-task schedule's too). Lightning saves a stateful loader's state itself
      but, when ``configure_optimizers`` asks for ``estimated_stepping_batches`` (nlpkit's does, for
      LR schedules), builds the loader before the checkpoint is read and never hands the state back.

    Both are restored in ``on_train_start``, the last hook before the first resumed step: restoring
    earlier would let set-up work (model initialisation, loader creation) shift the RNG stream.
    """

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self._to_restore: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def _train_loader(self) -> Any:
        return self._trainer.train_dataloader if self._trainer is not None else None

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = random.getstate()
        state = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss]}
        loader = self._train_loader()
        if hasattr(loader, "state_dict"):
            state["train_loader"] = loader.state_dict()
        generators = _collator_generators(loader)
        if generators:
            state["collator_rngs"] = [generator.get_state() for generator in generators]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._to_restore is None:
            return
        state, self._to_restore = self._to_restore, None
        torch.set_rng_state(state["torch"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        position = state.get("train_loader")
        loader = self._train_loader()
        saved = state.get("collator_rngs") or ([state["collator_rng"]] if "collator_rng" in state else [])
        for generator, generator_state in zip(_collator_generators(loader), saved):
            generator.set_state(generator_state)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(trainer.current_epoch)  # the resumed epoch's batch order
        mid_epoch = (
            position is not None
            and int(position["epoch"]) == trainer.current_epoch
            and 0 < int(position["batches_done"]) < trainer.num_training_batches
        )
        if mid_epoch and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(position)
            log.info(
                "resuming epoch %d at batch %d of %d",
                trainer.current_epoch,
                int(position["batches_done"]),
                trainer.num_training_batches,
            )
