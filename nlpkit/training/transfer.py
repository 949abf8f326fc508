"""Initialise parts of a fresh model from another finished run (``transfer.run_dir``): pre-train, then
fine-tune. Issue 13's recipe: a language model's word embedding and LSTM become a classifier's.

``transfer.modules`` maps this model's module names to the source model's (``{embedding: embedding,
representation: representation}``). Every parameter and buffer under a target module is copied from
the same name under its source module and must have the same shape; a difference is a
:class:`ConfigError` naming the tensor, both shapes and the source run, never a silent partial copy.
Tensors indexed by vocabulary id (a component lists them in ``vocab_rows``: ``WordEmbedding``'s table)
are copied row by row, by token: the two runs keep their own vocabularies, so a word known to both gets
the source's vector and a word the source never saw keeps its random init. What was copied is logged
and returned (the caller writes it to ``transfer.json`` in the run directory).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from nlpkit.errors import ConfigError

log = logging.getLogger(__name__)


def _source(run_dir: Path) -> tuple[dict[str, torch.Tensor], list[str] | None]:
    """The source run's best weights and its word vocabulary (id order; ``None`` without one)."""
    from nlpkit.registry import get_task
    from nlpkit.training.checkpoint import best_checkpoint, load_checkpoint, model_state

    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"transfer.run_dir: {path} not found; is {run_dir} a finished nlpkit run?")
    cfg = OmegaConf.load(path)  # read, never imported from: its task must already be registered
    state = model_state(load_checkpoint(best_checkpoint(run_dir)))
    featurizer = getattr(get_task(str(cfg.task.name)).datamodule(cfg.data, run_dir), "featurizer", None)
    vocab = getattr(featurizer, "vocab", None)
    return state, list(vocab) if vocab is not None else None


def _vocab_rows(model: nn.Module) -> set[str]:
    """Full names of the model's vocabulary-indexed tensors (components declare ``vocab_rows``)."""
    return {
        f"{name}.{tensor}" if name else tensor
        for name, module in model.named_modules()
        for tensor in getattr(module, "vocab_rows", ())
    }


@torch.no_grad()
def mark_pretrained(model: nn.Module, names: Sequence[str]) -> None:
    """Mark the transferred modules as pretrained: ``optim.encoder_lr`` then trains them at its rate,
    as it does a pretrained transformer (``nlpkit.training.optim.parameter_groups``)."""
    for name in names:
        model.get_submodule(name).pretrained = True


def initialize_from_run(
    model: nn.Module,
    vocab: Sequence[str] | None,
    run_dir: str | Path,
    modules: Mapping[str, str],
) -> dict[str, Any]:
    """Copy ``modules`` (this model's name -> the source model's) from ``run_dir``'s best checkpoint
    into ``model``, whose word vocabulary is ``vocab``; returns what was copied."""
    run_dir = Path(run_dir)
    if not modules:
        raise ConfigError("transfer.modules is empty: name the modules to copy, e.g. {embedding: embedding}")
    source, source_vocab = _source(run_dir)
    target = model.state_dict()
    by_row = _vocab_rows(model)
    report: dict[str, Any] = {"run_dir": str(run_dir.resolve()), "modules": dict(modules), "tensors": 0}
    for mine, theirs in modules.items():
        names = [key for key in target if key.startswith(f"{mine}.")]
        if not names:
            raise ConfigError(f"transfer.modules: this model has no module {mine!r} with weights")
        for key in names:
            source_key = f"{theirs}.{key[len(mine) + 1 :]}"
            if source_key not in source:
                raise ConfigError(
                    f"transfer: {run_dir} has no {source_key!r} for this model's {key!r}: the source's "
                    f"{theirs!r} is not the same kind of module (its weights: "
                    f"{sorted(k for k in source if k.startswith(theirs + '.'))[:6]})"
                )
            have, want = source[source_key], target[key]
            if key in by_row and vocab is not None and source_vocab is not None:
                report.setdefault("vocab_rows", {})[key] = _copy_rows(want, have, vocab, source_vocab, key)
            elif have.shape != want.shape:
                raise ConfigError(
                    f"transfer: {key!r} is {tuple(want.shape)} here but {source_key!r} is {tuple(have.shape)} "
                    f"in {run_dir}; give this model the source's sizes"
                )
            else:
                want.copy_(have)
            report["tensors"] += 1
    model.load_state_dict(target)
    rows = "; ".join(
        f"{k}: {v['found']} of {v['words']} words" for k, v in report.get("vocab_rows", {}).items()
    )
    log.info(
        "transfer from %s: %d tensors of %s%s",
        run_dir,
        report["tensors"],
        dict(modules),
        f" ({rows})" if rows else "",
    )
    return report


def _copy_rows(
    want: torch.Tensor, have: torch.Tensor, vocab: Sequence[str], source_vocab: Sequence[str], key: str
) -> dict[str, int]:
    """Rows of ``have`` (by ``source_vocab``) into the rows of ``want`` (by ``vocab``) of the same token."""
    if want.shape[1:] != have.shape[1:] or len(vocab) != want.shape[0] or len(source_vocab) != have.shape[0]:
        raise ConfigError(
            f"transfer: {key!r} is {tuple(want.shape)} here ({len(vocab)} words) but {tuple(have.shape)} in "
            f"the source ({len(source_vocab)} words); give this model the source's width"
        )
    index = {token: row for row, token in enumerate(source_vocab)}
    pairs = [(row, index[token]) for row, token in enumerate(vocab) if token in index]
    if pairs:
        mine, theirs = (torch.tensor(ids) for ids in zip(*pairs))
        want[mine] = have[theirs]
    return {"found": len(pairs), "words": len(vocab)}
