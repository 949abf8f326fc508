"""Optimizers and learning-rate schedules chosen by the ``optim`` config group."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

OPTIMIZERS = ("adam", "adamw", "sgd", "adadelta")
SCHEDULERS = ("none", "cosine", "linear", "plateau")


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    name = cfg.name
    if name == "adam":
        return torch.optim.Adam(
            params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas), eps=cfg.eps
        )
    if name == "adamw":
        return torch.optim.AdamW(
            params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas), eps=cfg.eps
        )
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=cfg.lr, weight_decay=cfg.weight_decay, eps=cfg.eps)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg, total_steps: int, monitor: str, mode: str
) -> dict | None:
    """A Lightning ``lr_scheduler`` dict, or ``None`` for a constant rate. Warmup is linear."""
    name = cfg.scheduler
    warmup = int(cfg.warmup_steps)
    if name == "none" and warmup == 0:
        return None
    if name == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=0.5, patience=1)
        return {"scheduler": scheduler, "monitor": monitor, "interval": "epoch"}
    total = max(total_steps, warmup + 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if name == "linear":
            return max(0.0, 1.0 - progress)
        return 1.0

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"scheduler": scheduler, "interval": "step"}
